"""The FA loop itself (:func:`run_fa`); see :mod:`fairl_opt.fa` for what a round does."""

from __future__ import annotations

import logging

import numpy as np

from fairl_opt._progress import progress_bar
from fairl_opt.exceptions import DataError, InfeasibleError, SolverError
from fairl_opt.failures import (
    Failures,
    combine_margins,
    detect_failures,
    normalised_margins,
    out_of_fold_margins,
)
from fairl_opt.fa.noise import noise_posterior
from fairl_opt.fa.result import FAResult, FARound
from fairl_opt.fa.rules import FailureContext, select_failures
from fairl_opt.fa.settings import FASettings
from fairl_opt.pairs import group_folds
from fairl_opt.programs.blocks import is_blocked
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import Backend, Solution, get_backend, max_admissible_tightening

log = logging.getLogger(__name__)


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
    select=None,
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
    select : callable, optional
        A failure rule of your own, used instead of ``settings.failure_rule`` (which must then be
        ``"all"``): given a :class:`~fairl_opt.fa.rules.FailureContext`, it returns the failures to
        keep (a subset of ``context.failures.indices``), e.g. a planted study's oracle.
    verbose : bool
        One progress line per round on stderr.

    Returns
    -------
    FAResult
    """
    settings = FASettings() if settings is None else settings
    if not isinstance(settings, FASettings):
        raise DataError(f"settings must be an FASettings, got {type(settings).__name__}")
    rule = settings.failure_rule
    if select is not None and rule != "all":
        raise DataError(f"select= replaces the failure rule: pass failure_rule='all', not {rule!r}")
    if isinstance(backend, str):
        backend = get_backend(backend, program)
    state = _State(program)
    n = program.n_pairs
    delta = program.delta

    def say(msg):
        (log.info if verbose else log.debug)(f"fa {msg}")

    base = backend.solve(state.full_program()).require_certified("standard solve (round 0)")
    theta = base.theta
    solution = base
    history = [FARound(0, base.objective, base.certificate)]
    state.record(history[0])
    say(f"round 0: objective {base.objective:.6g} ({base.certificate.solve_seconds:.3f}s)")

    if settings.oof_folds:
        folds = group_folds(np.arange(n) if groups is None else groups, settings.oof_folds, settings.seed)
    else:
        folds = None
    fold_backends = [backend.fresh() for _ in folds] if folds else None
    # each fold's rows are cut from Δ once, so that every round's fold program shares them (the
    # backends recognise a re-solve on the same rows by their identity and warm-start from it)
    fold_programs = [program.restrict(train) for train, _ in folds] if folds else None
    fold_solutions = [None] * len(folds) if folds else None

    def fold_program(k, train):
        """Fold k's program under the current requirements."""
        if state.is_margin:
            edited = fold_programs[k].with_margins(state.margins[train])
            if state.price_factors is not None:
                edited = edited.with_prices(state.prices()[train])
            return edited
        return fold_programs[k].with_weights(state.weights[train], state.temperatures[train])

    def oof_margins():
        thetas = []
        for k, (train, _) in enumerate(folds):
            edited = fold_program(k, train)
            previous = fold_solutions[k]
            if previous is not None and _same_requirements(previous.program, edited):
                # no requirement of this fold's training pairs changed: its certified optimum stands
                thetas.append(previous.theta)
                continue
            # round 0: MaxEnt starts from the standard θ; a margin program's fold optimum is too far
            # from the standard one (measured: a third of its pairs change sides) to be worth a guess
            warm = previous if previous is not None or state.is_margin else base
            solved = fold_backends[k].solve(edited, warm_start=warm).require_certified("out-of-fold fit")
            fold_solutions[k] = solved
            thetas.append(solved.theta)
        return out_of_fold_margins(delta, thetas, folds)

    # the coin-flip posterior of rule "posterior", once: the mixture reads Δ and the prompt folds only
    # (λ: a MaxEnt program's own, 1 for max-margin programs)
    posterior = None
    if rule == "posterior" and select is None:
        if is_blocked(delta):
            raise DataError(f"failure_rule='posterior' fits its coin-flip mixture on the differences in memory; "
                            f"this delta is a {delta.kind} array: pass np.asarray(delta), or another rule")
        reg = program.reg if isinstance(program, MaxEntProgram) else 1.0
        posterior = noise_posterior(delta, groups, reg, settings.oof_folds or 5, settings.seed)

    def find(theta_now) -> tuple[Failures, np.ndarray]:
        """This θ's failures and those the rule keeps (in curriculum order)."""
        nonlocal threshold
        train = normalised_margins(delta, theta_now)
        out_of_fold = oof_margins() if folds else None
        margins = combine_margins(train, out_of_fold)
        if threshold is None:
            threshold = settings.resolve_threshold(margins)
        found = detect_failures(margins, threshold)
        if select is None and rule == "all":
            return found, found.indices
        context = FailureContext(found, train, out_of_fold, posterior)
        kept = select_failures(rule, context) if select is None else select(context)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        if not np.isin(kept, found.indices).all():
            raise DataError("a failure rule kept pairs that are not failures of this round")
        return found, kept

    threshold = None
    tightened: set[int] = set()
    max_rounds, curriculum, dual_path = settings.max_rounds, settings.curriculum, settings.dual_path
    correction_penalty_value = settings.correction_penalty
    stop_reason = f"round limit ({max_rounds})"
    failures, kept = find(theta)
    _record_failures(history[-1], failures, kept)

    bar = progress_bar(max_rounds, "fa rounds", "round")
    for r in range(1, max_rounds + 1):
        bar.update(r - 1 - bar.n)
        keep = set(kept.tolist())
        new_mis = [i for i in failures.misclassified.tolist() if i in keep and i not in tightened]
        new_tie = [i for i in failures.near_ties.tolist() if i in keep and i not in tightened]
        new = new_mis if (curriculum and new_mis) else new_mis + new_tie
        if not new:
            untouched = any(i not in tightened for i in failures.indices.tolist())
            by = "the select= rule" if select is not None else f"failure_rule={rule!r}"
            stop_reason = f"no new failures that {by} keeps" if untouched else "no new failures"
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
        failures, kept = find(theta)
        _record_failures(record, failures, kept)
        state.record(record)
        history.append(record)
        kept_note = f", {kept.size} kept by the rule" if kept.size < len(failures) else ""
        say(
            f"round {r}: changed {len(new)} pair(s), objective {record.objective:.6g}, "
            f"{len(failures)} failure(s) now{kept_note}"
        )
    else:
        stop_reason = f"round limit ({max_rounds})"
    bar.close()

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
        threshold=None if threshold is None else float(threshold),
        noise_posterior=posterior,
    )


