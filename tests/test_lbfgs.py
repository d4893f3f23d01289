"""LbfgsMaxEnt against independent references: cvxpy's exponential cone, damped Newton, sklearn."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairl_opt.exceptions import DataError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import CvxpyBackend, LBFGSSettings, NewtonMaxEnt, Status
from fairl_opt.solvers.lbfgs import LbfgsMaxEnt, _FusedMaxEnt
from tests.oracles import logreg_reference, random_delta

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def scale(value):
    return max(1.0, abs(value))


def exact(program):
    """θ* and P* from damped Newton (certified to a 1e-12 gap, then one more quadratic step)."""
    solution = NewtonMaxEnt().solve(program)
    assert solution.certificate.relative_gap < 1e-11
    return solution.theta, solution.objective


def assert_certified(solution, tol=1e-8):
    cert = solution.certificate
    assert cert.optimal and cert.backend == "lbfgs"
    assert cert.gradient_bound <= tol * scale(cert.primal_objective)
    assert cert.relative_gap <= tol


def random_program(seed, n=40, d=6, reg=0.2, shift=0.7, offsets=False):
    delta = random_delta(seed, n=n, d=d, shift=shift)
    rng = np.random.default_rng(seed + 1000)
    return MaxEntProgram(
        delta,
        reg=reg,
        weights=rng.uniform(0.5, 3.0, n),
        temperatures=rng.uniform(0.3, 1.5, n),
        offsets=rng.normal(size=n) if offsets else None,
    )


# -- agreement with the references --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_matches_cvxpy_newton_and_sklearn(seed):
    program = random_program(seed)
    solution = LbfgsMaxEnt(LBFGSSettings(tol=1e-11, theta_tol=1e-7)).solve(program)
    theta_star, value_star = exact(program)
    reference = CvxpyBackend().solve(program)
    sk = logreg_reference(program.delta, program.reg, program.weights, program.temperatures)
    assert_certified(solution, 1e-11)
    assert np.linalg.norm(solution.theta - theta_star) <= 1e-7
    assert np.allclose(solution.theta, sk, atol=1e-5)
    assert np.allclose(solution.theta, reference.theta, atol=1e-5)
    assert solution.objective == pytest.approx(value_star, rel=1e-9)
    assert solution.objective <= reference.objective + 1e-9 * scale(reference.objective)


@pytest.mark.parametrize("seed", range(4))
def test_default_tolerance_is_certified_and_honest(seed):
    """Default tol: the gradient bound meets 1e-8, and it really bounds the suboptimality."""
    program = random_program(seed, n=120, d=15, reg=0.05)
    solution = LbfgsMaxEnt().solve(program)
    _, value_star = exact(program)
    assert_certified(solution)
    excess = solution.objective - value_star
    assert -1e-12 * scale(value_star) <= excess <= solution.certificate.gradient_bound + 1e-12 * scale(value_star)
    assert solution.objective == pytest.approx(value_star, rel=1e-8)


@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-6])
def test_gap_equals_gradient_bound_and_bounds_the_error(tol):
    """At β(θ) the Fenchel gap and ‖∇P‖²/(2λ) coincide; both bound P(θ) − P* from above."""
    program = random_program(3, n=200, d=20, reg=0.01, offsets=True)
    solution = LbfgsMaxEnt(LBFGSSettings(tol=tol, switch=False)).solve(program)
    cert = solution.certificate
    _, value_star = exact(program)
    assert cert.optimal and cert.relative_gap <= tol
    assert cert.gap == pytest.approx(cert.gradient_bound, rel=1e-6, abs=1e-13)
    assert solution.objective - value_star <= cert.gap + 1e-12 * scale(value_star)


@pytest.mark.parametrize("seed", range(3))
def test_theta_tol_certifies_the_distance_to_the_optimum(seed):
    program = random_program(seed, n=150, d=30, reg=0.02)
    theta_star, _ = exact(program)
    loose = LbfgsMaxEnt(LBFGSSettings(tol=1e-6)).solve(program)
    tight = LbfgsMaxEnt(LBFGSSettings(tol=1e-6, theta_tol=1e-6)).solve(program)
    assert tight.certificate.optimal
    gradient = program.gradient(tight.theta)
    assert np.linalg.norm(gradient) / program.reg <= 1e-6
    assert np.linalg.norm(tight.theta - theta_star) <= 1e-6
    # without theta_tol the same gap tolerance leaves θ much further away
    assert np.linalg.norm(loose.theta - theta_star) > np.linalg.norm(tight.theta - theta_star)


def test_offsets_weights_temperatures_against_cvxpy():
    program = random_program(11, n=30, d=4, reg=0.5, offsets=True)
    solution = LbfgsMaxEnt(LBFGSSettings(tol=1e-11, theta_tol=1e-7)).solve(program)
    reference = CvxpyBackend().solve(program)
    theta_star, _ = exact(program)
    assert_certified(solution, 1e-11)
    assert np.allclose(solution.theta, reference.theta, atol=1e-5)
    assert np.linalg.norm(solution.theta - theta_star) <= 1e-7
    plain = LbfgsMaxEnt().solve(MaxEntProgram(program.delta, reg=0.5))
    assert not np.allclose(solution.theta, plain.theta, atol=1e-3)


@pytest.mark.parametrize("n, d", [(20, 60), (15, 200), (500, 5), (2000, 3)])
def test_wide_and_tall(n, d):
    """d > n (separable: only λ keeps θ finite) and n ≫ d."""
    rng = np.random.default_rng(n + d)
    delta = rng.normal(size=(n, d)) + 0.5
    program = MaxEntProgram(delta, reg=0.05, weights=rng.uniform(0.5, 2.0, n))
    solution = LbfgsMaxEnt(LBFGSSettings(tol=1e-11, theta_tol=1e-6)).solve(program)
    theta_star, value_star = exact(program)
    assert_certified(solution, 1e-11)
    assert np.linalg.norm(solution.theta - theta_star) <= 1e-6
    assert solution.objective == pytest.approx(value_star, rel=1e-9)
    if d > n:
        assert (delta @ solution.theta > 0).all()  # separable: every pair is ranked correctly
    sk = logreg_reference(delta, 0.05, program.weights)
    assert np.allclose(solution.theta, sk, atol=1e-5)


@pytest.mark.parametrize("factor", [1e-3, 1e3])
def test_badly_scaled_delta(factor):
    delta = random_delta(5, n=80, d=8, shift=0.6) * factor
    program = MaxEntProgram(delta, reg=0.1)
    theta_scale = max(1.0, float(np.abs(exact(program)[0]).max()))
    solution = LbfgsMaxEnt(LBFGSSettings(tol=1e-11, theta_tol=1e-6 * theta_scale)).solve(program)
    theta_star, value_star = exact(program)
    assert_certified(solution, 1e-11)
    assert np.linalg.norm(solution.theta - theta_star) <= 1e-6 * theta_scale
    assert solution.objective == pytest.approx(value_star, rel=1e-9)
    if factor < 1:  # nearly linear loss: θ* ≈ Σ Δ_i / (2λ)
        assert np.allclose(solution.theta, delta.sum(axis=0) / (2 * 0.1), rtol=1e-2)


def test_single_pair_closed_form():
    # θ* solves λθ = σ(−θ) for Δ = [[1]]
    solution = LbfgsMaxEnt(LBFGSSettings(tol=1e-14, theta_tol=1e-13)).solve(MaxEntProgram(np.array([[1.0]]), reg=1.0))
    theta = solution.theta[0]
    assert theta == pytest.approx(1.0 / (1.0 + np.exp(theta)), abs=1e-12)


@given(seed=st.integers(0, 10**6), log_reg=st.floats(-3, 1), log_scale=st.floats(-2, 2))
def test_property_certified_and_never_below_the_optimum(seed, log_reg, log_scale):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(2, 60)), int(rng.integers(1, 12))
    delta = (rng.normal(size=(n, d)) + rng.normal(size=d)) * 10**log_scale
    program = MaxEntProgram(
        delta, reg=10**log_reg, weights=rng.uniform(0.2, 4, n), temperatures=rng.uniform(0.2, 3, n),
        offsets=rng.normal(size=n),
    )
    solution = LbfgsMaxEnt().solve(program)
    _, value_star = exact(program)
    assert_certified(solution)
    assert value_star - 1e-12 * scale(value_star) <= solution.objective
    assert solution.objective <= value_star + 1e-8 * scale(value_star)


# -- warm starts, stages, budgets ------------------------------------------------------------------


def test_warm_start_needs_fewer_evaluations():
    delta = random_delta(7, n=300, d=40, shift=0.5)
    program = MaxEntProgram(delta, reg=0.05)
    backend = LbfgsMaxEnt(LBFGSSettings(tol=1e-10))
    first = backend.solve(program)
    weights = np.ones(300)
    weights[:15] = 2.0
    edited = program.with_weights(weights)
    cold = backend.solve(edited)
    cold_nfev = cold.diagnostics["nfev"]
    warm = backend.solve(edited, warm_start=first)
    warm_nfev = warm.diagnostics["nfev"]
    assert cold.certificate.optimal and warm.certificate.optimal
    assert warm_nfev < cold_nfev
    theta_star, _ = exact(edited)
    assert np.allclose(warm.theta, theta_star, atol=1e-5)
    # restarting from the answer itself certifies at the first evaluation
    again = backend.solve(edited, warm_start=warm)
    assert again.diagnostics["nfev"] == 1 and np.array_equal(again.theta, warm.theta)


def test_warm_start_of_the_wrong_shape_is_ignored():
    program = random_program(2)
    other = LbfgsMaxEnt().solve(random_program(2, d=3))
    backend = LbfgsMaxEnt()
    cold = backend.solve(program)
    cold_theta, cold_nfev = cold.theta, cold.diagnostics["nfev"]
    solution = backend.solve(program, warm_start=other)
    assert solution.certificate.optimal and solution.diagnostics["nfev"] == cold_nfev
    assert np.array_equal(solution.theta, cold_theta)


def ill_conditioned(seed=0, n=400, d=120):
    """Correlated features (spectrum 1 .. 1e-3) and a tiny λ: L-BFGS alone is slow here."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = (rng.normal(size=(n, d)) * np.logspace(0, -3, d)) @ q.T
    u = q[:, 0]
    flip = rng.uniform(size=n) > 1 / (1 + np.exp(-3 * x @ u))
    x[flip] *= -1
    return MaxEntProgram(x, reg=1e-4)


