"""Property tests of the theorems in ``proofs/`` (T1–T9), one block per theorem.

Convention (proofs/README.md): F(m; R) = {θ : ‖θ‖₂ ≤ R, Δθ ≥ m}; F_std = F(m_std; R), F_FA = F(m_FA; R)
with one R = budget · min{‖θ‖ : Δθ ≥ m_FA} (budget 2).

Exact checks use ``fractions.Fraction`` on the float data (``_exact_*`` helpers below are written here,
independently of :mod:`fairl_opt.geometry.exact`). Runs: the "ci" profile (25 derandomised examples per
property); ``FAIRL_THEORY_EXAMPLES=10000 HYPOTHESIS_PROFILE=thorough pytest tests/test_theory.py`` for the
long run.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, find, given, reject, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.special import expit

from fairl_opt.exceptions import InfeasibleError, SolverError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.failures import normalised_margins
from fairl_opt.geometry import FeasibleSet, nested_volume_ratio, reward_intervals, sample_points, smallest_norm
from fairl_opt.geometry import volume_fraction, volume_ratio
from fairl_opt.geometry.claims import certify_sets
from fairl_opt.geometry.exact import exact_ball_in_cut, exact_farkas_radius, verified_conflict
from fairl_opt.metrics import canonicalise_rewards, epic_distance, starc_distance
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import (
    CvxpyBackend,
    WorkingSetQP,
    WorkingSetSettings,
    certify,
    find_conflict,
    max_admissible_tightening,
    solve,
)
from fairl_opt.solvers.box_qp import solve_box_qp
from tests.strategies import (
    SOLVER_SCALES,
    maxent_edits,
    preference_cases,
    reward_pairs,
    separable_cases,
    tightenings,
)

_EXAMPLES = os.environ.get("FAIRL_THEORY_EXAMPLES")
_HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
#: Per-property settings: the loaded profile, with max_examples from FAIRL_THEORY_EXAMPLES when set.
theory = (settings(max_examples=int(_EXAMPLES), suppress_health_check=_HEALTH) if _EXAMPLES
          else settings(suppress_health_check=_HEALTH))

#: Solver-based properties: moderate scales and margins the certified backends are specified for.
#: (row norms within ~1e±4 of the margins: beyond that the backends answer SolverError / spurious
#: InfeasibleError, see the report in proofs/README.md)
SOLVER_KW = dict(scales=SOLVER_SCALES, near_gaps=(None, 1e-3), spreads=(0, 1), collinear_factors=(0.5, 2.0, 3.0))
solver_cases = separable_cases(max_n=10, max_d=8, **SOLVER_KW)
#: z₀ with z₀·tanh(z₀/2) = 2: sharpening raises a pair's curvature where |Δ_jθ + o_j| ≤ z₀·T'_j (T6).
Z0 = 2.399357280515467


# -- exact helpers (independent of fairl_opt.geometry.exact) ------------------------------------------
def _fr(x) -> Fraction:
    return Fraction(float(x))


def _exact_rows(delta, theta) -> list[Fraction]:
    t = [_fr(v) for v in theta]
    return [sum((_fr(a) * b for a, b in zip(row, t)), Fraction(0)) for row in np.atleast_2d(delta)]


def _exact_in_set(delta, margins, R, theta) -> bool:
    """θ ∈ F(m; R) exactly."""
    if sum(_fr(v) ** 2 for v in theta) > _fr(R) ** 2:
        return False
    return all(s >= _fr(m) for s, m in zip(_exact_rows(delta, theta), margins))


def _radius(delta, m_fa, m_std, budget=2.0):
    """R = budget · n*(m_FA) (n*(m_std) when F_FA is empty), as in the convention."""
    target = m_std if verified_conflict(delta, m_fa) is not None else m_fa
    return budget * smallest_norm(delta, target)


def _ball(delta, margins, R):
    """The Chebyshev ball of F(m; R) in θ units: R times that of the unit-ball set {‖φ‖ ≤ 1, Δφ ≥ m/R}."""
    ball = FeasibleSet(delta, np.asarray(margins, dtype=np.float64) / R, duplicates="merge").chebyshev_ball()
    return R * ball.centre, R * ball.radius


def _dual_tightening(delta, margins, subset):
    """T3's LP in dual form, solved here independently of the toolkit's primal LP:
    t* = min{−mᵀy : y ≥ 0, Δᵀy = 0, Σ_{i∈S} y_i = 1}; ``(inf, None)`` when infeasible (every tightening
    of S is admissible), ``(-inf, None)`` when unbounded."""
    n, d = delta.shape
    indicator = np.isin(np.arange(n), subset).astype(float)
    a_eq = np.vstack([delta.T, indicator[None, :]])
    b_eq = np.r_[np.zeros(d), 1.0]
    res = linprog(-margins, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status in (2, 3):
        res = linprog(-margins, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs", options={"presolve": False})
    if res.status == 2:
        return float("inf"), None
    if res.status == 3:
        return float("-inf"), None
    assert res.status == 0, res.message
    return float(res.fun), np.asarray(res.x)


def _or_reject(function, *args, **kwargs):
    """Call a toolkit solver; if it declines (SolverError: it could not certify, e.g. badly scaled data),
    the example says nothing about the theorem and is rejected (Hypothesis reports how many were)."""
    try:
        return function(*args, **kwargs)
    except SolverError:
        reject()


def _lp(c, A_ub, b_ub, bounds):
    """linprog (HiGHS), asked again without presolve when presolve claims infeasible/unbounded."""
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status in (2, 3):
        res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs", options={"presolve": False})
    return res


def _uniform_ball(rng, k, d, R):
    g = rng.normal(size=(k, d))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return R * g * rng.uniform(size=(k, 1)) ** (1.0 / d)


def _cvxpy_min(delta, margins, R, direction):
    theta = cp.Variable(delta.shape[1])
    scale = np.linalg.norm(delta, axis=1)
    prob = cp.Problem(cp.Minimize(direction @ theta / np.linalg.norm(direction)),
                      [(delta / scale[:, None]) @ theta >= margins / scale, cp.norm(theta, 2) <= R])
    prob.solve(solver=cp.CLARABEL)
    if theta.value is None:
        reject()  # the independent reference gave up (badly scaled); the example decides nothing
    return float(direction @ theta.value)


# =================================================================================================
# T1  containment F_FA ⊆ F_std
# =================================================================================================
@theory
@given(case=preference_cases(), data=st.data())
def test_t1_containment_exact(case, data):
    """Any data, any subset, any δ ≥ 0 and any R: every point of F_FA is in F_std (exact arithmetic)."""
    subset, steps = data.draw(tightenings(case.n, max_step=1e3, proper=False))
    if data.draw(st.booleans()):
        m_std = np.ones(case.n)
    else:
        m_std = np.random.default_rng(case.n).normal(size=case.n)
    m_fa = m_std + steps
    assert np.all(m_fa >= m_std)  # float addition of δ ≥ 0 never lowers a margin
    R = data.draw(st.sampled_from((1e-3, 1.0, 1e3, 1e12)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    points = list(_uniform_ball(rng, 5, case.d, R))
    # points inside F_FA (when it is non-empty): an LP point with the largest normalised slack
    norms = np.linalg.norm(case.delta, axis=1)
    res = linprog(np.r_[np.zeros(case.d), -1.0], A_ub=np.hstack([-case.delta, norms[:, None]]), b_ub=-m_fa,
                  bounds=[(-R, R)] * case.d + [(None, 1.0)], method="highs")
    if res.status == 0:
        points.append(res.x[:-1])
    for theta in points:
        if _exact_in_set(case.delta, m_fa, R, theta):
            assert _exact_in_set(case.delta, m_std, R, theta)


@theory
@given(case=preference_cases(max_n=10, max_d=8, **SOLVER_KW),
       method=st.sampled_from(("l2", "l1", "linf")), oof=st.sampled_from((0, 2, 3)),
       quantile=st.sampled_from((0.1, 0.3, 0.6)))
def test_t1_fa_loop_only_raises_margins(case, method, oof, quantile):
    """The FA loop (fa.py) only raises margins: m_FA ≥ m_std entrywise, so T1 applies to its output."""
    hard = case.separable
    program = MarginProgram(case.delta, 1.0, method, None if hard else 1.0)
    assume(oof == 0 or case.n >= oof)
    try:
        result = run_fa(program, "auto", FASettings(near_tie_quantile=quantile, oof_folds=oof, max_rounds=4))
    except SolverError:
        assume(False)  # the backend declined to certify (badly scaled data): nothing to check
    assert result.required_margins is not None
    assert np.all(result.required_margins >= 1.0)
    rounds = result.round_margins()  # as the loop recorded them, round 0 = the standard program
    assert np.array_equal(rounds[0], np.ones(case.n)) and np.array_equal(rounds[-1], result.required_margins)
    for before, after, record in zip(rounds, rounds[1:], result.history[1:]):
        assert np.all(after >= before)
        # a round raises exactly the pairs it reports changing
        assert set(np.flatnonzero(after > before).tolist()) == (set(record.changed) if record.step else set())


def test_t1_counterexample_per_set_scaling():
    """Normalising each set by its OWN budget (different R) breaks containment (proofs/T1)."""
    delta = np.eye(2)
    m_std, m_fa = np.array([1.0, 1.0]), np.array([3.0, 1.0])
    R_std, R_fa = 2 * math.sqrt(2), 2 * math.sqrt(10)
    # unit-ball sets {‖φ‖ ≤ 1, Δφ ≥ m/R}
    point = np.array([0.5, 0.2])
    assert _exact_in_set(delta, m_fa / R_fa, 1.0, point)
    assert not _exact_in_set(delta, m_std / R_std, 1.0, point)
    # a negative "tightening" loosens: also not contained
    assert _exact_in_set(delta, np.array([1.0, 0.5]), 10.0, np.array([1.0, 0.6]))
    assert not _exact_in_set(delta, m_std, 10.0, np.array([1.0, 0.6]))


# =================================================================================================
# T2  strict inclusion, positive volume removed
# =================================================================================================
@theory
@given(case=solver_cases, data=st.data())
def test_t2_strict_inclusion_certified_exactly(case, data):
    """If the standard solution violates a tightened constraint, F_FA ⊊ F_std, and (F_std full-dimensional)
    a ball of positive radius lies in F_std \\ F_FA: found by an SOCP, then checked exactly."""
    subset, steps = data.draw(tightenings(case.n, min_step=1e-2, max_step=3.0))
    assume(np.all(steps[subset] > 0))
    m_std = np.ones(case.n)
    m_fa = m_std + steps
    theta_std = _or_reject(solve, MarginProgram(case.delta)).theta
    R = _or_reject(_radius, case.delta, m_fa, m_std)
    out = _or_reject(certify_sets, case.delta, m_std, m_fa, radius_bound=R, theta_std=theta_std)
    shortfall = m_fa[subset] - case.delta[subset] @ theta_std
    if shortfall.max() > 1e-6:
        assert out["strict_inclusion"]
        assert out["certified"] == "exact", out
    if out["strict_inclusion"] and out["certified"] == "exact":
        w, j, r = np.array(out["witness"]), out["witness_pair"], out["witness_radius"]
        # independent exact re-check: w ∈ F_std, w ∉ F_FA, and the ball B(w, r) stays on the cut side
        assert _exact_in_set(case.delta, m_std, R, w)
        assert not _exact_in_set(case.delta, m_fa, R, w)
        assert _exact_rows(case.delta[[j]], w)[0] + _fr(r) * _fr(np.linalg.norm(case.delta[j])) * Fraction(999, 1000) \
            < _fr(m_fa[j])
    else:
        # T2's criterion, by an independent solver: no tightened constraint cuts F_std(R)
        for j in subset:
            assert _cvxpy_min(case.delta, m_std, R, case.delta[j]) >= m_fa[j] - 1e-6 * max(1.0, m_fa[j])


@theory
@given(case=solver_cases, data=st.data())
def test_t2_previous_solution_pulled_inside_is_witness(case, data):
    """The proof's construction: θ_ε = (1 − ε)θ̂ + εc (c an interior point of F_std) is interior to F_std
    and still violates the tightened constraint that θ̂ violates, for small ε > 0 (checked exactly)."""
    subset, steps = data.draw(tightenings(case.n, min_step=0.1, max_step=3.0))
    assume(np.all(steps[subset] > 0))
    m_std, m_fa = np.ones(case.n), 1.0 + steps
    theta_hat = _or_reject(solve, MarginProgram(case.delta)).theta
    j = subset[int(np.argmax(m_fa[subset] - case.delta[subset] @ theta_hat))]
    gap = m_fa[j] - case.delta[j] @ theta_hat
    assume(gap > 1e-3)
    R = _or_reject(_radius, case.delta, m_fa, m_std)
    centre, radius = _or_reject(_ball, case.delta, m_std, R)
    assert radius > 0  # separable data and R > n*(m_std): F_std is full-dimensional
    # ε small enough to keep the violation: Δ_j θ_ε = Δ_jθ̂ + ε Δ_j(c − θ̂) < m_FA_j
    drift = abs(case.delta[j] @ (centre - theta_hat)) + 1e-300
    eps = min(0.5, 0.5 * gap / drift)
    theta_eps = (1 - eps) * theta_hat + eps * centre
    assert exact_ball_in_cut(case.delta, m_std, m_fa, R, theta_eps, eps * radius * 0.5, [j]) or \
        (_exact_in_set(case.delta, m_std, R, theta_eps) and not _exact_in_set(case.delta, m_fa, R, theta_eps))


@theory
@given(case=separable_cases(max_n=8, max_d=3, scales=SOLVER_SCALES, near_gaps=(None,), spreads=(0, 1),
                                  collinear_factors=(0.5, 2.0)), data=st.data())
def test_t2_monte_carlo_removed_volume(case, data):
    """Statistical check (d ≤ 3): uniform points of the R-ball land in F_std \\ F_FA when the exact
    certificate says a ball of fraction (r/R)^d ≥ 2e-3 lies there; nesting holds point by point."""
    subset, steps = data.draw(tightenings(case.n, min_step=0.2, max_step=3.0))
    m_std, m_fa = np.ones(case.n), 1.0 + steps
    R = _or_reject(_radius, case.delta, m_fa, m_std)
    theta_std = _or_reject(solve, MarginProgram(case.delta)).theta
    out = _or_reject(certify_sets, case.delta, m_std, m_fa, radius_bound=R, theta_std=theta_std)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    points = _uniform_ball(rng, 20_000, case.d, R)
    scores = points @ case.delta.T
    in_std = np.all(scores >= m_std, axis=1)
    in_fa = np.all(scores >= m_fa, axis=1)
    assert not np.any(in_fa & ~in_std)
    if out["certified"] == "exact":
        fraction = (out["witness_radius"] / R) ** case.d
        if fraction >= 2e-3:  # ≥ 40 expected hits: missing all has probability < e^-40
            assert np.count_nonzero(in_std & ~in_fa) > 0


def test_t2_geometry_volume_ratio_agrees():
    """Second, statistical check with the geometry module (hit-and-run): the ratio agrees with an
    independent Monte Carlo count of uniform points of the ball, its interval lies below 1, and
    1 − (r/R)^d·vol(B_R)/vol(F_std) is not contradicted."""
    rng = np.random.default_rng(3)
    delta = rng.normal(size=(6, 3))
    delta *= np.sign(delta @ np.array([1.0, 0.5, -0.3]))[:, None]
    m_std = np.ones(6)
    theta_std = solve(MarginProgram(delta)).theta
    m_fa = m_std.copy()
    m_fa[np.argsort(delta @ theta_std)[:2]] += 1.0  # the two tightest pairs: the failures of θ_std
    R = _radius(delta, m_fa, m_std)
    out = certify_sets(delta, m_std, m_fa, radius_bound=R, theta_std=theta_std)
    assert out["strict_inclusion"] and out["certified"] == "exact"
    std = FeasibleSet(delta, m_std / R)
    fa = FeasibleSet(delta, m_fa / R)
    est = volume_ratio(fa, std, samples=20_000, seed=1)
    frac_std = volume_fraction(std, samples=20_000, seed=2)
    removed_at_least = (out["witness_radius"] / R) ** 3 / frac_std.ci_high
    assert est.ci_high < 1.0
    assert est.ci_low <= 1.0 - removed_at_least
    # independent oracle: the fraction of uniform points of the unit ball in F_FA among those in F_std
    points = _uniform_ball(np.random.default_rng(7), 400_000, 3, 1.0)
    in_std, in_fa = std.contains(points), fa.contains(points)
    assert not np.any(in_fa & ~in_std)
    counted = in_fa.sum() / in_std.sum()
    count_se = math.sqrt(counted * (1 - counted) / in_std.sum())
    assert abs(est.estimate - counted) <= 4 * math.hypot(est.stderr, count_se)


def test_t2_counterexample_implied_constraint():
    """Assumption 'the failure constraint cuts F_std' is needed: Δ_2 = 2Δ_1 makes Δ_2θ ≥ 2 implied, so
    tightening pair 2 to 2 removes nothing; the dual certificate proves it exactly."""
    delta = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    m_std = np.ones(3)
    m_fa = np.array([1.0, 2.0, 1.0])
    out = certify_sets(delta, m_std, m_fa, radius_bound=4.0)
    assert not out["strict_inclusion"]
    assert out["implied_certificate"]["exact"]
    assert "implied" in out["failed_assumption"]


def test_t2_counterexample_flat_standard_set():
    """Assumption 'F_std full-dimensional' is needed for positive volume: with Δθ ≥ 1 and −Δθ ≥ −1, F_std
    is a segment; tightening a third pair still cuts it (strict) but removes zero volume."""
    delta = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    m_std = np.array([1.0, -1.0, 0.0])
    m_fa = np.array([1.0, -1.0, 0.5])
    out = certify_sets(delta, m_std, m_fa, radius_bound=2.0)
    assert out["strict_inclusion"] and out["certified"] == "numerical"
    assert "not full-dimensional" in out["failed_assumption"]
    # exact: (1, 0.25) ∈ F_std \ F_FA, and F_std lies in the hyperplane θ₁ = 1 (zero volume)
    assert _exact_in_set(delta, m_std, 2.0, [1.0, 0.25]) and not _exact_in_set(delta, m_fa, 2.0, [1.0, 0.25])


def test_t2_counterexample_ball_hides_the_cut():
    """Assumption ‖θ̂‖ ≤ R is needed for θ̂ to be a witness: θ̂ = (1, −3) ∈ P(m_std) violates the tightened
    pair, but inside the ball R = 1.2 every point of F_std meets it (θ₂ ≥ −0.67 there), so F_FA(R) = F_std(R)."""
    delta = np.array([[1.0, 0.0], [1.0, 0.125]])  # dyadic data: the float values are the exact ones
    m_std = np.array([1.0, 0.5])
    m_fa = np.array([1.0, 0.75])
    theta_hat = np.array([1.0, -3.0])
    assert _exact_in_set(delta, m_std, 10.0, theta_hat) and not _exact_in_set(delta, m_fa, 10.0, theta_hat)
    hidden = certify_sets(delta, m_std, m_fa, radius_bound=1.2)
    assert not hidden["strict_inclusion"] and hidden["implied_certificate"]["exact"]
    assert certify_sets(delta, m_std, m_fa, radius_bound=10.0)["strict_inclusion"]


# =================================================================================================
# T3  largest admissible tightening = LP optimum; empty beyond it (Farkas)
# =================================================================================================
@theory
@given(case=preference_cases(max_n=10, max_d=6, **SOLVER_KW), data=st.data())
def test_t3_admissible_tightening_is_lp_optimum(case, data):
    subset, _ = data.draw(tightenings(case.n))
    # margins: 1 (then t* = ∞ whenever P(m) ≠ ∅: scale any feasible θ), signed, or the soft solution's
    # relaxed margins min(1, Δθ_soft) that fairl certify uses for --margin soft
    kind = data.draw(st.sampled_from(("ones", "signed", "relaxed")))
    if kind == "ones":
        m = np.ones(case.n)
    elif kind == "signed":
        m = np.random.default_rng(case.n + case.d).normal(size=case.n)
    else:
        try:
            m = np.minimum(1.0, case.delta @ solve(MarginProgram(case.delta, C=1.0)).theta)
        except SolverError:
            reject()
    rest = np.setdiff1d(np.arange(case.n), subset)
    assume(rest.size == 0 or find_conflict(case.delta[rest], m[rest]) is None)  # T3's hypothesis
    t_dual, y = _dual_tightening(case.delta, m, subset)   # (D), solved here
    t_primal = max_admissible_tightening(case.delta, m, subset)  # (L), the toolkit's LP
    indicator = np.isin(np.arange(case.n), subset).astype(float)
    scale = max(1.0, abs(t_primal) if np.isfinite(t_primal) else 1.0)
    if not np.isfinite(t_primal):
        assert t_primal == np.inf and t_dual == np.inf
        # unbounded: a direction u with Δ_{rest}u ≥ 0 and Δ_S u ≥ 1 exists
        res = _lp(np.zeros(case.d), -case.delta, -indicator, [(None, None)] * case.d)
        assert res.status == 0
        return
    assert abs(t_primal - t_dual) <= 1e-7 * scale  # strong duality
    if kind == "ones":
        assert t_primal < 0  # finite with positive margins only when P(m) is empty
    # t* ≥ 0 exactly when P(m) itself is non-empty (up to the LP's tolerance)
    if t_primal > 1e-7 * scale:
        assert find_conflict(case.delta, m) is None
    if t_primal < -1e-7 * scale:
        assert find_conflict(case.delta, m) is not None
    # attained: {Δθ ≥ m + t*·1_S} is non-empty (a point violating by at most solver accuracy)
    res = _lp(np.zeros(case.d), -case.delta, -(m + (t_primal - 1e-7 * scale) * indicator),
              [(None, None)] * case.d)
    assert res.status == 0
    norm_at_opt = float(np.linalg.norm(res.x))
    # beyond: y is a Farkas certificate, checked exactly, valid on a ball far larger than the solutions
    beyond = m + (t_primal + 1e-3 * scale) * indicator
    support = np.flatnonzero(y > 0)
    radius = exact_farkas_radius(case.delta[support], beyond[support], y[support])
    assert radius >= 1e3 * max(1.0, norm_at_opt)


def _lp_tightening_without_presolve(delta, margins, subset):
    n, d = delta.shape
    indicator = np.isin(np.arange(n), subset).astype(float)
    res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.hstack([-delta, indicator[:, None]]), b_ub=-margins,
                  bounds=[(None, None)] * (d + 1), method="highs", options={"presolve": False})
    return {0: lambda: float(res.x[-1]), 2: lambda: -np.inf, 3: lambda: np.inf}[res.status]()


def test_t3_unbounded_tightening_is_not_reported_infeasible():
    """Regression (found by the thorough run): HiGHS's presolve reports this unbounded (L) as infeasible;
    max_admissible_tightening used to return -inf where T3 gives +inf."""
    delta = np.array([[2.0, 1.0, 0.0, -1.0], [-1.0, -2.0, -2.0, -2.0], [-2.0, 2.0, 1.0, 2.0], [-2.0, -1.0, 0.0, 1.0]])
    margins = np.array([-1.7382664, -1.33664279, -1.36110671, -0.35161713])
    assert find_conflict(delta[[0, 2, 3]], margins[[0, 2, 3]]) is None           # (C1) holds
    assert _lp_tightening_without_presolve(delta, margins, [1]) == np.inf        # T3: t* = ∞
    assert _dual_tightening(delta, margins, [1]) == (np.inf, None)
    assert max_admissible_tightening(delta, margins, [1]) == np.inf


def test_t3_tiny_rows_are_not_a_conflict():
    """Regression (found by the thorough run): a separable 1-D problem with a row of norm 2.7e-10 is not
    infeasible; a Farkas LP on raw rows used to treat the row as zero and return a false certificate."""
    delta = np.array([[1.13865181e-07], [2.65102529e-10], [5.07893318e+00]])   # every row > 0: separable
    assert verified_conflict(delta, np.ones(3)) is None
    assert find_conflict(delta, np.ones(3)) is None


def test_t3_fa_backoff_uses_the_lp_optimum():
    """fa.py backs off to backoff·t* when δ is inadmissible; t* is T3's LP, and its dual certifies that the
    full step leaves the set empty. (Margins of mixed sign: with m > 0, t* = ∞ — see the proof.)"""
    delta = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.25, 1.0]])
    margins = np.array([1.0, -3.0, 1.0, 1.0])
    t_star, y = _dual_tightening(delta, margins, [1])
    assert t_star == pytest.approx(2.0) and max_admissible_tightening(delta, margins, [1]) == pytest.approx(2.0)
    result = run_fa(MarginProgram(delta, margins), "auto", FASettings(near_tie_threshold=0.0, oof_folds=0, margin_step=5.0, backoff=0.99, max_rounds=1))
    assert result.history[1].changed == [1] and result.history[1].step == pytest.approx(0.99 * t_star)
    beyond = margins + 5.0 * np.eye(4)[1]
    assert exact_farkas_radius(delta, beyond, y) == np.inf  # y = (1, 1, 0, 0): Δᵀy = 0 exactly


def test_t3_counterexample_unbounded_and_ball():
    """d ≥ n with full row rank: every tightening is admissible (t* = ∞, no certificate exists); with the
    norm ball the admissible step is finite, the optimum of an SOCP rather than the LP."""
    delta = np.eye(3)[:2]
    assert max_admissible_tightening(delta, np.ones(2), [0]) == np.inf
    assert _dual_tightening(delta, np.ones(2), [0]) == (np.inf, None)
    # within ‖θ‖ ≤ 2: θ₁ ≥ 1 + t and θ₂ ≥ 1 need (1 + t)² + 1 ≤ 4, so t ≤ √3 − 1
    beyond = FeasibleSet(delta, np.array([1.0 + math.sqrt(3) - 1 + 1e-3, 1.0]) / 2.0)
    assert beyond.emptiness_certificate() is not None
    with pytest.raises(InfeasibleError):
        beyond.chebyshev_ball()
    _, radius = _ball(delta, np.array([1.0 + math.sqrt(3) - 1 - 1e-3, 1.0]), 2.0)
    assert radius > 0
    # (C1) fails: pairs outside S contradict each other, so no step of S (not even a negative one) helps
    assert max_admissible_tightening(np.array([[1.0], [-1.0], [1.0]]), np.ones(3), [2]) == -np.inf


# =================================================================================================
# T4  uniform scaling of every margin only rescales the max-margin solution
# =================================================================================================
def _optimum_bracket(solution, c, degree):
    """[lower, upper] ∋ the optimum of a hard-margin program with uniform margins c > 0, from a certified
    solution: lower = D(α) (weak duality); θ violates by at most v, so θ/(1 − v/c) is feasible and
    upper = P(θ)/(1 − v/c)^degree (the objective is homogeneous). Also returns that feasible point."""
    v = solution.certificate.max_violation
    shrink = 1.0 - v / c
    feasible = solution.theta / shrink
    return solution.certificate.dual_objective, solution.objective / shrink**degree, feasible


@theory
@given(case=solver_cases, c=st.sampled_from((1e-2, 0.5, 1.5, 2.0, 10.0, 1e2)),
       norm=st.sampled_from(("l2", "l1", "linf")))
def test_t4_uniform_tightening_rescales(case, c, norm):
    """Certified brackets of the two optima must be consistent with opt(c·m) = c^k·opt(m), and (QP) the
    solutions, each within √(2·(upper − lower)) of its optimum (1-strong convexity), with θ(cm) = c·θ(m)."""
    base = _or_reject(solve, MarginProgram(case.delta, 1.0, norm))
    scaled = _or_reject(solve, MarginProgram(case.delta, c, norm))
    degree = 2 if norm == "l2" else 1
    lo1, up1, feasible1 = _optimum_bracket(base, 1.0, degree)
    loc, upc, feasiblec = _optimum_bracket(scaled, c, degree)
    slack = 1e-12 * max(upc, c**degree * up1)
    assert loc <= c**degree * up1 + slack and c**degree * lo1 <= upc + slack
    if norm == "l2":  # strictly convex: the unique solution scales
        err1 = math.sqrt(2 * max(0.0, up1 - lo1)) + np.linalg.norm(feasible1 - base.theta)
        errc = math.sqrt(2 * max(0.0, upc - loc)) + np.linalg.norm(feasiblec - scaled.theta)
        assert np.linalg.norm(scaled.theta - c * base.theta) <= errc + c * err1 + 1e-9 * np.linalg.norm(scaled.theta)
        # so every normalised margin, hence every failure, is unchanged (up to the same error)
        row = np.linalg.norm(case.delta, axis=1).max()
        bound = 2 * row * (err1 / np.linalg.norm(base.theta) + errc / np.linalg.norm(scaled.theta)) + 1e-9 * row
        assert np.abs(normalised_margins(case.delta, scaled.theta)
                      - normalised_margins(case.delta, base.theta)).max() <= bound
    else:  # LP: the optimal SET scales; c·θ(m) is feasible for c·m and within the brackets
        program = MarginProgram(case.delta, c, norm)
        rounding = 1e-13 * (1.0 + np.abs(case.delta).max() * np.abs(c * base.theta).sum())
        assert program.max_violation(c * base.theta) <= c * base.certificate.max_violation * (1 + 1e-9) + rounding
        assert loc - slack <= program.objective(c * feasible1) <= c * up1 + slack


def test_t4_fa_refuses_to_tighten_every_pair():
    delta = np.array([[1.0, 0.0], [0.0, 1.0]])
    result = run_fa(MarginProgram(delta), "auto", FASettings(near_tie_threshold=10.0, oof_folds=0, max_rounds=3))
    assert result.tightened.size == 0 and "rescales" in result.stop_reason


def test_t4_counterexamples():
    """Soft margin with fixed C: scaling m changes the direction. Additive uniform δ with non-uniform m:
    the direction changes too."""
    delta = np.array([[1.0, 0.0], [0.0, 2.0]])
    one = solve(MarginProgram(delta, 1.0, "l2", C=0.5), "cvxpy").theta
    two = solve(MarginProgram(delta, 2.0, "l2", C=0.5), "cvxpy").theta
    assert np.allclose(one, [0.5, 0.5], atol=1e-6) and np.allclose(two, [0.5, 1.0], atol=1e-6)
    a = solve(MarginProgram(np.eye(2), np.array([1.0, 2.0]))).theta
    b = solve(MarginProgram(np.eye(2), np.array([2.0, 3.0]))).theta
    assert np.allclose(a, [1, 2], atol=1e-7) and np.allclose(b, [2, 3], atol=1e-7)
    assert abs(a[0] / a[1] - b[0] / b[1]) > 0.1


# =================================================================================================
# T5  nested rounds: volume, Chebyshev radius and reward-interval widths do not increase
# =================================================================================================
@theory
@given(case=solver_cases, quantile=st.sampled_from((0.2, 0.5)), oof=st.sampled_from((0, 2)),
       seed=st.integers(0, 2**32 - 1))
def test_t5_nested_rounds_monotone(case, quantile, oof, seed):
    """The rounds as the loop recorded them (FAResult.round_margins): every round's margins are at least
    the previous round's, pair by pair; its set lies in the previous one (its Chebyshev ball, exactly, and
    points sampled from it); the Chebyshev radius and reward-interval widths do not increase."""
    assume(oof == 0 or case.n >= 2)
    result = _or_reject(run_fa, MarginProgram(case.delta), "auto",
                        FASettings(near_tie_quantile=quantile, oof_folds=oof, max_rounds=3, margin_step=0.5))
    rounds = result.round_margins()
    assert len(rounds) == len(result.history) and np.array_equal(rounds[0], np.ones(case.n))
    R = 2.0 * _or_reject(smallest_norm, case.delta, rounds[-1])
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(2, case.d))
    previous = None
    for k, m in enumerate(rounds):
        fset = FeasibleSet(case.delta, m / R, duplicates="merge")  # F(m; R) / R
        ball = _or_reject(fset.chebyshev_ball)
        widths = _or_reject(reward_intervals, fset, directions).width
        if previous is not None:
            p_m, p_set, p_radius, p_widths = previous
            assert np.all(m >= p_m)                                        # margins only rise
            assert ball.radius <= p_radius + 1e-7                          # Chebyshev radius
            assert np.all(widths <= p_widths + 1e-6 * np.linalg.norm(directions, axis=1))  # intervals
            if ball.radius > 1e-6:
                # nesting: this round's ball, certified in its own set, lies in the previous set (exact)
                centre, r = R * ball.centre, 0.99 * R * ball.radius
                assert exact_ball_in_cut(case.delta, m, m, R, centre, r, [])
                assert exact_ball_in_cut(case.delta, p_m, p_m, R, centre, r, [])
                # and so do points sampled from it
                assert p_set.contains(sample_points(fset, 200, seed=k), tol=1e-9).all()
        previous = (m, fset, ball.radius, widths)


def test_t5_geometry_nested_volume_steps():
    """With the geometry module, on recorded rounds: the nested estimate of every step and of the whole
    product agrees with an independent Monte Carlo count (uniform points of the ball, d = 3), and points
    sampled from each round's set lie in the previous round's."""
    rng = np.random.default_rng(0)
    delta = rng.normal(size=(12, 3))
    delta *= np.sign(delta @ np.array([1.0, 0.2, 0.1]))[:, None]
    result = run_fa(MarginProgram(delta), "auto", FASettings(near_tie_quantile=0.3, oof_folds=0, max_rounds=3))
    rounds = result.round_margins()
    assert len(rounds) >= 2 and np.any(rounds[-1] > rounds[0])
    R = 2.0 * smallest_norm(delta, rounds[-1])
    sets = [FeasibleSet(delta, m / R, duplicates="merge") for m in rounds]
    est = nested_volume_ratio(sets, samples=8000, seed=0)
    points = _uniform_ball(np.random.default_rng(1), 400_000, 3, 1.0)
    counts = np.array([s.contains(points).sum() for s in sets])
    assert counts[-1] > 100  # enough hits for the count to be an oracle

    def agrees(estimate, top, bottom):
        ratio = top / bottom
        return abs(estimate.estimate - ratio) <= 4 * math.hypot(estimate.stderr, math.sqrt(ratio * (1 - ratio) / bottom))

    assert agrees(est, counts[-1], counts[0])
    assert len(est.steps) == len(sets) - 1
    for step, top, bottom in zip(est.steps, counts[1:], counts[:-1]):
        assert agrees(step, top, bottom)
    assert est.ci_high < 1.0  # the FA rounds removed a visible part of F_std
    for k, (bigger, smaller) in enumerate(zip(sets, sets[1:])):
        assert bigger.contains(sample_points(smaller, 500, seed=k), tol=1e-9).all()


def test_t5_counterexample_radius_not_strict():
    """Volume drops strictly while the Chebyshev radius stays: the cut corner misses the Chebyshev ball."""
    delta = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    m_std, m_fa = np.zeros(3), np.array([0.0, 0.0, 0.5])
    _, r_std = _ball(delta, m_std, 10.0)
    _, r_fa = _ball(delta, m_fa, 10.0)
    assert r_std == pytest.approx(10.0 / (1.0 + math.sqrt(2.0)), rel=1e-7)
    assert r_fa == pytest.approx(r_std, rel=1e-7)
    out = certify_sets(delta, m_std, m_fa, radius_bound=10.0)
    assert out["strict_inclusion"] and out["certified"] == "exact"  # a ball of positive volume is removed


# =================================================================================================
# T6  MaxEnt: up-weighting / sharpening raises the Hessian; the Laplace ellipsoid shrinks
# =================================================================================================
def _edited(case, edit):
    base = MaxEntProgram(case.delta, edit["reg"], edit["weights"], edit["temperatures"], edit["offsets"])
    w = edit["weights"].copy()
    t = edit["temperatures"].copy()
    w[edit["subset"]] *= edit["upweight"]
    t[edit["subset"]] *= edit["sharpen"]
    return base, base.with_weights(w, t)


@theory
@given(case=preference_cases(max_n=10, max_d=6, scales=(-2, 2)), data=st.data())
def test_t6_hessian_loewner_and_laplace_ellipsoid(case, data):
    edit = data.draw(maxent_edits(case.n, case.d))
    base, edited = _edited(case, edit)
    theta = edit["theta"]
    a = case.delta @ theta + edit["offsets"]
    in_slab = np.abs(a[edit["subset"]]) <= Z0 * edited.temperatures[edit["subset"]]
    H, H2 = base.hessian(theta), edited.hessian(theta)
    D = H2 - H
    # D = Σ_j c_j Δ_jΔ_jᵀ over the edited pairs, with c_j the change of w κ(s)/T²
    def curvature(p):
        scores = p.scores(theta)
        return p.weights * expit(scores) * expit(-scores) / p.temperatures**2  # no 1 − σ cancellation
    c = (curvature(edited) - curvature(base))
    assert np.allclose(D, (case.delta.T * c) @ case.delta, atol=1e-9 * np.abs(H2).max())
    if edit["sharpen"] < 1.0 and not in_slab.all():
        return  # outside the slab sharpening may lower curvature: see the counterexample test
    assert np.all(c[edit["subset"]] >= -1e-15 * np.abs(curvature(edited)).max())
    scale = np.abs(H2).max()
    assert np.linalg.eigvalsh(D).min() >= -1e-9 * scale  # H' ⪰ H
    condition = np.linalg.cond(H2)
    if condition > 1e8:
        return  # the inverse-based checks below would only measure rounding
    tol = 1e-13 * condition
    # Laplace ellipsoid at θ: {u : uᵀHu ≤ χ²}; volume ∝ det(H)^(-1/2) does not grow
    assert np.linalg.slogdet(H2)[1] >= np.linalg.slogdet(H)[1] - tol
    if np.trace(D) > 1e-6 * np.trace(H):
        assert np.linalg.slogdet(H2)[1] > np.linalg.slogdet(H)[1]
    # support in a direction u: uᵀH'⁻¹u ≤ uᵀH⁻¹u; equal when u = Hv with v ⟂ every edited Δ_j
    rng = np.random.default_rng(int(edit["subset"].sum()) + case.n)
    u = rng.normal(size=case.d)
    assert u @ np.linalg.solve(H2, u) <= u @ np.linalg.solve(H, u) * (1 + tol)
    basis = np.linalg.svd(case.delta[edit["subset"]])[2]
    rank = np.linalg.matrix_rank(case.delta[edit["subset"]])
    if rank < case.d:
        v = basis[rank:].T @ rng.normal(size=case.d - rank)
        u = H @ v
        assert u @ np.linalg.solve(H2, u) == pytest.approx(u @ np.linalg.solve(H, u), rel=tol + 1e-10)


@theory
@given(case=preference_cases(max_n=10, max_d=5, **SOLVER_KW), upweight=st.sampled_from((1.5, 2.0, 4.0)))
def test_t6_fa_maxent_rounds_raise_hessian(case, upweight):
    """Through the FA loop: every round's Hessian at a fixed θ dominates the standard one."""
    program = MaxEntProgram(case.delta, 1.0)
    try:
        result = run_fa(program, "auto", FASettings(near_tie_quantile=0.3, oof_folds=0, upweight=upweight, max_rounds=3))
    except SolverError:
        assume(False)  # the backend declined to certify: nothing to check
    theta = result.base_solution.theta
    H = program.hessian(theta)
    H_fa = program.with_weights(result.weights, result.temperatures).hessian(theta)
    assert np.linalg.eigvalsh(H_fa - H).min() >= -1e-10 * np.abs(H_fa).max()


