"""What every backend returns, and the LPs that explain hard-margin infeasibility.

A backend does exactly three things for the FA loop: ``solve(program)``, ``solve(program,
warm_start=previous)`` after the loop edited margins/weights, and a :class:`Certificate` (built by
:func:`certify`, never by the backend's own judgement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from fairl_opt.exceptions import InfeasibleError, SolverError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers.certificate import Certificate


@dataclass(frozen=True, eq=False)
class Solution:
    """A solved program: θ, dual multipliers, and the certificate computed from both."""

    program: MarginProgram | MaxEntProgram
    theta: np.ndarray
    duals: np.ndarray
    certificate: Certificate

    @property
    def status(self) -> str:
        return self.certificate.status

    @property
    def objective(self) -> float:
        return self.certificate.primal_objective


class Backend:
    """Interface: ``solve(program, warm_start=None) -> Solution``; subclasses set ``name``."""

    name = "abstract"

    def supports(self, program) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def solve(self, program, warm_start: Solution | None = None) -> Solution:  # pragma: no cover
        raise NotImplementedError


def find_conflict(delta: np.ndarray, margins: np.ndarray, rows=None) -> tuple[list[int], np.ndarray] | None:
    """A Farkas certificate that ``Δθ ≥ m`` has no solution, or None when it has one.

    Solves the LP ``min Σ y  s.t.  Δᵀy = 0,  mᵀy = 1,  y ≥ 0`` (HiGHS). A feasible y proves
    infeasibility: any θ would give ``0 = (Δᵀy)ᵀθ = yᵀΔθ ≥ yᵀm = 1``. Minimising Σ y favours a
    small support, which names the conflicting pairs.

    Returns
    -------
    (pairs, y) : list of int, ndarray
        Indices (into ``rows`` when given) with y_i > 0, and their multipliers.
    """
    delta = np.asarray(delta, dtype=np.float64)
    margins = np.asarray(margins, dtype=np.float64)
    n, d = delta.shape
    pair = _opposite_pair(delta, margins)
    if pair is not None:
        (i, j), y = pair
        names = (i, j) if rows is None else (int(rows[i]), int(rows[j]))
        return [int(names[0]), int(names[1])], y
    # Solve on unit rows (Δ_i/‖Δ_i‖, m_i/‖Δ_i‖) so that tiny and huge rows weigh alike, then map
    # back: y_i = ỹ_i/‖Δ_i‖ is a certificate for the original rows.
    norms = np.linalg.norm(delta, axis=1)
    if (norms == 0).any():
        zero = np.flatnonzero((norms == 0) & (margins > 0))
        if zero.size:  # 0·θ ≥ m_i > 0 is a conflict on its own
            i = int(zero[0])
            return [i if rows is None else int(rows[i])], np.array([1.0 / margins[i]])
        norms = np.where(norms == 0, 1.0, norms)
    unit = delta / norms[:, None]
    unit_margins = margins / norms
    a_eq = np.vstack([unit.T, unit_margins[None, :]])
    b_eq = np.zeros(d + 1)
    b_eq[-1] = 1.0
    res = linprog(np.ones(n), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    y = res.x / norms
    support = np.flatnonzero(res.x > 1e-9 * max(1.0, res.x.max()))
    # keep only certificates that check out on the original rows: Σ y_i Δ_i ≈ 0 relative to the
    # terms, and Σ y_i m_i > 0
    combined = np.abs(delta[support].T @ y[support]).max() if support.size else np.inf
    size = (np.abs(delta[support]) * y[support, None]).sum(axis=0).max() if support.size else 0.0
    if not (combined <= 1e-7 * max(size, 1e-300) and margins[support] @ y[support] > 0):
        return None
    names = support if rows is None else np.asarray(rows)[support]
    return [int(i) for i in names], y[support]


def _opposite_pair(delta, margins):
    """Two pairs with anti-parallel rows Δ_j = −cΔ_i (c > 0) and c·m_i + m_j > 0: the simplest
    conflict (e.g. the same two completions preferred both ways). Found by hashing unit rows."""
    norms = np.linalg.norm(delta, axis=1)
    units = np.round(delta / np.where(norms > 0, norms, 1.0)[:, None], 10) + 0.0
    seen = {}
    for j, u in enumerate(units):
        i = seen.get((-u + 0.0).tobytes())
        if i is not None:
            c = norms[j] / norms[i]
            if c * margins[i] + margins[j] > 0:
                return (i, j), np.array([c, 1.0])
        seen.setdefault(u.tobytes(), j)
    return None


def raise_infeasible(program: MarginProgram, solver_status: str) -> None:
    """Raise :class:`InfeasibleError` naming a conflicting set of pairs, or SolverError if none exists."""
    found = find_conflict(program.delta, program.margins)
    if found is None:
        raise SolverError(
            f"solver reported {solver_status!r} but the margin constraints are feasible (an LP found a "
            "point); the problem is badly scaled: rescale the embeddings or try backend='cvxpy' with "
            "a soft margin",
            status=solver_status,
        )
    pairs, y = found
    shown = ", ".join(str(i) for i in pairs[:10]) + (" ..." if len(pairs) > 10 else "")
    raise InfeasibleError(
        f"hard margin infeasible: pairs {shown} conflict (a non-negative combination of their "
        "difference rows is 0 while their margins are positive); drop or fix them, or use a soft "
        "margin (--margin soft)",
        conflicting_pairs=pairs,
        farkas=y,
    )


def max_admissible_tightening(delta, margins, subset, upper: float | None = None) -> float:
    """The largest t with {θ : Δθ ≥ m + t·1_S} non-empty (an LP; ``inf`` when unbounded).

    ``max t  s.t.  Δ_i θ ≥ m_i + t [i ∈ S]``. ``upper`` caps t (returned when reachable).
    Returns ``-inf`` if even t = −∞... never: the caller only asks when Δθ ≥ m is feasible, so the
    optimum is ≥ 0.
    """
    delta = np.asarray(delta, dtype=np.float64)
    n, d = delta.shape
    indicator = np.zeros(n)
    indicator[np.asarray(subset, dtype=np.int64)] = 1.0
    # variables (θ, t): minimise −t subject to −Δθ + t·1_S ≤ −m
    a_ub = np.hstack([-delta, indicator[:, None]])
    bounds = [(None, None)] * d + [(None, upper)]
    c = np.zeros(d + 1)
    c[-1] = -1.0
    b_ub = -np.asarray(margins, dtype=np.float64)
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status == 2:
        # HiGHS presolve can report an unbounded LP as infeasible; decide without presolve
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs", options={"presolve": False})
    if res.status == 3:
        return float("inf")
    if res.status == 2:
        return float("-inf")
    if res.status != 0:
        raise SolverError(f"admissible-tightening LP failed: {res.message}", status=res.status)
    return float(res.x[-1])
