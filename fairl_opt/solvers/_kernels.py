"""Numba kernels of the fast solvers: small functions over plain arrays, compiled once and cached."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def dual_coordinate_descent(delta, margins, upper, alpha, theta, qdiag, max_epochs, tol, seed):
    """Dual coordinate descent for the margin QP (liblinear's method, no shrinking).

    Minimises ``½‖Δᵀα‖² − mᵀα`` over ``0 ≤ α_i ≤ upper_i``: ``upper`` is an (n,) array of the
    per-pair bounds (C repeated for one slack price, ``inf`` for a hard margin), keeping
    ``theta = Δᵀα`` up to date in place. Each epoch visits the rows in a fresh random order.

    Returns the number of epochs run; stops when the spread of the projected gradient
    (max − min over all rows) falls to ``tol``.
    """
    n, d = delta.shape
    np.random.seed(seed)
    order = np.arange(n)
    for epoch in range(max_epochs):
        for i in range(n - 1, 0, -1):
            j = np.random.randint(0, i + 1)
            order[i], order[j] = order[j], order[i]
        pg_max = -np.inf
        pg_min = np.inf
        for k in range(n):
            i = order[k]
            row = delta[i]
            g = -margins[i]
            for c in range(d):
                g += row[c] * theta[c]
            a = alpha[i]
            u = upper[i]
            if a <= 0.0:
                pg = min(g, 0.0)
            elif a >= u:
                pg = max(g, 0.0)
            else:
                pg = g
            if pg > pg_max:
                pg_max = pg
            if pg < pg_min:
                pg_min = pg
            if pg != 0.0:
                new = min(max(a - g / qdiag[i], 0.0), u)
                step = new - a
                if step != 0.0:
                    for c in range(d):
                        theta[c] += step * row[c]
                    alpha[i] = new
        if pg_max - pg_min <= tol:
            return epoch + 1
    return max_epochs


def warm_up() -> None:
    """Compile (or load from cache) every kernel once, e.g. at the start of a test session."""
    delta = np.array([[1.0, 0.0], [0.0, 1.0]])
    for dtype in (np.float64, np.float32):
        dual_coordinate_descent(
            delta.astype(dtype), np.ones(2), np.full(2, np.inf), np.zeros(2), np.zeros(2), np.ones(2), 2, 0.0, 0
        )
