"""The failure-aware (FA) loop: solve → find failures → tighten / re-weight → re-solve warm.

Max-margin programs tighten the margin of each NEW failure, ``m_j ← m_j + δ`` (j in the failure set
only: raising every margin by the same amount only rescales θ, so a round that would cover every
pair stops instead). With a soft margin, a failure whose slack is already positive sits at its dual
bound α_j = C and tightening its margin leaves θ unchanged (proofs/T10); ``slack_upweight > 1``
therefore also raises the slack price of each new failure, ``C_j ← C_j·slack_upweight`` (the
soft-margin analogue of MaxEnt's up-weighting), which moves θ. MaxEnt up-weights
(``w_j ← w_j·upweight``) and/or sharpens (``T_j ← T_j·sharpen``, sharpen < 1) its failures. Each pair is edited at most once, so the loop ends
after at most n rounds (and at ``max_rounds``).

Every round is recorded: the failures found on its θ, the pairs changed to get it, its objective
and certificate, and for margin programs a **witness** — the previous θ violates a new constraint,
so the feasible set strictly shrank.

If tightening makes a hard-margin program infeasible, the loop solves the LP
``max t s.t. Δθ ≥ m + t·1_S`` for the largest admissible step, backs off to ``backoff·t*`` and says
so in the round's note; it never returns an uncertified θ.

**Dual path** (``dual_path=True``): the reward is ``θ = θ_b + θ_c`` with θ_b the standard solution
(fixed) and the correction θ_c fitted on the failure pairs only, under its own penalty:
``min ½‖θ_c‖² (+ C_c Σξ) s.t. Δ_j(θ_b + θ_c) ≥ m_j + δ (− ξ_j), j ∈ S`` (or the MaxEnt analogue with
offsets Δ_jθ_b and reg λ_c). This is one convex program in θ: min ½‖θ − θ_b‖² over the tightened
failure constraints. With ``slack_upweight`` the correction's slack prices carry the same factors,
C_c·slack_upweight on each of its pairs.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from fairl_opt.exceptions import DataError, InfeasibleError, SolverError
from fairl_opt.failures import (
    Failures,
    combine_margins,
    detect_failures,
    normalised_margins,
    out_of_fold_margins,
    resolve_threshold,
)
from fairl_opt.pairs import group_folds
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import Backend, Certificate, Solution, get_backend, max_admissible_tightening


def _setting(default, help: str, applies: str = "all", flag: bool = False):
    """A field of :class:`FASettings` with the text ``fairl`` shows for it and the programs it applies
    to (``"all"``, ``"margin"`` for max-margin programs, ``"maxent"``)."""
    return field(default=default, metadata={"help": help, "applies": applies, "flag": flag})


@dataclass(frozen=True)
class FASettings:
    """Every setting of the FA loop, in one object passed unchanged from the CLI, the estimators,
    :func:`run_fa`, ``fairl certify`` and the detox experiment.

    Failure rule (:mod:`fairl_opt.failures`):

    near_tie_threshold : float, optional
        Absolute τ ≥ 0 on the normalised margin; when given, ``near_tie_quantile`` is not used.
    near_tie_quantile : float, optional
        τ as this quantile in (0, 1) of the positive normalised margins of round 0, then kept fixed so
        rounds compare like with like. ``None`` with no threshold: misclassified pairs only.
    oof_folds : int
        k ≥ 2 mines failures out of fold as well (folds keep each prompt together); 0 = training fit only.
    seed : int
        Seed of the fold assignment.

    Tightening:

    margin_step : float
        δ > 0 added to a failure's required margin (max-margin programs).
    upweight : float
        Factor ≥ 1 on a failure's weight (MaxEnt).
    sharpen : float
        Factor in (0, 1] on a failure's temperature (MaxEnt).
    backoff : float
        Fraction in (0, 1) of the largest admissible step used when δ makes a hard margin infeasible.
    slack_upweight : float
        Factor ≥ 1 on a failure's slack price C_j (soft margins only), applied once per pair in the
        round that tightens its margin, so ``C_j = C·slack_upweight`` on every tightened pair at the
        end. The default 1 keeps C (and then, by proofs/T10, failures strictly inside the margin
        cannot move θ).

    Loop:

    max_rounds : int
        Rounds after the standard solve.
    curriculum : bool
        When a round has new misclassified pairs, tighten only those; near-ties wait until no clear
        error is left.
    dual_path : bool
        Fit a correction θ_c on the failures on top of the fixed standard θ_b.
    correction_penalty : float, optional
        The correction's own penalty: C_c for soft margins, λ_c for MaxEnt (default: the program's).
    """

    near_tie_threshold: float | None = _setting(None, "near-tie threshold τ on the normalised margin")
    near_tie_quantile: float | None = _setting(0.1, "near-tie threshold as a quantile of the margins")
    oof_folds: int = _setting(5, "out-of-fold mining folds, 0 = off")
    seed: int = _setting(0, "seed of the out-of-fold folds")
    margin_step: float = _setting(0.5, "FA margin tightening δ", "margin")
    upweight: float = _setting(2.0, "FA MaxEnt weight factor >= 1", "maxent")
    sharpen: float = _setting(1.0, "FA MaxEnt temperature factor in (0, 1]", "maxent")
    backoff: float = _setting(0.99, "fraction of the largest admissible step on hard-margin infeasibility",
                              "margin")
    slack_upweight: float = _setting(1.0, "factor >= 1 on a failure's slack price C, 1 = off (soft margins)",
                                     "margin")
    max_rounds: int = _setting(5, "FA rounds after the standard solve")
    curriculum: bool = _setting(True, "tighten new misclassified pairs before near-ties")
    dual_path: bool = _setting(False, "fit a correction on failures over the standard θ_b", flag=True)
    correction_penalty: float | None = _setting(None, "the dual path's own penalty C_c or λ_c")

    def __post_init__(self):
        if self.near_tie_threshold is not None:
            _check_real("near_tie_threshold", self.near_tie_threshold, lambda v: v >= 0, "finite and >= 0")
        if self.near_tie_quantile is not None:
            _check_real("near_tie_quantile", self.near_tie_quantile, lambda v: 0 < v < 1, "in (0, 1)")
        if isinstance(self.oof_folds, bool) or not isinstance(self.oof_folds, (int, np.integer)) or (
                self.oof_folds != 0 and self.oof_folds < 2):
            raise DataError(f"oof_folds must be 0 (off) or an integer >= 2, got {self.oof_folds!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise DataError(f"seed must be an integer >= 0, got {self.seed!r}")
        _check_real("margin_step", self.margin_step, lambda v: v > 0, "positive and finite")
        _check_real("upweight", self.upweight, lambda v: v >= 1, "finite and >= 1")
        _check_real("sharpen", self.sharpen, lambda v: 0 < v <= 1, "in (0, 1]")
        if self.upweight == 1 and self.sharpen == 1:
            raise DataError("upweight=1 and sharpen=1 would leave MaxEnt failures unchanged")
        _check_real("backoff", self.backoff, lambda v: 0 < v < 1, "in (0, 1)")
        _check_real("slack_upweight", self.slack_upweight, lambda v: v >= 1, "finite and >= 1")
        if isinstance(self.max_rounds, bool) or not isinstance(self.max_rounds, (int, np.integer)) or (
                self.max_rounds < 0):
            raise DataError(f"max_rounds must be an integer >= 0, got {self.max_rounds!r}")
        if self.correction_penalty is not None:
            _check_real("correction_penalty", self.correction_penalty, lambda v: v > 0, "positive and finite")

    @classmethod
    def names(cls, applies: str | None = None) -> tuple[str, ...]:
        """The setting names (those that apply to ``"margin"`` or ``"maxent"`` programs if given)."""
        return tuple(f.name for f in fields(cls)
                     if applies is None or f.metadata["applies"] in ("all", applies))

    def replace(self, **changes) -> "FASettings":
        """A copy with ``changes``; an unknown name is a DataError naming it."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise DataError(f"unknown FA setting(s) {unknown}; the settings are {list(self.names())}")
        return replace(self, **changes)

    @property
    def threshold_rule(self) -> tuple[float | None, float | None]:
        """(absolute τ, quantile): the threshold wins when both are set."""
        if self.near_tie_threshold is not None:
            return float(self.near_tie_threshold), None
        return None, self.near_tie_quantile

    def resolve_threshold(self, margins: np.ndarray) -> float:
        """The absolute τ these settings mean for the given normalised margins."""
        threshold, quantile = self.threshold_rule
        return resolve_threshold(margins, threshold, quantile)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_real(name: str, value, ok, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
            np.isfinite(value) and ok(value)):
        raise DataError(f"{name} must be {what}, got {value!r}")


