"""The tuning knobs of each backend, one frozen dataclass per backend.

A backend is built as ``Backend(settings)`` (``None``: the defaults) and keeps its settings
unchanged; :meth:`~fairl_opt.solvers.base.Backend.fresh` builds another one with the same settings.
``get_backend(name, program, settings=...)`` checks that the settings belong to the backend it picks.
The defaults are the values every backend used before settings objects existed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from fairl_opt.exceptions import DataError


@dataclass(frozen=True)
class WorkingSetSettings:
    """Knobs of :class:`~fairl_opt.solvers.working_set.WorkingSetQP`.

    Attributes
    ----------
    full_set_below : int
        Solve on every pair at once when n is at most this (no working set needed).
    screening_epochs : int
        Coordinate-descent epochs that pick the first working set for larger n (hard margins and
        row-blocked Δ).
    screening_levels : tuple of float
        Soft margins at larger n: the smoothing widths (relative to max|m|) of the Newton steps on
        the smoothed primal that pick the first working set
        (:func:`~fairl_opt.solvers.screening.smoothed_primal_guess`); empty: coordinate descent
        as for hard margins.
    batch : int
        At most this many violated pairs enter the working set per round.
    max_rounds : int
        Cutting-plane rounds before giving up (then: polish, then fallback).
    fallback : bool
        Fall back to the cvxpy reference when the answer cannot be certified.
    warm_band : int
        A re-solve on the same rows (FA rounds) also puts in its first working set this many
        (at most n/6) pairs nearest their margins under the previous θ (and each cutting-plane round that holds
        pairs at their price takes in as many around its θ), so that the pairs the edit brings
        to the margin are there from the start instead of entering round by round.
    """

    full_set_below: int = 5000
    screening_epochs: int = 20
    screening_levels: tuple = (1.0, 0.3, 0.1, 0.03, 0.01)
    batch: int = 2000
    max_rounds: int = 50
    fallback: bool = True
    warm_band: int = 400


@dataclass(frozen=True)
class HighsSettings:
    """Knobs of :class:`~fairl_opt.solvers.highs_lp.HighsLP`.

    Attributes
    ----------
    initial_rows : int or None
        Pairs in the first working set; default ``min(n, max(100, 4d, n // 5))``.
    batch : int or None
        Most violated pairs added per round; default ``max(50, n // 10)``.
    tol : float
        A pair counts as violated when ``m_i − Δ_i θ > tol · max|m|`` (the certificate accepts
        1e-7 on the same scale).
    cutting_planes : bool
        False puts all n pairs in the first working set (one plain HiGHS solve).
    ipm_above : int
        A cold solve uses IPX when (pairs in W) × d is at least this, else the dual simplex.
    crossover : {"on", "off"}
        Crossover after IPX. "on" leaves a basis for hot-started rounds and warm re-solves; "off"
        saves ~15% of a cold solve but every later round is an IPX solve.
    hot_strategy : int or None
        HiGHS ``simplex_strategy`` for hot starts; None: primal (4) for hard margins, dual (1) for
        soft ones (boxed α).
    max_refinements : int
        Hard margins: re-solves allowed to repair last-digit margin shortfalls.
    options : mapping or None
        Extra HiGHS options (override :data:`~fairl_opt.solvers.highs_lp.HIGHS_LP_OPTIONS`).
    """

    initial_rows: int | None = None
    batch: int | None = None
    tol: float = 1e-9
    cutting_planes: bool = True
    ipm_above: int = 200_000
    crossover: str = "on"
    hot_strategy: int | None = None
    max_refinements: int = 3
    options: Mapping | None = None


@dataclass(frozen=True)
class DenseLPSettings:
    """Knobs of :class:`~fairl_opt.solvers.lp_ipm.DenseLP` (checked when built: DataError).

    Attributes
    ----------
    gap_tol : float
        The interior point stops at relative duality gap ≤ this (the certificate accepts 1e-6).
    max_iter : int
        Interior-point iterations per working set before the answer goes to the fallback.
    full_set_below : int
        Solve on every pair at once when n is at most this; above it, cutting planes over pairs.
    initial_rows : int or None
        Pairs in the first working set of a cutting-plane solve; default ``max(4d, n // 5)``.
    batch : int or None
        Most violated pairs added per round; default ``max(100, n // 10)``.
    max_rounds : int
        Cutting-plane rounds before the answer goes to the fallback.
    warm_working_set : bool
        A re-solve on the same rows (FA rounds) starts from the previous support plus the pairs
        the new margins cut, when that is at most half the pairs.
    fallback : bool
        An answer the certificate refuses (or an interior point that stalls) is solved again by
        :class:`~fairl_opt.solvers.highs_lp.HighsLP` and says so; False returns it uncertified.
    """

    gap_tol: float = 1e-9
    max_iter: int = 100
    full_set_below: int = 10_000
    initial_rows: int | None = None
    batch: int | None = None
    max_rounds: int = 30
    warm_working_set: bool = True
    fallback: bool = True

    def __post_init__(self):
        if not (math.isfinite(self.gap_tol) and 0 < self.gap_tol < 1):
            raise DataError(f"gap_tol must be in (0, 1), got {self.gap_tol}")
        if self.max_iter < 1 or self.max_rounds < 1 or self.full_set_below < 0:
            raise DataError(f"max_iter and max_rounds must be >= 1 and full_set_below >= 0, got "
                            f"{self.max_iter}, {self.max_rounds}, {self.full_set_below}")
        for name in ("initial_rows", "batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DataError(f"{name} must be >= 1 (or None), got {value}")


@dataclass(frozen=True)
class LBFGSSettings:
    """Knobs of :class:`~fairl_opt.solvers.lbfgs.LbfgsMaxEnt` (checked when built: DataError).

    Attributes
    ----------
    tol : float
        Certified relative suboptimality: stop at the first θ with ``‖∇P(θ)‖²/(2λ) ≤ tol·|P|``; the
        certificate is built with ``gap_tol=tol``. Below ~1e-13 the gap is at the level of float64
        rounding of P and D and may not certify.
    theta_tol : float or None
        Also require the certified distance bound ``‖θ − θ*‖ ≤ ‖∇P(θ)‖/λ`` to be at most this.
    memory : int
        L-BFGS memory (``maxcor``).
    max_iter : int
        L-BFGS iteration budget (an iteration is about 1.1 evaluations).
    switch : bool
        Leave L-BFGS for Newton steps once it is predicted to need more iterations than it has used
        and than a Newton finish costs.
    newton_steps : int
        Budget of Newton steps after L-BFGS.
    cg_max_iter : int or None
        Hessian-vector products per Newton step when d > ``dense_max_dim`` (default ``min(d, 500)``).
    dense_max_dim : int
        For d up to this, a Newton step whose CG would cost more than one d×d Hessian forms and
        factors the Hessian instead. 0: never.
    block_rows : int or None
        Rows of Δ per streamed block (default: whole Δ when it is small float64, else ~4 MiB blocks).
    """

    tol: float = 1e-8
    theta_tol: float | None = None
    memory: int = 10
    max_iter: int = 2000
    switch: bool = True
    newton_steps: int = 30
    cg_max_iter: int | None = None
    dense_max_dim: int = 1024
    block_rows: int | None = None

    def __post_init__(self):
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise DataError(f"tol must be positive and finite, got {self.tol}")
        if self.theta_tol is not None and not (math.isfinite(self.theta_tol) and self.theta_tol > 0):
            raise DataError(f"theta_tol must be positive and finite (or None), got {self.theta_tol}")
        if self.memory < 1 or self.max_iter < 1 or self.newton_steps < 0:
            raise DataError(
                f"memory and max_iter must be >= 1 and newton_steps >= 0, got {self.memory}, "
                f"{self.max_iter}, {self.newton_steps}"
            )
        if self.block_rows is not None and self.block_rows < 1:
            raise DataError(f"block_rows must be >= 1 (or None), got {self.block_rows}")


@dataclass(frozen=True)
class NewtonSettings:
    """Knobs of :class:`~fairl_opt.solvers.newton.NewtonMaxEnt`.

    Attributes
    ----------
    max_iter : int
        Newton steps before giving up (the certificate then judges what was reached).
    gap_tol : float
        Stop (after one more, polishing step) once the relative duality gap is below this; the
        certificate itself uses the default acceptance tolerance.
    """

    max_iter: int = 100
    gap_tol: float = 1e-12


@dataclass(frozen=True)
class CvxpySettings:
    """Knobs of :class:`~fairl_opt.solvers.reference.CvxpyBackend`: none (the solver options are
    the module's fixed ``CLARABEL_OPTIONS`` and ``HIGHS_OPTIONS``, so the reference stays one)."""


__all__ = ["CvxpySettings", "DenseLPSettings", "HighsSettings", "LBFGSSettings", "NewtonSettings", "WorkingSetSettings"]
