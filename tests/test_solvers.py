"""Backends against independent references: sklearn, scipy's HiGHS, closed forms, weak duality."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

from fairl_opt.exceptions import DataError, InfeasibleError, SolverError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import (
    BACKENDS,
    CvxpyBackend,
    NewtonMaxEnt,
    NewtonSettings,
    Status,
    WorkingSetQP,
    WorkingSetSettings,
    certify,
    find_conflict,
    get_backend,
    max_admissible_tightening,
    solve,
)
from tests.oracles import logreg_reference, random_delta, svc_reference  # noqa: F401 (others import them from here too)


pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("C", [0.1, 1.0])
def test_soft_qp_matches_libsvm(seed, C):
    delta = random_delta(seed, shift=0.8)
    solution = solve(MarginProgram(delta, C=C), "cvxpy")
    reference = svc_reference(delta, C)
    assert solution.certificate.optimal
    assert np.allclose(solution.theta, reference, atol=1e-5 * max(1, np.abs(reference).max()))
    program = solution.program
    assert program.objective(solution.theta) <= program.objective(reference) + 1e-7


@pytest.mark.parametrize("seed", range(3))
def test_soft_qp_with_margins_matches_weighted_libsvm(seed):
    delta = random_delta(seed, shift=0.8)
    margins = np.random.default_rng(seed + 100).uniform(0.5, 2.0, size=len(delta))
    solution = solve(MarginProgram(delta, margins, C=1.0), "cvxpy")
    reference = svc_reference(delta, 1.0, margins)
    assert np.allclose(solution.theta, reference, atol=1e-4)


def test_hard_qp_single_pair_closed_form():
    # min ½‖θ‖² s.t. Δθ ≥ m has θ = m Δ / ‖Δ‖²
    delta = np.array([[3.0, 4.0]])
    solution = solve(MarginProgram(delta, 2.0), "cvxpy")
    assert np.allclose(solution.theta, 2.0 * delta[0] / 25.0, atol=1e-8)
    assert solution.objective == pytest.approx(0.5 * 4.0 / 25.0, rel=1e-8)
    assert solution.certificate.relative_gap < 1e-8


def test_hard_qp_orthogonal_pairs_closed_form():
    delta = np.diag([2.0, 0.5, 1.0])
    solution = solve(MarginProgram(delta), "cvxpy")
    assert np.allclose(solution.theta, [0.5, 2.0, 1.0], atol=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_hard_qp_equals_soft_qp_with_huge_C(seed):
    delta = random_delta(seed, n=30, d=8, shift=4.0)
    hard = solve(MarginProgram(delta), "cvxpy")
    reference = svc_reference(delta, 1e4)
    assert np.allclose(hard.theta, reference, atol=1e-3)


def test_lp_l1_single_pair_closed_form():
    # min ‖θ‖₁ s.t. Δθ ≥ m: all weight on the largest |Δ_k|, θ_k = m / Δ_k
    delta = np.array([[1.0, -4.0, 2.0]])
    solution = solve(MarginProgram(delta, norm="l1"), "cvxpy")
    assert np.allclose(solution.theta, [0.0, -0.25, 0.0], atol=1e-9)


def test_lp_linf_single_pair_closed_form():
    # min ‖θ‖_∞ s.t. Δθ ≥ m: θ = m sign(Δ) / ‖Δ‖₁
    delta = np.array([[1.0, -4.0, 2.0]])
    solution = solve(MarginProgram(delta, norm="linf"), "cvxpy")
    assert np.allclose(solution.theta, np.sign(delta[0]) / 7.0, atol=1e-9)


def linprog_l1(delta, margins, C=None):
    """Independent l1 LP: θ = u − v, u, v ≥ 0, solved by scipy's bundled HiGHS."""
    n, d = delta.shape
    if C is None:
        c = np.ones(2 * d)
        a_ub = np.hstack([-delta, delta])
        bounds = [(0, None)] * (2 * d)
    else:
        c = np.r_[np.ones(2 * d), C * np.ones(n)]
        a_ub = np.hstack([-delta, delta, -np.eye(n)])
        bounds = [(0, None)] * (2 * d + n)
    res = linprog(c, A_ub=a_ub, b_ub=-margins, bounds=bounds, method="highs")
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("C", [None, 0.3])
def test_l1_lp_objective_matches_scipy(seed, C):
    delta = random_delta(seed, shift=3.0 if C is None else 0.8)
    margins = np.ones(len(delta))
    solution = solve(MarginProgram(delta, margins, "l1", C), "cvxpy")
    assert solution.certificate.optimal
    assert solution.objective == pytest.approx(linprog_l1(delta, margins, C), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_maxent_newton_matches_cvxpy_and_sklearn(seed):
    delta = random_delta(seed, shift=0.7)
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 3.0, len(delta))
    temperatures = rng.uniform(0.3, 1.5, len(delta))
    program = MaxEntProgram(delta, reg=0.2, weights=weights, temperatures=temperatures)
    newton = solve(program, "newton")
    reference = solve(program, "cvxpy")
    sk = logreg_reference(delta, 0.2, weights, temperatures)
    assert newton.certificate.optimal and newton.certificate.relative_gap < 1e-10
    assert newton.certificate.gradient_bound < 1e-12
    assert np.allclose(newton.theta, sk, atol=1e-5)
    assert np.allclose(newton.theta, reference.theta, atol=1e-5)
    assert newton.objective <= reference.objective + 1e-9