@dataclass
class FARound:
    """One round of the FA loop (round 0 is the standard solve).

    ``margins`` and ``prices`` (max-margin programs; ``prices`` None for hard margins) or
    ``weights`` and ``temperatures`` (MaxEnt) are copies of the full program's per-pair requirements
    after this round's edits: :meth:`FAResult.program` builds the program a round solved from them.
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


class _State:
    """Per-pair requirements in full-pair space; programs are derived from it each round."""

    def __init__(self, program):
        self.program = program
        # multiplicative factors on the slack prices (soft margins); None until one is raised, so
        # that an FA run without slack_upweight solves exactly the programs it always did
        self.price_factors = None
        if isinstance(program, MarginProgram):
            self.margins = program.margins.copy()
        else:
            self.weights = program.weights.copy()
            self.temperatures = program.temperatures.copy()

    @property
    def is_margin(self) -> bool:
        return isinstance(self.program, MarginProgram)

    def full_program(self):
        if self.is_margin:
            program = self.program.with_margins(self.margins)
            if self.price_factors is not None:
                program = program.with_prices(self.program.prices * self.price_factors)
            return program
        return self.program.with_weights(self.weights, self.temperatures)

    def raise_prices(self, rows, factor: float) -> None:
        """C_j ← C_j·factor on ``rows`` (soft-margin programs with factor > 1; otherwise nothing)."""
        if not self.is_margin or self.program.hard or factor == 1:
            return
        if self.price_factors is None:
            self.price_factors = np.ones(self.program.n_pairs)
        self.price_factors[rows] *= factor

    def prices(self):
        """The full program's C_i (None for hard margins and MaxEnt)."""
        if not self.is_margin or self.program.hard:
            return None
        prices = self.program.prices
        return prices if self.price_factors is None else prices * self.price_factors

    def record(self, record: FARound) -> None:
        """Copy the current per-pair requirements into ``record``."""
        if self.is_margin:
            record.margins = self.margins.copy()
            prices = self.prices()
            record.prices = None if prices is None else np.array(prices, dtype=np.float64)
        else:
            record.weights = self.weights.copy()
            record.temperatures = self.temperatures.copy()