def test_t6_counterexample_sharpening_outside_slab():
    """Sharpening T = 1 → 0.5 on a pair with Δθ = 10 (|a| > z₀T') LOWERS its curvature."""
    program = MaxEntProgram(np.array([[1.0]]), reg=1e-3)
    theta = np.array([10.0])
    sharp = program.with_weights(temperatures=np.array([0.5]))
    assert sharp.hessian(theta)[0, 0] < program.hessian(theta)[0, 0]
    inside = np.array([0.9 * Z0 * 0.5])  # |a| ≤ z₀T': raised
    assert sharp.hessian(inside)[0, 0] > program.hessian(inside)[0, 0]
    z = Z0
    assert z * math.tanh(z / 2) == pytest.approx(2.0, abs=1e-12)


def test_t6_counterexample_hessian_at_moved_map():
    """'At every θ' cannot be replaced by 'at each program's own MAP': up-weighting pair 1 moves the MAP so
    that pair 2's curvature drops, and H'(θ̂') ⋡ H(θ̂)."""
    delta = np.array([[1.0, 0.0], [1.0, 1.0]])
    program = MaxEntProgram(delta, reg=0.01)
    heavy = program.with_weights(np.array([50.0, 1.0]))
    theta, theta2 = solve(program, "newton").theta, solve(heavy, "newton").theta
    diff = heavy.hessian(theta2) - program.hessian(theta)
    assert np.linalg.eigvalsh(diff).min() < -1e-4
    assert np.linalg.eigvalsh(heavy.hessian(theta) - program.hessian(theta)).min() >= -1e-12


