"""The failure-aware loop: witnesses, back-off, termination, and final answers against sklearn/cvxpy."""

import cvxpy as cp
import numpy as np
import pytest

from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.failures import detect_failures, normalised_margins
from fairl_opt.pairs import group_folds
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import CvxpyBackend, NewtonMaxEnt, solve
from tests.oracles import logreg_reference, random_delta, svc_reference

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def separable(seed, n=40, d=6):
    delta = random_delta(seed, n=n, d=d, shift=2.0)
    direction = solve(MaxEntProgram(delta, reg=1.0), "newton").theta
    return delta[delta @ direction > 0.2]


def test_detect_failures_curriculum_order():
    margins = np.array([0.5, -0.2, 0.05, -1.0, 0.01, 0.0, 2.0])
    failures = detect_failures(margins, threshold=0.1)
    assert failures.misclassified.tolist() == [3, 1, 5]  # most negative first; 0 counts as an error
    assert failures.near_ties.tolist() == [4, 2]
    assert failures.indices.tolist() == [3, 1, 5, 4, 2]


def test_normalised_margins_scale_free():
    delta = random_delta(0)
    theta = np.arange(6.0)
    assert np.allclose(normalised_margins(delta, theta), normalised_margins(delta, 7.0 * theta))


def test_quantile_rule_resolves_to_threshold():
    margins = np.linspace(-1, 1, 21)
    rule = FASettings(near_tie_quantile=0.5)
    positive = margins[margins > 0]
    assert rule.resolve_threshold(margins) == pytest.approx(np.quantile(positive, 0.5))
    with pytest.raises(DataError, match="near_tie_quantile"):
        FASettings(near_tie_quantile=1.0)
    # an absolute threshold, when given, is the rule (the quantile is not used)
    assert FASettings(near_tie_threshold=0.25).resolve_threshold(margins) == 0.25
    with pytest.raises(DataError, match="oof_folds"):
        FASettings(oof_folds=1)


def test_folds_keep_groups_together():
    groups = np.repeat(np.arange(10), 3)
    folds = group_folds(groups, 5, seed=1)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(30))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


@pytest.mark.parametrize("seed", range(3))
def test_hard_margin_rounds_have_witnesses_and_growing_objective(seed):
    delta = separable(seed)
    result = run_fa(MarginProgram(delta), "cvxpy", FASettings(near_tie_quantile=0.2, oof_folds=4, max_rounds=4))
    history = result.history
    assert len(history) >= 2
    for previous, current in zip(history, history[1:]):
        # the feasible set shrank, so the minimum of ½‖θ‖² cannot drop
        assert current.objective >= previous.objective - 1e-7
    witnessed = [h for h in history[1:] if h.witness_pair is not None]
    assert witnessed, "no round recorded a witness"
    thetas = [result.base_solution.theta]
    margins = np.ones(len(delta))
    for h in history[1:]:
        margins[h.changed] += h.step
        theta_now = solve(MarginProgram(delta, margins.copy()), "cvxpy").theta  # independent re-solve
        if h.witness_pair is not None:
            j = h.witness_pair
            assert j in h.changed
            assert delta[j] @ thetas[-1] < margins[j] - 1e-9  # the previous θ violates the new constraint
            assert margins[j] - delta[j] @ thetas[-1] == pytest.approx(h.witness_violation, abs=1e-6)
        thetas.append(theta_now)
    assert np.allclose(thetas[-1], result.theta, atol=1e-6)
    assert np.allclose(result.required_margins, margins)


def test_each_pair_tightened_once_and_margins_recorded():
    delta = random_delta(1, shift=0.8)
    step = 0.7
    result = run_fa(MarginProgram(delta, C=1.0), "cvxpy", FASettings(near_tie_quantile=0.2, oof_folds=0, margin_step=step, max_rounds=6))
    changed = [j for h in result.history[1:] for j in h.changed]
    assert len(changed) == len(set(changed))
    assert sorted(changed) == result.tightened.tolist()
    expected = np.ones(len(delta))
    expected[result.tightened] += step
    assert np.allclose(result.required_margins, expected)


