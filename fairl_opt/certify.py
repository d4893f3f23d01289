"""Certify the failure-aware (FA) theory claims on a user's own preference data.

Convention (the one every file in ``proofs/`` uses). For required margins m ∈ Rⁿ and a norm budget
R > 0, the set of rewards consistent with the data is ::

    F(m; R) = {θ ∈ R^d : ‖θ‖₂ ≤ R,  Δθ ≥ m}.

``F_std = F(m_std; R)`` (round 0) and ``F_FA = F(m_FA; R)`` (after the FA loop, m_FA ≥ m_std) share
one R: ``R = budget · min{‖θ‖₂ : Δθ ≥ m_FA}`` (budget 2 by default), the convention of
:mod:`fairl_opt.geometry`, whose unit-ball sets ``{‖θ‖ ≤ 1, Δθ ≥ m/R}`` are ``F(m; R)/R``: volumes
ratios, containment and strictness are unchanged by that rescaling (radii scale by 1/R).

Soft margins: the hard constraints Δθ ≥ m are often infeasible (then every F is empty), so for
``margin="soft"`` the margins are relaxed by the standard solution's slacks ξ_std = max(0, m_std − Δθ_std):
F_std = F(m_std − ξ_std; R), F_FA = F(m_FA − ξ_std; R) — the rewards that do at least as well as the
standard solution on every pair. (Hard margins: ξ_std = 0, the same definition.) The same ξ_std on both
sides keeps m_FA − ξ_std ≥ m_std − ξ_std, so T1–T5 apply unchanged.

What :func:`certify_claims` returns (JSON-ready):

* ``strict_inclusion``: F_FA ⊊ F_std (T2 of ``proofs/``), with a ``witness`` θ ∈ F_std \\ F_FA. The
  witness is the centre of a ball of radius ``witness_radius`` > 0 that lies in F_std and strictly
  below a tightened constraint; the ball is re-checked in exact rational arithmetic
  (``certified: "exact"``), so the removed part has volume at least ``(radius/R)^d`` of the R-ball.
* ``max_tightening``: the largest t with {Δθ ≥ m_std + t·1_S} non-empty (the LP of T3) for the
  tightened pairs S, with a Farkas certificate of emptiness beyond it.
* ``volume_ratio``: vol(F_FA)/vol(F_std) with its error bar, from :mod:`fairl_opt.geometry` when that
  module imports (else null with a reason).
* ``failed_assumption``: when the claim does not hold on these data, one sentence naming the
  assumption that fails (no failure was tightened; F_std is empty; every tightened constraint is
  already implied by F_std, with an exact dual certificate; F_std is flat).

Numerical work (an SOCP per question, Clarabel called directly) only proposes points and multipliers;
every claim marked exact is decided by :class:`fractions.Fraction` arithmetic on the float data.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from fairl_opt.exceptions import DataError, InfeasibleError, SolverError

__all__ = [
    "CONVENTION",
    "add_certify_parser",
    "admissible_tightening",
    "certify_claims",
    "certify_sets",
    "chebyshev_ball",
    "cmd_certify",
    "exact_ball_in_cut",
    "exact_dual_bound_at_least",
    "exact_farkas_radius",
    "exact_member",
    "exact_residuals",
    "verified_conflict",
    "fa_round_margins",
    "minimise_linear",
    "smallest_norm",
]

CONVENTION = (
    "F(m; R) = {theta : ||theta||_2 <= R, Delta theta >= m}; F_std = F(m_std; R), F_FA = F(m_FA; R), "
    "R = budget * min{||theta||_2 : Delta theta >= m_FA}; soft margins: m relaxed by the "
    "standard solution's slacks, m - max(0, m_std - Delta theta_std)"
)
#: A witness ball is accepted only when exact arithmetic confirms it; these shrink factors are tried
#: on the solver's radius in turn (the solver is accurate to ~1e-9 relative).
_SHRINK = (0.999, 0.9, 0.5, 0.1)
#: Tightened pairs tried for a witness ball (ordered by how far the standard solution falls short).
WITNESS_CANDIDATES = 10
#: Pairs scanned for a cut when no witness ball was found (each is one SOCP).
MAX_IMPLIED_SCAN = 2000
#: Solver accuracy on unit-scaled problems: a depth below this is treated as 0.
DEPTH_TOL = 1e-8
_CLARABEL_TOL = 1e-10


# ------------------------------------------------------------------------------------------------
# exact arithmetic on float data
# ------------------------------------------------------------------------------------------------
def _dyadic(x) -> tuple[np.ndarray, int]:
    """Integers N (object array, x's shape) and an exponent E with x == N·2^E exactly."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError("exact arithmetic needs finite values (got NaN/inf)")
    mantissa, exponent = np.frexp(x)
    ints = (mantissa * 2.0**53).astype(np.int64)  # exact: |mantissa| < 1 has 53 bits
    exponent = exponent.astype(np.int64) - 53
    nonzero = ints != 0
    base = int(exponent[nonzero].min()) if nonzero.any() else 0
    shifts = np.where(nonzero, exponent - base, 0)
    out = np.empty(x.shape, dtype=object)
    flat = out.reshape(-1)
    for k, (n, s) in enumerate(zip(ints.reshape(-1).tolist(), shifts.reshape(-1).tolist())):
        flat[k] = n << s
    return out, base


def _fraction(n: int, exponent: int) -> Fraction:
    return Fraction(n * (1 << exponent)) if exponent >= 0 else Fraction(n, 1 << -exponent)


def exact_residuals(delta, theta, margins) -> list[Fraction]:
    """Δ_iθ − m_i for every row, exactly (rational), for float ``delta``, ``theta``, ``margins``."""
    A, ea = _dyadic(np.atleast_2d(delta))
    t, et = _dyadic(np.ravel(theta))
    m, em = _dyadic(np.ravel(margins))
    products = A.dot(t) if A.shape[1] else np.zeros(A.shape[0], dtype=object)
    return [_fraction(int(p), ea + et) - _fraction(int(b), em) for p, b in zip(products, m)]


def _exact_sq_norm(x) -> Fraction:
    v, e = _dyadic(np.ravel(x))
    return _fraction(int(sum(int(a) * int(a) for a in v)), 2 * e)


def _exact_row_sq_norms(delta) -> list[Fraction]:
    A, e = _dyadic(np.atleast_2d(delta))
    return [_fraction(int(sum(int(a) * int(a) for a in row)), 2 * e) for row in A]


def exact_member(delta, margins, radius, theta) -> bool:
    """θ ∈ F(m; R) in exact arithmetic: ‖θ‖² ≤ R² and Δθ ≥ m."""
    if _exact_sq_norm(theta) > Fraction(float(radius)) ** 2:
        return False
    return all(r >= 0 for r in exact_residuals(delta, theta, margins))


def exact_ball_in_cut(delta, m_std, m_fa, radius_bound, centre, radius, rows) -> bool:
    """Exactly: the open ball B(centre, radius) lies in F(m_std; R) and strictly below every tightened
    constraint Δ_jθ < m_FA_j, j ∈ ``rows`` (so it lies in F_std \\ F_FA).

    Uses, for a unit-free test without square roots: B(c, r) ⊂ {Δ_iθ ≥ m_i} ⇔ Δ_ic − m_i ≥ r‖Δ_i‖
    ⇔ Δ_ic − m_i ≥ 0 and (Δ_ic − m_i)² ≥ r²‖Δ_i‖²; B(c, r) ⊂ {‖θ‖ ≤ R} ⇔ R − r ≥ 0 and
    ‖c‖² ≤ (R − r)².
    """
    r = Fraction(float(radius))
    R = Fraction(float(radius_bound))
    if r <= 0 or R - r < 0 or _exact_sq_norm(centre) > (R - r) ** 2:
        return False
    sq = _exact_row_sq_norms(delta)
    slack = exact_residuals(delta, centre, m_std)
    for s, q in zip(slack, sq):
        if s < 0 or s * s < r * r * q:
            return False
    rows = [int(j) for j in np.atleast_1d(rows)]
    cut = exact_residuals(np.atleast_2d(delta)[rows], centre, np.asarray(m_fa, dtype=np.float64)[rows])
    for j, s in zip(rows, cut):
        # need m_FA_j − Δ_jc ≥ r‖Δ_j‖, i.e. −s ≥ r‖Δ_j‖
        if -s <= 0 or s * s < r * r * sq[j]:
            return False
    return True


def _rationalise(y: np.ndarray, denominator: int | None) -> list[Fraction]:
    if denominator is None:
        return [Fraction(float(v)) for v in y]
    return [Fraction(float(v)).limit_denominator(denominator) for v in y]


def exact_dual_bound_at_least(delta, margins, radius_bound, direction, ys, rows, level) -> bool:
    """Exactly: mᵀy − R‖g − Δᵀy‖ ≥ level (weak duality then gives min_{F(m;R)} gᵀθ ≥ level)."""
    if any(v < 0 for v in ys):
        return False
    residual = [Fraction(float(g)) for g in np.ravel(direction)]
    value = Fraction(0)
    for i, yi in zip(rows, ys):
        if yi:
            value += yi * Fraction(float(margins[i]))
            for k in range(delta.shape[1]):
                residual[k] -= yi * Fraction(float(delta[i, k]))
    gap = value - Fraction(float(level))
    if gap < 0:
        return False
    return gap * gap >= Fraction(float(radius_bound)) ** 2 * sum(r * r for r in residual)


def exact_farkas_radius(delta, margins, y, rows=None, denominators=(None, 10**6, 10**9)):
    """How far a Farkas multiplier y ≥ 0 proves {Δθ ≥ m} empty, in exact arithmetic.

    For any θ, yᵀm ≤ yᵀΔθ = (Δᵀy)ᵀθ ≤ ‖Δᵀy‖‖θ‖, so no θ with ‖θ‖ < yᵀm / ‖Δᵀy‖ meets the
    constraints: F(m; R) = ∅ for every such R, and for every R at all when Δᵀy = 0 exactly.

    Returns
    -------
    float
        The certified radius (``inf`` when Δᵀy = 0 exactly and yᵀm > 0; 0.0 when yᵀm ≤ 0), the best
        over y as given and y rounded to rationals with the listed denominators.
    """
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    rows = np.arange(delta.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    y = np.maximum(np.asarray(y, dtype=np.float64), 0.0)
    best = 0.0
    for den in denominators:
        ys = _rationalise(y, den)
        bound = sum((yi * Fraction(float(margins[i])) for i, yi in zip(rows.tolist(), ys)), Fraction(0))
        if bound <= 0:
            continue
        reach = [Fraction(0)] * delta.shape[1]
        for i, yi in zip(rows.tolist(), ys):
            if yi:
                for k in range(delta.shape[1]):
                    reach[k] += yi * Fraction(float(delta[i, k]))
        sq = sum(r * r for r in reach)
        if sq == 0:
            return float("inf")
        # radius = bound / sqrt(sq), rounded down to a float that is certified: (ρ·√sq ≤ bound)
        rho = float(bound) / float(np.sqrt(float(sq)))
        if not np.isfinite(rho):
            rho = 1e300
        while rho > 0 and Fraction(rho) ** 2 * sq > bound * bound:
            rho = np.nextafter(rho, 0.0) * (1 - 1e-12)
        best = max(best, float(rho))
    return best


# ------------------------------------------------------------------------------------------------
# the convex programs (Clarabel, rows scaled to unit norm, θ = R·φ with φ in the unit ball)
# ------------------------------------------------------------------------------------------------
def _clarabel(q, A, b, n_nonneg, soc_dim):
    import clarabel

    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = _CLARABEL_TOL
    settings.max_iter = 400
    cones = []
    if n_nonneg:
        cones.append(clarabel.NonnegativeConeT(n_nonneg))
    cones.append(clarabel.SecondOrderConeT(soc_dim))
    P = sp.csc_matrix((A.shape[1], A.shape[1]))
    solver = clarabel.DefaultSolver(P, np.asarray(q, dtype=np.float64), sp.csc_matrix(A),
                                    np.asarray(b, dtype=np.float64), cones, settings)
    solution = solver.solve()
    return solution, str(solution.status)


def _unit_rows(delta, margins, radius_bound):
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    norms = np.linalg.norm(delta, axis=1)
    if np.any(norms == 0):
        raise DataError(f"row {int(np.flatnonzero(norms == 0)[0])} of delta is zero")
    return delta / norms[:, None], np.asarray(margins, dtype=np.float64) / (norms * radius_bound), norms


def chebyshev_ball(delta, margins, radius_bound, upper_rows=(), upper_bounds=()):
    """The largest ball in F(m; R) ∩ {Δ_jθ ≤ u_j, j ∈ upper_rows}: (centre θ, signed radius).

    ``max r  s.t.  U_iθ − r ≥ c_i,  U_jθ + r ≤ u_j/‖Δ_j‖,  ‖θ‖ + r ≤ R`` (unit rows U). The radius is
    signed: negative means the set is empty (the constraints must be relaxed by |r| to meet), zero
    (up to :data:`DEPTH_TOL`·R) that it is flat.
    """
    R = float(radius_bound)
    U, c, norms = _unit_rows(delta, margins, R)
    n, d = U.shape
    up = np.asarray(upper_rows, dtype=np.int64)
    ub = np.asarray(upper_bounds, dtype=np.float64) / (norms[up] * R) if up.size else np.zeros(0)
    blocks = [np.hstack([-U, np.ones((n, 1))])]
    rhs = [-c]
    if up.size:
        blocks.append(np.hstack([U[up], np.ones((up.size, 1))]))
        rhs.append(ub)
    # r ≤ 1 keeps the problem bounded; then the cone (1 − r, φ)
    blocks.append(np.hstack([np.zeros((1, d)), np.ones((1, 1))]))
    rhs.append(np.ones(1))
    blocks.append(np.hstack([np.zeros((1, d)), np.ones((1, 1))]))
    rhs.append(np.ones(1))
    blocks.append(np.hstack([-np.eye(d), np.zeros((d, 1))]))
    rhs.append(np.zeros(d))
    A = np.vstack(blocks)
    b = np.concatenate(rhs)
    q = np.zeros(d + 1)
    q[-1] = -1.0
    solution, status = _clarabel(q, A, b, n + up.size + 1, d + 1)
    if status not in ("Solved", "AlmostSolved"):
        raise SolverError(f"Chebyshev-ball SOCP ended with status {status}", status=status)
    x = np.asarray(solution.x)
    return R * x[:d], R * float(x[-1])


def minimise_linear(delta, margins, radius_bound, direction):
    """min{gᵀθ : θ ∈ F(m; R)}: (value, minimiser θ, multipliers y ≥ 0 per row).

    The multipliers give the weak-duality bound ``mᵀy − R‖g − Δᵀy‖`` (check it exactly with
    :func:`exact_dual_bound_at_least`). Raises :class:`SolverError` when F(m; R) is empty.
    """
    R = float(radius_bound)
    g = np.asarray(direction, dtype=np.float64)
    gnorm = float(np.linalg.norm(g))
    U, c, norms = _unit_rows(delta, margins, R)
    n, d = U.shape
    if gnorm == 0:
        raise DataError("direction is zero")
    A = np.vstack([-U, np.zeros((1, d)), -np.eye(d)])
    b = np.concatenate([-c, np.ones(1), np.zeros(d)])
    solution, status = _clarabel(g / gnorm, A, b, n, d + 1)
    if status not in ("Solved", "AlmostSolved"):
        raise SolverError(f"support SOCP ended with status {status}", status=status)
    phi = np.asarray(solution.x)
    z = np.maximum(np.asarray(solution.z)[:n], 0.0)
    theta = R * phi
    return float(g @ theta), theta, gnorm * z / norms


def smallest_norm(delta, margins):
    """n*(m) = min{‖θ‖₂ : Δθ ≥ m} with its certified minimiser (the hard-margin QP, working set)."""
    from fairl_opt.programs import MarginProgram
    from fairl_opt.solvers import solve

    solution = solve(MarginProgram(np.asarray(delta, dtype=np.float64), np.asarray(margins, dtype=np.float64)))
    if not solution.certificate.optimal:  # pragma: no cover - the backend falls back to cvxpy first
        raise SolverError("smallest-norm QP could not be certified", status=solution.certificate.solver_status)
    return float(np.linalg.norm(solution.theta)), solution.theta


def admissible_tightening(delta, margins, subset):
    """T3's LP in dual form: t* = min{−mᵀy : y ≥ 0, Δᵀy = 0, Σ_{i∈S} y_i = 1} and its y.

    Returns ``(t*, y)``; ``(inf, None)`` when the dual is infeasible (every tightening of S is
    admissible). For t > t*, y is a Farkas certificate that {Δθ ≥ m + t·1_S} is empty:
    (m + t·1_S)ᵀy = t − t* > 0 while Δᵀy = 0.
    """
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    n, d = delta.shape
    indicator = np.zeros(n)
    indicator[np.asarray(subset, dtype=np.int64)] = 1.0
    a_eq = np.vstack([delta.T, indicator[None, :]])
    b_eq = np.zeros(d + 1)
    b_eq[-1] = 1.0
    cost = -np.asarray(margins, dtype=np.float64)
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status in (2, 3):
        # HiGHS's presolve can misreport an unbounded LP as infeasible (and vice versa): ask without it
        res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs", options={"presolve": False})
    if res.status == 2:
        return float("inf"), None
    if res.status == 3:
        return float("-inf"), None
    if res.status != 0:
        raise SolverError(f"admissible-tightening dual LP failed: {res.message}", status=res.status)
    return float(res.fun), np.asarray(res.x)


def verified_conflict(delta, margins, min_radius=1e6):
    """A Farkas certificate that {Δθ ≥ m} is empty, checked exactly, or None.

    :func:`fairl_opt.solvers.base.find_conflict` is asked on rows scaled to unit norm (the same set;
    on raw rows an LP tolerance can mistake a tiny row for a zero one) and its multipliers are accepted
    only when :func:`exact_farkas_radius` proves no θ with ‖θ‖ < ρ meets the constraints, with
    ρ ≥ ``min_radius`` · max(1, max_i |m_i|/‖Δ_i‖) (∞ when Δᵀy = 0 exactly).

    Returns
    -------
    (pairs, y, radius) or None
    """
    from fairl_opt.solvers.base import find_conflict

    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    margins = np.asarray(margins, dtype=np.float64)
    norms = np.linalg.norm(delta, axis=1)
    found = find_conflict(delta / norms[:, None], margins / norms)
    if found is None:
        return None
    pairs, y_unit = found
    pairs = np.asarray(pairs, dtype=np.int64)
    y = np.asarray(y_unit, dtype=np.float64) / norms[pairs]  # multipliers of the raw rows
    radius = exact_farkas_radius(delta[pairs], margins[pairs], y)
    if radius < min_radius * max(1.0, float(np.max(np.abs(margins) / norms))):
        return None
    return pairs.tolist(), y, radius


# ------------------------------------------------------------------------------------------------
# the claims on given margins
# ------------------------------------------------------------------------------------------------
def fa_round_margins(result, m_std) -> list[np.ndarray]:
    """Required margins after each FA round (round 0 = ``m_std``), rebuilt from the history."""
    margins = [np.array(m_std, dtype=np.float64)]
    for record in result.history[1:]:
        current = margins[-1].copy()
        if record.step:
            current[np.asarray(record.changed, dtype=np.int64)] += record.step
        margins.append(current)
    return margins


def certify_sets(delta, m_std, m_fa, *, radius_bound=None, budget=2.0, theta_std=None):
    """The strict-inclusion claim for F_std = F(m_std; R) and F_FA = F(m_FA; R), certified.

    Parameters
    ----------
    delta : (n, d) array
    m_std, m_fa : (n,) arrays
        Standard and FA margins (m_fa ≥ m_std is checked exactly: T1's hypothesis).
    radius_bound : float, optional
        R. Default ``budget · min{‖θ‖ : Δθ ≥ m_FA}`` (or of m_std when F_FA is empty).
    theta_std : (d,) array, optional
        The standard solution; orders the candidate pairs by how far it falls short of m_FA.

    Returns
    -------
    dict
        ``strict_inclusion``, ``witness``, ``witness_pair``, ``witness_radius``, ``certified``,
        ``removed_volume_log10_lower_bound``, ``radius_bound``, ``tightened``, ``chebyshev_radius``,
        ``max_tightening`` (+ certificate), ``failed_assumption`` and ``implied_certificate``.
    """
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    m_std = np.asarray(m_std, dtype=np.float64)
    m_fa = np.asarray(m_fa, dtype=np.float64)
    n, d = delta.shape
    if m_std.shape != (n,) or m_fa.shape != (n,):
        raise DataError(f"m_std and m_fa must have one entry per pair ({n}), got {m_std.shape}, {m_fa.shape}")
    lowered = np.flatnonzero(m_fa < m_std)
    if lowered.size:
        raise DataError(f"m_fa[{int(lowered[0])}] < m_std[{int(lowered[0])}]: the FA margins must not loosen any pair")
    tightened = np.flatnonzero(m_fa > m_std)
    out = {
        "strict_inclusion": False,
        "witness": None,
        "witness_pair": None,
        "witness_radius": None,
        "certified": None,
        "removed_volume_log10_lower_bound": None,
        "radius_bound": None,
        "tightened": tightened.tolist(),
        "chebyshev_radius": None,
        "max_tightening": None,
        "max_tightening_certificate": None,
        "failed_assumption": None,
        "implied_certificate": None,
    }
    conflict = verified_conflict(delta, m_std)
    if conflict is not None:
        pairs, _, radius = conflict
        out["failed_assumption"] = (
            f"F_std is empty: the hard constraints Δθ >= m_std have no solution with ‖θ‖ < {radius:.3g} (pairs "
            f"{pairs[:10]} conflict: a non-negative combination of their rows is ~0 while their margins are "
            "positive; checked exactly), so there is no set to be strictly inside"
        )
        return out
    if tightened.size == 0:
        out["failed_assumption"] = "no pair was tightened (m_FA = m_std), so F_FA = F_std"
        return out

    t_star, y_star = admissible_tightening(delta, m_std, tightened)
    out["max_tightening"] = t_star
    if y_star is not None:
        support = np.flatnonzero(y_star > 1e-12 * max(1.0, float(y_star.max())))
        beyond = m_std + (t_star + max(1e-6, 1e-6 * abs(t_star))) * np.isin(np.arange(n), tightened)
        out["max_tightening_certificate"] = {
            "pairs": support.tolist(),
            "multipliers": y_star[support].tolist(),
            "empty_within_radius": exact_farkas_radius(delta[support], beyond[support], y_star[support]),
        }

    fa_empty = verified_conflict(delta, m_fa) is not None
    if radius_bound is None:
        norm, _ = smallest_norm(delta, m_std if fa_empty else m_fa)
        if norm <= 0:
            raise DataError("θ = 0 meets every margin (none is positive): pass radius_bound explicitly")
        radius_bound = float(budget) * norm
    R = float(radius_bound)
    out["radius_bound"] = R
    centre_std, radius_std = chebyshev_ball(delta, m_std, R)
    if fa_empty:
        radius_fa = None
    else:
        radius_fa = chebyshev_ball(delta, m_fa, R)[1]
    out["chebyshev_radius"] = {"standard": radius_std, "fa": radius_fa}
    if radius_std < -DEPTH_TOL * R:
        out["failed_assumption"] = (
            f"F_std is empty within the norm budget R = {R:.6g} (no θ with ‖θ‖ <= R meets the standard margins)"
        )
        return out

    # candidate cut rows: where the standard solution falls furthest short of the FA margins
    order = tightened
    if theta_std is not None:
        shortfall = m_fa[tightened] - delta[tightened] @ np.asarray(theta_std, dtype=np.float64)
        order = tightened[np.argsort(-shortfall, kind="stable")]
    best = None
    for j in order[:WITNESS_CANDIDATES].tolist():
        centre, radius = chebyshev_ball(delta, m_std, R, [j], [m_fa[j]])
        if radius <= DEPTH_TOL * R:
            continue
        for shrink in _SHRINK:
            r = radius * shrink
            if exact_ball_in_cut(delta, m_std, m_fa, R, centre, r, [j]):
                if best is None or r > best[2]:
                    best = (j, centre, r)
                break
    if best is not None:
        j, centre, r = best
        out.update(
            strict_inclusion=True, witness=centre.tolist(), witness_pair=int(j), witness_radius=float(r),
            certified="exact", removed_volume_log10_lower_bound=float(d * np.log10(r / R)),
        )
        return out

    # no ball: is any tightened constraint cut at all (T2's criterion min_{F_std} Δ_jθ < m_FA_j)?
    implied_exact = True
    scanned = 0
    for j in tightened[:MAX_IMPLIED_SCAN].tolist():
        scanned += 1
        value, theta, y = minimise_linear(delta, m_std, R, delta[j])
        if value < m_fa[j] - 1e-9 * max(1.0, abs(m_fa[j])):
            out.update(strict_inclusion=True, witness=theta.tolist(), witness_pair=int(j), witness_radius=0.0,
                       certified="numerical")
            if radius_std <= DEPTH_TOL * R:
                out["failed_assumption"] = (
                    f"F_std is not full-dimensional (Chebyshev radius {radius_std:.3g} ~ 0), so the part that the "
                    "FA constraints remove has zero volume although the inclusion is strict"
                )
            return out
        support = np.flatnonzero(y > 0)
        proved = False
        for den in (None, 10**6, 10**9):
            ys = _rationalise(y[support], den)
            if exact_dual_bound_at_least(delta, m_std, R, delta[j], ys, support.tolist(), m_fa[j]):
                proved = True
                break
        implied_exact &= proved
    out["implied_certificate"] = {"exact": bool(implied_exact and scanned == tightened.size), "pairs_checked": scanned}
    out["failed_assumption"] = (
        "every tightened constraint is already implied by F_std within the norm budget "
        f"(min over F_std of Δ_jθ >= m_FA_j for all {tightened.size} tightened pair(s)"
        + (", proved by exact dual certificates)" if out["implied_certificate"]["exact"] else ")")
        + ", so the FA constraints cut nothing: F_FA = F_std"
    )
    return out


def _volume_ratio(delta, m_std, m_fa, R, samples, seed):
    try:
        from fairl_opt.geometry import FeasibleSet, volume_ratio
    except Exception as exc:  # the geometry module is optional here
        return None, f"fairl_opt.geometry is not importable ({type(exc).__name__}: {exc})"
    try:
        standard = FeasibleSet(delta, m_std / R, duplicates="merge")
        fa = FeasibleSet(delta, m_fa / R, duplicates="merge")
        estimate = volume_ratio(fa, standard, samples=samples, seed=seed)
    except Exception as exc:  # noqa: BLE001 - any failure of the estimate is reported, not fatal
        return None, f"volume estimate failed ({type(exc).__name__}: {exc})"
    return estimate.to_dict(), None


def certify_claims(pairs, method="fa-mm-qp", margin="hard", C=1.0, samples=None, seed=0, *, budget=2.0,
                   volume=True, **fa_options) -> dict:
    """Run the FA loop on ``pairs`` and certify T2 (strict inclusion) and T3 (admissible tightening).

    Parameters
    ----------
    pairs : PreferencePairs
    method : {"fa-mm-qp", "fa-mm-lp"}
    margin : {"hard", "soft"}
    C : float
        Soft-margin penalty.
    samples, seed : int
        Passed to the volume estimate (:func:`fairl_opt.geometry.volume_ratio`); ``seed`` also to the
        FA loop's fold assignment.
    budget : float
        R = budget · min{‖θ‖ : Δθ ≥ m_FA}.
    volume : bool
        Estimate the volume ratio (the slow part); False reports it as null.
    **fa_options
        :class:`fairl_opt.estimators.FailureAwareReward` options (``max_rounds``, ``oof_folds``,
        ``near_tie_quantile``, ``near_tie_threshold``, ``margin_step``, ...).

    Returns
    -------
    dict
        JSON-ready (see the module docstring).

    Examples
    --------
    >>> from fairl_opt.simulate import simulate
    >>> out = certify_claims(simulate(n_pairs=30, dim=40, seed=0).pairs, volume=False)
    >>> out["strict_inclusion"], out["certified"]
    (True, 'exact')
    """
    from fairl_opt.estimators import check_pairs, make_estimator

    pairs = check_pairs(pairs)
    if method not in ("fa-mm-qp", "fa-mm-lp"):
        raise DataError(f"method must be 'fa-mm-qp' or 'fa-mm-lp' (the claims are about margin sets), got {method!r}")
    if margin not in ("hard", "soft"):
        raise DataError(f"margin must be 'hard' or 'soft', got {margin!r}")
    fa_options.setdefault("seed", seed)
    model = make_estimator(method, margin=margin, C=C, **fa_options)
    m_std = model.estimator.program(pairs).margins.copy()
    out = {"method": method, "margin": margin, "n_pairs": pairs.n_pairs, "dim": pairs.dim, "convention": CONVENTION,
           "budget": float(budget)}
    try:
        model.fit(pairs)
    except InfeasibleError as exc:
        if verified_conflict(pairs.delta, m_std) is None:
            raise SolverError(
                f"the backend reported the hard margin infeasible (pairs {exc.conflicting_pairs[:10]}), but no "
                "Farkas certificate survives an exact check on unit-scaled rows: the data are badly scaled "
                "(rescale the embeddings), not provably infeasible"
            ) from exc
        out.update(strict_inclusion=False, witness=None, max_tightening=None, volume_ratio=None,
                   volume_ratio_reason="no FA run: the standard hard-margin program is infeasible",
                   failed_assumption=(
                       f"F_std is empty: the hard-margin constraints are infeasible (pairs "
                       f"{exc.conflicting_pairs[:10]} conflict); with --margin soft the FA loop runs, but "
                       "the set of rewards meeting every margin is still empty"))
        return out
    result = model.result_
    rounds = fa_round_margins(result, m_std)
    m_fa = rounds[-1]
    if not np.array_equal(m_fa, result.required_margins):
        # the history rebuild must agree with the loop's own record (T7: each pair once)
        raise SolverError("FA history does not reproduce the final required margins")
    theta_std = result.base_solution.theta
    if margin == "soft":
        # the soft program's sets: margins relaxed by the standard solution's slacks (module docstring)
        slack = np.maximum(0.0, m_std - pairs.delta @ theta_std)
        m_std, m_fa = m_std - slack, m_fa - slack
        out["standard_slack"] = {"pairs_with_slack": int(np.count_nonzero(slack)), "max": float(slack.max())}
    claims = certify_sets(pairs.delta, m_std, m_fa, budget=budget, theta_std=theta_std)
    out.update(rounds=len(result.history) - 1, stop_reason=result.stop_reason,
               n_tightened=len(claims["tightened"]))
    if not claims["tightened"] and claims["failed_assumption"].startswith("no pair"):
        claims["failed_assumption"] = (
            f"the FA loop tightened no pair (stop reason: {result.stop_reason}), so F_FA = F_std: strict "
            "inclusion needs at least one failure constraint that cuts F_std"
        )
    out.update(claims)
    out["volume_ratio"] = None
    out["volume_ratio_reason"] = None
    if not volume:
        out["volume_ratio_reason"] = "not requested"
    elif claims["radius_bound"] is None:
        out["volume_ratio_reason"] = "no sets to compare (see failed_assumption)"
    elif claims["chebyshev_radius"]["fa"] is None:
        out["volume_ratio"] = {"ratio": 0.0, "stderr": 0.0, "ci_low": 0.0, "ci_high": 0.0, "method": "exact-empty"}
        out["volume_ratio_reason"] = "F_FA is empty (the soft-margin FA loop tightened beyond the admissible step)"
    elif not claims["strict_inclusion"]:
        out["volume_ratio"] = {"ratio": 1.0, "stderr": 0.0, "ci_low": 1.0, "ci_high": 1.0, "method": "exact-equal"}
        out["volume_ratio_reason"] = "F_FA = F_std (see failed_assumption)"
    else:
        out["volume_ratio"], out["volume_ratio_reason"] = _volume_ratio(
            pairs.delta, m_std, m_fa, claims["radius_bound"], samples, seed)
    return out


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
from fairl_opt._json import jsonable as _jsonable  # noqa: E402


#: ``fairl certify`` options whose argparse default is None, with the defaults they get once checked.
CERTIFY_DEFAULTS = dict(C=1.0, near_tie_quantile=0.1)


def add_certify_parser(subparsers):
    """Add ``certify`` to an argparse sub-parser collection; returns the parser."""
    from fairl_opt._args import HelpFormatter, nonnegative_int, positive_float, positive_int

    d = CERTIFY_DEFAULTS
    p = subparsers.add_parser(
        "certify", help="run the FA loop and certify F_FA ⊊ F_std on these pairs; prints JSON",
        description="Run the failure-aware loop and certify the theory claims (proofs/T2, T3) on PAIRS.npz.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("pairs", help=".npz with chosen, rejected[, kinds, prompt_ids]")
    p.add_argument("--method", choices=("fa-mm-qp", "fa-mm-lp"), default="fa-mm-qp", help="FA program")
    p.add_argument("--margin", choices=("hard", "soft"), default="hard", help="hard or soft margins")
    p.add_argument("--C", type=float, default=None,
                   help=f"soft-margin slack penalty (--margin soft; default: {d['C']})")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="volume-estimate samples per phase (default: the estimator's own)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the folds and the volume estimate")
    p.add_argument("--budget", type=positive_float, default=2.0, help="R = budget * min{||θ|| : Δθ >= m_FA}")
    p.add_argument("--no-volume", action="store_true", help="skip the Monte Carlo volume ratio")
    p.add_argument("--max-rounds", type=nonnegative_int, default=5, help="FA rounds after the standard solve")
    p.add_argument("--oof-folds", type=nonnegative_int, default=5, help="out-of-fold mining folds (0 = off)")
    p.add_argument("--near-tie-quantile", type=float, default=None,
                   help=f"near-tie threshold as a quantile of the margins (default: {d['near_tie_quantile']})")
    p.add_argument("--near-tie-threshold", type=float, default=None,
                   help="absolute near-tie threshold τ, instead of --near-tie-quantile")
    p.add_argument("--margin-step", type=float, default=0.5, help="FA margin tightening δ")
    p.add_argument("--allow-duplicates", action="store_true", help="accept identical pairs")
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=cmd_certify)
    return p


def cmd_certify(args) -> int:
    """Run ``fairl certify``: print (or write to ``--out``) the JSON of :func:`certify_claims`.

    Refuses (DataError) options that do not apply: ``--C`` without ``--margin soft``, both near-tie
    options, ``--samples`` with ``--no-volume``; checks ``--out`` before any work.
    """
    from fairl_opt._args import fill_defaults, given
    from fairl_opt._io import atomic_write_text, check_output_path
    from fairl_opt.pairs import load_npz

    if given(args, "C") and args.margin != "soft":
        raise DataError("--C applies to --margin soft only (a hard margin has no slack penalty)")
    if given(args, "near_tie_quantile") and given(args, "near_tie_threshold"):
        raise DataError("--near-tie-quantile and --near-tie-threshold exclude each other; pass one")
    if given(args, "samples") and args.no_volume:
        raise DataError("--samples applies to the volume ratio only, not with --no-volume")
    fill_defaults(args, CERTIFY_DEFAULTS)
    out = check_output_path(args.out) if args.out else None
    pairs, _ = load_npz(args.pairs, duplicates="allow" if args.allow_duplicates else "error")
    options = dict(max_rounds=args.max_rounds, oof_folds=args.oof_folds, margin_step=args.margin_step)
    if args.near_tie_threshold is not None:
        options["near_tie_threshold"] = args.near_tie_threshold
    else:
        options["near_tie_quantile"] = args.near_tie_quantile
    payload = certify_claims(pairs, args.method, args.margin, args.C, args.samples, args.seed,
                             budget=args.budget, volume=not args.no_volume, **options)
    payload = {"pairs": str(args.pairs), **payload}
    text = json.dumps(_jsonable(payload), indent=2)
    if out:
        atomic_write_text(out, text + "\n")
    else:
        print(text)
    return 0