@pytest.mark.parametrize("dense_max_dim", [0, 1024])
def test_slow_lbfgs_hands_over_to_newton(dense_max_dim):
    program = ill_conditioned()
    backend = LbfgsMaxEnt(LBFGSSettings(tol=1e-10, dense_max_dim=dense_max_dim))
    solution = backend.solve(program)
    theta_star, value_star = exact(program)
    assert_certified(solution, 1e-10)
    report = solution.diagnostics
    assert report["stage"] == "newton" and "switched" in solution.certificate.solver_status
    assert report["nit"] < backend.settings.max_iter
    if dense_max_dim == 0:
        assert report["hessians"] == 0 and report["hvp"] > 0
    else:
        assert report["hessians"] > 0
    assert solution.objective == pytest.approx(value_star, rel=1e-10)
    # L-BFGS alone, for comparison, needs many more evaluations to certify the same tolerance
    alone = LbfgsMaxEnt(LBFGSSettings(tol=1e-10, switch=False, max_iter=20000))
    by_lbfgs = alone.solve(program)
    assert by_lbfgs.certificate.optimal and by_lbfgs.diagnostics["stage"] == "lbfgs"
    assert by_lbfgs.diagnostics["nfev"] > 2 * report["lbfgs_nfev"]


@pytest.mark.parametrize("dense_max_dim", [0, 1024])
def test_newton_finishes_what_lbfgs_started(dense_max_dim):
    program = random_program(4, n=200, d=25, reg=0.01, offsets=True)
    backend = LbfgsMaxEnt(LBFGSSettings(tol=1e-12, theta_tol=1e-8, max_iter=3, dense_max_dim=dense_max_dim))
    solution = backend.solve(program)
    theta_star, _ = exact(program)
    report = solution.diagnostics
    assert report["nit"] == 3 and report["stage"] == "newton" and report["newton_steps"] >= 1
    assert_certified(solution, 1e-12)
    assert np.linalg.norm(solution.theta - theta_star) <= 1e-8


