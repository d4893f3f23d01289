"""Feasible-set geometry: validation, certificates, exact volume oracles within the reported error
bars, calibration of those error bars, kernels, reward intervals and the FA sets."""

import numpy as np
import pytest
from scipy.special import betainc

from fairl_opt.exceptions import DataError, InfeasibleError
from fairl_opt.geometry import (
    FeasibleSet,
    effective_sample_size,
    geometry_summary,
    margin_scale,
    nested_volume_ratio,
    reward_intervals,
    sample_points,
    smallest_norm,
    volume_fraction,
    volume_ratio,
)
from fairl_opt.geometry import kernels


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    kernels.warm_up()


# -- exact oracles -----------------------------------------------------------------------------------

def cap_fraction(d, c):
    """vol{θ ∈ B_d : θ₁ ≥ c} / vol(B_d) for -1 ≤ c ≤ 1 (regularised incomplete beta)."""
    half = 0.5 * betainc((d + 1) / 2, 0.5, 1 - c * c)
    return half if c >= 0 else 1 - half


def arc_fraction(A):
    """Exact fraction of the unit disk in the cone {Aθ ≥ 0}, d = 2: the measure of the feasible angles
    over 2π, found by testing each arc between consecutive boundary angles at its midpoint."""
    alphas = np.arctan2(A[:, 1], A[:, 0])
    cuts = np.sort(np.mod(np.r_[alphas + np.pi / 2, alphas - np.pi / 2], 2 * np.pi))
    cuts = np.r_[cuts, cuts[0] + 2 * np.pi]
    total = 0.0
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        mid = 0.5 * (lo + hi)
        if np.all(A @ np.array([np.cos(mid), np.sin(mid)]) >= 0):
            total += hi - lo
    return total / (2 * np.pi)


def random_rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def within(est, truth, z=4.0):
    """The truth lies within z standard errors (a loose check; calibration is tested separately)."""
    return abs(est.estimate - truth) <= z * est.stderr + 1e-12


def test_cap_oracle_matches_circular_segment():
    # the oracle itself: in d = 2 the cap is a circular segment, (arccos c − c√(1−c²))/π
    for c in (0.0, 0.3, 0.8, -0.4):
        segment = (np.arccos(c) - c * np.sqrt(1 - c * c)) / np.pi
        assert cap_fraction(2, c) == pytest.approx(segment, rel=1e-12)


# -- validation and certificates ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "A, b, match",
    [
        ([[1.0, np.nan]], [0.0], "row 0 of A has NaN"),
        ([[1.0, 0.0], [0.0, np.inf]], [0.0, 0.0], "row 1 of A has NaN/inf"),
        ([[1.0, 0.0]], [np.nan], r"b\[0\]"),
        ([[1.0, 0.0], [0.0, 0.0]], [0.0, 0.5], "row 1 of A is zero.*excludes every"),
        ([[0.0, 0.0]], [-1.0], "row 0 of A is zero.*drop the row"),
        ([[1.0, 0.0]], ["x"], "b must be numeric"),
        ([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [0.0, 0.0, 0.1], "rows 0 and 2 of A are identical"),
        ([[1.0, 0.0]], [0.0, 1.0], "one entry per row"),
        ([1.0, 0.0], [0.0], "2-D"),
    ],
)
def test_bad_input_names_the_row(A, b, match):
    with pytest.raises(DataError, match=match):
        FeasibleSet(np.array(A), np.array(b))


def test_duplicates_merge_keeps_the_binding_row():
    fset = FeasibleSet(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), [0.1, 0.0, 0.3], duplicates="merge")
    assert fset.A.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert fset.b.tolist() == [0.3, 0.0]


def test_dimension_mismatches_are_errors():
    fset = FeasibleSet.cone(np.eye(3))
    with pytest.raises(DataError, match="3 columns"):
        fset.contains(np.zeros(2))
    with pytest.raises(DataError, match="3 columns"):
        reward_intervals(fset, np.ones((4, 2)))
    with pytest.raises(DataError, match="different dimensions"):
        volume_ratio(fset, FeasibleSet.cone(np.eye(2)))


