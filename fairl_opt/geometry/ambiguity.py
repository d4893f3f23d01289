"""Ambiguity measures besides volume: reward intervals over F, and the summary of standard vs FA sets.

For a held-out completion with features φ, every θ in F is a reward consistent with the data, so
``[min_{θ∈F} θᵀφ, max_{θ∈F} θᵀφ]`` is the range of rewards the data leave open for it; its width
is an ambiguity measure in reward units (of the unit ball's scale). Each end is one small SOCP
(Clarabel, with constraint generation over the rows: see :mod:`fairl_opt.geometry.conic`), and each
answer is checked by weak duality: with the multipliers y ≥ 0 of ``Uθ ≥ c``,
``max_{θ∈F} φᵀθ ≤ ‖φ + Uᵀy‖₂ − cᵀy``, so ``max_gap`` bounds how far any reported end can be
off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairl_opt.exceptions import DataError, SolverError
from fairl_opt.geometry import conic
from fairl_opt.geometry.feasible_set import FeasibleSet, margin_scale
from fairl_opt.programs import MarginProgram

#: Accept an interval end when its duality gap is at most this (reward units, |θᵀφ| ≤ ‖φ‖).
INTERVAL_GAP_TOL = 1e-6


@dataclass(frozen=True)
class RewardIntervals:
    """``[lower_k, upper_k]`` = the range of θᵀφ_k over F for each feature row φ_k.

    Attributes
    ----------
    lower, upper : ndarray
    max_gap : float
        Largest duality gap over all ends (each end is exact up to it).
    """

    lower: np.ndarray
    upper: np.ndarray
    max_gap: float

    @property
    def width(self) -> np.ndarray:
        """upper − lower for each feature row."""
        return self.upper - self.lower

    @property
    def mean_width(self) -> float:
        """The mean width over the feature rows (the summary's ambiguity measure)."""
        return float(self.width.mean())

    def to_dict(self) -> dict:
        """JSON-ready: mean and max width, both ends of every interval, the largest duality gap."""
        return {"mean_width": self.mean_width, "max_width": float(self.width.max()),
                "lower": self.lower, "upper": self.upper, "max_gap": self.max_gap}


def reward_intervals(fset: FeasibleSet, features) -> RewardIntervals:
    """The interval [min, max] of θᵀφ over F for each row φ of ``features``.

    Parameters
    ----------
    fset : FeasibleSet
    features : (k, d) or (d,) array

    Returns
    -------
    RewardIntervals

    Raises
    ------
    InfeasibleError
        F is empty (there is no interval).

    Examples
    --------
    >>> import numpy as np
    >>> F = FeasibleSet(np.array([[1.0, 0.0]]), np.array([0.0]))   # half disk x ≥ 0
    >>> iv = reward_intervals(F, np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> (np.round(iv.lower, 6) + 0.0).tolist(), np.round(iv.upper, 6).tolist()
    ([0.0, -1.0], [1.0, 1.0])
    """
    phi = fset.check_dim(features, "features")
    if phi.ndim == 1:
        phi = phi[None, :]
    if phi.shape[0] == 0:
        raise DataError("features has no rows")
    certificate = fset.emptiness_certificate()
    if certificate is not None:
        raise certificate
    U, c = fset.unit_rows
    upper = np.empty(phi.shape[0])
    lower = np.empty(phi.shape[0])
    max_gap = 0.0
    for k, row in enumerate(phi):
        for sign, out in ((1.0, upper), (-1.0, lower)):
            direction = sign * row
            if fset.n_rows == 0:
                value, gap = float(np.linalg.norm(direction)), 0.0
            else:
                status, payload = conic.support(U, c, direction)
                if status != "solved":
                    raise SolverError(f"reward interval of feature row {k}: the SOCP reports F empty, "
                                      "but its emptiness check found a point", status=status)
                value, gap = _checked_support(direction, payload[0], U, c, payload[1])
            out[k] = sign * value
            max_gap = max(max_gap, gap)
    if max_gap > INTERVAL_GAP_TOL * max(1.0, float(np.abs(phi).max())):
        raise SolverError(f"reward intervals not certified: duality gap {max_gap:.3g}")
    return RewardIntervals(lower, upper, max_gap)


def _checked_support(direction, theta, U, c, y):
    """max φᵀθ over F from a solver's (θ, y): the value at θ pulled into F, and its duality gap."""
    theta = np.asarray(theta, dtype=np.float64)
    norm = np.linalg.norm(theta)
    if norm > 1.0:
        theta = theta / norm
    if y is None:
        upper = float(np.linalg.norm(direction))
        violation = 0.0
    else:
        y = np.maximum(np.asarray(y, dtype=np.float64).ravel(), 0.0)
        upper = float(np.linalg.norm(direction + U.T @ y) - c @ y)
        violation = float(max(0.0, np.max(c - U @ theta)))
    value = float(direction @ theta)
    # a point violating a unit row by v moves φᵀθ by at most ‖φ‖·v (after a step of length v back)
    gap = max(0.0, upper - value) + violation * float(np.linalg.norm(direction))
    return value, gap


def geometry_summary(fa_result, heldout_features=None, *, samples: int | None = None, seed: int = 0,
                     budget: float = 2.0) -> dict:
    """Volume ratio, Chebyshev radii and reward-interval widths of the standard and FA sets.

    Both sets use the convention of :mod:`fairl_opt.geometry.feasible_set`:
    ``F(m) = {‖θ‖₂ ≤ 1, Δθ ≥ ρ·m}`` with one ρ = 1/(budget·min{‖θ‖ : Δθ ≥ m_FA}), Δ from
    ``fa_result.standard_program`` and the margins of every round from ``fa_result.round_margins()``.

    Parameters
    ----------
    fa_result : fairl_opt.fa.FAResult
        A max-margin FA run (DataError for a MaxEnt one: it has no margin constraints).
    heldout_features : (k, d) array, optional
        Completions whose reward intervals to report.
    samples, seed : int
        Passed to :func:`fairl_opt.geometry.volume.nested_volume_ratio`.
    budget : float
        Norm budget (> 1).

    Returns
    -------
    dict
        JSON-ready: ``convention``, ``scale``, ``budget``, ``volume_ratio`` (FA / standard, with
        error bars and one step per FA round), ``chebyshev_radius`` and, with held-out features,
        ``interval_width`` (mean width of each set).
    """
    from fairl_opt.geometry.volume import nested_volume_ratio

    if not isinstance(fa_result.standard_program, MarginProgram):
        raise DataError(f"geometry needs a max-margin program, got {type(fa_result.standard_program).__name__}")
    delta, margins = fa_result.standard_program.delta, fa_result.round_margins()
    scale = margin_scale(delta, margins[-1], budget)
    sets = [FeasibleSet(delta, scale * m, duplicates="merge") for m in margins]
    standard, fa = sets[0], sets[-1]
    ratio = nested_volume_ratio(sets, samples=samples, seed=seed)
    out = {
        "convention": "F(m) = {theta : ||theta||_2 <= 1, Delta theta >= rho*m}, "
                      "rho = 1/(budget * min{||theta||_2 : Delta theta >= m_FA})",
        "scale": scale,
        "budget": float(budget),
        "volume_ratio": ratio.to_dict(),
        "chebyshev_radius": {"standard": standard.chebyshev_radius(), "fa": fa.chebyshev_radius()},
    }
    if heldout_features is not None:
        out["interval_width"] = {
            "standard": reward_intervals(standard, heldout_features).mean_width,
            "fa": reward_intervals(fa, heldout_features).mean_width,
        }
    return out
