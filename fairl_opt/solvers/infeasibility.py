"""Why a hard-margin program has no solution, proved: the conflict search (an LP for a Farkas vector
y ≥ 0 with Σ y_i Δ_i = 0 and Σ y_i m_i > 0, polished by SVD and made exact over the rationals),
what a Farkas vector proves in floating point (:func:`farkas_radius`), the separation LP that tells
"infeasible" from "separable only by a margin float64 cannot resolve" (:func:`relative_margin`), the
one place a backend turns an unbounded dual into an error (:func:`raise_infeasible`), and the largest
admissible tightening of a subset of margins (:func:`max_admissible_tightening`, proofs/T3).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog

from fairl_opt.exceptions import InfeasibleError, NumericalRangeError, SolverError
from fairl_opt.programs import MarginProgram

#: Exact (rational) arithmetic is used for supports with k²d (null vectors) or kd (radii) at most this.
_EXACT_WORK = 200_000
#: An LP margin (:func:`relative_margin`) above this separates the pairs at a margin float64 resolves.
SEPARABLE_MARGIN = 1e-7


def farkas_radius(delta, margins, pairs, y) -> float:
    """What a Farkas vector proves: no θ with ‖θ‖₂ < R satisfies Δ_iθ ≥ m_i for i in ``pairs``.

    For y ≥ 0 and any such θ, ``Σ y_i m_i ≤ (Σ y_i Δ_i)ᵀθ ≤ (‖g‖ + ‖e‖)‖θ‖`` where g is
    Σ y_i Δ_i computed in float64 and e bounds its rounding error (γ_k Σ y_i |Δ_i| per feature),
    so ``R = Σ y_i m_i / (‖g‖ + ‖e‖)`` (0 if y has a negative entry or Σ y_i m_i ≤ 0).
    """
    delta = np.asarray(delta, dtype=np.float64)
    rows = np.asarray(pairs, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    if rows.size == 0 or y.shape != rows.shape or (y < 0).any() or not np.isfinite(y).all():
        return 0.0
    sub = delta[rows]
    with np.errstate(over="ignore", invalid="ignore"):
        b = float(np.asarray(margins, dtype=np.float64)[rows] @ y)
    if not (b > 0 and np.isfinite(b)):
        return 0.0
    if rows.size * sub.shape[1] <= _EXACT_WORK:
        # Σ y_i Δ_i and Σ y_i m_i exactly (floats are rationals): no rounding term at all
        from fractions import Fraction

        ys = [Fraction(float(v)) for v in y]
        g = [sum((yi * Fraction(float(sub[i, j])) for i, yi in enumerate(ys)), Fraction(0))
             for j in range(sub.shape[1])]
        bound = sum((yi * Fraction(float(m)) for yi, m in zip(ys, np.asarray(margins)[rows])), Fraction(0))
        sq = sum(v * v for v in g)
        if bound <= 0:
            return 0.0
        return float("inf") if sq == 0 else float(bound) / math.sqrt(float(sq))
    with np.errstate(over="ignore", invalid="ignore"):
        g = sub.T @ y
        k = rows.size + 1
        gamma = k * np.finfo(float).eps / (1 - k * np.finfo(float).eps)
        e = gamma * (np.abs(sub).T @ y)
        denominator = float(np.linalg.norm(g) + np.linalg.norm(e))
    return float(b / denominator) if denominator > 0 else float("inf")


def float_radius(delta, margins, pairs) -> float:
    """The norm beyond which a θ would clear these pairs' margins by less than one unit of
    float64 rounding of Δ_iθ: ``max|m| / (ε·max‖Δ_i‖)`` (ε = 2⁻⁵²). A Farkas vector proving
    that no θ of smaller norm is feasible proves the pairs infeasible in float64: a feasible θ
    would have margins m_i below ε·‖Δ_i‖‖θ‖, which no float computation of Δ_iθ can resolve.
    """
    delta = np.asarray(delta, dtype=np.float64)
    rows = np.asarray(pairs, dtype=np.int64)
    norm = float(np.linalg.norm(delta[rows], axis=1).max())
    top = float(np.abs(np.asarray(margins, dtype=np.float64)[rows]).max())
    return top / (np.finfo(float).eps * norm) if norm > 0 else float("inf")


def find_conflict(delta: np.ndarray, margins: np.ndarray, rows=None) -> tuple[list[int], np.ndarray] | None:
    """A Farkas certificate that ``Δθ ≥ m`` has no solution, or None when none verifies.

    Solves the LP ``min Σ y  s.t.  Δᵀy = 0,  mᵀy = 1,  y ≥ 0`` (HiGHS) on unit rows, then polishes
    y on its support (the null vector of those rows by SVD, when it is non-negative). A y ≥ 0
    with Σ y_i Δ_i = 0 and Σ y_i m_i > 0 proves infeasibility: any θ would give
    ``0 = yᵀΔθ ≥ yᵀm > 0``. In floating point Σ y_i Δ_i is never exactly 0, so the certificate is
    accepted only when it rules out every θ float64 can resolve: its :func:`farkas_radius` is at
    least the :func:`float_radius` of its pairs (checked on the original rows). Minimising Σ y
    favours a small support, which names the conflicting pairs.

    Returns
    -------
    (pairs, y) : list of int, ndarray
        Indices (into ``rows`` when given) with y_i > 0, and their multipliers.
    """
    delta = np.asarray(delta, dtype=np.float64)
    margins = np.asarray(margins, dtype=np.float64)
    n, d = delta.shape

    def named(support):
        return [int(i) for i in (support if rows is None else np.asarray(rows)[support])]

    norms = np.linalg.norm(delta, axis=1)
    zero = np.flatnonzero((norms == 0) & (margins > 0))
    if zero.size:  # 0·θ ≥ m_i > 0 is a conflict on its own, exactly
        i = int(zero[0])
        return named([i]), np.array([1.0 / margins[i]])
    pair = _opposite_pair(delta, margins)
    candidates = []
    if pair is not None:
        candidates.append((np.array(pair[0]), pair[1]))
    # Solve on unit rows (Δ_i/‖Δ_i‖, m_i/‖Δ_i‖) so that tiny and huge rows weigh alike, then map
    # back: y_i = ỹ_i/‖Δ_i‖ is a certificate for the original rows.
    safe = np.where(norms == 0, 1.0, norms)
    unit = delta / safe[:, None]
    unit_margins = margins / safe
    a_eq = np.vstack([unit.T, unit_margins[None, :]])
    b_eq = np.zeros(d + 1)
    b_eq[-1] = 1.0
    res = linprog(np.ones(n), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status == 0:
        support = np.flatnonzero(res.x > 1e-9 * max(1.0, res.x.max()))
        if support.size:
            candidates.append((support, res.x[support] / safe[support]))
            polished = _null_vector(unit[support], unit_margins[support])
            if polished is not None:
                keep = polished > 0
                candidates.append((support[keep], polished[keep] / safe[support[keep]]))
    best = None
    for support, y in candidates:
        exact = _exact_null_vector(delta[support], margins[support])
        if exact is not None:  # Σ y_i Δ_i = 0 in exact arithmetic: a proof, whatever the scale
            keep = exact > 0
            return named(support[keep]), exact[keep]
        radius = farkas_radius(delta, margins, support, y)
        if radius >= float_radius(delta, margins, support) and (
                best is None or radius > best[0]):
            best = (radius, support, y)
    if best is None:
        return None
    return named(best[1]), best[2]




def _exact_null_vector(rows: np.ndarray, margins: np.ndarray) -> np.ndarray | None:
    """y ≥ 0 with Σ y_i rows_i = 0 EXACTLY (rational arithmetic on the float values) and
    Σ y_i m_i > 0, when the rows' null space is one-dimensional and such a y exists; else None.

    Float rows are dyadic rationals, so Gaussian elimination over the rationals decides exactly
    whether the rows are linearly dependent; a non-negative dependency with a positive margin
    sum is a Farkas certificate with no rounding in it (returned as floats rounded from it, for
    the error message; the proof is the rational one)."""
    from fractions import Fraction

    k, d = rows.shape
    if k < 2 or k * k * d > _EXACT_WORK:
        return None
    # columns = pairs: solve Mᵀ... i.e. find y with Σ_i y_i row_i = 0, M = rowsᵀ (d × k)
    matrix = [[Fraction(float(rows[i, j])) for i in range(k)] for j in range(d)]
    pivots = []
    r = 0
    for c in range(k):
        pivot = next((i for i in range(r, d) if matrix[i][c] != 0), None)
        if pivot is None:
            continue
        matrix[r], matrix[pivot] = matrix[pivot], matrix[r]
        lead = matrix[r][c]
        matrix[r] = [v / lead for v in matrix[r]]
        for i in range(d):
            if i != r and matrix[i][c] != 0:
                factor = matrix[i][c]
                matrix[i] = [a - factor * b for a, b in zip(matrix[i], matrix[r])]
        pivots.append(c)
        r += 1
        if r == d:
            break
    free = [c for c in range(k) if c not in pivots]
    if len(free) != 1:
        return None
    f = free[0]
    y = [Fraction(0)] * k
    y[f] = Fraction(1)
    for row_index, c in enumerate(pivots):
        y[c] = -matrix[row_index][f]
    total = sum(Fraction(float(m)) * v for m, v in zip(margins, y))
    if total < 0:
        y, total = [-v for v in y], -total
    if total <= 0 or any(v < 0 for v in y):
        return None
    return np.array([float(v / total) for v in y])


def _null_vector(rows: np.ndarray, margins: np.ndarray) -> np.ndarray | None:
    """y ≥ 0 with rowsᵀy ≈ 0 to rounding and marginsᵀy = 1, from the last left singular vector."""
    if rows.shape[0] < 2 and not (rows == 0).all():
        return None
    u, sing, _ = np.linalg.svd(rows, full_matrices=True)
    y = u[:, -1]
    if margins @ y < 0:
        y = -y
    scale = float(margins @ y)
    if not scale > 0:
        return None
    y = y / scale
    tiny = 1e-12 * float(np.abs(y).max())
    if (y < -tiny).any():
        return None
    return np.maximum(y, 0.0)


def relative_margin(delta, margins) -> float:
    """max t s.t. Δ_iθ/‖Δ_i‖ ≥ t·m_i/max|m|, ‖θ‖_∞ ≤ 1, t ≤ 1: how separable the pairs are,
    relative to their row norms (an LP, HiGHS). > 0: some θ meets every margin; ≤ 0: none does
    at a margin the LP resolves."""
    delta = np.asarray(delta, dtype=np.float64)
    margins = np.asarray(margins, dtype=np.float64)
    n, d = delta.shape
    norms = np.linalg.norm(delta, axis=1)
    safe = np.where(norms == 0, 1.0, norms)
    top = float(np.abs(margins).max()) or 1.0
    # variables (θ, t): minimise −t subject to −(Δ_i/‖Δ_i‖)θ + t·m_i/max|m| ≤ 0
    a_ub = np.hstack([-delta / safe[:, None], (margins / top)[:, None]])
    c = np.zeros(d + 1)
    c[-1] = -1.0
    bounds = [(-1.0, 1.0)] * d + [(None, 1.0)]
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), bounds=bounds, method="highs")
    if res.status != 0:
        return float("nan")
    return float(res.x[-1])


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


def raise_infeasible(program: MarginProgram, solver_status: str, rows=None) -> None:
    """A backend found no feasible θ for a hard margin: raise the error the data deserve.

    ``rows`` (sorted pair indices, optional) restricts the search to pairs already known to be
    infeasible together — a working set whose dual was unbounded — whose rows are then the only
    ones read (what a memory-mapped or Dask Δ needs); the pairs are named in the program's indices.

    * :class:`InfeasibleError` only when a Farkas certificate verifies on these rows
      (:func:`find_conflict`) and the separation LP (:func:`relative_margin`) agrees that no θ
      meets the margins at a margin float64 resolves;
    * :class:`NumericalRangeError` when the pairs are separable only by a margin too thin for
      float64 (the message gives it), or neither provably infeasible nor separable;
    * :class:`SolverError` when the LP separates the pairs comfortably (the backend failed).
    """
    delta, margins = program.delta, program.margins
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        delta, margins = delta[rows], margins[rows]
    found = find_conflict(delta, margins, rows)
    margin = relative_margin(delta, margins)
    if found is not None and not margin > SEPARABLE_MARGIN:
        pairs, y = found
        local = pairs if rows is None else np.searchsorted(rows, pairs)
        radius = farkas_radius(delta, margins, local, y)
        shown = ", ".join(str(i) for i in pairs[:10]) + (" ..." if len(pairs) > 10 else "")
        raise InfeasibleError(
            f"hard margin infeasible: pairs {shown} conflict (a non-negative combination of their "
            "difference rows is 0 to float64 rounding while their margins are positive: no reward "
            f"with norm below {radius:.3g} satisfies them); drop or fix them, or use a soft margin "
            "(--margin soft)",
            rows=pairs,
            farkas=y,
            radius=radius,
        )
    if margin > SEPARABLE_MARGIN:
        raise SolverError(
            f"solver reported {solver_status!r} on a hard margin the pairs meet (an LP separates them "
            f"with margin {margin:.3g} relative to the row norms): the backend failed; try another "
            "backend (backend='cvxpy') or a soft margin",
            status=solver_status,
        )
    raise NumericalRangeError(
        f"hard margin: the pairs are separable, if at all, only by a margin below {SEPARABLE_MARGIN:g} "
        f"relative to their row norms (the separation LP finds {margin:.3g}), which float64 does not "
        "resolve, and no Farkas certificate of infeasibility verifies: project out the "
        "near-degenerate direction, rescale the features, or use a soft margin",
        status=solver_status,
        relative_margin=margin,
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