def test_b_excluding_the_ball_is_empty_with_a_one_row_certificate():
    fset = FeasibleSet(np.array([[0.0, 2.0], [1.0, 0.0]]), [0.0, 1.5])
    with pytest.raises(InfeasibleError, match="row 1 asks") as info:
        volume_fraction(fset)
    assert info.value.rows == [1]


@pytest.mark.parametrize("seed", range(3))
def test_conflicting_rows_give_a_checkable_certificate(seed):
    # x·u ≥ 0.4 and x·(−u) ≥ 0.4 cannot both hold; random extra rows keep the problem non-trivial
    rng = np.random.default_rng(seed)
    u = rng.normal(size=5)
    A = np.vstack([u, -u, rng.normal(size=(4, 5))])
    b = np.r_[0.4 * np.linalg.norm(u), 0.4 * np.linalg.norm(u), -np.ones(4)]
    fset = FeasibleSet(A, b)
    cert = fset.emptiness_certificate()
    assert cert is not None and {0, 1} <= set(cert.rows)
    y = np.zeros(len(b))
    y[cert.rows] = cert.farkas
    assert np.all(y >= 0) and b @ y > np.linalg.norm(A.T @ y) + 1e-9  # the certificate really proves it
    with pytest.raises(InfeasibleError):
        fset.chebyshev_ball()
    assert FeasibleSet(A[2:], b[2:]).emptiness_certificate() is None


def test_flat_sets_are_not_reported_as_volume_zero_samples():
    with pytest.raises(DataError, match="no interior"):
        volume_fraction(FeasibleSet(np.array([[1.0, 0.0, 0.0]]), [1.0]))  # a single point
    with pytest.raises(DataError, match="no interior"):
        volume_fraction(FeasibleSet.cone(np.array([[1.0, 2.0], [-1.0, -2.0]])))  # a line segment


# -- Chebyshev balls and membership -----------------------------------------------------------------------

def test_chebyshev_oracles():
    d = 6
    half = FeasibleSet.cone(np.eye(d)[:1]).chebyshev_ball()
    assert half.radius == pytest.approx(0.5, abs=1e-7)
    assert half.centre == pytest.approx(np.r_[0.5, np.zeros(d - 1)], abs=1e-6)
    for m in (2, 4):
        radius = FeasibleSet.cone(np.eye(d)[:m]).chebyshev_radius()
        assert radius == pytest.approx(1 / (1 + np.sqrt(m)), abs=1e-7)
    assert FeasibleSet(np.eye(d)[:1] * 3.0, [0.9]).chebyshev_radius() == pytest.approx((1 - 0.3) / 2, abs=1e-7)
    assert FeasibleSet(np.empty((0, d)), np.empty(0)).chebyshev_radius() == 1.0


def test_many_rows_use_constraint_generation_and_match_cvxpy():
    import cvxpy as cp

    from fairl_opt.geometry import conic

    rng = np.random.default_rng(3)
    m, d = 900, 8  # above conic.DIRECT_ROWS: solved on growing working sets of rows
    assert m > conic.DIRECT_ROWS
    A = rng.normal(size=(m, d))
    A[:, 0] = np.abs(A[:, 0]) + 0.5
    b = rng.uniform(0.0, 0.3, size=m)
    fset = FeasibleSet(A, b)
    U, c = fset.unit_rows
    theta, r = cp.Variable(d), cp.Variable()
    cp.Problem(cp.Maximize(r), [U @ theta - r >= c, cp.norm(theta) + r <= 1, r >= 0]).solve(cp.CLARABEL)
    assert fset.chebyshev_radius() == pytest.approx(r.value, abs=1e-7)
    phi = rng.normal(size=(3, d))
    iv = reward_intervals(fset, phi)
    for k in range(3):
        p = cp.Problem(cp.Maximize(phi[k] @ theta), [U @ theta >= c, cp.norm(theta) <= 1])
        p.solve(cp.CLARABEL)
        assert iv.upper[k] == pytest.approx(p.value, abs=1e-6)
    norm = cp.Problem(cp.Minimize(cp.norm(theta)), [A @ theta >= b])
    norm.solve(cp.CLARABEL)
    assert smallest_norm(A, b) == pytest.approx(norm.value, rel=1e-6)
    # an empty set among many rows: the certificate comes from a working set but holds for all rows
    A2, b2 = np.vstack([A, -A[:1]]), np.r_[b, 0.6 * np.linalg.norm(A[0])]
    cert = FeasibleSet(A2, b2).emptiness_certificate()
    y = np.zeros(m + 1)
    y[cert.rows] = cert.farkas
    assert b2 @ y > np.linalg.norm(A2.T @ y) + 1e-9


