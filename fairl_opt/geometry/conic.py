"""The one conic layer of the geometry: small second-order cone programs over the sets of
:class:`~fairl_opt.geometry.feasible_set.FeasibleSet`, F = {θ : ‖θ‖₂ ≤ 1, Uθ ≥ c}, solved with Clarabel.

Rows are unit length (``FeasibleSet.unit_rows``; callers holding raw rows and a norm budget R convert
at their boundary, as :mod:`fairl_opt.geometry.claims` does). Every program here is called directly
through Clarabel's Python API (min qᵀx s.t. Ax + s = b, s ∈ K) rather than through cvxpy, whose
canonicalisation of a dense m × d block costs seconds at m = 2000, d = 384:

* :func:`chebyshev` — ``max r s.t. Uθ − r ≥ c, ‖θ‖ + r ≤ 1`` with r ≥ 0, or a *signed* r (negative:
  the rows must be relaxed by |r| to meet inside the ball), optionally inside upper bounds
  ``Vθ + r ≤ v`` (a ball on the far side of some constraints);
* :func:`support` — ``max φᵀθ over F`` with the multipliers y ≥ 0 of ``Uθ ≥ c``;
* :func:`smallest_norm` — ``min ‖θ‖ s.t. Uθ ≥ c`` (no ball);
* :func:`emptiness_certificate` — y ≥ 0 with ``cᵀy > ‖Uᵀy‖₂`` when F is empty.

**Constraint generation.** With many rows only a few bind at an optimum, so the first three are first
solved on a working set of rows; rows the answer violates are added and it is solved again. A
relaxation's optimum is at least as good as the true one, so once it violates no row it is the
optimum of the full program (and relaxation infeasible ⇒ full program infeasible, with a
certificate on the working rows that is also one for all rows).
"""

from __future__ import annotations

import clarabel
import numpy as np
import scipy.sparse as sp

from fairl_opt.exceptions import SolverError

#: Solve on all rows at once below this many rows (or 2d); above, generate constraints.
DIRECT_ROWS = 400
#: A row counts as violated above this (unit rows, so it is a distance).
VIOLATION_TOL = 1e-9
#: Clarabel's gap and feasibility tolerances (unit rows inside the unit ball: absolute units).
TOLERANCE = 1e-10
_SOLVED = ("Solved", "AlmostSolved")
_INFEASIBLE = ("PrimalInfeasible", "AlmostPrimalInfeasible")


def solve_conic(q, blocks, cones, what):
    """min qᵀx s.t. A x + s = b, s ∈ cones, with ``blocks`` a list of (A_block, b_block) stacked in
    the order of ``cones``.

    Returns ``("solved", x, z)`` (z: the multipliers of the stacked rows) or
    ``("infeasible", None, None)``; any other Clarabel status is a :class:`SolverError` naming ``what``.
    """
    A = sp.csc_matrix(np.vstack([a for a, _ in blocks]))
    b = np.concatenate([bb for _, bb in blocks])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = TOLERANCE
    settings.max_iter = 500
    settings.max_threads = 1
    P = sp.csc_matrix((len(q), len(q)))
    solution = clarabel.DefaultSolver(P, np.asarray(q, dtype=np.float64), A, b, cones, settings).solve()
    status = str(solution.status).split(".")[-1]
    if status in _SOLVED:
        return "solved", np.asarray(solution.x), np.asarray(solution.z)
    if status in _INFEASIBLE:
        return "infeasible", None, None
    raise SolverError(f"{what}: Clarabel ended with status {status}", status=status)


def _ball_block(d, extra):
    """SOC rows giving s = (1 [− r], θ) for x = (θ, extra variables...)."""
    A = np.zeros((d + 1, d + extra))
    A[1:, :d] = -np.eye(d)
    b = np.zeros(d + 1)
    b[0] = 1.0
    return A, b


