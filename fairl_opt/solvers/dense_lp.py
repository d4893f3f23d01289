"""A dense interior-point solver for the margin LPs (``mm-lp``), through their dual.

The programs ``min ‖θ‖₁ or ‖θ‖_∞ (+ Σ u_i ξ_i)  s.t.  Δ_iθ (+ ξ_i) ≥ m_i, ξ ≥ 0`` have the duals

    l1:    max mᵀα  s.t.  −1 ≤ Δᵀα ≤ 1,          0 ≤ α ≤ u
    linf:  max mᵀα  s.t.  ‖Δᵀα‖₁ ≤ 1,            0 ≤ α ≤ u    (u_i = C_i, or ∞ for a hard margin)

Written as a bounded standard-form LP ``min cᵀx  s.t.  Ax = b,  l ≤ x ≤ u`` with few rows — d for l1
(``Δᵀα − g = 0``, −1 ≤ g ≤ 1), d + 1 for linf (``Δᵀα − p + q = 0``, ``Σp + Σq + r = 1``, p, q, r ∈
[0, 1]) — its Lagrange multipliers y of the d equality rows are −θ, and the bound multipliers of α
are the slacks of the margin constraints. So one primal–dual method solves both programs at once.

Mehrotra's predictor–corrector (Wright, *Primal-Dual Interior-Point Methods*, 1997, ch. 10), with
separate primal and dual steps. Each Newton system is reduced to the normal equations
``A Θ Aᵀ dy = r`` (Θ diagonal). With A = [Δᵀ | B] (B the norm's few columns above) that is

    (Δᵀ Θ_α Δ + S) dy = r,      S = B Θ_B Bᵀ  (diagonal for l1; diagonal plus a border for linf)

formed by one BLAS rank-k update (syrk) into a d×d matrix and Cholesky-factored: O(k d²) per
iteration, never a k×k matrix (see :class:`_Normal` for why not the k×k form when k < d). Every
direction gets one step of iterative refinement on the exact residual A·dx − r_p, which repairs
the digits the normal equations lose. Up to
:data:`CORRECTORS` Gondzio centrality correctors follow each Mehrotra direction (each costs two
triangular solves and four passes over Δ, against one k×d² update for a factorisation).

Rows are normalised implicitly (Δ_i/‖Δ_i‖, with m_i, u_i and α_i mapped exactly; Δ is never copied
but for the one weighted work array), and m by its largest entry, so the method sees pairs of one
size. Measured at n = 3000, d = 576 (the detox simulator, C = 1, one thread): 18 iterations, about
0.5 s for l1 and for linf, HiGHS's interior point with crossover on the same dual ≈ 5 s.

The stopping rule is the certificate's (:mod:`fairl_opt.solvers.certificate`): θ = −y, α clipped to
its box and scaled into the dual-norm ball; stop when P(θ) − D(α) ≤ gap_tol·|P| and, for a hard
margin, no margin is short by more than 1e-9 of the largest. A hard margin whose multipliers grow
without bound (the dual LP is unbounded: no θ meets the margins) ends with status ``"diverged"``;
the caller decides what that means (:class:`~fairl_opt.solvers.lp_ipm.DenseLP` asks HiGHS and the
Farkas search).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

#: Fraction of the largest step to the boundary taken (primal and dual separately).
STEP_FRACTION = 0.995
#: A hard margin's multipliers beyond this (in units where rows and margins have size 1, with the
#: starting point of size 1) mean the dual is unbounded.
DIVERGED = 1e12
#: Gondzio centrality correctors per iteration (measured at n = 3000, d = 576, l1: 25 → 20
#: iterations with 2; 4 gain nothing more).
CORRECTORS = 2
#: Steps of iterative refinement per direction (without one, linf stalled at gaps of 1e-9 at
#: n = 3000, d = 576: the border's Schur complement loses digits).
REFINEMENTS = 1


class DenseLPResult:
    """What :func:`solve_dense_lp` found: θ, α (original units), iterations, status and the
    relative gap of the point returned (``status``: ``"solved"``, ``"max_iter"``, ``"diverged"``
    or ``"numerical"``)."""

    __slots__ = ("theta", "alpha", "iterations", "status", "relative_gap")

    def __init__(self, theta, alpha, iterations, status, relative_gap):
        self.theta = theta
        self.alpha = alpha
        self.iterations = iterations
        self.status = status
        self.relative_gap = relative_gap


def solve_dense_lp(delta, margins, upper, norm, *, gap_tol=1e-9, max_iter=100) -> DenseLPResult:
    """Solve the l1 or linf margin LP by the interior-point method of the module docstring.

    Parameters
    ----------
    delta : (k, d) float64 array
        Difference rows (not copied).
    margins : (k,) array
    upper : float or (k,) array
        The slack price C (soft), per-pair prices C_i, or ``np.inf`` (hard margin).
    norm : {"l1", "linf"}
    gap_tol : float
        Stop when the relative duality gap P(θ) − D(α) ≤ gap_tol·|P|.
    max_iter : int

    Returns
    -------
    DenseLPResult
        θ (for a hard margin scaled up, by at most the relative shortfall, until every margin that
        a scaling can meet holds) and α clipped to [0, u]; the best point seen when not solved.
    """
    k, d = delta.shape
    m = np.asarray(margins, dtype=np.float64)
    if not (m > 0).any():
        # θ = 0 meets every margin at no cost, and α = 0 proves it (the gap P − D would otherwise
        # be measured against P → 0 and never close)
        return DenseLPResult(np.zeros(d), np.zeros(k), 0, "solved", 0.0)
    u = np.broadcast_to(np.asarray(upper, dtype=np.float64), (k,))
    rho = np.sqrt(np.einsum("ij,ij->i", delta, delta))
    rho[rho == 0] = 1.0
    m_unit = m / rho
    scale = float(np.abs(m_unit).max()) or 1.0
    problem = _Problem(delta, rho, m_unit / scale, u * rho, norm)
    # a stalling or diverging run can overflow in its last steps; _ipm checks for that itself
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        theta, alpha, iterations, status, gap = _ipm(problem, gap_tol, max_iter)
    return DenseLPResult(theta * scale, alpha / rho, iterations, status, gap)


class _Problem:
    """The dual LP in the normalised units: x = (α̃, x_B), A = [Δ̃ᵀ | B], with Δ̃ = diag(1/ρ)Δ."""

    def __init__(self, delta, rho, m, u, norm):
        k, d = delta.shape
        self.delta, self.rho, self.m, self.norm = delta, rho, m, norm
        self.k, self.d = k, d
        self.hard = not np.isfinite(u).all()
        if norm == "l1":  # Δ̃ᵀα − g = 0, −1 ≤ g ≤ 1
            self.rows, n_b = d, d
            lower_b, upper_b, self.b = -np.ones(d), np.ones(d), np.zeros(d)
        elif norm == "linf":  # Δ̃ᵀα − p + q = 0, Σp + Σq + r = 1, 0 ≤ p, q, r ≤ 1
            self.rows, n_b = d + 1, 2 * d + 1
            lower_b, upper_b = np.zeros(n_b), np.ones(n_b)
            self.b = np.zeros(d + 1)
            self.b[d] = 1.0
        else:
            raise ValueError(f"norm must be 'l1' or 'linf', got {norm!r}")
        self.lower = np.r_[np.zeros(k), lower_b]
        self.upper = np.r_[u, upper_b]
        self.cost = np.r_[-m, np.zeros(n_b)]
        self.hi = np.flatnonzero(np.isfinite(self.upper))  # variables with an upper bound

    # products with A = [Δ̃ᵀ | B] and Aᵀ
    def times(self, x):
        k, d = self.k, self.d
        out = np.zeros(self.rows)
        out[:d] = self.delta.T @ (x[:k] / self.rho)
        xb = x[k:]
        if self.norm == "l1":
            out -= xb
        else:
            out[:d] += xb[d:2 * d] - xb[:d]
            out[d] = xb.sum()
        return out

    def times_t(self, y):
        d = self.d
        top = (self.delta @ y[:d]) / self.rho
        if self.norm == "l1":
            return np.r_[top, -y]
        return np.r_[top, y[d] - y[:d], y[d] + y[:d], y[d]]

    def dual_norm(self, g):
        return float(np.abs(g).max() if self.norm == "l1" else np.abs(g).sum())

    def primal_norm(self, theta):
        return float(np.abs(theta).sum() if self.norm == "l1" else np.abs(theta).max())


class _Normal:
    """The normal matrix A Θ Aᵀ = Δ̃ᵀΘ_αΔ̃ + S for one Θ, factored; ``solve(r)`` solves with it.

    Δ̃ᵀΘ_αΔ̃ plus S's diagonal by one syrk into a d×d matrix, Cholesky; the linf border
    (S's last row and column) by block elimination with that factor. (The k×k form for k < d,
    ``Θ_α⁻¹ + Δ̃S⁻¹Δ̃ᵀ`` with ``dy = S⁻¹(r − Δ̃ᵀdα')``, was tried and dropped: near the optimum
    S⁻¹ reaches 1e10 and more on the coordinates where θ_k ≠ 0, and the difference it multiplies
    loses every digit — the method stalled at gaps of 1e-6 on 12 pairs in 30 features.)"""

    def __init__(self, problem: _Problem, theta_diag, work):
        p = problem
        k, d = p.k, p.d
        t_alpha, t_b = theta_diag[:k], theta_diag[k:]
        if p.norm == "l1":
            s_diag, self.border = t_b, None
        else:
            tp, tq, tr = t_b[:d], t_b[d:2 * d], t_b[2 * d]
            s_diag, self.border = tp + tq, tq - tp
            corner = tr + tp.sum() + tq.sum()
        # (leaving out the rows whose Θ_i fell below 1e-8 of the largest saved 10 % at n = 3000,
        # d = 576, and made a linf working set of 2038 pairs in 64 features stall)
        block = np.multiply(p.delta, (np.sqrt(t_alpha) / p.rho)[:, None], out=work)
        gram = block.T @ block  # numpy computes it by a BLAS rank-k update (syrk)
        gram[np.diag_indices(d)] += s_diag
        self.factor = _cholesky(gram)
        if self.border is not None:
            self.k_border = cho_solve(self.factor, self.border, check_finite=False)
            self.schur = corner - float(self.border @ self.k_border)
            if not self.schur > 0:
                raise LinAlgError("linf border: Schur complement not positive")

    def solve(self, r):
        if self.border is None:
            return cho_solve(self.factor, r, check_finite=False)
        d = r.size - 1
        top = cho_solve(self.factor, r[:d], check_finite=False)
        last = (r[d] - float(self.border @ top)) / self.schur
        return np.r_[top - self.k_border * last, last]


def _cholesky(matrix):
    """Cholesky factor of an SPD matrix; on failure (rounding near the optimum makes it
    semidefinite) once more with the diagonal raised by 1e-13 of its largest entry."""
    try:
        return cho_factor(matrix, lower=False, overwrite_a=False, check_finite=False)
    except LinAlgError:
        diag = np.diag_indices(matrix.shape[0])
        matrix[diag] += 1e-13 * float(np.abs(matrix[diag]).max()) + 1e-300
        return cho_factor(matrix, lower=False, overwrite_a=True, check_finite=False)


def _start(p: _Problem):
    """A strictly interior starting point: α̃ = min(1, ũ/2) (rows and margins have size 1), the
    norm variables matching Δ̃ᵀα̃ as far as their boxes allow (linf: p − q = Δ̃ᵀα̃ scaled into
    Σp + Σq ≤ ½), y = 0, and bound multipliers that make (x, y = 0, z, w) dual feasible where the
    bounds allow. (Measured against a start inside the dual-norm ball and one with balanced
    products zᵢsᵢ = μ₀: 18 iterations instead of 20–30 at n = 3000, d = 576, no worse elsewhere.)"""
    k, d = p.k, p.d
    alpha = np.minimum(1.0, 0.5 * p.upper[:k])
    g = p.delta.T @ (alpha / p.rho)
    if p.norm == "l1":
        x_b = np.clip(g, -0.5, 0.5)
    else:
        plus, minus = np.maximum(g, 0.0) + 0.1 / d, np.maximum(-g, 0.0) + 0.1 / d
        shrink = min(1.0, 0.5 / float(plus.sum() + minus.sum()))
        x_b = np.r_[plus * shrink, minus * shrink, 0.5]
    x = np.r_[alpha, x_b]
    z = np.maximum(p.cost, 0.0) + 1.0
    w = np.maximum(-p.cost[p.hi], 0.0) + 1.0
    return x, np.zeros(p.rows), z, w


def _evaluate(p: _Problem, x, y):
    """(θ, α, relative gap, feasible) at the current iterate, as the certificate would judge it
    (in the normalised units, where the relative figures are those of the original program)."""
    k, d = p.k, p.d
    theta = -y[:d]
    score = (p.delta @ theta) / p.rho
    if p.hard:
        short = p.m - score
        bad = short > 0
        factor = 1.0
        if bad.any() and (score[bad] > 0).all() and (p.m[bad] > 0).all():
            factor = float(np.max(p.m[bad] / score[bad]))
            if factor > 1.0 + 1e-6:  # repair only last-digit shortfalls
                factor = 1.0
        theta = theta * factor
        short = p.m - score * factor
        top = float(np.abs(p.rho * p.m).max()) or 1.0
        feasible = float(np.max(p.rho * short, initial=0.0)) <= 1e-9 * top
        primal = p.primal_norm(theta)
    else:
        feasible = True
        primal = p.primal_norm(theta) + float(p.upper[:k] @ np.maximum(p.m - score, 0.0))
    alpha = np.clip(x[:k], 0.0, p.upper[:k])
    size = p.dual_norm(p.delta.T @ (alpha / p.rho))
    dual = float(p.m @ alpha) / max(1.0, size)
    gap = primal - dual
    rel = 0.0 if gap <= 0 else (gap / abs(primal) if primal != 0 else np.inf)
    return theta, alpha, rel, feasible


def _ipm(p: _Problem, gap_tol, max_iter):
    """Mehrotra predictor–corrector on the bounded standard-form LP of :class:`_Problem`.
    Returns (θ, α̃, iterations, status, relative gap).

    The iterates are the distances to the bounds, s = x − l and t = u − x (where u is finite),
    kept as variables of their own (t with the residual u − l − s − t in the Newton system):
    recomputing u − x from x would lose every digit of a g_k next to ±1."""
    k, d = p.k, p.d
    lower, upper, cost, hi = p.lower, p.upper, p.cost, p.hi
    x, y, z, w = _start(p)
    s = x - lower
    t = upper[hi] - x[hi]
    width = upper[hi] - lower[hi]
    work = np.empty((k, d))
    n_comp = s.size + t.size
    best = None
    status = "max_iter"
    for iteration in range(1, max_iter + 1):
        x = lower + s
        theta, alpha, gap, feasible = _evaluate(p, x, y)
        if feasible and (best is None or gap < best[2]):
            best = (theta, alpha, gap)
        if feasible and gap <= gap_tol:
            status = "solved"
            break
        if p.hard and float(x[:k].max()) > DIVERGED:
            status = "diverged"
            break
        r_p = p.b - p.times(x)
        r_d = cost - p.times_t(y) - z
        r_d[hi] += w
        r_u = width - s[hi] - t
        inverse = z / s
        inverse[hi] += w / t
        theta_diag = 1.0 / inverse
        mu = (float(s @ z) + float(t @ w)) / n_comp
        if not (np.isfinite(mu) and np.isfinite(y).all() and np.isfinite(theta_diag).all()):
            status = "numerical"
            break
        try:
            normal = _Normal(p, theta_diag, work)
        except LinAlgError:
            status = "numerical"
            break

        def direction(c_z, c_w):
            c_w = c_w - w * r_u
            rhs_d = r_d - c_z / s
            rhs_d[hi] += c_w / t
            d_y = normal.solve(r_p + p.times(theta_diag * rhs_d))
            d_s = theta_diag * (p.times_t(d_y) - rhs_d)
            for _ in range(REFINEMENTS):
                # iterative refinement on the primal residual A ds − r_p (A Θ Aᵀ formed and
                # factored in float64 can lose digits; A ds is computed from Δ directly)
                miss = r_p - p.times(d_s)
                fix = normal.solve(miss)
                d_y = d_y + fix
                d_s = d_s + theta_diag * p.times_t(fix)
            return d_s, r_u - d_s[hi], d_y, (c_z - z * d_s) / s, (c_w + w * d_s[hi]) / t

        # predictor (affine scaling), then Mehrotra's centring and second-order correction
        d_s, d_t, d_y, d_z, d_w = direction(-s * z, -t * w)
        a_p = _max_step(s, d_s, t, d_t)
        a_d = _max_step(z, d_z, w, d_w)
        mu_aff = (float((s + a_p * d_s) @ (z + a_d * d_z)) + float((t + a_p * d_t) @ (w + a_d * d_w))) / n_comp
        sigma = min(1.0, (mu_aff / mu) ** 3) if mu > 0 else 0.0
        c_z = sigma * mu - s * z - d_s * d_z
        c_w = sigma * mu - t * w - d_t * d_w
        step = direction(c_z, c_w)
        a_p, a_d = _steps(s, t, z, w, step)
        # Gondzio's centrality correctors: push the complementarity products of a longer trial
        # step into [0.1, 10]·σμ; a correction costs two triangular solves and four passes over Δ
        for _ in range(CORRECTORS):
            if min(a_p, a_d) >= 1.0:
                break
            aim_p, aim_d = min(1.0, 1.5 * a_p + 0.1), min(1.0, 1.5 * a_d + 0.1)
            target = sigma * mu
            trial_z = (s + aim_p * step[0]) * (z + aim_d * step[3])
            trial_w = (t + aim_p * step[1]) * (w + aim_d * step[4])
            fix_z = np.clip(target * 0.1 - trial_z, 0, None) + np.clip(target * 10 - trial_z, None, 0)
            fix_w = np.clip(target * 0.1 - trial_w, 0, None) + np.clip(target * 10 - trial_w, None, 0)
            np.maximum(fix_z, -10 * target, out=fix_z)
            np.maximum(fix_w, -10 * target, out=fix_w)
            c_z, c_w = c_z + fix_z, c_w + fix_w
            corrected = direction(c_z, c_w)
            b_p, b_d = _steps(s, t, z, w, corrected)
            if b_p + b_d < 1.01 * (a_p + a_d):
                break
            step, a_p, a_d = corrected, b_p, b_d
        d_s, d_t, d_y, d_z, d_w = step
        s = s + a_p * d_s
        t = t + a_p * d_t
        y = y + a_d * d_y
        z = z + a_d * d_z
        w = w + a_d * d_w
    if status != "solved" and best is not None:
        theta, alpha, gap = best
    return theta, alpha, iteration, status, gap


def _steps(s, t, z, w, step):
    """The primal and dual step lengths (a fraction :data:`STEP_FRACTION` of the way to the
    boundary, at most 1) along ``step`` = (ds, dt, dy, dz, dw)."""
    a_p = min(1.0, STEP_FRACTION * _max_step(s, step[0], t, step[1], limit=np.inf))
    a_d = min(1.0, STEP_FRACTION * _max_step(z, step[3], w, step[4], limit=np.inf))
    return a_p, a_d


def _max_step(a, da, b, db, limit=1.0):
    """Largest step in [0, limit] keeping a + t·da ≥ 0 and b + t·db ≥ 0."""
    step = limit
    for value, change in ((a, da), (b, db)):
        neg = change < 0
        if neg.any():
            step = min(step, float(np.min(-value[neg] / change[neg])))
    return step