def test_contains_matches_definition():
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(5, 4)), rng.normal(size=5) * 0.1 - 0.3
    fset = FeasibleSet(A, b)
    points = rng.uniform(-1, 1, size=(500, 4))
    expected = (np.linalg.norm(points, axis=1) <= 1) & np.all(points @ A.T >= b, axis=1)
    assert np.array_equal(fset.contains(points), expected)
    assert fset.contains(fset.chebyshev_ball().centre)


# -- volume oracles -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_two_dimensional_arcs(seed):
    rng = np.random.default_rng(seed)
    # rows within ±100° of one direction, so the cone is a non-empty arc
    angles = rng.uniform(-1.7, 1.7, size=3)
    A = np.c_[np.cos(angles), np.sin(angles)] * rng.uniform(0.5, 2, size=(3, 1))
    truth = arc_fraction(A)
    fset = FeasibleSet.cone(A)
    assert within(volume_fraction(fset, method="gaussian", samples=200_000, seed=seed), truth)
    assert within(volume_fraction(fset, method="coordinate", samples=4000, seed=seed), truth)


def test_half_space_through_origin_is_one_half():
    a = np.random.default_rng(1).normal(size=(1, 7))
    for method in ("coordinate", "direction"):
        est = volume_fraction(FeasibleSet.cone(a), method=method, samples=4000, seed=3)
        assert est.ci_low <= 0.5 <= est.ci_high
        assert est.stderr < 0.03 and est.effective_samples > 200


@pytest.mark.parametrize("method", ["gaussian", "coordinate", "direction"])
def test_orthogonal_half_spaces(method):
    m, d = 6, 9
    A = np.eye(d)[:m] @ random_rotation(d, 0)  # m orthogonal half-spaces through the origin, rotated
    est = volume_fraction(FeasibleSet.cone(A), method=method, samples=200_000 if method == "gaussian" else 6000,
                          seed=1)
    assert within(est, 2.0**-m)
    assert est.ci_high - est.ci_low < 0.4 * 2.0**-m  # informative, not just wide
    if method != "gaussian":
        assert len(est.phases) >= 2  # 1/64 needs a telescoping product


def test_small_cap_needs_several_phases_and_is_right():
    d, c = 12, 0.6
    truth = cap_fraction(d, c)  # ≈ 1.6e-3
    est = volume_fraction(FeasibleSet(np.eye(d)[:1], [c]), samples=6000, seed=2)
    assert len(est.phases) >= 3
    assert within(est, truth)
    assert est.effective_samples == min(p.effective_samples for p in est.phases)


def test_scaling_rows_changes_nothing():
    rng = np.random.default_rng(4)
    A, b = rng.normal(size=(4, 5)), np.full(4, -0.2)
    scales = rng.uniform(0.1, 10.0, size=4)
    est = volume_fraction(FeasibleSet(A, b), samples=2000, seed=5)
    scaled = volume_fraction(FeasibleSet(A * scales[:, None], b * scales), samples=2000, seed=5)
    assert scaled.estimate == pytest.approx(est.estimate, rel=1e-9)


def test_rotation_invariance_within_error_bars():
    rng = np.random.default_rng(5)
    A, b = rng.normal(size=(5, 6)), np.full(5, 0.05)
    Q = random_rotation(6, 1)
    one = volume_fraction(FeasibleSet(A, b), samples=6000, seed=1)
    two = volume_fraction(FeasibleSet(A @ Q, b), samples=6000, seed=2)
    assert abs(one.estimate - two.estimate) <= 4 * np.hypot(one.stderr, two.stderr)


