"""Per-pair slack prices C_i in MarginProgram, every margin backend, and the FA loop's ``slack_upweight``.

References are written here with cvxpy directly (Clarabel for the QP, HiGHS for the LPs), not
through fairl_opt's CvxpyBackend.
"""

import cvxpy as cp
import numpy as np
import pytest

from fairl_opt.estimators import FailureAwareReward, MaxMarginReward, make_estimator
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.pairs import PreferencePairs
from fairl_opt.programs import MarginProgram
from fairl_opt.solvers import CvxpyBackend, DenseLP, HighsLP, HighsSettings, WorkingSetQP, WorkingSetSettings, solve
from fairl_opt.solvers.box_qp import solve_box_qp

CLARABEL = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=500)


def data(seed=0, n=60, d=5, shift=0.3):
    """Non-separable rows: standard normal plus a small common shift."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) + shift, rng


def reference(delta, margins, norm, prices):
    """(θ, optimal value) of ``min reg(θ) + Σ C_i ξ_i s.t. Δθ ≥ m − ξ, ξ ≥ 0`` by cvxpy directly."""
    n, d = delta.shape
    theta = cp.Variable(d)
    slack = cp.Variable(n, nonneg=True)
    if norm == "l2":
        reg = 0.5 * cp.sum_squares(theta)
    else:
        reg = cp.norm1(theta) if norm == "l1" else cp.norm_inf(theta)
    problem = cp.Problem(
        cp.Minimize(reg + np.asarray(prices, dtype=np.float64) @ slack),
        [delta @ theta + slack >= np.broadcast_to(margins, (n,))],
    )
    if norm == "l2":
        problem.solve(solver=cp.CLARABEL, **CLARABEL)
    else:
        problem.solve(solver=cp.HIGHS)
    assert problem.status == cp.OPTIMAL
    return np.asarray(theta.value), float(problem.value)


def assert_certified(solution, tol=1e-6):
    cert = solution.certificate
    assert cert.optimal, cert
    assert cert.relative_gap <= tol
    assert cert.max_violation == 0.0  # soft programs


def assert_dual_box(solution, prices):
    assert (solution.duals >= -1e-9).all()
    assert (solution.duals <= prices * (1 + 1e-9) + 1e-12).all()


# -- the program -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "C, pair",
    [
        (np.r_[1.0, 1.0, 0.0, 1.0], 2),
        (np.r_[1.0, -2.0, 1.0, 1.0], 1),
        (np.r_[1.0, 1.0, 1.0, np.nan], 3),
        (np.r_[np.inf, 1.0, 1.0, 1.0], 0),
    ],
)
def test_bad_prices_name_the_pair(C, pair):
    with pytest.raises(DataError, match=rf"C\[{pair}\].*pair {pair}"):
        MarginProgram(np.ones((4, 2)), C=C)


@pytest.mark.parametrize("C", [np.ones(3), np.ones((4, 1)), np.ones((2, 2))])
def test_prices_of_the_wrong_shape_are_rejected(C):
    with pytest.raises(DataError, match="one price per pair"):
        MarginProgram(np.ones((4, 2)), C=C)


def test_scalar_C_validation_is_unchanged():
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(DataError, match="C must be positive"):
            MarginProgram(np.ones((2, 2)), C=bad)
    program = MarginProgram(np.ones((2, 2)), C=0.5)
    assert program.C == 0.5 and not program.per_pair_prices
    assert np.array_equal(program.prices, [0.5, 0.5])
    assert MarginProgram(np.ones((2, 2))).prices is None


def test_prices_are_copied_sliced_and_replaced():
    delta, rng = data(n=6, d=3)
    C = rng.uniform(0.5, 2.0, 6)
    program = MarginProgram(delta, C=C)
    kept = C.copy()
    C[:] = 99.0  # the caller edits its array: the program keeps its own copy
    assert np.array_equal(program.C, kept) and program.per_pair_prices
    program.prices[:] = -1.0  # .prices is a copy as well
    assert np.array_equal(program.C, kept)

    rows = np.array([4, 0, 2])
    sub = program.restrict(rows)
    assert np.array_equal(sub.C, kept[rows]) and np.array_equal(sub.margins, program.margins[rows])

    new = rng.uniform(0.5, 2.0, 6)
    edited = program.with_prices(new)
    assert np.array_equal(edited.C, new) and edited.C is not new
    new[0] = 5.0
    assert edited.C[0] != 5.0
    assert np.array_equal(program.C, kept)  # the original is untouched
    assert edited.delta is program.delta  # backends key their caches on the same Δ object
    assert np.array_equal(program.with_margins(np.full(6, 2.0)).C, kept)  # margins keep the prices
    assert program.with_prices(0.3).C == 0.3 and program.with_prices(None).hard


def test_objective_and_dual_use_the_prices():
    delta, rng = data(n=20, d=4)
    C = rng.uniform(0.5, 2.0, 20)
    program = MarginProgram(delta, C=C)
    theta = rng.normal(size=4)
    assert program.objective(theta) == pytest.approx(0.5 * theta @ theta + C @ program.slacks(theta))
    alpha = rng.uniform(-1.0, 3.0, 20)
    assert np.array_equal(program.project_dual(alpha), np.clip(alpha, 0.0, C))
    # weak duality for every dual-feasible α, for all three norms
    for norm in ("l2", "l1", "linf"):
        p = MarginProgram(delta, norm=norm, C=C)
        _, optimum = reference(delta, 1.0, norm, C)
        for _ in range(5):
            assert p.dual_objective(rng.uniform(0.0, 3.0, 20)) <= optimum + 1e-7
            projected = p.project_dual(rng.uniform(0.0, 3.0, 20))
            assert (projected >= 0).all() and (projected <= C).all()


# -- backends against the reference ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("backend", [WorkingSetQP, CvxpyBackend])
def test_l2_per_pair_prices_match_clarabel(backend, seed):
    delta, rng = data(seed, n=60, d=5)
    margins = rng.uniform(0.5, 2.0, 60)
    C = rng.uniform(0.05, 5.0, 60)
    program = MarginProgram(delta, margins, "l2", C)
    ours = backend().solve(program)
    theta_ref, value = reference(delta, margins, "l2", C)
    assert_certified(ours)
    assert_dual_box(ours, C)
    # ½‖θ − θ*‖² ≤ P(θ) − P* (strong convexity): the certified gap bounds the distance
    assert np.allclose(ours.theta, theta_ref, atol=1e-6)
    assert ours.objective == pytest.approx(value, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_lp_per_pair_prices_match_highs(norm, seed):
    delta, rng = data(seed, n=60, d=5)
    margins = rng.uniform(0.5, 2.0, 60)
    C = rng.uniform(0.05, 5.0, 60)
    program = MarginProgram(delta, margins, norm, C)
    backend = HighsLP(HighsSettings(initial_rows=10, batch=5))  # several cutting-plane rounds
    ours = backend.solve(program)
    _, value = reference(delta, margins, norm, C)
    assert_certified(ours, tol=1e-8)
    assert_dual_box(ours, C)
    # LP solutions need not be unique: compare optimal values
    assert ours.objective == pytest.approx(value, rel=1e-7, abs=1e-9)
    assert program.objective(ours.theta) == pytest.approx(value, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize(
    "norm, backend",
    [("l2", WorkingSetQP), ("l2", CvxpyBackend), ("l1", HighsLP), ("linf", HighsLP), ("l1", CvxpyBackend),
     ("l1", DenseLP), ("linf", DenseLP)],
)
def test_scalar_C_equals_the_same_price_per_pair(norm, backend):
    delta, rng = data(3, n=50, d=6)
    margins = rng.uniform(0.5, 2.0, 50)
    scalar = backend().solve(MarginProgram(delta, margins, norm, 0.7))
    array = backend().solve(MarginProgram(delta, margins, norm, np.full(50, 0.7)))
    assert_certified(scalar)
    assert_certified(array)
    assert np.allclose(array.theta, scalar.theta, rtol=0, atol=1e-9)
    assert array.objective == pytest.approx(scalar.objective, rel=1e-9)
    assert array.certificate.dual_objective == pytest.approx(scalar.certificate.dual_objective, rel=1e-9)


def test_working_set_screening_and_rounds_with_prices():
    """n above ``full_set_below``: coordinate-descent screening and cutting planes see the C_i."""
    delta, rng = data(4, n=400, d=8, shift=0.5)
    C = rng.uniform(0.1, 3.0, 400)
    program = MarginProgram(delta, 1.0, "l2", C)
    backend = WorkingSetQP(WorkingSetSettings(full_set_below=50, batch=20, fallback=False))
    ours = backend.solve(program)
    assert ours.certificate.solver_status.startswith("working-set:")
    assert ours.diagnostics["working_set_size"] < 400
    assert_certified(ours)
    assert_dual_box(ours, C)
    theta_ref, _ = reference(delta, 1.0, "l2", C)
    assert np.allclose(ours.theta, theta_ref, atol=1e-6)


def test_box_qp_vector_bound():
    delta, rng = data(5, n=30, d=4)
    upper = rng.uniform(0.2, 2.0, 30)
    result = solve_box_qp(delta, np.ones(30), upper)
    assert result.status == "solved"
    assert (result.alpha >= 0).all() and (result.alpha <= upper).all()
    theta_ref, _ = reference(delta, 1.0, "l2", upper)
    assert np.allclose(result.theta, theta_ref, atol=1e-6)
    uniform = solve_box_qp(delta, np.ones(30), np.full(30, 0.8))
    scalar = solve_box_qp(delta, np.ones(30), 0.8)
    assert np.allclose(uniform.theta, scalar.theta, atol=1e-9)
    with pytest.raises(ValueError):
        solve_box_qp(delta, np.ones(30), np.ones(29))


@pytest.mark.parametrize("norm, backend", [("l2", CvxpyBackend), ("l2", WorkingSetQP), ("l1", HighsLP), ("l1", DenseLP)])
def test_warm_resolve_after_a_price_edit(norm, backend):
    """The same backend instance re-solves after prices change (cvxpy's parameter cache, HiGHS's
    changeColsBounds on the kept model) and agrees with a fresh solve."""
    delta, rng = data(6, n=60, d=5)
    program = MarginProgram(delta, 1.0, norm, 1.0)
    solver = backend()
    first = solver.solve(program)
    # scalar → per-pair, then per-pair → different per-pair, then back to scalar
    C1 = np.where(rng.random(60) < 0.3, 4.0, 1.0)
    C2 = rng.uniform(0.2, 3.0, 60)
    for C in (C1, C2, 1.0):
        edited = program.with_prices(C)
        warm = solver.solve(edited, warm_start=first)
        if isinstance(solver, HighsLP):
            assert warm.diagnostics["reused"]
        fresh = backend().solve(edited)
        assert_certified(warm)
        assert warm.objective == pytest.approx(fresh.objective, rel=1e-8, abs=1e-10)
        if norm == "l2":
            assert np.allclose(warm.theta, fresh.theta, atol=1e-6)
        first = warm


# -- the FA loop -------------------------------------------------------------------------------



def test_fa_slack_upweight_moves_theta_and_solves_the_final_program():
    delta, _ = data(0, n=60, d=5, shift=0.3)
    program = MarginProgram(delta, 1.0, "l2", 1.0)
    standard = solve(program, "working-set")

    plain = run_fa(program, "auto", FASettings(oof_folds=0, slack_upweight=1.0))
    # T10: every failure violates its margin (α_i = C), so margin tightening alone is a no-op
    assert plain.tightened.size > 0
    assert np.allclose(plain.theta, standard.theta, atol=1e-6)
    assert np.array_equal(plain.prices, np.ones(60))
    assert all("slack price" not in h.note for h in plain.history)

    priced = run_fa(program, "auto", FASettings(oof_folds=0, slack_upweight=2.0))
    assert priced.tightened.size > 0
    assert np.linalg.norm(priced.theta - standard.theta) > 1e-2
    expected = np.ones(60)
    expected[priced.tightened] = 2.0  # once per pair
    assert np.array_equal(priced.prices, expected)
    assert all("slack price x2" in h.note for h in priced.history[1:])
    assert priced.solution.program.per_pair_prices
    assert np.array_equal(priced.solution.program.C, priced.prices)
    for h in priced.history:
        assert h.certificate.optimal and h.certificate.relative_gap <= 1e-6
    theta_ref, value = reference(delta, priced.required_margins, "l2", priced.prices)
    assert np.allclose(priced.theta, theta_ref, atol=1e-6)
    assert priced.solution.objective == pytest.approx(value, rel=1e-7)

    # the default FASettings is the old behaviour, to the last bit
    default = run_fa(program, "auto", FASettings(oof_folds=0))
    assert np.array_equal(default.theta, plain.theta)
    assert np.array_equal(default.required_margins, plain.required_margins)


def test_fa_slack_upweight_with_the_cvxpy_and_lp_backends():
    delta, _ = data(0, n=60, d=5, shift=0.3)
    l2 = run_fa(MarginProgram(delta, 1.0, "l2", 1.0), CvxpyBackend(), FASettings(oof_folds=0, slack_upweight=2.0))
    theta_ref, _ = reference(delta, l2.required_margins, "l2", l2.prices)
    assert np.allclose(l2.theta, theta_ref, atol=1e-6)
    for norm in ("l1", "linf"):
        result = run_fa(MarginProgram(delta, 1.0, norm, 1.0), HighsLP(), FASettings(oof_folds=0, slack_upweight=2.0))
        assert result.tightened.size > 0 and np.array_equal(np.unique(result.prices), [1.0, 2.0])
        _, value = reference(delta, result.required_margins, norm, result.prices)
        assert result.solution.certificate.optimal
        assert result.solution.objective == pytest.approx(value, rel=1e-7, abs=1e-9)


def test_fa_slack_upweight_scales_per_pair_prices_and_out_of_fold_fits():
    delta, rng = data(1, n=60, d=5, shift=0.3)
    C = rng.uniform(0.5, 2.0, 60)
    # out-of-fold fits see the edited prices too
    result = run_fa(MarginProgram(delta, 1.0, "l2", C), "auto", FASettings(oof_folds=3, slack_upweight=3.0))
    factors = np.ones(60)
    factors[result.tightened] = 3.0
    assert result.tightened.size > 0
    assert np.allclose(result.prices, C * factors, rtol=1e-15)
    theta_ref, _ = reference(delta, result.required_margins, "l2", result.prices)
    assert np.allclose(result.theta, theta_ref, atol=1e-6)


def test_fa_dual_path_correction_carries_the_price_factors():
    delta, _ = data(0, n=60, d=5, shift=0.3)
    program = MarginProgram(delta, 1.0, "l2", 1.0)
    result = run_fa(program, "auto", FASettings(oof_folds=0, slack_upweight=2.0, dual_path=True, correction_penalty=0.5))
    correction = result.solution.program
    rows = result.tightened
    assert correction.n_pairs == rows.size
    assert np.array_equal(correction.C, np.full(rows.size, 0.5 * 2.0))
    base = result.base_solution.theta
    # the correction solves its program: Δ_S θ_c ≥ m_S − Δ_S θ_b − ξ, priced 0.5·2 per pair
    theta_ref, _ = reference(delta[rows], result.required_margins[rows] - delta[rows] @ base, "l2", correction.C)
    assert np.allclose(result.theta - base, theta_ref, atol=1e-6)
    # without slack_upweight the correction keeps the scalar penalty
    plain = run_fa(program, "auto", FASettings(oof_folds=0, dual_path=True, correction_penalty=0.5))
    assert plain.solution.program.C == 0.5


def test_hard_margin_ignores_slack_upweight():
    rng = np.random.default_rng(2)
    w = rng.normal(size=4)
    delta = rng.normal(size=(40, 4))
    delta *= np.where(delta @ w >= 0, 1.0, -1.0)[:, None]  # separable
    program = MarginProgram(delta, 1.0, "l2", None)
    one = run_fa(program, "auto", FASettings(oof_folds=0))
    two = run_fa(program, "auto", FASettings(oof_folds=0, slack_upweight=2.0))
    assert one.prices is None and two.prices is None
    assert np.array_equal(one.theta, two.theta)
    assert np.array_equal(one.required_margins, two.required_margins)


@pytest.mark.parametrize("bad", [0.5, 0.0, -2.0, np.nan, np.inf])
def test_tightening_rejects_bad_slack_upweight(bad):
    with pytest.raises(DataError, match="slack_upweight"):
        FASettings(slack_upweight=bad)


def test_estimator_passes_slack_upweight():
    delta, rng = data(0, n=60, d=5, shift=0.3)
    rejected = rng.normal(size=(60, 5))
    pairs = PreferencePairs(rejected + delta, rejected)
    common = dict(near_tie_quantile=0.1, oof_folds=0)
    plain = FailureAwareReward(MaxMarginReward(margin="soft", C=1.0), FASettings(**common)).fit(pairs)
    settings = FASettings(slack_upweight=2.0, **common)
    priced = FailureAwareReward(MaxMarginReward(margin="soft", C=1.0), settings).fit(pairs)
    via_factory = make_estimator("fa-mm-qp", margin="soft", C=1.0, settings=settings).fit(pairs)
    assert priced.get_params()["settings"].slack_upweight == 2.0
    assert np.array_equal(plain.prices_, np.ones(60))
    assert np.array_equal(np.unique(priced.prices_), [1.0, 2.0])
    assert np.linalg.norm(priced.theta_ - plain.theta_) > 1e-2
    assert np.array_equal(via_factory.theta_, priced.theta_)
    assert priced.certificate_.optimal
    assert any("slack price x2" in h["note"] for h in priced.history_)


def test_cli_slack_upweight(tmp_path, capsys):
    import json

    from fairl_opt.cli import main

    delta, rng = data(0, n=60, d=5, shift=0.3)
    rejected = rng.normal(size=(60, 5))
    path = tmp_path / "pairs.npz"
    np.savez(path, chosen=rejected + delta, rejected=rejected)
    argv = ["solve", str(path), "--method", "fa-mm-qp", "--margin", "soft", "--oof-folds", "0"]
    assert main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(argv + ["--slack-upweight", "2"]) == 0
    priced = json.loads(capsys.readouterr().out)
    assert "slack_price" not in plain and sorted(set(priced["slack_price"])) == [1.0, 2.0]
    assert priced["status"] == "optimal"
    assert not np.allclose(priced["theta"], plain["theta"], atol=1e-3)
