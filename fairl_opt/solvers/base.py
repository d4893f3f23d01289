"""What every backend returns, and the one ``solve`` every backend shares (exact rescaling, two exact
shortcuts, the certificate); the infeasibility proofs live in :mod:`fairl_opt.solvers.infeasibility`.

A backend does exactly three things for the FA loop: ``solve(program)``, ``solve(program,
warm_start=previous)`` after the loop edited margins/weights, and a :class:`Certificate` (built by
:func:`certify`, never by the backend's own judgement). It is built from one frozen settings object
(:mod:`fairl_opt.solvers.settings`) and reports how each solve went in ``Solution.diagnostics``,
not in attributes of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace

import numpy as np

from fairl_opt.exceptions import DataError, FairlError, InfeasibleError, NumericalRangeError, SolverError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.programs.blocks import as_rows, is_blocked
from fairl_opt.solvers.certificate import Certificate, Status, certify
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
    """A solved program: θ, dual multipliers, the certificate computed from both, and what the
    backend reports about the solve.

    ``diagnostics`` is a plain dict set once per solve (empty when a backend reports nothing).
    Keys by backend (``certificate.backend`` names it):

    * ``working-set``: ``rounds`` (cutting-plane rounds), ``working_set_size`` (pairs in the last
      box QP), ``ipm_iterations`` (interior-point iterations over the rounds), ``fallback`` (True
      when the answer is the cvxpy reference's; ``solver_status`` then starts with
      ``"fallback-cvxpy"``), ``polished`` (True when the active-set polish produced it);
    * ``highs``: ``rounds`` (HiGHS runs), ``working_set_size`` (pairs in the LP at the end),
      ``reused`` (the kept Highs instance was hot-started), ``iterations`` (simplex plus
      interior-point iterations);
    * ``lp-ipm``: ``rounds`` (interior-point solves over working sets), ``working_set_size``
      (pairs in the last one), ``ipm_iterations`` (over the rounds), ``ipm_status`` (the last
      solve's: ``"solved"``, ``"max_iter"``, ``"diverged"``, ``"numerical"``), ``fallback``
      (True when the answer is HighsLP's; ``solver_status`` then starts with ``"fallback-highs"``);
    * ``lbfgs``: ``nfev`` (fused value+gradient evaluations, both stages), ``lbfgs_nfev`` and
      ``nit`` (evaluations and iterations of the L-BFGS stage), ``newton_steps``, ``hvp`` and
      ``hessians`` (the finishing stage), ``stage`` (``"lbfgs"``, ``"newton"`` or ``"budget"``:
      the stage that certified, or none did);
    * ``newton``: ``newton_steps``;
    * ``cvxpy``: ``solver`` (the cvxpy solver name);
    * any backend, when :class:`Backend` answered by an exact shortcut: ``shortcut``
      (``"hard-first"``, with the hard solve's own keys, or ``"all-slack"``).
    """

    program: MarginProgram | MaxEntProgram
    theta: np.ndarray
    duals: np.ndarray
    certificate: Certificate
    diagnostics: dict = field(default_factory=dict)

    @property
    def status(self) -> Status:
        """The certificate's verdict."""
        return self.certificate.status

    @property
    def objective(self) -> float:
        """The primal objective P(θ) the certificate evaluated."""
        return self.certificate.primal_objective

    def require_certified(self, context: str) -> Solution:
        """This solution when its certificate accepts it; otherwise a :class:`SolverError` naming
        ``context``, the backend, its own status and the failing figures (the one place an
        uncertified answer is refused)."""
        cert = self.certificate
        if not cert.optimal:
            raise SolverError(
                f"{context}: backend {cert.backend!r} returned status {cert.solver_status!r} but the "
                f"certificate fails (relative gap {cert.relative_gap:.2e}, max violation "
                f"{cert.max_violation:.2e}); try backend='cvxpy' or rescaled embeddings",
                status=cert.solver_status,
            )
        return self


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
    #: The frozen dataclass of this backend's knobs (:mod:`fairl_opt.solvers.settings`).
    settings_class: type = type(None)
    #: Whether the backend passes over Δ only by row blocks, so that it solves programs whose Δ is
    #: memory-mapped or a Dask array (:mod:`fairl_opt.programs.blocks`); the others need Δ in memory.
    streams_rows: bool = False

    def __init__(self, settings=None, **knobs):
        """``settings``: an instance of :attr:`settings_class` (None: its defaults). Keyword
        ``knobs`` are a shorthand for fields of it, applied on top (``WorkingSetQP(fallback=False)``
        is ``WorkingSetQP(WorkingSetSettings(fallback=False))``)."""
        if settings is None:
            settings = self.settings_class()
        if not isinstance(settings, self.settings_class):
            raise DataError(f"backend {self.name!r} takes settings of type {self.settings_class.__name__}, "
                            f"got {type(settings).__name__}")
        if knobs:
            names = {f.name for f in fields(settings)}
            unknown = sorted(set(knobs) - names)
            if unknown:
                raise DataError(f"backend {self.name!r} has no setting {unknown[0]!r}; its settings are "
                                f"{sorted(names)}")
            settings = replace(settings, **knobs)
        self.settings = settings
        self._reset()

    def _reset(self) -> None:
        """Set up the per-solve state a backend keeps between solves (warm starts, caches)."""

    def fresh(self) -> Backend:
        """A new backend of the same type and settings, with none of this one's per-solve state
        (warm starts, caches): what a separate fit, e.g. an FA fold, should solve with."""
        return type(self)(self.settings)

    def supports(self, program) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def _solve(self, program, warm_start: Solution | None = None) -> Solution:  # pragma: no cover
        raise NotImplementedError

    def solve(self, program, warm_start: Solution | None = None) -> Solution:
        """The certified :class:`Solution` of ``program`` (warm-started from ``warm_start``, a
        previous solution, when the backend can use it); see the class docstring."""
        if not self.supports(program):
            what = type(program).__name__ + (f" with norm={program.norm!r}" if isinstance(program, MarginProgram) else "")
            raise DataError(f"backend {self.name!r} solves {self.solves} only, not {what}")
        if is_blocked(program.delta) and not self.streams_rows:
            n, d = program.delta.shape
            raise DataError(
                f"delta: backend {self.name!r} needs Δ in memory, and this delta is a {program.delta.kind} "
                f"array ({n} x {d} {program.delta.dtype}) that is never loaded silently: use backend "
                "'working-set' (mm-qp), 'lbfgs' or 'newton' (maxent), which pass over it by row blocks, "
                "or load it yourself (np.asarray) if it fits in memory"
            )
        scaling = choose_scaling(program)
        if scaling.identity:
            return self._solve_soft_or_hard(program, warm_start)
        scaled = scaled_program(program, scaling, self._scaled_rows(program.delta, scaling.row_exp))
        try:
            inner = self._solve_soft_or_hard(scaled, self._warm_scaled(warm_start, program, scaled, scaling))
        except InfeasibleError as exc:
            # Farkas vectors are invariant up to a positive factor: y on Δ/s, m/t is y·(1/t) on Δ, m
            raise InfeasibleError(str(exc), rows=exc.rows,
                                  farkas=None if exc.farkas is None else exc.farkas / scaling.margin_scale,
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
                inner.diagnostics,
            )
        if not (np.isfinite(outer.theta).all() and np.isfinite(outer.certificate.primal_objective)):
            what = "margins" if isinstance(program, MarginProgram) else "reg (λ)"
            raise DataError(
                f"the reward for these {what} and rows does not fit in float64 (largest |Δ| "
                f"{as_rows(program.delta).abs_max():.3g}"
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
                theta, duals, status, diagnostics = found
                cert = certify(program, theta, duals, backend=self.name, solver_status=status,
                               solve_seconds=time.perf_counter() - start)
                if cert.optimal:
                    return Solution(program, theta, duals, cert, diagnostics)
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
            if (hard_failure is None and isinstance(program, MarginProgram) and not is_blocked(program.delta)
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
        """((θ, α, status, diagnostics) or None, the hard solve's error or None). A hard solve that does not
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
            scores = program.delta_rows @ theta
            short = (scores < program.margins) & (scores > 0) & (program.margins > 0)
            if short.any():
                theta = theta * float(np.max(program.margins[short] / scores[short]))
            # and clear every margin by more than the rounding of Δ_iθ, so no slack is left for
            # the soft objective to price (the certificate bounds that rounding too)
            theta = theta * (1 + 4 * (program.dim + 2) * np.finfo(float).eps)
            diagnostics = dict(hard.diagnostics, shortcut="hard-first")
            return (theta, hard.duals, f"hard-first:{hard.certificate.solver_status}", diagnostics), None
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
            warm.diagnostics,
        )


def _all_slack(program: MarginProgram):
    """(θ, α, status, diagnostics) with every multiplier at its price, α = C (see
    ``_solve_soft_or_hard``)."""
    alpha = program.prices
    if program.norm == "l2":
        theta = program.delta_rows.T @ alpha
    else:
        theta = np.zeros(program.dim)
    return theta, alpha, "all-slack", {"shortcut": "all-slack"}


def _comfortable(program) -> bool:
    """Whether Δ, m and C lie well inside float64 (2^±100), so a solve as given cannot overflow."""
    values = [as_rows(program.delta).abs_max()]
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