def run_fa(
    program: MarginProgram | MaxEntProgram,
    backend: str | Backend = "auto",
    settings: FASettings | None = None,
    *,
    groups=None,
    verbose: bool = False,
) -> FAResult:
    """Run the failure-aware loop on ``program``.

    Parameters
    ----------
    program : MarginProgram or MaxEntProgram
        The standard program (round 0).
    backend : str or Backend
        A backend name or an instance; one instance serves every round so its caches are re-used,
        and the out-of-fold fits use ``backend.fresh()`` (same settings, own state).
    settings : FASettings
        Failure rule, tightening, rounds, folds, curriculum and dual path (default ``FASettings()``).
    groups : array, optional
        Prompt id per pair, so out-of-fold folds keep prompts together.
    verbose : bool
        One progress line per round on stderr.

    Returns
    -------
    FAResult
    """
    settings = FASettings() if settings is None else settings
    if not isinstance(settings, FASettings):
        raise DataError(f"settings must be an FASettings, got {type(settings).__name__}")
    if isinstance(backend, str):
        backend = get_backend(backend, program)
    state = _State(program)
    n = program.n_pairs
    delta = program.delta

    def say(msg):
        if verbose:
            print(f"[fa] {msg}", file=sys.stderr, flush=True)

    base = _certified(backend.solve(state.full_program()), "standard solve (round 0)")
    theta = base.theta
    solution = base
    history = [FARound(0, base.objective, base.certificate)]
    state.record(history[0])
    say(f"round 0: objective {base.objective:.6g} ({base.certificate.solve_seconds:.3f}s)")

    if settings.oof_folds:
        folds = group_folds(np.arange(n) if groups is None else groups, settings.oof_folds, settings.seed)
    else:
        folds = None
    fold_backends = [_fresh(backend) for _ in folds] if folds else None
    fold_programs = [program.restrict(train) for train, _ in folds] if folds else None

    def oof_margins():
        thetas = []
        for (train, _), fold_program, fold_backend in zip(folds, fold_programs, fold_backends):
            if state.is_margin:
                edited = fold_program.with_margins(state.margins[train])
                if state.price_factors is not None:
                    edited = edited.with_prices(state.prices()[train])
            else:
                edited = fold_program.with_weights(state.weights[train], state.temperatures[train])
            thetas.append(_certified(fold_backend.solve(edited), "out-of-fold fit").theta)
        return out_of_fold_margins(delta, thetas, folds)

    def find(theta_now) -> Failures:
        nonlocal threshold
        margins = combine_margins(normalised_margins(delta, theta_now), oof_margins() if folds else None)
        if threshold is None:
            threshold = settings.resolve_threshold(margins)
        return detect_failures(margins, threshold)

    threshold = None
    tightened: set[int] = set()
    max_rounds, curriculum, dual_path = settings.max_rounds, settings.curriculum, settings.dual_path
    correction_penalty_value = settings.correction_penalty
    stop_reason = f"round limit ({max_rounds})"
    failures = find(theta)
    _record_failures(history[-1], failures)

    for r in range(1, max_rounds + 1):
        new_mis = [i for i in failures.misclassified.tolist() if i not in tightened]
        new_tie = [i for i in failures.near_ties.tolist() if i not in tightened]
        new = new_mis if (curriculum and new_mis) else new_mis + new_tie
        if not new:
            stop_reason = "no new failures"
            break
        if len(tightened) + len(new) >= n:
            stop_reason = (
                "the failure set covers every pair: tightening all constraints alike only rescales θ"
            )
            break
        previous_theta = theta
        new_arr = np.asarray(sorted(new), dtype=np.int64)
        record = FARound(r, float("nan"), solution.certificate, changed=new_arr.tolist())
        if state.is_margin:
            step = settings.margin_step
            solution, step, note = _tighten_margins(
                state, new_arr, step, settings.backoff, backend, solution, tightened, dual_path,
                base.theta, correction_penalty_value, settings.slack_upweight,
            )
            record.step = step
            record.note = note
            if step == 0.0:
                tightened.update(new)
                record.objective = solution.objective
                state.record(record)
                history.append(record)
                say(f"round {r}: {note}")
                continue
        else:
            state.weights[new_arr] *= settings.upweight
            state.temperatures[new_arr] *= settings.sharpen
            tightened.update(new)
            solved = _solve_round(state, backend, solution, tightened, dual_path, base.theta,
                                  correction_penalty_value)
            solution = solved
            record.note = (
                f"weights x{settings.upweight:g}, temperatures x{settings.sharpen:g} on {len(new)} pair(s)"
            )
        theta = _full_theta(solution, dual_path, base.theta)
        record.objective = solution.objective
        record.certificate = solution.certificate
        if (state.is_margin and not state.program.hard and settings.slack_upweight == 1
                and np.allclose(theta, previous_theta, rtol=1e-7, atol=1e-10 * max(1.0, np.abs(theta).max()))):
            record.note += ("; θ unchanged: the tightened pairs sit at the soft margin's dual bound C, where a "
                            "margin step cannot move θ (proofs/T10); slack_upweight > 1 raises their price")
        if state.is_margin:
            shortfall = state.margins[new_arr] - delta[new_arr] @ previous_theta
            j = int(np.argmax(shortfall))
            if shortfall[j] > 1e-9 * max(1.0, float(np.abs(state.margins).max())):
                record.witness_pair = int(new_arr[j])
                record.witness_violation = float(shortfall[j])
        failures = find(theta)
        _record_failures(record, failures)
        state.record(record)
        history.append(record)
        say(
            f"round {r}: changed {len(new)} pair(s), objective {record.objective:.6g}, "
            f"{len(failures)} failure(s) now"
        )
    else:
        stop_reason = f"round limit ({max_rounds})"

    return FAResult(
        theta=theta,
        solution=solution,
        base_solution=base,
        history=history,
        tightened=np.asarray(sorted(tightened), dtype=np.int64),
        required_margins=state.margins.copy() if state.is_margin else None,
        weights=None if state.is_margin else state.weights.copy(),
        temperatures=None if state.is_margin else state.temperatures.copy(),
        stop_reason=stop_reason,
        prices=state.prices(),
        settings=settings,
    )