@pytest.mark.parametrize("seed", range(3))
def test_soft_margin_fa_final_matches_weighted_libsvm(seed):
    delta = random_delta(seed, shift=0.8)
    result = run_fa(MarginProgram(delta, C=1.0), "cvxpy", FASettings(oof_folds=3, max_rounds=3))
    assert result.tightened.size > 0
    reference = svc_reference(delta, 1.0, result.required_margins)
    assert np.allclose(result.theta, reference, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_maxent_fa_newton_matches_cvxpy_and_sklearn_every_round(seed):
    delta = random_delta(seed, shift=0.5)
    program = MaxEntProgram(delta, reg=0.3)
    options = dict(settings=FASettings(oof_folds=3, max_rounds=3, upweight=3.0, sharpen=0.5))
    fast = run_fa(program, NewtonMaxEnt(), **options)
    reference = run_fa(program, CvxpyBackend(), **options)
    assert [h.changed for h in fast.history] == [h.changed for h in reference.history]
    for a, b in zip(fast.history, reference.history):
        assert a.objective == pytest.approx(b.objective, rel=1e-7)
    assert np.allclose(fast.theta, reference.theta, atol=1e-5)
    sk = logreg_reference(delta, 0.3, fast.weights, fast.temperatures)
    assert np.allclose(fast.theta, sk, atol=1e-5)
    changed = fast.tightened
    assert np.allclose(fast.weights[changed], 3.0) and np.allclose(fast.temperatures[changed], 0.5)


def test_uniform_failure_set_is_refused():
    delta = separable(2)
    result = run_fa(MarginProgram(delta), "cvxpy", FASettings(near_tie_threshold=1e9, oof_folds=0, max_rounds=3))
    assert "rescales" in result.stop_reason
    assert result.tightened.size == 0
    assert np.allclose(result.theta, result.base_solution.theta)


def test_infeasible_tightening_backs_off_to_lp_optimum():
    # θ₁ ≥ 1 (pair 0) and −θ₁ ≥ −3 (pair 1, m = −3): pair 1 is "misclassified" (Δθ ≤ 0) and is
    # tightened first; −θ₁ ≥ −3 + 5 contradicts θ₁ ≥ 1. The largest admissible step is 2.
    delta = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.3, 1.0]])
    program = MarginProgram(delta, np.array([1.0, -3.0, 1.0, 1.0]))
    result = run_fa(program, "cvxpy", FASettings(near_tie_threshold=0.0, oof_folds=0, margin_step=5.0, backoff=0.99, max_rounds=1))
    first = result.history[1]
    assert first.changed == [1]
    assert first.step == pytest.approx(0.99 * 2.0, rel=1e-6)
    assert "backed off" in first.note
    assert result.required_margins[1] == pytest.approx(-3.0 + 1.98, rel=1e-6)
    assert result.solution.certificate.optimal
    assert result.theta[0] <= 3.0 - 1.98 + 1e-6 and result.theta[0] >= 1.0 - 1e-6


def test_curriculum_tightens_clear_errors_first():
    delta = random_delta(4, shift=0.6)
    curriculum = run_fa(MarginProgram(delta, C=1.0), "cvxpy", FASettings(near_tie_quantile=0.3, oof_folds=0, max_rounds=1, curriculum=True))
    base = curriculum.base_solution.theta
    misclassified = set(np.flatnonzero(delta @ base <= 0).tolist())
    assert misclassified, "test needs a non-separable problem"
    assert set(curriculum.history[1].changed) == misclassified
    everything = run_fa(MarginProgram(delta, C=1.0), "cvxpy", FASettings(near_tie_quantile=0.3, oof_folds=0, max_rounds=1, curriculum=False))
    assert set(everything.history[1].changed) > misclassified