def test_maxent_offsets_shift_the_scores():
    delta = random_delta(3, n=20, d=3)
    offsets = np.linspace(-1, 1, 20)
    solution = solve(MaxEntProgram(delta, reg=0.5, offsets=offsets), "newton")
    reference = solve(MaxEntProgram(delta, reg=0.5, offsets=offsets), "cvxpy")
    assert np.allclose(solution.theta, reference.theta, atol=1e-5)
    plain = solve(MaxEntProgram(delta, reg=0.5), "newton")
    assert not np.allclose(solution.theta, plain.theta, atol=1e-3)


def test_maxent_zero_data_closed_form():
    # with Δ orthogonal to nothing (a single zero-information column): θ* solves λθ = Σ σ(−Δθ)Δ
    delta = np.array([[1.0]])
    solution = solve(MaxEntProgram(delta, reg=1.0), "newton")
    theta = solution.theta[0]
    assert theta == pytest.approx(1.0 / (1.0 + np.exp(theta)), abs=1e-12)


@given(seed=st.integers(0, 10**6), scale=st.floats(0.01, 10.0))
def test_weak_duality_any_multipliers(seed, scale):
    """D(α) ≤ P(θ*) for arbitrary α: the certificate's lower bound never overshoots."""
    delta = random_delta(seed % 1000, n=15, d=4, shift=2.0)
    rng = np.random.default_rng(seed)
    for program in (
        MarginProgram(delta, C=1.0),
        MarginProgram(delta, norm="l1", C=0.5),
        MarginProgram(delta, norm="linf", C=0.5),
        MaxEntProgram(delta, reg=0.3),
    ):
        optimum = solve(program, "cvxpy" if isinstance(program, MarginProgram) else "newton").objective
        multipliers = scale * rng.exponential(size=15)
        if isinstance(program, MaxEntProgram):
            multipliers = rng.uniform(0, 1, 15)
        assert program.dual_objective(multipliers) <= optimum + 1e-7 * max(1, abs(optimum))


def test_certificate_flags_a_wrong_answer():
    delta = random_delta(0)
    program = MarginProgram(delta, C=1.0)
    good = solve(program, "cvxpy")
    bad = certify(program, good.theta * 1.2, good.duals, backend="test", solver_status="?", solve_seconds=0)
    assert good.certificate.optimal
    assert bad.status is Status.INACCURATE and bad.relative_gap > 1e-4
    hard = MarginProgram(delta[:5] + 5.0)
    sol = solve(hard, "cvxpy")
    shrunk = certify(hard, sol.theta * 0.5, sol.duals, backend="test", solver_status="?", solve_seconds=0)
    assert shrunk.max_violation > 0.1 and not shrunk.optimal