def _same_requirements(before, after) -> bool:
    """Whether two programs on the same rows ask the same of every pair (margins and prices, or
    weights and temperatures)."""
    if isinstance(after, MarginProgram):
        return (np.array_equal(before.margins, after.margins)
                and np.array_equal(np.asarray(before.C), np.asarray(after.C)))
    return (np.array_equal(before.weights, after.weights)
            and np.array_equal(before.temperatures, after.temperatures))


def _record_failures(record: FARound, failures: Failures, kept: np.ndarray) -> None:
    record.n_failures = len(failures)
    record.n_misclassified = int(failures.misclassified.size)
    record.n_near_ties = int(failures.near_ties.size)
    record.failures = failures.indices.tolist()
    record.n_kept = int(kept.size)
    record.kept = kept.tolist()


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
    return backend.solve(program, warm_start=warm).require_certified("FA round")


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
                f"(conflicting set {exc.rows[:10]}); left unchanged"
            )
        used = backoff * largest
        state.margins[new] += used
        state.raise_prices(new, slack_upweight)  # a no-op: only hard margins get here
        solution = _solve_round(state, backend, previous, candidate, dual_path, base_theta, correction_penalty)
        tightened.update(new.tolist())
        return solution, used, (
            f"margin +{step:g} on {new.size} pair(s) is infeasible (conflicting pairs "
            f"{exc.rows[:10]}); backed off to +{used:.6g} = {backoff:g} x the largest "
            f"admissible step {largest:.6g}"
        )