def test_exhausted_budget_returns_an_inaccurate_solution():
    program = ill_conditioned(1)
    backend = LbfgsMaxEnt(LBFGSSettings(tol=1e-10, max_iter=2, newton_steps=0))
    solution = backend.solve(program)
    assert solution.diagnostics["stage"] == "budget"
    assert solution.status is Status.INACCURATE and not solution.certificate.optimal
    assert solution.certificate.relative_gap > 1e-10
    assert np.all(np.isfinite(solution.theta))


# -- the fused evaluator: one pass, no copy of Δ, float32 ------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("block_rows", [None, 1, 7, 1000])
def test_fused_evaluator_matches_the_program(dtype, layout, block_rows):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 18)).astype(dtype)
    delta = {"C": base, "F": np.asfortranarray(base), "strided": base[::2, ::3]}[layout]
    n, d = delta.shape
    program = MaxEntProgram(
        delta, reg=0.3, weights=rng.uniform(0.5, 2, n), temperatures=rng.uniform(0.1, 2, n),
        offsets=rng.normal(size=n) * 5,
    )
    assert program.delta is delta  # the program keeps the caller's array; so must the evaluator
    ev = _FusedMaxEnt(program, block_rows)
    assert ev.delta is delta
    theta = rng.normal(size=d) * 3
    value, grad = ev.value_grad(theta)
    assert value == pytest.approx(program.objective(theta), rel=1e-13)
    assert np.allclose(grad, program.gradient(theta), rtol=1e-12, atol=1e-12)
    hessian = program.hessian(theta)
    v = rng.normal(size=d)
    assert np.allclose(ev.hessp(v), hessian @ v, rtol=1e-12, atol=1e-12)
    assert np.allclose(ev.hessian(), hessian, rtol=1e-12, atol=1e-12)


