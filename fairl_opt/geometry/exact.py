"""Exact rational checks of geometric claims on float data.

Every float is a dyadic rational, so sums and products of the data, a candidate θ and multipliers y
can be evaluated with no rounding at all (:class:`fractions.Fraction`, or integers times one power of
two). The conic programs of :mod:`fairl_opt.geometry.conic` only *propose* points and multipliers;
a claim reported as exact has passed one of these functions.

The statements are about the data in their own units: for margins m and a norm budget R,
``F(m; R) = {θ : ‖θ‖₂ ≤ R, Δθ ≥ m}``. A :class:`~fairl_opt.geometry.feasible_set.FeasibleSet`
``{‖θ‖ ≤ 1, Aθ ≥ b}`` is the case R = 1, Δ = A, m = b.

Farkas radii: :func:`exact_farkas_radius` is the certified version of
:func:`fairl_opt.solvers.infeasibility.farkas_radius`, the backends' test whether a certificate rules
out every θ float64 resolves. That one returns float(bound)/sqrt(float(‖Δᵀy‖²)) without rounding it
down, falls back to a floating-point error bound on large supports and takes y as it is; this one
rounds the radius down until it is proved, always works in rationals and also tries y rounded to
nearby rationals (which often makes Δᵀy = 0 exactly). The claims need the proved value, the backends
the fast one: both stay.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from fairl_opt.exceptions import DataError

#: Denominators tried when multipliers are rounded to rationals (None: the float values as they are).
DENOMINATORS = (None, 10**6, 10**9)


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
    """n·2^exponent as a Fraction."""
    return Fraction(n * (1 << exponent)) if exponent >= 0 else Fraction(n, 1 << -exponent)


def exact_residuals(delta, theta, margins) -> list[Fraction]:
    """Δ_iθ − m_i for every row, exactly (rational), for float ``delta``, ``theta``, ``margins``."""
    A, ea = _dyadic(np.atleast_2d(delta))
    t, et = _dyadic(np.ravel(theta))
    m, em = _dyadic(np.ravel(margins))
    products = A.dot(t) if A.shape[1] else np.zeros(A.shape[0], dtype=object)
    return [_fraction(int(p), ea + et) - _fraction(int(b), em) for p, b in zip(products, m)]


def _exact_sq_norm(x) -> Fraction:
    """‖x‖₂² exactly."""
    v, e = _dyadic(np.ravel(x))
    return _fraction(int(sum(int(a) * int(a) for a in v)), 2 * e)


def _exact_row_sq_norms(delta) -> list[Fraction]:
    """‖Δ_i‖₂² of every row, exactly."""
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


def _rationalise(y, denominator: int | None) -> list[Fraction]:
    """Each entry of y as a Fraction: exactly, or the closest one with at most ``denominator``."""
    if denominator is None:
        return [Fraction(float(v)) for v in y]
    return [Fraction(float(v)).limit_denominator(denominator) for v in y]


def exact_dual_bound_at_least(delta, margins, radius_bound, direction, y, rows, level,
                              denominators=DENOMINATORS) -> bool:
    """Exactly: mᵀy − R‖g − Δᵀy‖ ≥ level for y ≥ 0 on ``rows`` (weak duality then gives
    min_{F(m;R)} gᵀθ ≥ level).

    ``y`` holds floats, tried as given and rounded to rationals with each of ``denominators``
    (a solver's multipliers are often a rounding away from a simpler exact certificate).
    """
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    rows = [int(i) for i in rows]
    for den in denominators:
        ys = _rationalise(y, den)
        if any(v < 0 for v in ys):
            continue
        residual = [Fraction(float(g)) for g in np.ravel(direction)]
        value = Fraction(0)
        for i, yi in zip(rows, ys):
            if yi:
                value += yi * Fraction(float(margins[i]))
                for k in range(delta.shape[1]):
                    residual[k] -= yi * Fraction(float(delta[i, k]))
        gap = value - Fraction(float(level))
        if gap >= 0 and gap * gap >= Fraction(float(radius_bound)) ** 2 * sum(r * r for r in residual):
            return True
    return False


def exact_farkas_radius(delta, margins, y, rows=None, denominators=DENOMINATORS):
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


def farkas_on_unit_rows(delta, margins):
    """A Farkas certificate for {Δθ ≥ m} from :func:`fairl_opt.solvers.find_conflict` asked on rows
    scaled to unit norm (the same set; on raw rows an LP tolerance can mistake a tiny row for a zero
    one), with its exact radius: ``(pairs, y, radius)`` for the raw rows, or None when none is found."""
    from fairl_opt.solvers import find_conflict

    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    margins = np.asarray(margins, dtype=np.float64)
    norms = np.linalg.norm(delta, axis=1)
    found = find_conflict(delta / norms[:, None], margins / norms)
    if found is None:
        return None
    pairs = np.asarray(found[0], dtype=np.int64)
    y = np.asarray(found[1], dtype=np.float64) / norms[pairs]  # multipliers of the raw rows
    return pairs.tolist(), y, exact_farkas_radius(delta[pairs], margins[pairs], y)


def verified_conflict(delta, margins, min_radius=1e6):
    """A Farkas certificate that {Δθ ≥ m} is empty, checked exactly, or None.

    The certificate of :func:`farkas_on_unit_rows` is accepted only when :func:`exact_farkas_radius`
    proves no θ with ‖θ‖ < ρ meets the constraints, with ρ ≥ ``min_radius`` · max(1, max_i |m_i|/‖Δ_i‖)
    (∞ when Δᵀy = 0 exactly).

    Returns
    -------
    (pairs, y, radius) or None
    """
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    margins = np.asarray(margins, dtype=np.float64)
    found = farkas_on_unit_rows(delta, margins)
    if found is None:
        return None
    norms = np.linalg.norm(delta, axis=1)
    if found[2] < min_radius * max(1.0, float(np.max(np.abs(margins) / norms))):
        return None
    return found