def test_infeasible_hard_margin_names_conflicting_pairs():
    rng = np.random.default_rng(1)
    delta = rng.normal(size=(8, 3)) + [3.0, 0, 0]
    delta[5] = -delta[2]  # pair 5 contradicts pair 2
    with pytest.raises(InfeasibleError, match=r"pairs .*2.*5|pairs .*5.*2") as info:
        solve(MarginProgram(delta), "cvxpy")
    assert set(info.value.rows) == {2, 5}
    soft = solve(MarginProgram(delta, C=1.0), "cvxpy")
    assert soft.certificate.optimal


def test_farkas_certificate_is_valid():
    rng = np.random.default_rng(2)
    delta = rng.normal(size=(6, 2))
    delta[3] = -(delta[0] + delta[1])  # a three-way cycle
    pairs, y = find_conflict(delta, np.ones(6))
    full = np.zeros(6)
    full[pairs] = y
    assert np.allclose(delta.T @ full, 0, atol=1e-8)
    assert full @ np.ones(6) > 0 and (full >= 0).all()
    assert find_conflict(delta[:3], np.ones(3)) is None


def test_max_admissible_tightening_closed_form():
    # θ₁ ≥ 1 + t and θ₁ ≤ 3 ⇒ t* = 2; the other coordinate is free
    delta = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    margins = np.array([1.0, -3.0, 1.0])
    assert max_admissible_tightening(delta, margins, [0]) == pytest.approx(2.0)
    assert max_admissible_tightening(delta, margins, [0], upper=0.5) == pytest.approx(0.5)
    # pair 2 alone can be tightened without bound
    assert max_admissible_tightening(delta, margins, [2]) == np.inf


def test_uniform_tightening_only_rescales():
    """Scaling every margin by c scales the max-margin solution by c (why FA tightens a subset)."""
    delta = random_delta(4, shift=3.0)
    base = solve(MarginProgram(delta), "cvxpy").theta
    scaled = solve(MarginProgram(delta, 2.5), "cvxpy").theta
    assert np.allclose(scaled, 2.5 * base, atol=1e-6)


def test_reference_cache_reused_and_correct_after_margin_edit():
    delta = random_delta(5, shift=3.0)
    backend = CvxpyBackend()
    program = MarginProgram(delta)
    first = backend.solve(program)
    problem = backend._cache[2]
    margins = np.ones(len(delta))
    margins[:3] = 2.0
    second = backend.solve(program.with_margins(margins))
    assert backend._cache[2] is problem  # canonicalised problem re-used
    fresh = CvxpyBackend().solve(program.with_margins(margins))
    assert np.allclose(second.theta, fresh.theta, atol=1e-8)
    assert not np.allclose(first.theta, second.theta, atol=1e-4)


def test_backend_selection_errors():
    program = MarginProgram(np.eye(2))
    assert get_backend("auto", program).name == "working-set"
    assert get_backend("auto", MarginProgram(np.eye(2), norm="l1")).name == "lp-ipm"
    assert get_backend("auto", MarginProgram(np.ones((2, 300)), norm="l1")).name == "highs"
    assert get_backend("auto", MaxEntProgram(np.eye(2))).name == "newton"
    with pytest.raises(DataError, match="backend"):
        get_backend("gurobi", program)
    with pytest.raises(DataError, match="newton"):
        get_backend("newton", program)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(delta=np.array([[np.nan, 1.0]])), "pair 0"),
        (dict(delta=np.ones(3)), "2-D"),
        (dict(delta=np.ones((2, 2)), margins=[1.0, np.inf]), r"margins\[1\]"),
        (dict(delta=np.ones((2, 2)), margins=[1.0]), "one entry per pair"),
        (dict(delta=np.ones((2, 2)), C=-1.0), "C must be positive"),
        (dict(delta=np.ones((2, 2)), norm="l3"), "norm"),
    ],
)
def test_margin_program_validation(kwargs, match):
    with pytest.raises(DataError, match=match):
        MarginProgram(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(reg=0.0), "reg"),
        (dict(reg=1.0, weights=[1.0, -1.0]), r"weights\[1\]"),
        (dict(reg=1.0, temperatures=[0.0, 1.0]), r"temperatures\[0\]"),
    ],
)
def test_maxent_program_validation(kwargs, match):
    with pytest.raises(DataError, match=match):
        MaxEntProgram(np.ones((2, 2)), **kwargs)