def test_adding_rows_never_grows_the_set():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(6, 4))
    A[:, 0] = np.abs(A[:, 0]) + 1.0  # a common direction keeps every set non-empty
    b = np.full(6, 0.1)
    radii, widths, fractions = [], [], []
    features = rng.normal(size=(5, 4))
    for m in range(1, 7):
        fset = FeasibleSet(A[:m], b[:m])
        radii.append(fset.chebyshev_radius())
        widths.append(reward_intervals(fset, features).width)
        if m > 1:
            ratio = volume_ratio(fset, FeasibleSet(A[:m - 1], b[:m - 1]), samples=2000, seed=m)
            assert ratio.method == "coordinate" and ratio.estimate <= 1.0 and ratio.ci_high <= 1.0
            fractions.append(ratio.estimate)
    assert all(r1 >= r2 - 1e-8 for r1, r2 in zip(radii, radii[1:]))
    assert all(np.all(w1 >= w2 - 1e-7) for w1, w2 in zip(widths, widths[1:]))
    assert min(fractions) < 0.95  # some row really cut


def test_nested_ratio_oracle_and_quotient_agree():
    d = 5
    A = np.eye(d)[:1]
    wide, narrow = FeasibleSet(A, [0.0]), FeasibleSet(A, [0.4])
    truth = cap_fraction(d, 0.4) / 0.5
    direct = volume_ratio(narrow, wide, samples=4000, seed=1)
    assert direct.method == "coordinate" and within(direct, truth)
    # a ratio of sets that are not nested row by row goes through two fractions
    other = FeasibleSet(np.array([[0.0, 1.0, 0, 0, 0]]), [0.4])
    quotient = volume_ratio(other, wide, samples=4000, seed=1)
    assert quotient.method == "quotient" and within(quotient, truth)
    assert volume_ratio(wide, wide).method == "exact"


def test_nested_sequence_multiplies_its_steps():
    d = 4
    A = np.eye(d)[:2]
    sets = [FeasibleSet(A, b) for b in ([0.0, 0.0], [0.3, 0.0], [0.3, 0.3], [0.3, 0.3])]
    est = nested_volume_ratio(sets, samples=3000, seed=0)
    assert len(est.steps) == 3
    assert est.estimate == pytest.approx(np.prod([s.estimate for s in est.steps]), rel=1e-9)
    assert est.steps[2].estimate == 1.0 and est.steps[2].stderr == 0.0  # an unchanged round
    # θ₁ ≥ 0.3 and θ₂ ≥ 0.3 in d = 4: check against a large independent Monte Carlo of the ball
    rng = np.random.default_rng(9)
    g = rng.normal(size=(2_000_000, d))
    points = g / np.linalg.norm(g, axis=1, keepdims=True) * rng.uniform(size=(len(g), 1)) ** (1 / d)
    quarter = np.all(points[:, :2] >= 0, axis=1)
    truth = np.mean(quarter & np.all(points[:, :2] >= 0.3, axis=1)) / np.mean(quarter)
    assert within(est, truth)
    with pytest.raises(DataError, match="loosens row 1"):
        nested_volume_ratio([sets[2], sets[1]])


def test_sample_points_are_inside():
    fset = FeasibleSet(np.random.default_rng(2).normal(size=(8, 5)), np.full(8, -0.3))
    for method in ("coordinate", "direction"):
        points = sample_points(fset, 500, seed=1, method=method)
        assert points.shape == (500, 5)
        assert fset.contains(points, tol=1e-9).all()
        assert np.unique(points[:, 0]).size > 100  # the chains move


def test_bad_options_are_errors():
    fset = FeasibleSet.cone(np.eye(2))
    with pytest.raises(DataError, match="method"):
        volume_fraction(fset, method="mcmc")
    with pytest.raises(DataError, match="needs a cone"):
        volume_fraction(FeasibleSet(np.eye(2), [0.1, 0.1]), method="gaussian")
    with pytest.raises(DataError, match="samples"):
        volume_fraction(fset, samples=3)


# -- calibration of the error bars ---------------------------------------------------------------------------

