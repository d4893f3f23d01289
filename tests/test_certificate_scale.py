"""T11 (proofs/T11_certificate_scale.md): one certificate rule at every scale, exact rescaling,
honest infeasibility, and the reproductions of issue 10 as regression tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from fairl_opt.estimators import MaxMarginReward
from fairl_opt.exceptions import DataError, InfeasibleError, NumericalRangeError
from fairl_opt.pairs import PreferencePairs
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import certify, find_conflict, solve
from fairl_opt.solvers.scaling import Scaling, choose_scaling, scaled_program

REPRO_445 = np.array([
    [-0.006237702025641667, 373105.7175894547, 5837.226577553539, -0.003037043178301335],
    [0.005244616411404834, 749375.880605594, 4949.280020277261, 0.0018483451718154242],
])


def hard_qp_optimum_2rows(delta):
    """Exact hard-margin optimum (margins 1) by enumerating active sets: the least-norm θ with
    Δ_Sθ = 1 on S, feasible for all rows and with multipliers α_S ≥ 0 (KKT), over S ⊆ {0, 1}."""
    best = None
    for rows in ([0], [1], [0, 1]):
        sub = delta[rows]
        alpha = np.linalg.solve(sub @ sub.T, np.ones(len(rows)))
        theta = sub.T @ alpha
        if (alpha >= 0).all() and (delta @ theta >= 1 - 1e-12).all():
            value = 0.5 * float(theta @ theta)
            if best is None or value < best[1]:
                best = (theta, value, rows, alpha)
    return best


@pytest.mark.parametrize("backend", ["auto", "cvxpy"])
def test_reproduction_445x_is_optimal_or_refused(backend):
    """Objective 8.06e-12 was certified although 3.59e-12 is feasible (floor of 1 in the gap)."""
    model = MaxMarginReward(margin="hard", backend=backend).fit(PreferencePairs(REPRO_445, 0 * REPRO_445))
    best = hard_qp_optimum_2rows(REPRO_445)[1]
    cert = model.certificate_
    assert cert.optimal
    assert cert.primal_objective <= best * (1 + 1e-6)
    assert (REPRO_445 @ model.theta_).min() >= 1 - 1e-7
    assert cert.relative_gap <= 1e-6 and cert.row_scale == 2.0**19


def test_old_floor_would_have_accepted_the_bad_answer_and_the_rule_refuses_it():
    """The 445× point of the issue: feasible, far from optimal; the new rule says 'inaccurate'."""
    program = MarginProgram(REPRO_445)
    theta, best, rows, alpha_s = hard_qp_optimum_2rows(REPRO_445)
    worse = theta * np.sqrt(445.0)  # feasible (scaled up), objective 445× the optimum
    alpha = np.zeros(2)
    alpha[rows] = alpha_s
    cert = certify(program, worse, alpha, backend="test", solver_status="-", solve_seconds=0)
    assert cert.primal_objective == pytest.approx(445 * best)
    assert cert.gap < 1e-6  # absolute: what the old floor of 1 compared
    assert not cert.optimal and cert.relative_gap > 0.99


def thin_margin_delta(shrink):
    rng = np.random.default_rng(69)
    w = rng.normal(size=5)
    w /= np.linalg.norm(w)
    delta = rng.normal(size=(60, 5))
    delta *= np.sign(delta @ w)[:, None]
    delta -= np.outer(delta @ w, w) * (1 - shrink)
    return delta, w


@pytest.mark.parametrize("backend", ["auto", "cvxpy"])
def test_thin_margin_is_never_called_infeasible(backend):
    """Separable by a margin 1e-9 of the row scale: not infeasible (no verified Farkas vector)."""
    delta, w = thin_margin_delta(1e-9)
    theta = 1.001 * w / (delta @ w).min()
    assert ((delta @ theta) >= 1).all()
    assert find_conflict(delta, np.ones(60)) is None
    with pytest.raises(NumericalRangeError, match="separable") as info:
        MaxMarginReward(margin="hard", backend=backend).fit(PreferencePairs(delta, np.zeros_like(delta)))
    assert info.value.relative_margin is not None


def test_truly_contradictory_pairs_are_infeasible_with_a_certificate_that_verifies():
    rng = np.random.default_rng(1)
    delta = rng.normal(size=(30, 6))
    delta[7] = -2.0 * delta[3] + 0.0
    delta[12] = delta[0] + delta[1]
    delta[13] = -(delta[0] + delta[1])
    with pytest.raises(InfeasibleError) as info:
        MaxMarginReward(margin="hard").fit(PreferencePairs(delta, np.zeros_like(delta), duplicates="allow"))
    pairs, y = info.value.rows, info.value.farkas
    assert (y > 0).all() and np.ones(len(pairs)) @ y > 0
    combined = delta[pairs].T @ y
    assert np.linalg.norm(combined) <= 1e-12 * (np.abs(delta[pairs]).T @ y).max()
    assert info.value.radius > 1e10


@pytest.mark.parametrize("s_exp, t_exp", [(0, 0), (20, 0), (-30, 3), (45, -12)])
@pytest.mark.parametrize("kind", ["qp-hard", "qp-soft", "lp-soft", "maxent"])
def test_rescaled_certificates_are_bitwise_the_same(kind, s_exp, t_exp):
    """Solving Δ·2^s, m·2^t gives θ mapped exactly and the same relative figures and status."""
    rng = np.random.default_rng(3)
    delta = rng.normal(size=(25, 4)) + 0.7
    margins = rng.uniform(0.5, 2.0, size=25)
    s, t = 2.0**s_exp, 2.0**t_exp

    def make(d, m, C_factor):
        if kind == "qp-hard":
            return MarginProgram(d, m)
        if kind == "qp-soft":
            return MarginProgram(d, m, C=0.3 * C_factor)
        if kind == "lp-soft":
            return MarginProgram(d, m, norm="l1", C=0.3 * C_factor)
        return MaxEntProgram(d, reg=0.5 * C_factor)

    base = make(delta[:4] if kind == "qp-hard" else delta, margins[:4] if kind == "qp-hard" else margins, 1.0)
    price = {"qp-hard": 1.0, "qp-soft": t / s**2, "lp-soft": 1 / s, "maxent": s**2}[kind]
    big = make(base.delta * s, base.margins * t if kind != "maxent" else None, price)
    a, b = solve(base), solve(big)
    assert a.certificate.optimal and b.certificate.optimal
    factor = {"qp-hard": t / s, "qp-soft": t / s, "lp-soft": t / s, "maxent": 1 / s}[kind]
    np.testing.assert_allclose(b.theta, a.theta * factor, rtol=1e-9)
    assert b.certificate.relative_gap <= 1e-6
    # the certificate of the big program, recomputed by hand on the original data, agrees
    recomputed = certify(big, b.theta, b.duals, backend="x", solver_status="-", solve_seconds=0)
    assert recomputed.optimal
    assert recomputed.relative_gap == pytest.approx(b.certificate.relative_gap, abs=1e-12)


def test_scaling_table_matches_the_programs():
    """Every row of the table in scaling.py: objectives and duals map by the stated factors."""
    rng = np.random.default_rng(5)
    delta = rng.normal(size=(10, 3))
    theta = rng.normal(size=3)
    alpha = rng.uniform(0, 0.2, size=10)
    for program in (MarginProgram(delta * 2.0**30, 2.0**-15 * np.ones(10), C=2.0),
                    MarginProgram(delta * 2.0**30, 2.0**-15 * np.ones(10), norm="linf", C=2.0),
                    MaxEntProgram(delta * 2.0**-40, reg=3.0)):
        scaling = choose_scaling(program)
        assert not scaling.identity
        scaled = scaled_program(program, scaling)
        original_theta = theta * scaling.theta_factor
        assert program.objective(original_theta) == pytest.approx(
            scaling.objective_factor * scaled.objective(theta), rel=1e-12)
        if isinstance(program, MarginProgram) and program.norm == "l2":
            assert program.dual_objective(alpha * scaling.dual_factor) == pytest.approx(
                scaling.objective_factor * scaled.dual_objective(alpha), rel=1e-12)


def test_scaling_exponents_stay_in_float_range():
    assert Scaling(1000, 0, "mm-qp").theta_factor == 0.0 or np.isfinite(Scaling(1000, 0, "mm-qp").theta_factor)
    assert choose_scaling(MarginProgram(np.full((2, 2), 1e300))).row_exp == 996


@pytest.mark.parametrize("scale", [1e-150, 1e150])
@pytest.mark.parametrize("kind", ["qp", "lp", "maxent"])
def test_extreme_scales_certify_or_name_the_argument(kind, scale):
    rng = np.random.default_rng(0)
    delta = (rng.normal(size=(40, 6)) + 0.3) * scale
    program = {"qp": lambda: MarginProgram(delta, C=1.0), "lp": lambda: MarginProgram(delta, norm="l1", C=1.0),
               "maxent": lambda: MaxEntProgram(delta, reg=1.0)}[kind]()
    try:
        solution = solve(program)
    except DataError as exc:
        assert ("C" in str(exc)) or ("reg" in str(exc))
        return
    assert solution.certificate.optimal
    assert scale < 1  # huge rows with C = 1 or λ = 1 are beyond float64 (a DataError above)
    # tiny rows: every score is ~0, so P = Σ C_i m_i (all slack) or n log 2 (MaxEnt)
    expected = 40 * np.log(2.0) if kind == "maxent" else 40.0
    assert solution.objective == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("C", [1e-300, 1e-12, 1e12, 1e300])
def test_extreme_prices(C):
    rng = np.random.default_rng(0)
    delta = rng.normal(size=(40, 6)) + 0.3
    for norm in ("l2", "l1"):
        try:
            solution = solve(MarginProgram(delta, C=C, norm=norm))
        except DataError as exc:
            assert str(exc).startswith("C:") and "range" in str(exc)
            continue
        assert solution.certificate.optimal


def test_tiny_temperature_and_bad_types_are_data_errors():
    delta = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(DataError, match="pair 0.*temperature"):
        solve(MaxEntProgram(delta, reg=1.0, temperatures=np.r_[1e-300, np.ones(9)]))
    with pytest.raises(DataError, match="C must be a real number"):
        MarginProgram(delta, C="1")
    with pytest.raises(DataError, match="reg"):
        MaxEntProgram(delta, reg="1")
    with pytest.raises(DataError, match="complex"):
        MarginProgram(delta + 1j)
    with pytest.raises(DataError, match="object"):
        MarginProgram(np.array([[1, "a"]], dtype=object))
    with pytest.raises(DataError, match="margins"):
        MarginProgram(delta, margins=np.full(10, 1 + 0j))


def test_huge_margin_steps_are_refused_not_overflowed():
    delta = np.random.default_rng(0).normal(size=(5, 6))
    with pytest.raises(DataError, match="margins"):
        solve(MarginProgram(delta, margins=np.r_[1e300, np.ones(4)]))


def test_separation_lp_agrees_with_an_exact_feasibility_check():
    """relative_margin > 0 exactly when linprog finds Δθ ≥ m (an independent check)."""
    from fairl_opt.solvers.infeasibility import relative_margin

    rng = np.random.default_rng(11)
    for trial in range(10):
        delta = rng.normal(size=(12, 4)) + (0.8 if trial % 2 else 0.0)
        margin = relative_margin(delta, np.ones(12))
        res = linprog(np.zeros(4), A_ub=-delta, b_ub=-np.ones(12), bounds=[(None, None)] * 4, method="highs")
        assert (margin > 1e-7) == (res.status == 0)