def _certified(solution: Solution, context: str) -> Solution:
    """``solution`` when its certificate holds, else SolverError naming ``context``."""
    if hasattr(solution, "require_certified"):
        return solution.require_certified(context)
    cert = solution.certificate
    if not cert.optimal:
        raise SolverError(
            f"{context}: backend {cert.backend!r} returned status {cert.solver_status!r} but the "
            f"certificate fails (relative gap {cert.relative_gap:.2e}, max violation "
            f"{cert.max_violation:.2e}); try backend='cvxpy' or rescaled embeddings",
            status=cert.solver_status,
        )
    return solution


def _fresh(backend: Backend) -> Backend:
    """A backend of the same kind and settings with its own per-solve state (fold fits)."""
    return backend.fresh() if hasattr(backend, "fresh") else type(backend)()


def _record_failures(record: FARound, failures: Failures) -> None:
    record.n_failures = len(failures)
    record.n_misclassified = int(failures.misclassified.size)
    record.n_near_ties = int(failures.near_ties.size)
    record.failures = failures.indices.tolist()


def _full_theta(solution: Solution, dual_path: bool, base_theta: np.ndarray) -> np.ndarray:
    return base_theta + solution.theta if dual_path else solution.theta


def _round_program(state: _State, tightened, dual_path: bool, base_theta, correction_penalty):
    """The program a round solves: the full one, or the dual-path correction on the tightened rows."""
    if not dual_path:
        return state.full_program()
    rows = np.asarray(sorted(tightened), dtype=np.int64)
    offsets = state.program.delta[rows] @ base_theta
    if state.is_margin:
        C = state.program.C
        if C is not None and correction_penalty is not None:
            C = correction_penalty
        elif state.program.per_pair_prices:
            C = C[rows]
        if C is not None and state.price_factors is not None:
            # the correction's slack prices carry the same factors as the full program's
            C = np.broadcast_to(np.asarray(C, dtype=np.float64), rows.shape) * state.price_factors[rows]
        return MarginProgram(state.program.delta[rows], state.margins[rows] - offsets, state.program.norm, C)
    reg = correction_penalty if correction_penalty is not None else state.program.reg
    return MaxEntProgram(
        state.program.delta[rows], reg, state.weights[rows], state.temperatures[rows],
        state.program.offsets[rows] + offsets,
    )


