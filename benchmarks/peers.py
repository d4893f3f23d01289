"""The strongest peers, timed on the same program as our backends (issue 14, item 4).

Each function solves one program of :mod:`fairl_opt.programs` with a peer tool and returns
``{"seconds", "rel_excess", ...}``: ``rel_excess`` is ``(P(θ_peer) − P(θ_ours)) / |P(θ_ours)|``,
the peer's θ judged by OUR primal objective (so an inexact peer shows how far from optimal it
stopped; a negative figure beyond rounding would mean our certified answer was not optimal).

* :func:`piqp_qp_dual` — PIQP (dense, the leader of the public Maros–Meszaros dense benchmark) on
  the dual box QP ``min ½αᵀ(ΔΔᵀ)α − mᵀα, 0 ≤ α ≤ C`` (θ = Δᵀα; forming ΔΔᵀ is counted);
* :func:`piqp_qp_primal` — PIQP on the primal ``min ½‖θ‖² + C Σξ s.t. Δθ + ξ ≥ m, ξ ≥ 0``;
* :func:`sklearn_logreg` — scikit-learn ``LogisticRegression`` with the ``lbfgs`` or
  ``newton-cholesky`` solver on the symmetrised data (the MaxEnt program exactly: no intercept,
  C = 1/(2λ) because every pair appears twice), at a tight ``tol``;
* :func:`highs_ipm_lp` — HiGHS's interior point (``scipy.optimize.linprog(method="highs-ipm")``,
  crossover on) on the dual ``max mᵀα s.t. −1 ≤ Δᵀα ≤ 1, 0 ≤ α ≤ C`` of the ℓ1 LP, or on the
  primal with θ = θ⁺ − θ⁻. θ from the dual is read off the LP's row marginals.

They are optional benchmark dependencies (``pip install fairl_opt[bench]`` for PIQP); a missing one
gives ``{"skipped": reason}``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np


def _excess(program, theta, ours: float) -> float:
    return (program.objective(np.asarray(theta, dtype=np.float64)) - ours) / abs(ours)


def _piqp():
    try:
        import piqp
    except ImportError as exc:  # the bench extra is optional
        return None, {"skipped": f"piqp not installed ({exc})"}
    return piqp, None


def piqp_qp_dual(program, ours: float, tol: float = 1e-9) -> dict:
    """PIQP's dense solver on the dual box QP of a soft ``mm-qp`` program (scalar C)."""
    piqp, skipped = _piqp()
    if skipped:
        return skipped
    start = time.perf_counter()
    delta = np.asarray(program.delta, dtype=np.float64)
    n = delta.shape[0]
    P = np.asfortranarray(delta @ delta.T)
    solver = piqp.DenseSolver()
    solver.settings.eps_abs = solver.settings.eps_rel = tol
    solver.setup(P, -np.asarray(program.margins, dtype=np.float64), x_l=np.zeros(n), x_u=np.full(n, float(program.C)))
    status = solver.solve()
    seconds = time.perf_counter() - start
    theta = delta.T @ solver.result.x
    return {"seconds": seconds, "status": str(status), "rel_excess": _excess(program, theta, ours)}


def piqp_qp_primal(program, ours: float, tol: float = 1e-9) -> dict:
    """PIQP's dense solver on the primal of a soft ``mm-qp`` program: variables (θ, ξ)."""
    piqp, skipped = _piqp()
    if skipped:
        return skipped
    start = time.perf_counter()
    delta = np.asarray(program.delta, dtype=np.float64)
    n, d = delta.shape
    P = np.zeros((d + n, d + n), order="F")
    P[np.arange(d), np.arange(d)] = 1.0
    c = np.r_[np.zeros(d), np.full(n, float(program.C))]
    G = np.asfortranarray(-np.hstack([delta, np.eye(n)]))  # −Δθ − ξ ≤ −m
    solver = piqp.DenseSolver()
    solver.settings.eps_abs = solver.settings.eps_rel = tol
    solver.setup(P, c, G=G, h_u=-np.asarray(program.margins, dtype=np.float64),
                 x_l=np.r_[np.full(d, -np.inf), np.zeros(n)], x_u=np.full(d + n, np.inf))
    status = solver.solve()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "status": str(status), "rel_excess": _excess(program, solver.result.x[:d], ours)}


def sklearn_logreg(program, ours: float, solver: str, tol: float = 1e-10) -> dict:
    """scikit-learn's logistic regression (``solver`` "lbfgs" or "newton-cholesky") on (Δ, +1) ∪ (−Δ, −1)."""
    from sklearn.linear_model import LogisticRegression

    delta = np.asarray(program.delta, dtype=np.float64)
    X = np.vstack([delta, -delta])
    y = np.r_[np.ones(len(delta)), -np.ones(len(delta))]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(C=1.0 / (2 * program.reg), fit_intercept=False, solver=solver, tol=tol,
                                   max_iter=10_000).fit(X, y)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rel_excess": _excess(program, model.coef_.ravel(), ours),
            "iterations": int(np.max(model.n_iter_))}


def highs_ipm_lp(program, ours: float, form: str = "dual") -> dict:
    """HiGHS's interior point on the dual (``form="dual"``) or primal LP of a soft ℓ1 ``mm-lp``."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, identity, vstack

    delta = np.asarray(program.delta, dtype=np.float64)
    margins = np.asarray(program.margins, dtype=np.float64)
    n, d = delta.shape
    C = float(program.C)
    start = time.perf_counter()
    if form == "dual":
        A = csr_matrix(delta.T)
        res = linprog(-margins, A_ub=vstack([A, -A]), b_ub=np.ones(2 * d), bounds=(0.0, C), method="highs-ipm")
        # the marginals of Δᵀα ≤ 1 and −Δᵀα ≤ 1 are −θ⁺ and −θ⁻ (minimisation form)
        theta = -(res.ineqlin.marginals[:d] - res.ineqlin.marginals[d:]) if res.status == 0 else np.zeros(d)
    else:
        D = csr_matrix(delta)
        A = -hstack([D, -D, identity(n, format="csr")])  # −Δθ⁺ + Δθ⁻ − ξ ≤ −m
        c = np.r_[np.ones(2 * d), np.full(n, C)]
        res = linprog(c, A_ub=A, b_ub=-margins, bounds=(0.0, None), method="highs-ipm")
        theta = res.x[:d] - res.x[d:2 * d] if res.status == 0 else np.zeros(d)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "status": res.message, "rel_excess": _excess(program, theta, ours)}


def fit_exponent(sizes, seconds) -> float:
    """The slope of log(seconds) against log(size) by least squares: time ∝ size^slope."""
    x, y = np.log(np.asarray(sizes, dtype=np.float64)), np.log(np.asarray(seconds, dtype=np.float64))
    return float(np.polyfit(x, y, 1)[0])


__all__ = ["piqp_qp_dual", "piqp_qp_primal", "sklearn_logreg", "highs_ipm_lp", "fit_exponent"]
