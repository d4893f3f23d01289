"""What every backend returns, and the one ``solve`` every backend shares (exact rescaling, two exact
shortcuts, the certificate); the infeasibility proofs live in :mod:`fairl_opt.solvers.infeasibility`.

A backend does exactly three things for the FA loop: ``solve(program)``, ``solve(program,
warm_start=previous)`` after the loop edited margins/weights, and a :class:`Certificate` (built by
:func:`certify`, never by the backend's own judgement).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from fairl_opt.exceptions import DataError, FairlError, InfeasibleError, NumericalRangeError, SolverError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers.certificate import Certificate, certify
from fairl_opt.solvers.infeasibility import SEPARABLE_MARGIN, relative_margin
from fairl_opt.solvers.scaling import (
    Scaling,
    check_range,
    choose_scaling,
    scale_free_prices,
    scale_rows,
    scaled_program,
)


#: Soft margins with every scale-free price (:func:`~fairl_opt.solvers.scaling.scale_free_prices`)
#: at least this are tried as hard margins first (see :meth:`Backend._solve_soft_or_hard`).
HARD_FIRST_PRICE = 1e6
#: Soft margins with every price at most this are tried with every multiplier at its bound first.
ALL_SLACK_PRICE = 1e-6


@dataclass(frozen=True, eq=False)
class Solution:
    """A solved program: θ, dual multipliers, and the certificate computed from both."""

    program: MarginProgram | MaxEntProgram
    theta: np.ndarray
    duals: np.ndarray
    certificate: Certificate

    @property
    def status(self) -> str:
        return self.certificate.status

    @property
    def objective(self) -> float:
        return self.certificate.primal_objective


class Backend:
    """Interface: ``solve(program, warm_start=None) -> Solution``; subclasses set ``name`` and
    implement ``supports`` and ``_solve``.

    :meth:`solve` is the same for every backend: it rescales the program exactly by powers of two
    (:mod:`fairl_opt.solvers.scaling`) so that the backend sees rows and margins of size about 1,
    calls ``_solve`` on the scaled program, and maps θ, the duals and the certificate back. The
    certificate is computed on the scaled program, which is the original one bit for bit up to
    the powers of two, so its relative figures and status hold for the original program.
    """

    name = "abstract"
    #: What the backend solves, for error messages.
    solves = "nothing"

    def supports(self, program) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def _solve(self, program, warm_start: Solution | None = None) -> Solution:  # pragma: no cover
        raise NotImplementedError

    def solve(self, program, warm_start: Solution | None = None) -> Solution:
        if not self.supports(program):
            what = type(program).__name__ + (f" with norm={program.norm!r}" if isinstance(program, MarginProgram) else "")
            raise DataError(f"backend {self.name!r} solves {self.solves} only, not {what}")
        scaling = choose_scaling(program)
        if scaling.identity:
            return self._solve_soft_or_hard(program, warm_start)
        scaled = scaled_program(program, scaling, self._scaled_rows(program.delta, scaling.row_exp))
        try:
            inner = self._solve_soft_or_hard(scaled, self._warm_scaled(warm_start, program, scaled, scaling))
        except InfeasibleError as exc:
            # Farkas vectors are invariant up to a positive factor: y on Δ/s, m/t is y·(1/t) on Δ, m
            raise InfeasibleError(str(exc), exc.rows,
                                  None if exc.farkas is None else exc.farkas / scaling.margin_scale,
                                  radius=exc.radius) from None
        except (SolverError, DataError) as exc:
            inner, failure = None, exc
        if inner is None or not inner.certificate.optimal:
            # The scaled units suit most solvers, not all (a soft margin's dual box grows as s²C/t):
            # data whose numbers float64 holds comfortably get a second try as given.
            retry = self._as_given(program, warm_start) if _comfortable(program) else None
            if retry is not None and retry.certificate.optimal:
                return retry
            if inner is None:
                raise failure
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            outer = Solution(
                program,
                inner.theta * scaling.theta_factor,
                inner.duals * scaling.dual_factor,
                _certificate_back(inner.certificate, scaling),
            )
        if not (np.isfinite(outer.theta).all() and np.isfinite(outer.certificate.primal_objective)):
            what = "margins" if isinstance(program, MarginProgram) else "reg (λ)"
            raise DataError(
                f"the reward for these {what} and rows does not fit in float64 (largest |Δ| "
                f"{float(np.abs(program.delta).max()):.3g}"
                + (f", largest |m| {float(np.abs(program.margins).max()):.3g}" if isinstance(program, MarginProgram) else "")
                + "): bring the margins and the features closer in size"
            )
        return outer

    def _solve_soft_or_hard(self, program, warm_start):
        """``_solve`` on a program whose rows and margins are of size 1, after two exact shortcuts.

        * Every C_i ≥ :data:`HARD_FIRST_PRICE`: the dual box is too wide for interior points to
          centre in. When the hard margin is feasible and its multipliers fit in the box
          (α_i ≤ C_i), (θ, α, ξ = 0) satisfies the soft program's KKT conditions, so it is the
          soft optimum.
        * Every C_i ≤ :data:`ALL_SLACK_PRICE`: slack is so cheap that every multiplier may sit at
          its bound, α = C: θ = Δᵀα (QP) or θ = 0 (LP, when ‖ΔᵀC‖_* ≤ 1); when every pair then
          stays short of its margin, that is the KKT point.

        The certificate, computed on the soft program itself, checks either. Otherwise the program
        is solved as given, if its scale-free prices are in the range float64 resolves
        (:func:`fairl_opt.solvers.scaling.check_range`)."""
        hard_failure = None
        if isinstance(program, MarginProgram) and not program.hard:
            start = time.perf_counter()
            found = None
            prices = scale_free_prices(program)
            if float(np.min(prices)) >= HARD_FIRST_PRICE:
                found, hard_failure = self._hard_first(program)
            elif float(np.max(prices)) <= ALL_SLACK_PRICE:
                found = _all_slack(program)
            if found is not None:
                theta, duals, status = found
                cert = certify(program, theta, duals, backend=self.name, solver_status=status,
                               solve_seconds=time.perf_counter() - start)
                if cert.optimal:
                    return Solution(program, theta, duals, cert)
        try:
            check_range(program)
        except DataError as refusal:
            # outside the range float64 is known to resolve: an answer that certifies is still
            # an answer; anything else (including overflow inside a backend) is the refusal
            try:
                with np.errstate(all="ignore"):
                    attempt = self._solve(program, warm_start)
            except (SolverError, ArithmeticError, ValueError, np.linalg.LinAlgError):
                attempt = None
            if attempt is not None and attempt.certificate.optimal:
                return attempt
            if (hard_failure is None and isinstance(program, MarginProgram)
                    and float(np.min(scale_free_prices(program))) >= HARD_FIRST_PRICE):
                margin = relative_margin(program.delta, program.margins)
                if not margin > SEPARABLE_MARGIN:
                    hard_failure = NumericalRangeError(
                        f"the hard margin is separable only by a margin of {margin:.3g} relative to the "
                        "row norms (the separation LP), which float64 does not resolve",
                        relative_margin=margin)
            if isinstance(hard_failure, NumericalRangeError):
                # the price makes this the hard margin, and that is what float64 cannot resolve
                raise NumericalRangeError(
                    f"{refusal} At this price the soft margin is the hard margin, and: {hard_failure}",
                    status=hard_failure.status, relative_margin=hard_failure.relative_margin) from None
            raise refusal from None
        return self._solve(program, warm_start)

    def _hard_first(self, program):
        """((θ, α, status) or None, the hard solve's error or None). A hard solve that does not
        answer the soft program leaves no trace in the backend (its warm starts and caches are
        restored), so the soft solve that follows is the one it would have been."""
        kept = dict(self.__dict__)
        try:
            hard = self._solve(program.with_prices(None), None)
        except FairlError as exc:
            self.__dict__.clear()
            self.__dict__.update(kept)
            return None, exc
        if hard.certificate.optimal and not (hard.duals > program.C).any():
            theta = hard.theta
            # the hard answer may miss margins by rounding (≤ 1e-7 relative), which the soft
            # objective prices at C_i ≫ 1: scale it up until every margin holds (θ → cθ with
            # c = max m_i/Δ_iθ costs a factor c² ≈ 1 + 2·1e-7 at most in ½‖θ‖² or c in ‖θ‖)
            scores = program.delta @ theta
            short = (scores < program.margins) & (scores > 0) & (program.margins > 0)
            if short.any():
                theta = theta * float(np.max(program.margins[short] / scores[short]))
            # and clear every margin by more than the rounding of Δ_iθ, so no slack is left for
            # the soft objective to price (the certificate bounds that rounding too)
            theta = theta * (1 + 4 * (program.dim + 2) * np.finfo(float).eps)
            return (theta, hard.duals, f"hard-first:{hard.certificate.solver_status}"), None
        self.__dict__.clear()
        self.__dict__.update(kept)
        return None, None

    def _as_given(self, program, warm_start) -> Solution | None:
        try:
            with np.errstate(all="ignore"):
                return self._solve_soft_or_hard(program, warm_start)
        except (SolverError, DataError, ArithmeticError, np.linalg.LinAlgError):
            return None

    def _scaled_rows(self, delta: np.ndarray, s: int) -> np.ndarray:
        """Δ/2^s, kept while Δ is the same object (FA rounds re-solve on the same rows: the
        backends' caches, keyed on the identity of the rows they see, keep working)."""
        cached = getattr(self, "_scaled_rows_cache", None)
        if cached is not None and cached[0] is delta and cached[1] == s:
            return cached[2]
        scaled = scale_rows(delta, s)
        self._scaled_rows_cache = (delta, s, scaled)
        return scaled

    def _warm_scaled(self, warm: Solution | None, program, scaled, scaling: Scaling) -> Solution | None:
        """A warm start (in the original units) re-expressed for the scaled program."""
        if warm is None:
            return None
        # the scaled program stands in for the warm one when they share rows, so that backends
        # recognise an FA re-solve (same rows, edited margins) by the identity of Δ
        same_rows = warm.program.delta is program.delta
        return Solution(
            scaled if same_rows else warm.program,
            warm.theta / scaling.theta_factor,
            warm.duals / scaling.dual_factor,
            warm.certificate,
        )


def _all_slack(program: MarginProgram):
    """(θ, α, status) with every multiplier at its price, α = C (see ``_solve_soft_or_hard``)."""
    alpha = program.prices
    if program.norm == "l2":
        theta = program.delta.T @ alpha
    else:
        theta = np.zeros(program.dim)
    return theta, alpha, "all-slack"


def _comfortable(program) -> bool:
    """Whether Δ, m and C lie well inside float64 (2^±100), so a solve as given cannot overflow."""
    values = [float(np.abs(program.delta).max())]
    if isinstance(program, MarginProgram):
        values.append(float(np.abs(program.margins).max()) or 1.0)
        if not program.hard:
            values += [float(np.min(program.C)), float(np.max(program.C))]
    else:
        values.append(program.reg)
    return all(2.0**-100 < v < 2.0**100 for v in values)


def _certificate_back(cert: Certificate, scaling: Scaling) -> Certificate:
    f = scaling.objective_factor
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return replace(
            cert,
            primal_objective=cert.primal_objective * f,
            dual_objective=cert.dual_objective * f,
            gap=cert.gap * f,
            max_violation=cert.max_violation * scaling.margin_scale,
            row_scale=scaling.row_scale,
            margin_scale=scaling.margin_scale,
        )