# =================================================================================================
# T7  the FA loop terminates; a feasible working-set solution is optimal
# =================================================================================================
@theory
@given(case=preference_cases(max_n=9, max_d=5, **SOLVER_KW),
       kind=st.sampled_from(("mm-qp", "mm-lp", "maxent")), quantile=st.sampled_from((0.2, 0.5, 0.9)),
       oof=st.sampled_from((0, 2)), curriculum=st.booleans())
def test_t7_fa_loop_terminates_each_pair_once(case, kind, quantile, oof, curriculum):
    if kind == "maxent":
        program = MaxEntProgram(case.delta, 1.0)
    else:
        program = MarginProgram(case.delta, 1.0, "l2" if kind == "mm-qp" else "l1", None if case.separable else 1.0)
    assume(oof == 0 or case.n >= oof)
    try:
        result = run_fa(program, "auto", FASettings(near_tie_quantile=quantile, oof_folds=oof, max_rounds=10 * case.n + 5, curriculum=curriculum))
    except SolverError:
        assume(False)
    rounds = len(result.history) - 1
    assert rounds <= max(0, case.n - 1)
    assert not result.stop_reason.startswith("round limit")
    seen = set()
    for record in result.history[1:]:
        changed = set(record.changed)
        assert changed and not changed & seen  # each pair edited at most once
        seen |= changed
    assert seen == set(result.tightened.tolist())
    assert len(seen) <= case.n - 1 or case.n == 1
    if kind == "maxent":
        expected = np.ones(case.n)
        expected[result.tightened] = 2.0
        assert np.array_equal(result.weights, expected)