def test_newton_warm_start_converges_faster():
    delta = random_delta(7, n=200, d=10, shift=0.5)
    program = MaxEntProgram(delta, reg=0.05)
    backend = NewtonMaxEnt()
    cold = backend.solve(program)
    weights = np.ones(200)
    weights[:10] = 2.0
    edited = program.with_weights(weights)
    warm = backend.solve(edited, warm_start=cold)
    reference = NewtonMaxEnt().solve(edited)
    assert warm.certificate.optimal
    assert np.allclose(warm.theta, reference.theta, atol=1e-8)


# -- the interface: status enum, settings, fresh backends, the one refusal ------------------------


def test_status_is_an_enum_that_reads_as_its_string():
    solution = solve(MarginProgram(random_delta(0), C=1.0), "cvxpy")
    status = solution.certificate.status
    assert status is Status.OPTIMAL and status == "optimal" and f"{status}" == str(status) == "optimal"
    record = solution.certificate.to_dict()
    assert type(record["status"]) is str and record["status"] == "optimal"
    import json

    assert json.loads(json.dumps(record))["status"] == "optimal"
    assert {s.value for s in Status} == {"optimal", "inaccurate"}


def test_require_certified_refuses_an_uncertified_answer():
    program = MarginProgram(random_delta(0), C=1.0)
    good = solve(program, "cvxpy")
    assert good.require_certified("fit") is good
    bad_cert = certify(program, good.theta * 1.2, good.duals, backend="test", solver_status="odd",
                       solve_seconds=0)
    bad = type(good)(program, good.theta * 1.2, good.duals, bad_cert)
    with pytest.raises(SolverError, match=r"^round 3: backend 'test' returned status 'odd' but the certificate "
                                          r"fails \(relative gap .*, max violation .*\); try backend='cvxpy'") as info:
        bad.require_certified("round 3")
    assert info.value.status == "odd"


def test_settings_objects_fresh_backends_and_diagnostics():
    program = MarginProgram(random_delta(2, n=60), C=1.0)
    settings = WorkingSetSettings(fallback=False, batch=7)
    backend = get_backend("working-set", program, settings)
    assert backend.settings is settings
    first = backend.solve(program)
    assert first.diagnostics["rounds"] >= 1 and first.diagnostics["working_set_size"] == 60
    again = backend.fresh()
    assert type(again) is WorkingSetQP and again.settings is settings and again._last is None
    assert np.array_equal(again.solve(program).theta, first.theta)
    # the keyword shorthand builds the same settings; unknown knobs and foreign settings are refused
    assert WorkingSetQP(fallback=False, batch=7).settings == settings
    with pytest.raises(DataError, match="no setting 'bacth'"):
        WorkingSetQP(bacth=7)
    with pytest.raises(DataError, match="WorkingSetSettings"):
        get_backend("working-set", program, NewtonSettings())
    with pytest.raises(DataError, match="settings go with a backend name"):
        solve(program, backend, settings=settings)
    for cls in BACKENDS.values():
        built = cls()
        assert isinstance(built.settings, cls.settings_class) and built.fresh().settings == built.settings

