"""Independent references for ``tests/test_differential.py``: written here, not fairl_opt's backends.

Nothing in this module imports a fairl_opt solver. It has three parts:

* **exact evaluation** of what a program says about a point θ: every Δ_iθ (+ o_i) is the correctly
  rounded value of the exact sum of the exact float products (Dekker's two-product plus
  :func:`math.fsum`; :class:`fractions.Fraction` when a product could under/overflow), so a
  constraint check Δ_iθ ≥ m_i and a slack max(0, m_i − Δ_iθ) are right to the last bit however
  much the row's terms cancel. Objectives are sums of non-negative terms, so they come out to a
  few ulps;
* **reference solves** with several formulations (cvxpy with Clarabel / OSQP / HiGHS, scipy's
  HiGHS and trust-region Newton, a damped Newton of this module for MaxEnt), on data rescaled by
  powers of two (exact, mapped back exactly) and unscaled. Every candidate θ is evaluated exactly; for hard margins it is first *repaired*
  (multiplied by max_i m_i/Δ_iθ, the best multiple of θ that satisfies every margin, then checked
  exactly), and only verified-feasible candidates count. The answer is the best of them: an upper
  bound on the optimum that no solver's judgement enters;
* a check of a Farkas certificate, and the LP ``max t s.t. Δ̂θ ≥ t·m̂, ‖θ‖∞ ≤ 1`` on unit rows that
  says whether a hard margin is strictly feasible at all.

The references can be wrong at extreme scales (a solver fails, a point misses a constraint); that
only loses candidates: what counts is the best point that verifies.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

# silencing C-level stdout is plumbing, not arithmetic: the reference stays independent of the solvers
from fairl_opt.solvers.reference import _stdout_silenced

_SPLIT = 134217729.0  # 2**27 + 1 (Veltkamp split of a float64)


# -- exact evaluation ----------------------------------------------------------------------------

def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p + e == a·b exactly (Dekker), elementwise; valid without under/overflow (checked by caller)."""
    p = a * b
    ca = _SPLIT * a
    ah = ca - (ca - a)
    al = a - ah
    cb = _SPLIT * b
    bh = cb - (cb - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _dekker_safe(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> bool:
    big = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    if not np.isfinite(big) or big > 2.0**995:
        return False
    nz = p[p != 0]
    # products whose error term could be subnormal, or products that underflowed to zero
    if nz.size and float(np.abs(nz).min()) < 2.0**-900:
        return False
    if np.any((p == 0) & (a != 0) & (b != 0)):
        return False
    return True


def exact_rows(delta: np.ndarray, theta: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """Correctly rounded Δ_iθ + shift_i for every row (exact sum of exact products)."""
    delta = np.asarray(delta, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    n = delta.shape[0]
    shift = np.zeros(n) if shift is None else np.asarray(shift, dtype=np.float64)
    if not (np.isfinite(theta).all() and np.isfinite(shift).all()):
        return np.full(n, np.nan)
    a = delta
    b = np.broadcast_to(theta, delta.shape)
    p, e = _two_product(a, b)
    out = np.empty(n)
    if _dekker_safe(a, b, p):
        for i in range(n):
            out[i] = math.fsum(np.concatenate([p[i], e[i], shift[i : i + 1]]))
        return out
    th = [Fraction(float(t)) for t in theta]
    for i in range(n):
        total = Fraction(float(shift[i]))
        for j in range(delta.shape[1]):
            total += Fraction(float(delta[i, j])) * th[j]
        out[i] = float(total)
    return out


def exact_residuals(delta, theta, margins) -> np.ndarray:
    """Correctly rounded Δ_iθ − m_i (its sign is the exact sign)."""
    return exact_rows(delta, theta, -np.asarray(margins, dtype=np.float64))


def exact_sum_squares(theta: np.ndarray) -> float:
    theta = np.asarray(theta, dtype=np.float64)
    if not np.isfinite(theta).all():
        return float("nan")
    p, e = _two_product(theta, theta)
    if _dekker_safe(theta, theta, p):
        return math.fsum(np.concatenate([p, e]))
    return float(sum(Fraction(float(t)) ** 2 for t in theta))


def margin_objective(delta, margins, norm: str, prices, theta) -> float:
    """P(θ) of the max-margin program (prices None: hard margin, regulariser only)."""
    theta = np.asarray(theta, dtype=np.float64)
    if not np.isfinite(theta).all():
        return float("nan")
    if norm == "l2":
        reg = 0.5 * exact_sum_squares(theta)
    elif norm == "l1":
        reg = math.fsum(np.abs(theta))
    else:
        reg = float(np.abs(theta).max())
    if prices is None:
        return reg
    slack = np.maximum(0.0, -exact_residuals(delta, theta, margins))
    return math.fsum([reg, *(np.asarray(prices, dtype=np.float64) * slack)])


def maxent_scores(delta, theta, offsets, temperatures) -> np.ndarray:
    return exact_rows(delta, theta, offsets) / temperatures


def maxent_objective(delta, reg, weights, temperatures, offsets, theta) -> float:
    """Σ w_i log(1 + exp(−s_i)) + (λ/2)‖θ‖², s_i = (Δ_iθ + o_i)/T_i with Δ_iθ + o_i exact-rounded."""
    theta = np.asarray(theta, dtype=np.float64)
    if not np.isfinite(theta).all():
        return float("nan")
    s = maxent_scores(delta, theta, offsets, temperatures)
    loss = weights * np.logaddexp(0.0, -s)
    return math.fsum([*loss, 0.5 * reg * exact_sum_squares(theta)])


def _pow2(x: float) -> float:
    """The power of two nearest to x > 0 (scaling by it is exact)."""
    return float(2.0 ** round(math.log2(x))) if x > 0 and np.isfinite(x) else 1.0


# -- hard-margin feasibility ---------------------------------------------------------------------

def repair(delta, margins, theta) -> np.ndarray | None:
    """The best positive multiple of θ that satisfies Δθ ≥ m exactly, or None if none exists."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (delta.shape[1],) or not np.isfinite(theta).all():
        return None
    r = exact_rows(delta, theta)
    if not (r > 0).all():
        return None
    factor = float(np.max(margins / r))
    if not (np.isfinite(factor) and factor > 0):
        return None
    candidate = theta * factor
    for _ in range(60):
        if not np.isfinite(candidate).all():
            return None
        if (exact_residuals(delta, candidate, margins) >= 0).all():
            return candidate
        factor *= 1.0 + 2.0**-45
        candidate = theta * factor
    return None


def is_feasible(delta, margins, theta) -> bool:
    return bool(np.isfinite(theta).all() and (exact_residuals(delta, theta, margins) >= 0).all())


def unit_rows(delta, margins):
    norms = np.linalg.norm(delta, axis=1)
    norms = np.where(norms > 0, norms, 1.0)
    unit = delta / norms[:, None]
    m = margins / norms
    return unit, m / float(np.abs(m).max())


def max_relative_margin(delta, margins) -> tuple[float, np.ndarray | None]:
    """max t s.t. Δ̂θ ≥ t·m̂, ‖θ‖∞ ≤ 1, t ≤ 1 on unit rows (m̂ scaled to max 1), with scipy's HiGHS.

    t > 0: a hard margin is strictly feasible (θ/t, repaired, is a candidate point); t ≤ 0 up to
    HiGHS's tolerances: infeasible, or feasible only by a margin below them.
    """
    from scipy.optimize import linprog

    unit, m = unit_rows(delta, margins)
    n, d = unit.shape
    c = np.zeros(d + 1)
    c[-1] = -1.0
    a_ub = np.hstack([-unit, m[:, None]])
    bounds = [(-1.0, 1.0)] * d + [(None, 1.0)]
    try:
        res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), bounds=bounds, method="highs",
                      options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    except Exception:  # noqa: BLE001 - a reference failing only loses a candidate
        return float("nan"), None
    if res.status != 0 or res.x is None:
        return float("nan"), None
    return float(res.x[-1]), np.asarray(res.x[:d])


def check_farkas(delta, margins, pairs, y) -> dict:
    """What a claimed Farkas certificate y ≥ 0 over ``pairs`` proves, evaluated exactly.

    Returns ``valid`` (shape, indices, y ≥ 0 finite, yᵀm > 0), ``ym`` = Σ y_i m_i,
    ``residual`` = ‖Σ y_i Δ_i‖₂, ``relative_residual`` = residual / Σ y_i ‖Δ_i‖₂, and ``radius``
    = yᵀm / residual: no θ with ‖θ‖₂ < radius satisfies the pairs (Cauchy–Schwarz), so the
    certificate proves infeasibility outright only when radius is infinite, and proves it for
    every θ up to a norm R when radius > R.
    """
    out = {"valid": False, "ym": float("nan"), "residual": float("nan"), "relative_residual": float("nan"),
           "radius": 0.0, "why": ""}
    n = delta.shape[0]
    if y is None:
        out["why"] = "farkas is None"
        return out
    try:
        idx = np.asarray(list(pairs), dtype=np.int64)
        y = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        out["why"] = f"unreadable certificate: {exc}"
        return out
    if idx.size == 0 or idx.shape != y.shape:
        out["why"] = f"{idx.size} pairs but farkas has shape {y.shape}"
        return out
    if idx.min() < 0 or idx.max() >= n:
        out["why"] = "pair index out of range"
        return out
    if not (np.isfinite(y).all() and (y >= 0).all()):
        out["why"] = "y not finite and non-negative"
        return out
    rows = delta[idx]
    ym = float(exact_rows(margins[idx][None, :], y)[0])
    combo = exact_rows(rows.T, y)  # Σ y_i Δ_i, per feature, exact-rounded
    residual = float(np.linalg.norm(combo))
    size = float(np.sum(y * np.linalg.norm(rows, axis=1)))
    out.update(ym=ym, residual=residual, relative_residual=residual / size if size > 0 else float("inf"))
    if not ym > 0:
        out["why"] = f"y·m = {ym:.3g} is not positive"
        return out
    out["valid"] = True
    out["radius"] = float("inf") if residual == 0 else ym / residual
    return out


# -- reference solves ----------------------------------------------------------------------------

@dataclass
class Reference:
    """Best verified point among the formulations (None: none verified)."""

    objective: float = float("inf")
    theta: np.ndarray | None = None
    source: str = ""
    tried: dict = field(default_factory=dict)  # formulation -> objective (nan: failed / infeasible)
    infeasible_votes: list = field(default_factory=list)  # formulations that reported infeasible
    relative_margin: float = float("nan")  # hard margins: the unit-row LP's t

    @property
    def found(self) -> bool:
        return self.theta is not None


def _offer(ref: Reference, name: str, theta, evaluate, feasible_fix=None):
    if theta is None:
        ref.tried.setdefault(name, float("nan"))
        return
    theta = np.asarray(theta, dtype=np.float64).ravel()
    if feasible_fix is not None:
        theta = feasible_fix(theta)
        if theta is None:
            ref.tried.setdefault(name, float("nan"))
            return
    value = evaluate(theta)
    ref.tried[name] = value
    if np.isfinite(value) and value < ref.objective:
        ref.objective, ref.theta, ref.source = value, theta, name


def _cvx_solve(problem, solver, **options):
    with warnings.catch_warnings(), _stdout_silenced():
        warnings.simplefilter("ignore")
        try:
            problem.solve(solver=solver, verbose=False, **options)
        except Exception:  # noqa: BLE001 - cvxpy/solver errors only lose a candidate
            return "error"
    return problem.status if problem.status is not None else "error"


_CLARABEL = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, max_iter=400)


def _margin_cvxpy(delta, margins, norm, prices, solver, dual=False):
    """Primal (or, for the QP, dual) max-margin program with cvxpy. Returns (θ, status)."""
    import cvxpy as cp

    n, d = delta.shape
    if dual:  # QP dual: max mᵀα − ½‖Δᵀα‖², 0 ≤ α ≤ C, θ = Δᵀα
        alpha = cp.Variable(n, nonneg=True)
        cons = [] if prices is None else [alpha <= prices]
        prob = cp.Problem(cp.Maximize(margins @ alpha - 0.5 * cp.sum_squares(delta.T @ alpha)), cons)
        status = _cvx_solve(prob, solver, **(_CLARABEL if solver == cp.CLARABEL else {}))
        if alpha.value is None:
            return None, status
        return delta.T @ np.asarray(alpha.value), status
    theta = cp.Variable(d)
    if norm == "l2":
        reg = 0.5 * cp.sum_squares(theta)
    elif norm == "l1":
        reg = cp.norm1(theta)
    else:
        reg = cp.norm_inf(theta)
    if prices is None:
        prob = cp.Problem(cp.Minimize(reg), [delta @ theta >= margins])
    else:
        xi = cp.Variable(n, nonneg=True)
        prob = cp.Problem(cp.Minimize(reg + prices @ xi), [delta @ theta + xi >= margins])
    options = {}
    if solver == cp.CLARABEL:
        options = _CLARABEL
    elif solver == cp.OSQP:
        options = dict(eps_abs=1e-11, eps_rel=1e-11, max_iter=200000, polish=True)
    status = _cvx_solve(prob, solver, **options)
    return (None if theta.value is None else np.asarray(theta.value)), status


def _margin_linprog(delta, margins, norm, prices):
    """The LP primal with scipy's HiGHS: θ = u − v (l1) or θ with a bound s (linf), slacks ξ."""
    from scipy.optimize import linprog

    n, d = delta.shape
    soft = prices is not None
    if norm == "l1":  # x = (u, v, ξ): min 1ᵀ(u+v) + Cᵀξ, Δ(u − v) + ξ ≥ m
        c = np.concatenate([np.ones(2 * d), prices if soft else []])
        a = np.hstack([-delta, delta] + ([-np.eye(n)] if soft else []))
        bounds = [(0, None)] * (2 * d + (n if soft else 0))
    else:  # x = (θ, s, ξ): min s + Cᵀξ, Δθ + ξ ≥ m, −s ≤ θ_j ≤ s
        c = np.concatenate([np.zeros(d), [1.0], prices if soft else []])
        a = np.hstack([-delta, np.zeros((n, 1))] + ([-np.eye(n)] if soft else []))
        box = np.hstack([np.vstack([np.eye(d), -np.eye(d)]), -np.ones((2 * d, 1)),
                         np.zeros((2 * d, n if soft else 0))])
        a = np.vstack([a, box])
        bounds = [(None, None)] * d + [(0, None)] + [(0, None)] * (n if soft else 0)
    b = np.concatenate([-margins, np.zeros(a.shape[0] - n)])
    try:
        res = linprog(c, A_ub=a, b_ub=b, bounds=bounds, method="highs")
    except Exception:  # noqa: BLE001
        return None, "error"
    if res.x is None:
        return None, {2: "infeasible"}.get(res.status, f"status {res.status}")
    x = np.asarray(res.x)
    theta = x[:d] - x[d : 2 * d] if norm == "l1" else x[:d]
    return theta, "optimal"


def _active_set_polish(delta, margins, prices, theta, taus=(1e-9, 1e-6, 1e-3), rounds=6):
    """The QP's exact solution for the pair partition that θ suggests, iterated (an active-set step).

    With L = pairs short of their margin (α_i = C_i; empty for a hard margin) and S = pairs on it
    (|Δ_iθ − m_i| ≤ τ·m_i), the KKT point is θ = Σ_L C_iΔ_i + (the min-norm x with Δ_S x =
    m_S − Δ_S Σ_L C_iΔ_i), one least-squares solve plus one refinement step. Yields every iterate;
    the caller keeps whichever verifies best.
    """
    n, d = delta.shape
    for tau in taus:
        current = np.asarray(theta, dtype=np.float64)
        for _ in range(rounds):
            r = exact_residuals(delta, current, margins)
            if not np.isfinite(r).all():
                break
            scale = np.abs(margins)
            short = (r < -tau * scale) if prices is not None else np.zeros(n, dtype=bool)
            on = np.abs(r) <= tau * scale
            base = (prices[short][:, None] * delta[short]).sum(axis=0) if short.any() else np.zeros(d)
            new = base
            if on.any():
                rhs = margins[on] - exact_rows(delta[on], base)
                try:
                    x = np.linalg.lstsq(delta[on], rhs, rcond=None)[0]
                    x = x + np.linalg.lstsq(delta[on], rhs - exact_rows(delta[on], x), rcond=None)[0]
                except np.linalg.LinAlgError:
                    break
                new = base + x
            yield new
            if np.array_equal(new, current):
                break
            current = new


def _scalings(delta, margins, norm, prices):
    """Exact power-of-two rescalings of the program: (name, Â, b̂, Ĉ, κ) with θ = κφ and
    min reg(φ) + Σ Ĉ_i ζ_i s.t. Â_iφ + ζ_i ≥ b̂_i equivalent to the original (ζ_i = ρ_iξ_i).

    * ``unit``: rows to unit-ish norm (ρ_i = 1/‖Δ_i‖), margins to max ~1 (κ = max|m|);
    * ``balanced``: κ ≈ max_i m_i/‖Δ_i‖ (the size of a θ that meets the margins), each row then
      divided by max(κ‖Δ_i‖, m_i), so ‖Â_i‖ ≤ ~1 and b̂_i ≤ ~1 with the larger of them ~1.

    With ζ_i = row_i·ξ_i (row_i the factor applied to row i and its margin), reg(θ) + Σ C_iξ_i =
    κ^p [reg(φ) + Σ Ĉ_iζ_i] with Ĉ_i = C_i/(κ^p·row_i) (p = 2 for the QP, 1 for the LPs).
    """
    norms = np.linalg.norm(delta, axis=1)
    norms = np.where(norms > 0, norms, 1.0)
    out = []
    mu = _pow2(float(np.abs(margins).max()))
    rho = np.array([1.0 / _pow2(v) for v in norms])
    kappa = _pow2(float(np.max(np.abs(margins) / norms)))
    sigma = np.array([1.0 / _pow2(max(kappa * v, abs(m))) for v, m in zip(norms, margins)])
    # unit: Â = ρΔ, b̂ = ρm/μ, θ = μφ; balanced: Â = σκΔ, b̂ = σm, θ = κφ
    for name, a_hat, b_hat, row, k in (
        ("unit", delta * rho[:, None], margins * rho / mu, rho / mu, mu),
        ("balanced", delta * (sigma * kappa)[:, None], margins * sigma, sigma, kappa),
    ):
        # ζ_i = row_i·ξ_i; the constraint Δ_iθ + ξ_i ≥ m_i times row_i: Â_iφ + ζ_i ≥ b̂_i
        if prices is None:
            c_hat = None
        else:
            c_hat = prices / (k ** (2 if norm == "l2" else 1) * row)
        out.append((name, a_hat, b_hat, c_hat, k))
    return out


def reference_margin(delta, margins, norm: str, prices, witness=None) -> Reference:
    """Best verified-feasible point of the max-margin program over several formulations.

    ``prices``: (n,) slack prices, or None for a hard margin. ``witness``: a direction known to
    separate the rows (the generator's planted θ; offered like any other candidate). Soft margins
    also get the hard-margin answer (when C is large relative to the data it is the optimum, and
    interior points struggle with such prices) and θ = 0; the QPs get active-set polishing.
    """
    import cvxpy as cp

    delta = np.asarray(delta, dtype=np.float64)
    margins = np.asarray(margins, dtype=np.float64)
    hard = prices is None
    ref = Reference()

    def evaluate(theta):
        return margin_objective(delta, margins, norm, prices, theta)

    fix = (lambda th: repair(delta, margins, th)) if hard else None

    def mapped(run, k):
        def go():
            theta = run()
            return None if theta is None else np.asarray(theta) * k
        return go

    formulations = []
    for name, a_hat, b_hat, c_hat, k in _scalings(delta, margins, norm, prices):
        if norm == "l2":
            formulations += [
                (f"clarabel-primal-{name}", mapped(lambda a=a_hat, b=b_hat, c=c_hat: _margin_cvxpy(
                    a, b, norm, c, cp.CLARABEL)[0], k)),
                (f"clarabel-dual-{name}", mapped(lambda a=a_hat, b=b_hat, c=c_hat: _margin_cvxpy(
                    a, b, norm, c, cp.CLARABEL, dual=True)[0], k)),
                (f"osqp-primal-{name}", mapped(lambda a=a_hat, b=b_hat, c=c_hat: _margin_cvxpy(
                    a, b, norm, c, cp.OSQP)[0], k)),
            ]
        else:
            formulations += [
                (f"linprog-primal-{name}", mapped(lambda a=a_hat, b=b_hat, c=c_hat: _margin_linprog(
                    a, b, norm, c)[0], k)),
                (f"cvxpy-highs-{name}", mapped(lambda a=a_hat, b=b_hat, c=c_hat: _margin_cvxpy(
                    a, b, norm, c, cp.HIGHS)[0], k)),
                (f"clarabel-primal-{name}", mapped(lambda a=a_hat, b=b_hat, c=c_hat: _margin_cvxpy(
                    a, b, norm, c, cp.CLARABEL)[0], k)),
            ]
    if norm == "l2":
        formulations.append(("clarabel-primal", lambda: _margin_cvxpy(delta, margins, norm, prices, cp.CLARABEL)[0]))
    else:
        formulations.append(("linprog-primal", lambda: _margin_linprog(delta, margins, norm, prices)[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, run in formulations:
            try:
                theta = run()
            except Exception:  # noqa: BLE001 - a failing reference loses a candidate, nothing else
                theta = None
            _offer(ref, name, theta, evaluate, fix)
        if hard:
            t, direction = max_relative_margin(delta, margins)
            ref.relative_margin = t
            if direction is not None and t > 0:
                _offer(ref, "max-relative-margin-lp", direction, evaluate, fix)
            if witness is not None:
                _offer(ref, "planted-witness", witness, evaluate, fix)
        else:
            _offer(ref, "zero", np.zeros(delta.shape[1]), evaluate)
            hard_ref = reference_margin(delta, margins, norm, None, witness)
            if hard_ref.found:
                _offer(ref, f"hard-margin:{hard_ref.source}", hard_ref.theta, evaluate)
        if norm == "l2" and ref.found:
            for polished in _active_set_polish(delta, margins, prices, ref.theta):
                _offer(ref, "active-set-polish", polished, evaluate, fix)
        if hard and not ref.found:
            # do the LP solvers themselves call it infeasible?
            _, a_hat, b_hat, _, _ = _scalings(delta, margins, "linf", None)[0]
            for name, (theta, status) in (
                ("linprog-primal-unit", _margin_linprog(a_hat, b_hat, "linf", None)),
                ("cvxpy-highs-unit", _margin_cvxpy(a_hat, b_hat, "linf", None, cp.HIGHS)),
            ):
                if "infeasible" in str(status):
                    ref.infeasible_votes.append(name)
    return ref


def _damped_newton(a, c, weights, lam, theta0, max_iter=500):
    """Newton with Armijo backtracking on Σ w ℓ(aθ + c) + (λ/2)‖θ‖², in column-scaled coordinates
    θ = Sφ (S: powers of two that bring a's columns to unit norm; Newton's iterates do not depend
    on S, its linear solves do). Stops when the Newton decrement or the line search gives out."""
    from scipy.linalg import cho_factor, cho_solve

    cols = np.linalg.norm(a, axis=0)
    S = np.array([1.0 / _pow2(v) if v > 0 else 1.0 for v in cols])
    b = a * S
    reg = lam * S**2

    def f(x):
        z = b @ x + c
        return math.fsum([*(weights * np.logaddexp(0.0, -z)), 0.5 * math.fsum(reg * x * x)])

    x = np.asarray(theta0, dtype=np.float64) / S
    fx = f(x)
    for _ in range(max_iter):
        z = b @ x + c
        g = reg * x - b.T @ (weights * _sigmoid(-z))
        h = (b.T * (weights * _sigmoid(z) * _sigmoid(-z))) @ b + np.diag(reg)
        try:
            step = -cho_solve(cho_factor(h), g)
        except np.linalg.LinAlgError:
            step = -np.linalg.lstsq(h, g, rcond=None)[0]
        decrement = -float(g @ step)
        if not np.isfinite(decrement) or decrement <= 1e-30 * max(abs(fx), 1e-300):
            break
        t = 1.0
        while t > 1e-20:
            fn = f(x + t * step)
            if fn <= fx - 0.25 * t * decrement or (fn < fx and t < 1e-3):
                break
            t *= 0.5
        if not (t > 1e-20 and fn < fx):
            break
        x, fx = x + t * step, fn
    return x * S


def reference_maxent(delta, reg, weights, temperatures, offsets) -> Reference:
    """Best point of the MaxEnt program: Clarabel's exponential cone, scipy's trust-exact and a
    damped Newton of this module, on the problem rescaled by a power of two s (Δ → Δ/s, θ → sθ,
    λ → λ/s²: P unchanged)."""
    import cvxpy as cp
    from scipy.optimize import minimize

    delta = np.asarray(delta, dtype=np.float64)
    ref = Reference()

    def evaluate(theta):
        return maxent_objective(delta, reg, weights, temperatures, offsets, theta)

    a = delta / temperatures[:, None]
    c = offsets / temperatures
    s = _pow2(float(np.linalg.norm(a, axis=1).max()))
    a_s = a / s
    lam = reg / s**2

    def fun(x):
        z = a_s @ x + c
        return float(weights @ np.logaddexp(0.0, -z) + 0.5 * lam * x @ x)

    def grad(x):
        z = a_s @ x + c
        return lam * x - a_s.T @ (weights * _sigmoid(-z))

    def hess(x):
        z = a_s @ x + c
        curv = weights * _sigmoid(z) * _sigmoid(-z)
        return (a_s.T * curv) @ a_s + lam * np.eye(a_s.shape[1])

    def clarabel(rows, shift, lam_, factor):
        theta = cp.Variable(rows.shape[1])
        loss = cp.sum(cp.multiply(weights, cp.logistic(-(rows @ theta + shift))))
        prob = cp.Problem(cp.Minimize(loss + 0.5 * lam_ * cp.sum_squares(theta)))
        _cvx_solve(prob, cp.CLARABEL, **_CLARABEL)
        return None if theta.value is None else np.asarray(theta.value) / factor

    def trust_exact(x0):
        res = minimize(fun, x0, jac=grad, hess=hess, method="trust-exact",
                       options={"gtol": 1e-14, "maxiter": 500})
        return np.asarray(res.x) / s

    zero = np.zeros(a.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _offer_each(ref, evaluate, (
            ("clarabel-scaled", lambda: clarabel(a_s, c, lam, s)),
            ("clarabel", lambda: clarabel(a, c, reg, 1.0)),
            ("trust-exact-from-0", lambda: trust_exact(zero)),
            ("newton-from-0", lambda: _damped_newton(a_s, c, weights, lam, zero) / s),
        ))
        if ref.found:
            start = ref.theta * s
            _offer_each(ref, evaluate, (
                ("trust-exact-from-best", lambda: trust_exact(start)),
                ("newton-from-best", lambda: _damped_newton(a_s, c, weights, lam, start) / s),
            ))
    return ref


def _offer_each(ref, evaluate, candidates) -> None:
    """Run each (name, thunk) and offer its θ to ``ref``; a method that raises offers nothing."""
    for name, run in candidates:
        try:
            theta = run()
        except Exception:  # noqa: BLE001
            theta = None
        _offer(ref, name, theta, evaluate)


def _sigmoid(z):
    from scipy.special import expit

    return expit(z)