@theory
@given(case=preference_cases(max_n=12, max_d=6, **SOLVER_KW), data=st.data())
def test_t7_feasible_working_set_solution_is_optimal(case, data):
    """KKT: solve on W only; if θ_W meets every constraint, (θ_W, α_W ⊕ 0) certifies optimality for all n."""
    hard = case.separable
    program = MarginProgram(case.delta, 1.0, "l2", None if hard else 1.0)
    size = data.draw(st.integers(1, case.n))
    W = np.sort(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).choice(case.n, size, replace=False))
    sub = solve_box_qp(case.delta[W], np.ones(W.size), np.inf if hard else 1.0)
    assume(sub.status == "solved")
    alpha = np.zeros(case.n)
    alpha[W] = sub.alpha
    try:
        full = solve(program)
    except SolverError:
        assume(False)
    restricted_value = program.restrict(W).objective(sub.theta)
    assert restricted_value <= full.objective + max(0.0, full.certificate.gap) + 1e-9 * max(1.0, full.objective)
    slack = case.delta @ sub.theta - 1.0
    if np.all(slack[np.setdiff1d(np.arange(case.n), W)] >= 0):
        cert = certify(program, sub.theta, alpha, backend="test", solver_status="working-set", solve_seconds=0.0)
        assert cert.optimal, cert
        # weak duality across the two answers, and agreement to the certificates' acceptance tolerance
        assert full.certificate.dual_objective <= cert.primal_objective + 1e-6 * max(1.0, cert.primal_objective)
        assert abs(cert.primal_objective - full.objective) <= 2e-6 * max(1.0, full.objective)