def test_intervals_are_calibrated_small():
    # a 3-phase product (cap of 0.058 of the ball) with short runs: ≈95 % of intervals hold the truth
    d, c = 5, 0.6
    fset, truth = FeasibleSet(np.eye(d)[:1], [c]), cap_fraction(d, c)
    results = [volume_fraction(fset, samples=800, seed=s) for s in range(200)]
    cover = np.mean([r.ci_low <= truth <= r.ci_high for r in results])
    assert 0.90 <= cover <= 0.99
    # and the errors are the size the error bars say (z-scores with spread ≈ 1)
    z = np.array([(r.estimate - truth) / r.stderr for r in results])
    assert 0.7 < z.std() < 1.4


@pytest.mark.slow
@pytest.mark.parametrize("case", ["cap", "orthant", "orthant-direction", "orthant-d30", "gaussian", "nested"])
def test_intervals_are_calibrated_large(case):
    seeds = 400
    if case == "cap":
        d, c = 10, 0.5
        fset, truth, options = FeasibleSet(np.eye(d)[:1], [c]), cap_fraction(d, c), dict(samples=2000)
    elif case.startswith("orthant"):
        d, m = (30, 10) if case == "orthant-d30" else (12, 5)
        fset, truth = FeasibleSet.cone(np.eye(d)[:m] @ random_rotation(d, 3)), 2.0**-m
        options = dict(samples=4000, method="direction" if "direction" in case else "coordinate")
        seeds = 200 if case == "orthant-d30" else seeds
    elif case == "gaussian":
        fset, truth, options = FeasibleSet.cone(np.eye(6)[:3]), 0.125, dict(samples=2000, method="gaussian")
    else:
        A = np.eye(6)[:1]
        wide, narrow = FeasibleSet(A, [0.1]), FeasibleSet(A, [0.5])
        truth = cap_fraction(6, 0.5) / cap_fraction(6, 0.1)
        results = [volume_ratio(narrow, wide, samples=2000, seed=s) for s in range(seeds)]
    if case != "nested":
        results = [volume_fraction(fset, seed=s, **options) for s in range(seeds)]
    cover = np.mean([r.ci_low <= truth <= r.ci_high for r in results])
    assert 0.92 <= cover <= 0.98


def test_chains_that_disagree_widen_the_error_bar():
    from fairl_opt.geometry.telescope import Options, PhaseEstimate, combine

    options = Options.make(None, 0, "auto", 8, 5, 0.25, 0.95, None, 500)
    agree = tuple([0.25] * 8)
    disagree = (0.1, 0.4, 0.15, 0.35, 0.2, 0.3, 0.12, 0.38)  # mean 0.25, far apart
    tight = dict(segment=0, t_start=0.0, t_end=1.0, ratio=0.25, stderr=0.002, effective_samples=1e4,
                 samples=16_000, batches=40)
    calm = combine("fraction", [[PhaseEstimate(**tight, chain_ratios=agree)] * 3], options, 0.0)
    assert calm.error_from == "batch means"
    assert calm.log_sd == pytest.approx(np.sqrt(3) * 0.002 / 0.25)
    stuck = combine("fraction", [[PhaseEstimate(**tight, chain_ratios=disagree)] * 3], options, 0.0)
    assert stuck.error_from == "between chains"
    per_chain = 3 * np.log(disagree)
    assert stuck.log_sd == pytest.approx(per_chain.std(ddof=1) / np.sqrt(8))
    assert stuck.ci_high - stuck.ci_low > 5 * (calm.ci_high - calm.ci_low)


# -- kernels ------------------------------------------------------------------------------------------------

def kernel_state(A, b, chains, records):
    d = A.shape[1]
    X = np.zeros((chains, d))
    return dict(X=X, S=X @ A.T - b, stats=np.empty((chains, records)), keep=np.empty((chains, d)),
                found=np.zeros(chains, dtype=bool), trace=np.empty((chains, records, d)))