def _solve_round(state, backend, previous, tightened, dual_path, base_theta, correction_penalty):
    program = _round_program(state, tightened, dual_path, base_theta, correction_penalty)
    warm = previous if previous.program.n_pairs == program.n_pairs else None
    return _certified(backend.solve(program, warm_start=warm), "FA round")


def _tighten_margins(state, new, step, backoff, backend, previous, tightened, dual_path, base_theta,
                     correction_penalty, slack_upweight=1.0):
    """Raise the margins of ``new`` by ``step`` (and, for soft margins with ``slack_upweight > 1``,
    their slack prices by that factor); on hard-margin infeasibility back off to the LP optimum.

    Returns (solution, step used, note). A step of 0.0 means no positive tightening is admissible
    for these pairs; the previous solution is returned unchanged.

    The back-off concerns hard margins only (a soft program is always feasible), and prices only
    exist for soft margins, so the two never meet; the prices are still restored with the margins.
    """
    before = state.margins.copy()
    before_factors = None if state.price_factors is None else state.price_factors.copy()
    state.margins[new] += step
    state.raise_prices(new, slack_upweight)
    priced = state.price_factors is not None and slack_upweight != 1
    candidate = tightened | set(new.tolist())
    try:
        solution = _solve_round(state, backend, previous, candidate, dual_path, base_theta, correction_penalty)
        tightened.update(new.tolist())
        note = f"margin +{step:g} on {new.size} pair(s)"
        if priced:
            note += f", slack price x{slack_upweight:g}"
        return solution, step, note
    except InfeasibleError as exc:
        state.margins[:] = before
        state.price_factors = before_factors
        program = state.full_program()
        largest = max_admissible_tightening(program.delta, program.margins, new, upper=step)
        if not np.isfinite(largest) or largest >= step * (1 - 1e-9):
            raise SolverError(
                f"tightening pairs {new[:10].tolist()} by {step:g} was reported infeasible, but the "
                f"admissible-step LP allows {largest:g}; the data are badly scaled"
            ) from exc
        scale = max(1.0, float(np.abs(before).max()))
        if largest <= 1e-9 * scale:
            return previous, 0.0, (
                f"no positive tightening admissible for pairs {new[:10].tolist()} "
                f"(conflicting set {exc.conflicting_pairs[:10]}); left unchanged"
            )
        used = backoff * largest
        state.margins[new] += used
        state.raise_prices(new, slack_upweight)  # a no-op: only hard margins get here
        solution = _solve_round(state, backend, previous, candidate, dual_path, base_theta, correction_penalty)
        tightened.update(new.tolist())
        return solution, used, (
            f"margin +{step:g} on {new.size} pair(s) is infeasible (conflicting pairs "
            f"{exc.conflicting_pairs[:10]}); backed off to +{used:.6g} = {backoff:g} x the largest "
            f"admissible step {largest:.6g}"
        )