def test_t7_working_set_backend_from_a_tiny_set_matches_reference():
    rng = np.random.default_rng(4)
    delta = rng.normal(size=(60, 4)) + np.array([1.0, 0, 0, 0])
    program = MarginProgram(delta, 1.0, "l2", 1.0)
    backend = WorkingSetQP(WorkingSetSettings(full_set_below=1, screening_epochs=1, batch=3))
    ours = backend.solve(program)
    assert ours.certificate.optimal and ours.diagnostics["rounds"] >= 1
    assert ours.objective == pytest.approx(CvxpyBackend().solve(program).objective, rel=1e-6)


def test_t7_counterexample_repeated_tightening_need_not_stop():
    """Without 'each pair at most once', a near-tie quantile rule always finds a near-tie, so re-tightening
    the same pairs never runs out: the rounds are bounded only by max_rounds."""
    delta = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    margins = np.ones(3)
    rule = FASettings(near_tie_quantile=0.5)
    for _ in range(20):
        theta = solve(MarginProgram(delta, margins)).theta
        nm = normalised_margins(delta, theta)
        failures = np.flatnonzero(nm <= rule.resolve_threshold(nm))
        assert failures.size > 0  # there is always a new "failure"
        margins = margins.copy()
        margins[failures[0]] += 0.5