def test_dual_path_equals_single_program():
    """θ_b + θ_c from the correction equals argmin ½‖θ − θ_b‖² s.t. Δ_S θ ≥ m_S (one QP, cvxpy here)."""
    delta = separable(5)
    result = run_fa(MarginProgram(delta), "cvxpy", FASettings(near_tie_quantile=0.2, oof_folds=0, max_rounds=2, dual_path=True))
    S = result.tightened
    assert S.size > 0
    theta_b = result.base_solution.theta
    theta = cp.Variable(delta.shape[1])
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(theta - theta_b)),
                         [delta[S] @ theta >= result.required_margins[S]])
    problem.solve(solver=cp.CLARABEL)
    assert np.allclose(result.theta, theta.value, atol=1e-5)


def test_dual_path_maxent_correction_uses_offsets():
    delta = random_delta(6, shift=0.5)
    result = run_fa(MaxEntProgram(delta, reg=0.5), "newton", FASettings(near_tie_quantile=0.2, oof_folds=0, max_rounds=2, dual_path=True, correction_penalty=2.0))
    S = result.tightened
    theta_b = result.base_solution.theta
    correction = result.theta - theta_b
    check = MaxEntProgram(delta[S], 2.0, result.weights[S], result.temperatures[S], delta[S] @ theta_b)
    reference = solve(check, "cvxpy").theta
    assert np.allclose(correction, reference, atol=1e-5)


def test_loop_terminates_within_n_rounds():
    delta = random_delta(8, n=12, d=3, shift=0.5)
    result = run_fa(MarginProgram(delta, C=1.0), "cvxpy", FASettings(near_tie_quantile=0.5, oof_folds=0, max_rounds=100))
    assert len(result.history) - 1 <= 12
    assert result.stop_reason != "round limit (100)"


def test_bad_options():
    program = MarginProgram(np.eye(3))
    with pytest.raises(DataError, match="max_rounds"):
        run_fa(program, "auto", FASettings(oof_folds=0, max_rounds=-1))
    with pytest.raises(DataError, match="margin_step"):
        FASettings(margin_step=0.0)
    with pytest.raises(DataError, match="sharpen"):
        FASettings(sharpen=1.5)


@pytest.mark.parametrize("program_kind", ["hard", "soft-priced", "maxent"])
def test_every_round_records_the_program_it_solved(program_kind):
    """FAResult is the only record of the rounds: re-solving ``result.program(k)`` from scratch
    gives round k's objective, and the recorded requirements only move on the pairs changed."""
    delta = random_delta(11, n=80, d=5, shift=0.6)
    if program_kind == "maxent":
        program, settings = MaxEntProgram(delta, reg=0.5), FASettings(oof_folds=0, max_rounds=3, sharpen=0.5)
    elif program_kind == "hard":
        delta = random_delta(11, n=30, d=8, shift=2.0)  # separable: the hard margin is feasible
        program, settings = MarginProgram(delta), FASettings(oof_folds=0, max_rounds=3, near_tie_quantile=0.3)
    else:
        program, settings = MarginProgram(delta, C=1.0), FASettings(oof_folds=0, max_rounds=3, slack_upweight=2.0)
    result = run_fa(program, "cvxpy", settings)
    assert result.settings is settings and len(result.history) >= 2
    for k, record in enumerate(result.history):
        again = CvxpyBackend().solve(result.program(k))
        assert again.objective == pytest.approx(record.objective, rel=1e-6)
    for before, after in zip(result.history, result.history[1:]):
        old = before.margins if before.margins is not None else before.weights
        new = after.margins if after.margins is not None else after.weights
        moved = np.flatnonzero(old != new)
        assert set(moved.tolist()) <= set(after.changed)
    if program_kind == "maxent":
        with pytest.raises(DataError, match="MaxEnt"):
            result.round_margins()
    else:
        assert np.array_equal(result.round_margins()[-1], result.required_margins)


