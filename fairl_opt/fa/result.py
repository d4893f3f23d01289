"""The record of an FA run: one :class:`FARound` per round (its failures, edits, per-pair requirements
and certificate) and the :class:`FAResult` that every consumer reads them from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.fa.settings import FASettings
from fairl_opt.programs import MarginProgram
from fairl_opt.solvers import Certificate, Solution


@dataclass
class FARound:
    """One round of the FA loop (round 0 is the standard solve).

    ``margins`` and ``prices`` (max-margin programs; ``prices`` None for hard margins) or
    ``weights`` and ``temperatures`` (MaxEnt) are copies of the full program's per-pair requirements
    after this round's edits: :meth:`FAResult.program` builds the program a round solved from them.
    ``failures`` (``n_failures`` of them) are the failures detected on this round's θ; ``kept``
    (``n_kept``) those the failure rule keeps for the next round's edit (all of them for
    ``failure_rule="all"``).
    """

    round: int
    objective: float
    certificate: Certificate
    margins: np.ndarray | None = None
    prices: np.ndarray | None = None
    weights: np.ndarray | None = None
    temperatures: np.ndarray | None = None
    n_failures: int = 0
    n_misclassified: int = 0
    n_near_ties: int = 0
    failures: list = field(default_factory=list)
    n_kept: int = 0
    kept: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    step: float | None = None
    witness_pair: int | None = None
    witness_violation: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {
            "round": self.round,
            "n_failures": self.n_failures,
            "n_misclassified": self.n_misclassified,
            "n_near_ties": self.n_near_ties,
            "n_kept": self.n_kept,
            "objective": self.objective,
            "changed": list(self.changed),
            "step": self.step,
            "witness_pair": self.witness_pair,
            "witness_violation": self.witness_violation,
            "certificate": self.certificate.to_dict(),
            "note": self.note,
        }


@dataclass
class FAResult:
    """The outcome of :func:`run_fa`.

    Attributes
    ----------
    theta : ndarray
        The final reward (θ_b + θ_c for the dual path).
    solution : Solution
        The final certified solve (of the correction program for the dual path).
    base_solution : Solution
        Round 0: the standard program.
    history : list of FARound
        Every round's failures, edits, per-pair requirements and certificate: the only record of
        the rounds (:meth:`program`, :meth:`round_margins` read it).
    tightened : int array
        Pairs whose requirement changed (sorted).
    required_margins : ndarray or None
        Final m_i for every pair (margin programs).
    weights, temperatures : ndarray or None
        Final w_i, T_i for every pair (MaxEnt).
    stop_reason : str
    prices : ndarray or None
        Final slack prices C_i of the full program for every pair (soft-margin programs; None for
        hard margins and MaxEnt): C (or the program's own C_i) times ``slack_upweight`` on the
        tightened pairs. ``MarginProgram(delta, required_margins, norm, C=prices)`` is the program
        whose solution is ``theta`` (without the dual path).
    noise_posterior : ndarray or None
        Each pair's out-of-fold coin-flip posterior (``failure_rule="posterior"`` only).
    """

    theta: np.ndarray
    solution: Solution
    base_solution: Solution
    history: list
    tightened: np.ndarray
    required_margins: np.ndarray | None
    weights: np.ndarray | None
    temperatures: np.ndarray | None
    stop_reason: str
    prices: np.ndarray | None = None
    settings: FASettings | None = None
    threshold: float | None = None
    noise_posterior: np.ndarray | None = None

    @property
    def standard_program(self):
        """Round 0's program (the standard one)."""
        return self.base_solution.program

    @property
    def is_margin(self) -> bool:
        return isinstance(self.standard_program, MarginProgram)

    def program(self, round: int = -1):
        """The full program after round ``round`` (default: the last): the standard program with
        that round's margins and prices, or weights and temperatures. Without the dual path its
        solution is that round's θ."""
        record = self.history[round]
        base = self.standard_program
        if self.is_margin:
            program = base.with_margins(record.margins)
            return program if record.prices is None else program.with_prices(record.prices)
        return base.with_weights(record.weights, record.temperatures)

    def round_margins(self) -> list[np.ndarray]:
        """The required margins after each round (round 0 first); DataError for MaxEnt results."""
        if not self.is_margin:
            raise DataError(
                "this FA result re-weighted a MaxEnt program: it has no margin constraints to build a "
                "feasible set from (use a max-margin method, or FeasibleSet.cone(delta))"
            )
        return [record.margins for record in self.history]