# =================================================================================================
# T8  dual path = one convex program
# =================================================================================================
@theory
@given(case=solver_cases, soft=st.booleans(), quantile=st.sampled_from((0.2, 0.5)))
def test_t8_dual_path_is_projection(case, soft, quantile):
    """θ_b + θ_c = argmin ½‖θ − θ_b‖² (+ C Σ_S hinge) s.t. Δ_Sθ ≥ m_S: checked by its own KKT conditions."""
    program = MarginProgram(case.delta, 1.0, "l2", 1.0 if soft else None)
    try:
        result = run_fa(program, "auto", FASettings(near_tie_quantile=quantile, oof_folds=0, max_rounds=3, dual_path=True))
    except (SolverError, InfeasibleError):
        assume(False)
    S = result.tightened
    assume(S.size > 0)
    theta_b = result.base_solution.theta
    m_S = result.required_margins[S]
    alpha = result.solution.duals
    theta = result.theta
    # stationarity of the single program: θ − θ_b = Δ_Sᵀα, α ∈ [0, C]
    scale = max(1.0, np.abs(theta).max())
    assert np.allclose(theta - theta_b, case.delta[S].T @ alpha, atol=1e-6 * scale)
    assert np.all(alpha >= -1e-9) and (not soft or np.all(alpha <= 1.0 + 1e-9))
    # (θ, α) certify the SINGLE program (Q) directly: its primal P(θ) = ½‖θ − θ_b‖² (+ C Σ hinge) against
    # its dual D(α) = (m_S − Δ_Sθ_b)ᵀα − ½‖Δ_Sᵀα‖², α ∈ [0, C] (weak duality: D(α) ≤ opt ≤ P(θ))
    a = np.clip(alpha, 0.0, 1.0 if soft else np.inf)
    hinge = np.maximum(0.0, m_S - case.delta[S] @ theta)
    primal = 0.5 * np.sum((theta - theta_b) ** 2) + (hinge.sum() if soft else 0.0)
    dual = (m_S - case.delta[S] @ theta_b) @ a - 0.5 * np.sum((case.delta[S].T @ a) ** 2)
    assert primal - dual <= 1e-6 * max(1.0, primal)
    # feasible to the correction certificate's own tolerance (relative to ITS margins m_S − Δ_Sθ_b)
    correction_scale = max(1.0, np.abs(m_S - case.delta[S] @ theta_b).max())
    assert soft or hinge.max() <= result.solution.certificate.feas_tol * correction_scale * (1 + 1e-9)
    # and an independent solve of (Q) (rows scaled to unit norm), compared within both answers' certified
    # distance to the optimum: √(2·gap) each, the objective being 1-strongly convex
    t = cp.Variable(case.d)
    norms = np.linalg.norm(case.delta[S], axis=1)
    unit, m_unit = case.delta[S] / norms[:, None], m_S / norms
    xi = cp.Variable(S.size, nonneg=True)
    objective = 0.5 * cp.sum_squares(t - theta_b) + (cp.sum(xi) if soft else 0)
    constraint = unit @ t + (cp.multiply(1.0 / norms, xi) if soft else 0) >= m_unit
    problem = cp.Problem(cp.Minimize(objective), [constraint])
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    if t.value is None:
        problem.solve(solver=cp.CLARABEL)
    if t.value is None:
        return  # the reference solver gave up on this scaling; the certificate above already decided
    a_ref = np.clip(np.asarray(constraint.dual_value) / norms, 0.0, 1.0 if soft else np.inf)
    ref_hinge = np.maximum(0.0, m_S - case.delta[S] @ t.value)
    ref_primal = 0.5 * np.sum((t.value - theta_b) ** 2) + (ref_hinge.sum() if soft else 0.0)
    ref_dual = (m_S - case.delta[S] @ theta_b) @ a_ref - 0.5 * np.sum((case.delta[S].T @ a_ref) ** 2)
    tolerance = (math.sqrt(2 * max(0.0, primal - dual)) + math.sqrt(2 * max(0.0, ref_primal - ref_dual))
                 + 1e-6 * scale)
    assert np.linalg.norm(theta - t.value) <= tolerance