# -- the failure rule (FASettings.failure_rule, fairl_opt.fa.rules) ---------------------------------
def test_failure_rule_is_validated_by_name():
    assert FASettings().failure_rule == "all"
    with pytest.raises(DataError, match="failure_rule must be one of 'all', 'band', 'posterior', 'agree'"):
        FASettings(failure_rule="oracle")
    with pytest.raises(DataError, match="failure_rule"):
        FASettings(failure_rule=None)
    with pytest.raises(DataError, match="failure_rule='agree'.*oof_folds"):
        FASettings(failure_rule="agree", oof_folds=0)
    with pytest.raises(DataError, match="select="):
        run_fa(MarginProgram(np.eye(3)), "auto", FASettings(failure_rule="band"), select=lambda c: c.failures.indices)


def _rule_problems():
    """(name, program, groups): soft max-margin QP and LP, and MaxEnt, on two planted problems."""
    from fairl_opt.simulate import simulate

    for seed in (0, 1):
        prob = simulate(n_pairs=120, dim=5, seed=seed)
        d, g = prob.pairs.delta, prob.pairs.prompt_ids
        yield from ((f"qp-{seed}", MarginProgram(d, 1.0, "l2", 1.0), g), (f"lp-{seed}", MarginProgram(d, 1.0, "l1", 1.0), g),
                    (f"maxent-{seed}", MaxEntProgram(d, 1.0), g))


def test_default_failure_rule_all_is_bit_for_bit_the_loop_without_a_rule():
    """failure_rule="all" (the default) is the FA loop as it was: the run with the default settings,
    the explicit rule and an identity select= (which goes through the rule machinery) agree to the
    last bit on θ, the edits and every round. (Checked at the change against the loop before it.)"""
    for name, program, groups in _rule_problems():
        saved = run_fa(program, "auto", FASettings(), groups=groups)
        explicit = run_fa(program, "auto", FASettings(failure_rule="all"), groups=groups)
        identity = run_fa(program, "auto", FASettings(), groups=groups, select=lambda c: c.failures.indices)
        for other in (explicit, identity):
            assert np.array_equal(saved.theta, other.theta), name
            assert np.array_equal(saved.tightened, other.tightened), name
            assert saved.stop_reason == other.stop_reason, name
            assert [h.changed for h in saved.history] == [h.changed for h in other.history], name
        assert all(h.n_kept == h.n_failures and h.kept == h.failures for h in saved.history), name
        assert saved.noise_posterior is None


@pytest.mark.parametrize("rule", ["band", "agree", "posterior"])
def test_every_rule_edits_only_failures_it_kept_on_every_program_kind(rule):
    """Max-margin (QP, LP) and MaxEnt alike: a round changes only pairs the rule kept in the round
    before, kept ⊆ detected, and the history records both counts (on coin-flipped pairs, where every
    rule drops some failures)."""
    from fairl_opt.misspecified import planted_regime

    prob = planted_regime("label-noise", 300, 5, seed=1)
    d, groups = prob.pairs.delta, prob.pairs.prompt_ids
    for name, program in (("qp", MarginProgram(d, 1.0, "l2", 1.0)), ("lp", MarginProgram(d, 1.0, "l1", 1.0)),
                          ("maxent", MaxEntProgram(d, 1.0))):
        result = run_fa(program, "auto", FASettings(failure_rule=rule, max_rounds=3), groups=groups)
        for before, after in zip(result.history, result.history[1:]):
            assert set(after.changed) <= set(before.kept) <= set(before.failures), (name, rule)
        for record in result.history:
            assert record.n_kept == len(record.kept) <= record.n_failures
            assert record.to_dict()["n_kept"] == record.n_kept
        assert any(h.n_kept < h.n_failures for h in result.history), (name, rule)
        if rule == "posterior":
            assert result.noise_posterior.shape == (program.n_pairs,)
            assert ((result.noise_posterior >= 0) & (result.noise_posterior <= 1)).all()
        else:
            assert result.noise_posterior is None
