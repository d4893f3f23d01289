"""A first guess of the soft-margin QP's optimum for large n: Newton steps on a smoothed primal.

The working-set QP (:mod:`fairl_opt.solvers.working_set`) needs, before its first box QP, a guess
of which pairs end on their margin (free, 0 < α_i < C_i), short of it (α_i = C_i) or past it
(α_i = 0). Dual coordinate descent from α = 0 is slow to find the pairs at their price when there
are many (noisy data at n = 10⁵: after 20 epochs every multiplier was still below 1 % of C and
the working set kept 72 % of the pairs). The primal, a d-dimensional problem, gets there in a few
passes over Δ instead: with the hinge smoothed over a width h (Huber),

    min_θ ½‖θ‖² + Σ_i C_i ℓ_h(m_i − Δ_iθ),   ℓ_h(r) = 0 (r ≤ 0), r²/(2h) (0 < r < h), r − h/2 (r ≥ h),

is piecewise quadratic with Hessian ``I + Σ_{0<r_i<h} (C_i/h) Δ_iΔ_iᵀ`` (only the pairs inside the
smoothing band count), so Newton steps cost one pass for Δᵀv, one for Δp and a d×d Cholesky; h is
cut by about three per level (continuation), each level warm-started from the last. |ℓ_h − hinge| ≤ h/2,
so the guess approaches the QP's θ as h does. It is only a guess: the working set built from it
is corrected by the cutting-plane rounds and the answer judged by the certificate over all n.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from fairl_opt.programs.blocks import as_rows


def smoothed_primal_guess(delta, margins, caps, *, levels=(1.0, 0.3, 0.1, 0.03, 0.01), steps=6, hessian_rows=4000,
                          seed=0) -> np.ndarray:
    """θ near the soft-margin QP's optimum (see the module docstring).

    Parameters
    ----------
    delta : (n, d) array
    margins : (n,) array
    caps : (n,) array
        The slack prices C_i (finite, positive).
    levels : tuple of float
        Smoothing widths h, relative to max|m|, largest first.
    steps : int
        Newton steps per level at most (a level also ends when its gradient vanishes).
    hessian_rows : int
        At most this many of the band's pairs enter each Hessian (a random sample, reweighted):
        the step stays a descent direction, and the line search keeps the progress.
    seed : int
        Seed of that sample.

    Returns
    -------
    (d,) array
    """
    n, d = delta.shape
    view = as_rows(delta)  # Δx and Δᵀy by float64 blocks when Δ is float32 or blocked
    scale = float(np.abs(margins).max()) or 1.0
    rng = np.random.default_rng(seed)
    theta = np.zeros(d)
    scores = np.zeros(n)  # Δθ, kept up to date as scores + t·Δp (no extra pass per step)
    for level in levels:
        h = level * scale
        for _ in range(steps):
            shortfall = margins - scores
            weights, band = _loss_weights(shortfall, caps, h)
            grad = theta - view.T @ weights
            if float(np.linalg.norm(grad)) <= 1e-9 * max(1.0, float(np.linalg.norm(theta))):
                break
            rows = np.flatnonzero(band)
            curvature = caps[rows] / h
            if rows.size > hessian_rows:
                pick = rng.choice(rows.size, hessian_rows, replace=False)
                rows, curvature = rows[pick], curvature[pick] * (rows.size / hessian_rows)
            block = np.asarray(delta[rows], dtype=np.float64)
            hessian = (block.T * curvature) @ block
            hessian[np.diag_indices(d)] += 1.0
            try:
                direction = cho_solve(cho_factor(hessian, check_finite=False), -grad, check_finite=False)
            except LinAlgError:
                direction = -grad
            change = view @ direction
            step = _exact_step(theta, direction, shortfall, change, caps, h)
            if step == 0.0:
                break
            theta = theta + step * direction
            scores = scores + step * change
    return theta


def _loss_weights(shortfall, caps, h):
    """(−∂loss/∂(Δθ) per pair, the pairs inside the smoothing band)."""
    linear = shortfall >= h
    band = (shortfall > 0) & ~linear
    weights = np.where(linear, caps, 0.0)
    weights[band] = caps[band] * shortfall[band] / h
    return weights, band


def _objective(theta, shortfall, caps, h) -> float:
    """½‖θ‖² + Σ C_i ℓ_h(r_i) at the shortfalls r = m − Δθ."""
    linear = shortfall >= h
    band = (shortfall > 0) & ~linear
    return (0.5 * float(theta @ theta) + float(caps[linear] @ (shortfall[linear] - 0.5 * h))
            + float(caps[band] @ (shortfall[band] ** 2)) / (2 * h))


def _exact_step(theta, direction, shortfall, change, caps, h, tol=1e-10, max_iter=100) -> float:
    """The step t ≥ 0 minimising the smoothed objective along ``direction`` (O(n) per trial: the
    shortfalls move as r − t·Δp).

    Along a line the objective φ(t) is a convex piecewise quadratic, so φ′ is monotone and piecewise
    linear: Newton steps on φ′ (exact within a piece) kept inside a bracket [lo, hi] that holds the
    root, bisecting when a Newton step leaves it. An exact step matters when θ is far from the
    optimum's scale (from θ = 0 a backtracking step along −∇ overshot to ‖θ‖ ≈ 60× the optimum's on
    well-separated data, and the next steps, nearly gradient steps, crawled back at 3 % each).
    Returns 0.0 when ``direction`` is not a descent direction."""
    base = float(theta @ direction)
    pp = float(direction @ direction)

    def slope_curv(t):
        r = shortfall - t * change
        linear = r >= h
        band = (r > 0) & ~linear
        pull = float(caps[linear] @ change[linear]) + float((caps[band] * r[band]) @ change[band]) / h
        return base + t * pp - pull, pp + float(caps[band] @ (change[band] ** 2)) / h

    slope0, _ = slope_curv(0.0)
    if not slope0 < 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(200):  # bracket the root of φ′ (φ′ grows at least like t‖p‖²)
        slope_hi, _ = slope_curv(hi)
        if slope_hi >= 0:
            break
        lo, hi = hi, 2.0 * hi
    t = 0.5 * (lo + hi)
    for _ in range(max_iter):
        slope, curv = slope_curv(t)
        if abs(slope) <= tol * abs(slope0) or hi - lo <= tol * hi:
            break
        if slope < 0:
            lo = t
        else:
            hi = t
        step = t - slope / curv if curv > 0 else 0.5 * (lo + hi)
        t = step if lo < step < hi else 0.5 * (lo + hi)
    return t