@theory
@given(case=preference_cases(max_n=10, max_d=5, **SOLVER_KW), reg_c=st.sampled_from((0.5, 1.0, 4.0)))
def test_t8_dual_path_maxent_is_one_program(case, reg_c):
    program = MaxEntProgram(case.delta, 1.0)
    try:
        result = run_fa(program, "auto", FASettings(near_tie_quantile=0.3, oof_folds=0, max_rounds=2, dual_path=True, correction_penalty=reg_c))
    except SolverError:
        assume(False)
    S = result.tightened
    assume(S.size > 0)
    theta_b, theta = result.base_solution.theta, result.theta
    weights, temps = result.weights[S], result.temperatures[S]

    def single(t):  # the single program G(θ) = Σ_S w ℓ(Δθ/T) + (λ_c/2)‖θ − θ_b‖² and its gradient
        s_ = case.delta[S] @ t / temps
        value = weights @ np.logaddexp(0.0, -s_) + 0.5 * reg_c * np.sum((t - theta_b) ** 2)
        gradient = reg_c * (t - theta_b) - case.delta[S].T @ (weights * expit(-s_) / temps)
        return value, gradient

    value, gradient = single(theta)
    # G(θ_b + θ_c) is the correction's objective F(θ_c): the same number, so G(θ) − G* = F(θ_c) − F* ≤ gap
    correction = result.solution
    assert value == pytest.approx(correction.objective, rel=1e-9, abs=1e-12)
    # and a certified gap bounds the gradient: ‖∇G‖² ≤ 2L(G(θ) − G*), L = λ_c + Σ w‖Δ‖²/(4T²)
    lipschitz = reg_c + np.sum(weights * np.sum(case.delta[S] ** 2, axis=1) / (4 * temps**2))
    gap = max(correction.certificate.gap, 1e-12 * max(1.0, abs(correction.objective)))  # gap's own rounding
    assert np.linalg.norm(gradient) <= math.sqrt(2 * lipschitz * gap) * (1 + 1e-6) + 1e-9 * max(1.0, np.abs(gradient).max())


