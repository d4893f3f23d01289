"""A dense interior-point solver for the margin QP's dual, a box-constrained QP of low rank.

``min ½‖Δᵀα‖² − mᵀα  s.t.  0 ≤ α ≤ u``   (u = C, per-pair prices C_i, or ∞ for a hard margin),
θ = Δᵀα.

Mehrotra predictor–corrector. Each Newton system ``(ΔΔᵀ + D) dα = r`` (D diagonal) is solved by the
Sherman–Morrison–Woodbury identity through the d×d matrix ``I + Δᵀ D⁻¹ Δ`` (Ferris & Munson, 2002),
so an iteration costs O(k d²) for k > d rows and never forms a k×k matrix; for k ≤ d the k×k
system itself is cheaper and is factored directly.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve


class BoxQPResult:
    __slots__ = ("alpha", "theta", "iterations", "status")

    def __init__(self, alpha, theta, iterations, status):
        self.alpha = alpha
        self.theta = theta
        self.iterations = iterations
        self.status = status


def solve_box_qp(delta, margins, upper, *, gap_tol=1e-10, max_iter=100) -> BoxQPResult:
    """Solve the dual box QP by a primal–dual interior-point method.

    Parameters
    ----------
    delta : (k, d) array
    margins : (k,) array
    upper : float or (k,) array
        C (soft), ``np.inf`` (hard), or one positive finite bound C_i per row (per-pair prices).
    gap_tol : float
        Stop when the relative duality gap of the margin program is below this.

    Returns
    -------
    BoxQPResult with ``status`` "solved", "max_iter" or "unbounded" (a hard margin whose dual
    grows without bound: the constraints are infeasible).
    """
    k, d = delta.shape
    m = np.asarray(margins, dtype=np.float64)
    if np.ndim(upper) != 0:
        upper = np.asarray(upper, dtype=np.float64)
        if upper.shape != (k,) or not (np.isfinite(upper).all() and (upper > 0).all()):
            raise ValueError(f"upper must be a scalar or {k} positive finite bounds, got shape {upper.shape}")
    row_sq = np.einsum("ij,ij->i", delta, delta, dtype=np.float64)
    # Normalise (implicitly: Δ is never copied). With Δ = rΔ̃ (r = rms row norm) and m = t·m̃, the
    # dual in β = r²α/t is the same box QP with upper bound r²C/t. Choosing t = r²C (soft) puts the
    # box at [0, 1]; t = max|m| (hard) puts the margins at O(1). The scaled objective is r²/t²
    # times the original; the stopping rule is relative to the objective (no floor), like the
    # certificate's, so it means the same in both units. Per-pair bounds C_i use t = r² max_i C_i:
    # the box becomes [0, C_i / max C] ⊆ [0, 1].
    r = float(np.sqrt(row_sq.mean())) if row_sq.mean() > 0 else 1.0
    if np.ndim(upper) == 1:
        t = r * r * float(upper.max())
    elif np.isfinite(upper):
        t = r * r * upper
    else:
        t = float(np.abs(m).max()) or 1.0
    result = _ipm(delta, r, m / t, row_sq / r**2, upper * r**2 / t, gap_tol, max_iter)
    result.alpha = result.alpha * (t / r**2)
    result.theta = delta.T @ result.alpha
    return result


def _ipm(delta, r, m, row_sq, upper, gap_tol, max_iter) -> BoxQPResult:
    k, d = delta.shape
    per_pair = np.ndim(upper) == 1  # per-pair bounds (always finite)
    finite = per_pair or bool(np.isfinite(upper))
    if per_pair:
        alpha = 0.5 * upper
    elif finite:
        alpha = np.full(k, 0.5 * upper)
    else:
        alpha = np.maximum(np.abs(m), 1e-3) / np.maximum(row_sq, 1e-300)
    z = np.ones(k)
    w = np.ones(k) if finite else np.zeros(k)
    scale = float(np.abs(m).max()) or 1.0
    n_comp = 2 * k if finite else k
    # Newton systems (Δ̃Δ̃ᵀ + D) dα = r: directly through the k×k kernel when k ≤ d, else by
    # Woodbury through the d×d matrix I + Δ̃ᵀD⁻¹Δ̃ (never a k×k matrix for k > d).
    kernel = (delta @ delta.T) / (r * r) if k <= d else None
    work = np.empty_like(delta, dtype=np.float64) if kernel is None else None
    status = "max_iter"
    best = None
    for iteration in range(1, max_iter + 1):
        theta = (delta.T @ alpha) / r
        grad = (delta @ theta) / r - m  # ∇ of ½‖Δ̃ᵀα‖² − mᵀα
        s = upper - alpha if finite else None
        # relative duality gap of the margin program (primal P(θ), dual D(α))
        shortfall = np.maximum(0.0, m - (grad + m))
        half = 0.5 * float(theta @ theta)
        dual = float(m @ alpha) - half
        if finite:
            primal = half + (float(upper @ shortfall) if per_pair else upper * float(shortfall.sum()))
            gap_ok = primal - dual <= gap_tol * abs(primal)
            feasible = True
        else:
            primal = half
            gap_ok = primal - dual <= gap_tol * abs(primal)
            feasible = float(shortfall.max()) <= 1e-9 * scale
        if gap_ok and feasible:
            status = "solved"
            break
        # rounding can end progress just above the tolerance: keep the best certified point
        if feasible and (best is None or primal - dual < best[0]):
            best = (primal - dual, alpha.copy())
        if not finite and float(alpha.max()) > 1e12 * max(1.0, scale / max(float(row_sq.min()), 1e-300)):
            status = "unbounded"
            break
        r_d = grad - z + (w if finite else 0.0)
        mu = (float(alpha @ z) + (float(s @ w) if finite else 0.0)) / n_comp
        diag = z / alpha + (w / s if finite else 0.0)
        inv = 1.0 / diag
        try:
            if kernel is not None:
                # k ≤ d: factor the k×k system (Δ̃Δ̃ᵀ + D) directly
                system = kernel.copy()
                system[np.diag_indices(k)] += diag
                factor = cho_factor(system, overwrite_a=True, check_finite=False)
            else:
                np.multiply(delta, (np.sqrt(inv) / r)[:, None], out=work)
                gram = work.T @ work
                gram[np.diag_indices(d)] += 1.0
                factor = cho_factor(gram, overwrite_a=True, check_finite=False)
        except LinAlgError:
            status = "numerical"
            break

        def newton(rhs):
            if kernel is not None:
                return cho_solve(factor, rhs, check_finite=False)
            y = inv * rhs
            return y - inv * (delta @ cho_solve(factor, (delta.T @ y) / r, check_finite=False)) / r

        # predictor (affine scaling)
        rhs = -r_d - z + (w if finite else 0.0)
        d_alpha = newton(rhs)
        d_z = -z - (z / alpha) * d_alpha
        d_w = (-w + (w / s) * d_alpha) if finite else None
        step = _max_step(alpha, d_alpha, z, d_z, s, w, d_w)
        comp = (alpha + step * d_alpha) @ (z + step * d_z)
        if finite:
            comp += (s - step * d_alpha) @ (w + step * d_w)
        sigma = min(1.0, (comp / n_comp / mu) ** 3) if mu > 0 else 0.0
        # corrector
        target = sigma * mu
        corr_lo = target - alpha * z - d_alpha * d_z
        rhs = -r_d + corr_lo / alpha
        if finite:
            corr_hi = target - s * w + d_alpha * d_w  # ds_aff = −dα_aff
            rhs -= corr_hi / s
        d_alpha = newton(rhs)
        d_z = (corr_lo - z * d_alpha) / alpha
        d_w = ((corr_hi + w * d_alpha) / s) if finite else None
        step = min(1.0, 0.995 * _max_step(alpha, d_alpha, z, d_z, s, w, d_w, limit=np.inf))
        alpha = alpha + step * d_alpha
        z = z + step * d_z
        if finite:
            w = w + step * d_w
            alpha = np.minimum(alpha, upper * (1 - 1e-16))
    if status != "solved" and best is not None:
        alpha = best[1]
    return BoxQPResult(np.clip(alpha, 0.0, upper), None, iteration, status)


def _max_step(alpha, d_alpha, z, d_z, s, w, d_w, limit=1.0):
    """Largest step in [0, limit] keeping α, z (and u − α, w) non-negative."""
    step = limit
    pairs = [(alpha, d_alpha), (z, d_z)]
    if s is not None:
        pairs += [(s, -d_alpha), (w, d_w)]
    for value, direction in pairs:
        neg = direction < 0
        if neg.any():
            step = min(step, float(np.min(-value[neg] / direction[neg])))
    return step
