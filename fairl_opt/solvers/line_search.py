"""The one backtracking line search of the Newton steps (:mod:`~fairl_opt.solvers.newton` and the
finishing stage of :mod:`~fairl_opt.solvers.lbfgs`).

Armijo's rule with halving: from t = 1, accept ``θ + t·p`` when ``P(θ + t·p) ≤ P(θ) + c·t·∇Pᵀp``.
Near the optimum P cannot show a decrease in its last digits, so a trial point whose value is
within 8 ulps of P(θ) and whose gradient is smaller is accepted too (the certificates of both
MaxEnt backends are gradient-based, so a smaller gradient is progress).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Armijo's sufficient-decrease constant c.
ARMIJO = 1e-4
#: The smallest step length tried.
MIN_STEP = 1e-10


def backtrack(
    value_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta: np.ndarray,
    direction: np.ndarray,
    value: float,
    grad: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """(θ + t·p, its value, its gradient) for the first accepted t in 1, ½, ¼, … ≥ :data:`MIN_STEP`,
    or None when no step is accepted (``direction`` is p; ``value``, ``grad`` are P and ∇P at θ).

    ``value_grad(x)`` returns (P(x), ∇P(x)); the last call is at the accepted point, so an evaluator
    that caches its state there (curvature for Hessian products) is left at the new θ."""
    eps = float(np.finfo(float).eps)
    slope = float(grad @ direction)
    grad_sq = float(grad @ grad)
    t = 1.0
    while t >= MIN_STEP:
        candidate = theta + t * direction
        new_value, new_grad = value_grad(candidate)
        if new_value <= value + ARMIJO * t * slope:
            return candidate, new_value, new_grad
        # in the last digits P cannot show a decrease: accept a smaller gradient instead
        if new_value <= value + 8 * eps * abs(value) and float(new_grad @ new_grad) < grad_sq:
            return candidate, new_value, new_grad
        t *= 0.5
    return None


__all__ = ["ARMIJO", "MIN_STEP", "backtrack"]