def test_t8_counterexample_joint_training_differs():
    """The single program needs θ_b FIXED at the standard solution: training θ_b and θ_c jointly,
    min ½‖θ_b‖² + ½‖θ_c‖² s.t. Δθ_b ≥ 1, Δ_S(θ_b + θ_c) ≥ m_S, gives another reward."""
    delta = np.array([[1.0, 0.0], [1.0, 1.0]])
    S, m_S = [1], np.array([3.0])
    theta_b = solve(MarginProgram(delta), "cvxpy").theta
    assert np.allclose(theta_b, [1.0, 0.0], atol=1e-4)  # interior point: θ to ~√(objective accuracy)
    t = cp.Variable(2)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(t - theta_b)), [delta[S] @ t >= m_S]).solve(solver=cp.CLARABEL)
    assert np.allclose(t.value, [2.0, 1.0], atol=1e-4)          # dual path (T8)
    b, c = cp.Variable(2), cp.Variable(2)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(b) + 0.5 * cp.sum_squares(c)),
               [delta @ b >= 1, delta[S] @ (b + c) >= m_S]).solve(solver=cp.CLARABEL)
    assert np.allclose(b.value + c.value, [5 / 3, 4 / 3], atol=1e-4)  # joint training: different


# =================================================================================================
# T9  STARC and EPIC invariances
# =================================================================================================
@theory
@given(data=reward_pairs())
def test_t9_starc_epic_invariances(data):
    a, b, p, c = data["a"], data["b"], data["prompts"], data["scale"]
    shifted = c * a + data["shift"][p]
    base = starc_distance(a, b, p)
    assert starc_distance(shifted, b, p) == pytest.approx(base, abs=1e-7)
    assert starc_distance(b, a, p) == pytest.approx(base, abs=1e-12)
    assert starc_distance(a, shifted, p) == pytest.approx(0.0, abs=1e-7)
    try:
        e = epic_distance(a, b, p)
    except ValueError:
        with pytest.raises(ValueError):
            epic_distance(shifted, b, p)
        return
    assert epic_distance(shifted, b, p) == pytest.approx(e, abs=1e-7)
    assert epic_distance(a, -a, p) == pytest.approx(1.0, abs=1e-9)
    assert starc_distance(a, -a, p) == pytest.approx(2.0, abs=1e-9)


@theory
@given(case=preference_cases(max_n=8, max_d=4, scales=(-3, 3)), c=st.floats(1e-3, 1e3),
       seed=st.integers(0, 2**32 - 1))
def test_t9_linear_reward_invariance(case, c, seed):
    """For r_θ = Φθ, STARC(Φθ, Φ(cθ + v)) = 0 when Φv is constant within each prompt (prompt-indicator columns)."""
    rng = np.random.default_rng(seed)
    k = 3
    prompts = rng.integers(0, k, size=case.n)
    phi = np.hstack([case.delta, np.eye(k)[prompts]])
    theta = np.r_[rng.normal(size=case.d), np.zeros(k)]
    r = phi @ theta
    scale = np.abs(r).max()
    # the within-prompt signal must stay above metrics.py's zero threshold (see proofs/T9 "Floating point")
    assume(scale > 0 and np.abs(canonicalise_rewards(r, prompts)).max() > 1e-6 * scale)
    v = np.r_[np.zeros(case.d), rng.normal(size=k) * 10.0 * scale]
    assert starc_distance(r, phi @ (c * theta + v), prompts) == pytest.approx(0.0, abs=1e-6)


def test_t9_counterexamples():
    a = np.array([0.0, 1.0, 2.0, 5.0])
    p = np.array([0, 0, 1, 1])
    assert starc_distance(a, -a, p) == pytest.approx(2.0)       # negative scale is not an invariance
    assert epic_distance(a, -a, p) == pytest.approx(1.0)
    within = a + np.array([0.0, 3.0, 0.0, 0.0])                  # a shift that varies inside prompt 0
    assert starc_distance(a, within, p) > 0.1


# =================================================================================================
# the strategies produce every hard case
# =================================================================================================
@pytest.mark.parametrize("tag", ["wide", "tall", "duplicate", "collinear", "lowrank", "tiny", "huge", "spread",
                                 "nearly-separable", "contradictory", "integer"])
def test_strategies_cover_hard_cases(tag):
    case = find(preference_cases(), lambda c: tag in c.tags, settings=settings(max_examples=2000, database=None))
    assert tag in case.tags
    assert np.all(np.isfinite(case.delta)) and np.all(case.delta.any(axis=1))
    if tag == "contradictory":
        assert find_conflict(case.delta, np.ones(case.n)) is not None