def test_incremental_kernel_equals_naive_kernel():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(300, 40))
    b = np.full(300, -0.5)
    AT = np.ascontiguousarray(A.T)
    INV = kernels.reciprocals(AT)
    w = np.ones(300)
    fast, naive = kernel_state(A, b, 2, 5), kernel_state(A, b, 2, 5)
    kernels.coordinate_hit_and_run(AT, INV, b, fast["X"], fast["S"], 1.0, w, 0.0, 5, 10, 64, 11,
                                   fast["stats"], fast["keep"], fast["found"], fast["trace"])
    kernels.coordinate_hit_and_run_naive(A, AT, INV, b, naive["X"], naive["S"], 1.0, w, 0.0, 5, 10, 11,
                                         naive["stats"], naive["keep"], naive["found"], naive["trace"])
    # same random numbers, same chain (up to rounding, which chaotic chords amplify over long runs)
    assert np.abs(fast["trace"] - naive["trace"]).max() < 1e-9
    assert np.abs(fast["trace"][:, -1] - fast["trace"][:, 0]).max() > 1e-3
    # the incrementally updated slacks are the true slacks
    assert fast["S"] == pytest.approx(fast["X"] @ A.T - b, abs=1e-10)
    assert fast["stats"] == pytest.approx((fast["trace"] @ A.T - b).min(axis=2), abs=1e-10)


def test_direction_kernel_keeps_points_inside_and_slacks_exact():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(50, 6))
    b = np.full(50, -0.2)
    AT = np.ascontiguousarray(A.T)
    state = kernel_state(A, b, 3, 200)
    kernels.direction_hit_and_run(AT, b, state["X"], state["S"], 1.0, np.ones(50), 0.0, 200, 1, 0, 4,
                                  state["stats"], state["keep"], state["found"], state["trace"])
    points = state["trace"].reshape(-1, 6)
    assert FeasibleSet(A, b).contains(points, tol=1e-9).all()
    assert state["S"] == pytest.approx(state["X"] @ A.T - b, abs=1e-9)


def test_gaussian_kernel_counts_orthant_hits():
    hits = np.zeros(50, dtype=np.int64)
    kernels.gaussian_cone_hits(np.ascontiguousarray(np.eye(5)[:3]), 50, 2000, 3, hits)
    p = hits.sum() / 100_000
    assert abs(p - 0.125) < 4 * np.sqrt(0.125 * 0.875 / 100_000)


def test_effective_sample_size():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 5000))
    assert effective_sample_size(iid) == pytest.approx(20_000, rel=0.15)
    phi = 0.9
    ar = np.zeros((4, 20_000))
    noise = rng.normal(size=ar.shape)
    for t in range(1, ar.shape[1]):
        ar[:, t] = phi * ar[:, t - 1] + noise[:, t]
    expected = ar.size * (1 - phi) / (1 + phi)
    assert effective_sample_size(ar) == pytest.approx(expected, rel=0.25)
    # chains stuck in different places are not independent evidence
    stuck = rng.normal(size=(4, 2000)) * 0.01 + np.arange(4)[:, None]
    assert effective_sample_size(stuck) < 100


# -- reward intervals ----------------------------------------------------------------------------------------

def test_reward_interval_oracles():
    ball = FeasibleSet(np.empty((0, 3)), np.empty(0))
    phi = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]])
    iv = reward_intervals(ball, phi)
    assert iv.lower == pytest.approx([-5.0, -2.0], abs=1e-7)
    assert iv.upper == pytest.approx([5.0, 2.0], abs=1e-7)
    half = FeasibleSet(np.array([[1.0, 0.0, 0.0]]), [0.0])
    iv = reward_intervals(half, np.array([1.0, 0.0, 0.0]))
    assert (iv.lower[0], iv.upper[0]) == pytest.approx((0.0, 1.0), abs=1e-7)
    assert iv.max_gap < 1e-6
    cap = FeasibleSet(np.array([[0.0, 2.0, 0.0]]), [1.2])  # θ₂ ≥ 0.6: θ₁ ranges over ±0.8
    assert reward_intervals(cap, [1.0, 0.0, 0.0]).mean_width == pytest.approx(1.6, abs=1e-6)
    with pytest.raises(InfeasibleError):
        reward_intervals(FeasibleSet(np.array([[1.0, 0.0, 0.0]]), [1.1]), phi)


# -- sets of max-margin programs and FA runs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fa_run():
    from fairl_opt.geometry.figures import planted_fa_run

    return planted_fa_run(3, seed=0, n_pairs=12)