def _generate(U, c, solve_rows, violation, initial_priority):
    """Constraint generation around ``solve_rows(rows) -> (status, payload)``.

    ``violation(payload)`` gives each row's violation at the relaxed optimum; ``initial_priority``
    ranks rows for the first working set. Returns (status, payload, rows).
    """
    m, d = U.shape
    if m <= max(DIRECT_ROWS, 2 * d):
        rows = np.arange(m)
        status, payload = solve_rows(rows)
        return status, payload, rows
    batch = max(50, d // 2)
    rows = np.sort(np.argsort(-initial_priority, kind="stable")[:batch])
    for _ in range(m):
        status, payload = solve_rows(rows)
        if status == "infeasible":
            return status, payload, rows
        excess = violation(payload)
        excess[rows] = -np.inf
        outside = np.flatnonzero(excess > VIOLATION_TOL)
        if outside.size == 0:
            return status, payload, rows
        worst = outside[np.argsort(-excess[outside], kind="stable")[:batch]]
        rows = np.union1d(rows, worst)
    raise SolverError("constraint generation did not settle")  # pragma: no cover - adds rows each pass


def chebyshev(U, c, *, upper=None, signed=False):
    """The largest ball {‖θ − centre‖ ≤ r} inside {‖θ‖ ≤ 1, Uθ ≥ c} (∩ {Vθ ≤ v} for ``upper=(V, v)``).

    ``max r  s.t.  U_iθ − r ≥ c_i,  V_jθ + r ≤ v_j,  ‖θ‖ + r ≤ 1`` and ``r ≥ 0`` (default), or with r
    free (``signed=True``; r ≤ 1 keeps it bounded): then the program is always feasible and r < 0 says
    by how much the rows must be relaxed to meet inside the ball. V has unit rows; the upper rows are
    always in the working set.

    Returns
    -------
    ("solved", (centre, radius)) or ("infeasible", rows)
        ``rows``: a working set of rows that is already empty (only without ``signed``).
    """
    m, d = U.shape
    V, v = (np.zeros((0, d)), np.zeros(0)) if upper is None else (np.atleast_2d(upper[0]), np.ravel(upper[1]))

    def solve_rows(rows):
        """Solve the Chebyshev SOCP on the working rows ``rows`` (and every upper row)."""
        k = rows.size
        # x = (θ, r): U_Wθ − r − c_W ≥ 0, [v − Vθ − r ≥ 0], r ≥ 0 (or 1 − r ≥ 0), (1 − r, θ) ∈ SOC
        blocks = [(np.hstack([-U[rows], np.ones((k, 1))]), -c[rows])]
        if V.shape[0]:
            blocks.append((np.hstack([V, np.ones((V.shape[0], 1))]), v))
        sign_block = np.zeros((1, d + 1))
        sign_block[0, d] = 1.0 if signed else -1.0
        blocks.append((sign_block, np.ones(1) if signed else np.zeros(1)))
        ball_A, ball_b = _ball_block(d, 1)
        ball_A[0, d] = 1.0
        blocks.append((ball_A, ball_b))
        q = np.zeros(d + 1)
        q[d] = -1.0
        status, x, _ = solve_conic(
            q, blocks, [clarabel.NonnegativeConeT(k + V.shape[0] + 1), clarabel.SecondOrderConeT(d + 1)],
            "Chebyshev-centre SOCP",
        )
        if x is None:
            return status, None
        return status, (x[:d], float(x[d]) if signed else max(0.0, float(x[d])))

    status, payload, rows = _generate(
        U, c, solve_rows, lambda p: c + p[1] - U @ p[0], initial_priority=c,
    )
    return (status, payload) if status == "solved" else (status, rows)


def support(U, c, phi):
    """max φᵀθ over F: ("solved", (θ, y over all rows)) or ("infeasible", rows).

    Weak duality with the multipliers y ≥ 0 of ``Uθ ≥ c``: ``max_F φᵀθ ≤ ‖φ + Uᵀy‖₂ − cᵀy``.
    """
    m, d = U.shape
    unit = phi / max(np.linalg.norm(phi), 1e-300)

    def solve_rows(rows):
        """Solve the support SOCP on the working rows; y is zero off them."""
        k = rows.size
        ball_A, ball_b = _ball_block(d, 0)
        status, x, z = solve_conic(
            -phi, [(-U[rows], -c[rows]), (ball_A, ball_b)],
            [clarabel.NonnegativeConeT(k), clarabel.SecondOrderConeT(d + 1)], "reward-interval SOCP",
        )
        if x is None:
            return status, None
        y = np.zeros(m)
        y[rows] = np.maximum(z[:k], 0.0)
        return status, (x, y)

    status, payload, rows = _generate(
        U, c, solve_rows, lambda p: c - U @ p[0], initial_priority=c - U @ unit,
    )
    return (status, payload) if status == "solved" else (status, rows)


def smallest_norm(U, c):
    """min ‖θ‖₂ s.t. Uθ ≥ c: ("solved", θ) or ("infeasible", rows)."""
    m, d = U.shape

    def solve_rows(rows):
        """Solve the smallest-norm SOCP on the working rows."""
        k = rows.size
        # x = (θ, t): U_Wθ − c_W ≥ 0, (t, θ) ∈ SOC
        rows_block = np.hstack([-U[rows], np.zeros((k, 1))])
        ball_A = np.zeros((d + 1, d + 1))
        ball_A[0, d] = -1.0
        ball_A[1:, :d] = -np.eye(d)
        q = np.zeros(d + 1)
        q[d] = 1.0
        status, x, _ = solve_conic(
            q, [(rows_block, -c[rows]), (ball_A, np.zeros(d + 1))],
            [clarabel.NonnegativeConeT(k), clarabel.SecondOrderConeT(d + 1)], "smallest-norm SOCP",
        )
        return status, None if x is None else x[:d]

    status, payload, rows = _generate(U, c, solve_rows, lambda theta: c - U @ theta, initial_priority=c)
    return (status, payload) if status == "solved" else (status, rows)


def emptiness_certificate(U, c):
    """y ≥ 0, Σy = 1 maximising cᵀy − ‖Uᵀy‖₂ (positive: F is empty). Returns y."""
    m, d = U.shape
    # x = (y, t): Σy = 1, y ≥ 0, (t, Uᵀy) ∈ SOC; minimise t − cᵀy
    sum_block = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    nonneg_block = np.hstack([-np.eye(m), np.zeros((m, 1))])
    soc_block = np.zeros((d + 1, m + 1))
    soc_block[0, m] = -1.0
    soc_block[1:, :m] = -U.T
    q = np.r_[-c, 1.0]
    status, x, _ = solve_conic(
        q, [(sum_block, np.ones(1)), (nonneg_block, np.zeros(m)), (soc_block, np.zeros(d + 1))],
        [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(m), clarabel.SecondOrderConeT(d + 1)],
        "emptiness-certificate SOCP",
    )
    if status != "solved":
        raise SolverError(f"emptiness-certificate SOCP: {status}")
    return np.maximum(x[:m], 0.0)