def test_extreme_scores_stay_finite():
    delta = np.array([[1e3, 0.0], [-1e3, 1.0], [0.0, -800.0]])
    program = MaxEntProgram(delta, reg=1.0)
    ev = _FusedMaxEnt(program)
    theta = np.array([1.0, 1.0])
    value, grad = ev.value_grad(theta)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(program.objective(theta), rel=1e-14)
    assert np.allclose(grad, program.gradient(theta), rtol=1e-14)


def test_float32_delta_is_solved_in_float64_without_copying():
    rng = np.random.default_rng(3)
    delta32 = (rng.normal(size=(20000, 128)) + 0.3).astype(np.float32)
    program32 = MaxEntProgram(delta32, reg=0.1)
    ev = _FusedMaxEnt(program32, block_rows=512)
    theta = rng.normal(size=128) * 0.03
    ev.value_grad(theta)  # buffers allocated at construction; warm the code path
    tracemalloc.start()
    try:
        ev.value_grad(theta)
        ev.hessp(theta)
        ev.hessian()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < delta32.nbytes / 4  # no n×d temporary: only O(block × d) and O(n) vectors
    # the float64 program on the same values has the same solution, to the certificate's accuracy
    solution32 = LbfgsMaxEnt(LBFGSSettings(tol=1e-12, theta_tol=1e-7, block_rows=512)).solve(program32)
    solution64 = LbfgsMaxEnt(LBFGSSettings(tol=1e-12, theta_tol=1e-7)).solve(MaxEntProgram(delta32.astype(np.float64), reg=0.1))
    assert_certified(solution32, 1e-12)
    assert np.linalg.norm(solution32.theta - solution64.theta) <= 2e-7


# -- interface -------------------------------------------------------------------------------------


def test_interface():
    backend = LbfgsMaxEnt()
    assert backend.name == "lbfgs"
    assert backend.supports(MaxEntProgram(np.eye(2)))
    assert not backend.supports(MarginProgram(np.eye(2)))
    with pytest.raises(DataError, match="MaxEntProgram only"):
        backend.solve(MarginProgram(np.eye(2)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tol=0.0), "tol"),
        (dict(tol=np.nan), "tol"),
        (dict(theta_tol=-1.0), "theta_tol"),
        (dict(memory=0), "memory"),
        (dict(newton_steps=-1), "newton_steps"),
        (dict(block_rows=0), "block_rows"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(DataError, match=match):
        LBFGSSettings(**kwargs)
    with pytest.raises(DataError, match=match):
        LbfgsMaxEnt(**kwargs)  # the keyword shorthand builds the same settings