def test_fa_sets_are_nested_and_the_previous_solution_is_cut(fa_run):
    program, result = fa_run
    sets = FeasibleSet.from_fa_result(result)
    assert len(sets) == len(result.history) >= 2
    delta, margins = result.standard_program.delta, result.round_margins()
    assert np.array_equal(margins[0], program.margins) and np.array_equal(margins[-1], result.required_margins)
    rho = sets[0].b[0] / program.margins[0]
    assert rho == pytest.approx(margin_scale(delta, result.required_margins, 2.0))
    for bigger, smaller in zip(sets, sets[1:]):
        assert smaller.subset_of(bigger)
        points = sample_points(smaller, 400, seed=0)
        assert bigger.contains(points, tol=1e-9).all()
    # the standard solution, rescaled, meets the standard margins but not the FA ones (the witness)
    theta_std = rho * result.base_solution.theta
    assert np.linalg.norm(theta_std) <= 1
    assert sets[0].contains(theta_std, tol=1e-7) and not sets[-1].contains(theta_std, tol=1e-7)
    # the FA solution sits at norm 1/budget inside F_FA
    assert sets[-1].contains(rho * result.theta, tol=1e-7)
    assert np.linalg.norm(rho * result.theta) == pytest.approx(0.5, rel=1e-5)
    assert FeasibleSet.from_fa_result(result, round=-1).b == pytest.approx(sets[-1].b)
    with pytest.raises(DataError, match="round"):
        FeasibleSet.from_fa_result(result, round=len(sets))


def test_fa_ratio_in_two_dimensions_matches_the_area():
    from fairl_opt.geometry.figures import planted_fa_run

    _, result = planted_fa_run(2, seed=0)
    sets = FeasibleSet.from_fa_result(result)
    grid = np.linspace(-1, 1, 1501)
    points = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
    counts = [s.contains(points).sum() for s in sets]
    area_ratio = counts[-1] / counts[0]  # pixel counting: error ~1e-3 here
    est = nested_volume_ratio(sets, samples=8000, seed=4)
    assert abs(est.estimate - area_ratio) <= 4 * est.stderr + 3e-3
    assert est.estimate < 0.8


def test_geometry_summary(fa_run):
    program, result = fa_run
    heldout = np.random.default_rng(0).normal(size=(6, 3))
    summary = geometry_summary(result, heldout, samples=3000, seed=1)
    ratio = summary["volume_ratio"]
    assert 0 < ratio["ci_low"] <= ratio["ratio"] <= ratio["ci_high"] <= 1
    assert ratio["ratio"] < 0.9  # the FA cuts removed a visible part of F_std
    assert len(ratio["steps"]) == len(result.history) - 1
    radius = summary["chebyshev_radius"]
    assert radius["fa"] < radius["standard"]
    width = summary["interval_width"]
    assert width["fa"] <= width["standard"] + 1e-9
    # the sets come from the result's own rounds: a MaxEnt run has no margin constraints
    from fairl_opt.fa import FASettings, run_fa
    from fairl_opt.programs import MaxEntProgram

    maxent = run_fa(MaxEntProgram(program.delta), "auto", FASettings(oof_folds=0, max_rounds=1))
    with pytest.raises(DataError, match="max-margin"):
        geometry_summary(maxent)


def test_program_sets_and_their_errors(fa_run):
    from fairl_opt.programs import MarginProgram, MaxEntProgram

    program, _ = fa_run
    fset = FeasibleSet.from_program(program, budget=3.0)
    # norm budget 3 × the hard-margin norm: the rescaled min-norm reward has norm exactly 1/3
    rho = fset.b[0] / program.margins[0]
    assert rho * smallest_norm(program.delta, program.margins) == pytest.approx(1 / 3, rel=1e-9)
    assert fset.b == pytest.approx(rho * program.margins, rel=1e-12)
    assert fset.chebyshev_radius() > 0
    with pytest.raises(DataError, match="MaxEnt"):
        FeasibleSet.from_program(MaxEntProgram(program.delta))
    with pytest.raises(DataError, match="budget"):
        FeasibleSet.from_program(program, budget=1.0)
    conflict = MarginProgram(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    with pytest.raises(InfeasibleError, match="pairs \\[0, 1\\]"):
        FeasibleSet.from_program(conflict)
