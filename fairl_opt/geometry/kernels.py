"""Numba kernels of the geometry module: samplers over F = {θ : ‖θ‖₂² ≤ radius2, Aθ ≥ b}.

Small ``@njit(cache=True)`` functions over plain arrays; :mod:`fairl_opt.geometry.volume` validates
and allocates. Every hit-and-run kernel advances several independent chains in place:

* ``X`` (chains × d) holds the current points, ``S`` (chains × m) their slacks ``Aθ − b``.
* After every ``steps_per_record`` steps a chain records one number, the *weighted minimum slack*
  ``min_{i : w_i > 0} S_i·w_i`` (``inf`` when no weight is positive). With ``w_i = 1/Δb_i`` this is
  how far the current point lets the right-hand side move along ``b + t·Δb`` before it leaves the
  set: the telescoping volume estimator only needs that number.
* The last recorded point whose statistic is ``>= threshold`` is copied to ``keep`` (``found`` is
  set): it is a start point for the next, smaller set.
* ``trace`` (chains × records × d, or with a zero-length middle axis) optionally receives the points.

The coordinate kernel visits coordinates in sweeps (a fresh random permutation every d steps) and
keeps ``S`` up to date incrementally: moving coordinate j by t changes the slacks by ``t·A[:, j]``,
an O(m) update, so it takes ``AT = A.T`` with contiguous columns, and ``INV`` with the reciprocals
of its entries. The chord then costs one multiply per row in a branch-free loop that LLVM
vectorises (``fastmath``; ±1e300 stands in for ±inf there, so ``radius2`` must be finite, at most
1e200). Entries below 1e-150 count as 0 (a step along such a column moves that row's slack by less
than 1e-150 times the step, far below rounding). Each step's slack update is fused into the next
step's chord pass, so a step reads the slacks once. Rounding drift is removed by recomputing ``S``
from scratch every ``refresh_every`` records (O(m·d)).
:func:`coordinate_hit_and_run_naive` recomputes ``S`` before every step (O(m·d) per step) and draws
the same random numbers, so both produce the same chain: it exists to benchmark and test the fast one.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _recompute_slacks(AT, b, x, s):
    """s = Aθ − b, accumulated column by column over the contiguous columns of A."""
    d, m = AT.shape
    for i in range(m):
        s[i] = -b[i]
    for j in range(d):
        xj = x[j]
        if xj != 0.0:
            col = AT[j]
            for i in range(m):
                s[i] += xj * col[i]


@njit(cache=True)
def _weighted_min_slack(s, weights):
    """min over rows with w_i > 0 of s_i·w_i (inf when no weight is positive)."""
    best = np.inf
    for i in range(s.shape[0]):
        w = weights[i]
        if w > 0.0:
            v = s[i] * w
            if v < best:
                best = v
    return best


#: Stands in for ±infinity inside the fastmath loops (which assume finite values).
BIG = 1e300


@njit(cache=True, fastmath=True)
def _chord_bounds(inv, s):
    """max over rows with inv > 0, min over rows with inv < 0, of −s_i·inv_i (±BIG when none)."""
    lo = -BIG
    hi = BIG
    for i in range(s.shape[0]):
        q = inv[i]
        v = -s[i] * q
        lo = max(lo, v if q > 0.0 else -BIG)
        hi = min(hi, v if q < 0.0 else BIG)
    return lo, hi


@njit(cache=True, fastmath=True)
def _update_then_chord_bounds(t, col, inv, s):
    """s += t·col, then :func:`_chord_bounds` of the updated s: one pass over the slacks instead of two."""
    lo = -BIG
    hi = BIG
    for i in range(s.shape[0]):
        si = s[i] + t * col[i]
        s[i] = si
        q = inv[i]
        v = -si * q
        lo = max(lo, v if q > 0.0 else -BIG)
        hi = min(hi, v if q < 0.0 else BIG)
    return lo, hi


@njit(cache=True)
def _next_coordinate(order, pos):
    """Coordinates in sweeps: a fresh random permutation every d steps (each step is still a
    hit-and-run move that keeps the uniform distribution, so any order is valid; sweeps mix better
    than drawing coordinates with replacement). Returns (j, next position)."""
    d = order.shape[0]
    if pos == 0:
        for i in range(d - 1, 0, -1):
            k = np.random.randint(0, i + 1)
            order[i], order[k] = order[k], order[i]
    return order[pos], (pos + 1) % d


@njit(cache=True, fastmath=True)
def _axpy(t, col, s):
    """s += t·col, in place."""
    for i in range(s.shape[0]):
        s[i] += t * col[i]


@njit(cache=True)
def _clip_to_ball(lo, hi, xj, norm2, radius2):
    """Intersect the chord [lo, hi] along e_j with the ball; never step further out than θ already is."""
    rest = radius2 - (norm2 - xj * xj)
    half = np.sqrt(rest) if rest > 0.0 else 0.0
    if -half - xj > lo:
        lo = -half - xj
    if half - xj < hi:
        hi = half - xj
    # rounding can leave the point a hair outside; never step further out than it already is
    if lo > 0.0:
        lo = 0.0
    if hi < 0.0:
        hi = 0.0
    return lo, hi


def reciprocals(AT):
    """``INV`` for the coordinate kernels: 1/AT entrywise, 0 where |AT| < 1e-150."""
    AT = np.asarray(AT, dtype=np.float64)
    out = np.zeros_like(AT)
    big = np.abs(AT) >= 1e-150
    out[big] = 1.0 / AT[big]
    return np.ascontiguousarray(out)


@njit(cache=True)
def _record(c, r, x, s, weights, threshold, stats, keep, found, trace):
    """Chain c's record r: its weighted minimum slack, its point kept when the statistic reaches the threshold, and the trace."""
    value = _weighted_min_slack(s, weights)
    stats[c, r] = value
    if value >= threshold:
        keep[c, :] = x
        found[c] = True
    if trace.shape[1] > 0:
        trace[c, r, :] = x


@njit(cache=True)
def coordinate_hit_and_run(AT, INV, b, X, S, radius2, weights, threshold, n_records, steps_per_record,
                           refresh_every, seed, stats, keep, found, trace):
    """Coordinate hit-and-run, O(m) per step: coordinates in random-permutation sweeps, a uniform
    point on each chord.

    Parameters
    ----------
    AT : (d, m) C-contiguous array
        A transposed: ``AT[j]`` is column j of A.
    INV : (d, m) C-contiguous array
        :func:`reciprocals` of AT.
    b : (m,) array
    X, S : (chains, d), (chains, m) arrays
        Current points and their slacks ``Aθ − b`` (updated in place).
    radius2 : float
        Squared radius of the ball (finite, ≤ 1e200; a ball containing the polytope means "no ball").
    weights, threshold : (m,) array, float
        Define the recorded statistic and which points are kept (module docstring).
    n_records, steps_per_record, refresh_every : int
    seed : int
        Seeds Numba's generator; chains run one after another on that stream.
    stats : (chains, n_records) array
        Output: the statistic at each record.
    keep, found, trace : arrays
        Output (module docstring).
    """
    np.random.seed(seed)
    chains, d = X.shape
    order = np.arange(d)
    for c in range(chains):
        x = X[c]
        s = S[c]
        norm2 = 0.0
        for j in range(d):
            norm2 += x[j] * x[j]
        pos = 0
        for r in range(n_records):
            # the slack update of a step is fused into the next step's chord pass (one pass over s)
            pending_t = 0.0
            pending_j = 0
            for _ in range(steps_per_record):
                j, pos = _next_coordinate(order, pos)
                xj = x[j]
                lo, hi = _update_then_chord_bounds(pending_t, AT[pending_j], INV[j], s)
                lo, hi = _clip_to_ball(lo, hi, xj, norm2, radius2)
                t = lo + (hi - lo) * np.random.random()
                x[j] = xj + t
                norm2 += t * (2.0 * xj + t)
                pending_t = t
                pending_j = j
            _axpy(pending_t, AT[pending_j], s)
            norm2 = 0.0
            for j in range(d):
                norm2 += x[j] * x[j]
            if refresh_every > 0 and (r + 1) % refresh_every == 0:
                _recompute_slacks(AT, b, x, s)
            _record(c, r, x, s, weights, threshold, stats, keep, found, trace)


@njit(cache=True, fastmath=True)
def _dot(u, v):
    """uᵀv."""
    acc = 0.0
    for k in range(u.shape[0]):
        acc += u[k] * v[k]
    return acc


@njit(cache=True)
def coordinate_hit_and_run_naive(A, AT, INV, b, X, S, radius2, weights, threshold, n_records,
                                 steps_per_record, seed, stats, keep, found, trace):
    """The same chain as :func:`coordinate_hit_and_run`, recomputing ``Aθ − b`` before every step.

    O(m·d) per step: the baseline the incremental kernel is benchmarked and tested against. ``A``
    (m, d) is C-contiguous; the other arguments are those of :func:`coordinate_hit_and_run`.
    """
    np.random.seed(seed)
    chains, d = X.shape
    m = A.shape[0]
    order = np.arange(d)
    for c in range(chains):
        x = X[c]
        s = S[c]
        pos = 0
        for r in range(n_records):
            for _ in range(steps_per_record):
                for i in range(m):
                    s[i] = _dot(A[i], x) - b[i]
                norm2 = _dot(x, x)
                j, pos = _next_coordinate(order, pos)
                xj = x[j]
                lo, hi = _chord_bounds(INV[j], s)
                lo, hi = _clip_to_ball(lo, hi, xj, norm2, radius2)
                t = lo + (hi - lo) * np.random.random()
                x[j] = xj + t
            _recompute_slacks(AT, b, x, s)
            _record(c, r, x, s, weights, threshold, stats, keep, found, trace)


@njit(cache=True)
def direction_hit_and_run(AT, b, X, S, radius2, weights, threshold, n_records, steps_per_record,
                          refresh_every, seed, stats, keep, found, trace):
    """Hit-and-run along uniformly random directions, O(m·d) per step (computing A·u).

    Same arguments and outputs as :func:`coordinate_hit_and_run`.
    """
    np.random.seed(seed)
    chains, d = X.shape
    m = AT.shape[1]
    u = np.empty(d)
    au = np.empty(m)
    inv = np.empty(m)
    for c in range(chains):
        x = X[c]
        s = S[c]
        for r in range(n_records):
            for _ in range(steps_per_record):
                norm_u = 0.0
                for j in range(d):
                    u[j] = np.random.standard_normal()
                    norm_u += u[j] * u[j]
                norm_u = np.sqrt(norm_u)
                xu = 0.0
                norm2 = 0.0
                for j in range(d):
                    u[j] /= norm_u
                    xu += x[j] * u[j]
                    norm2 += x[j] * x[j]
                for i in range(m):
                    au[i] = 0.0
                for j in range(d):
                    _axpy(u[j], AT[j], au)
                for i in range(m):
                    a = au[i]
                    inv[i] = 1.0 / a if abs(a) >= 1e-150 else 0.0
                lo, hi = _chord_bounds(inv, s)
                disc = xu * xu - norm2 + radius2
                half = np.sqrt(disc) if disc > 0.0 else 0.0
                if -xu - half > lo:
                    lo = -xu - half
                if -xu + half < hi:
                    hi = -xu + half
                if lo > 0.0:
                    lo = 0.0
                if hi < 0.0:
                    hi = 0.0
                t = lo + (hi - lo) * np.random.random()
                if t != 0.0:
                    _axpy(t, u, x)
                    _axpy(t, au, s)
            if refresh_every > 0 and (r + 1) % refresh_every == 0:
                _recompute_slacks(AT, b, x, s)
            _record(c, r, x, s, weights, threshold, stats, keep, found, trace)


@njit(cache=True)
def gaussian_cone_hits(A, n_batches, draws_per_batch, seed, hits):
    """Count standard normal g with Ag ≥ 0, per batch (``hits[k]``): P(Ag ≥ 0) is the fraction of the
    unit ball that the cone {Aθ ≥ 0} fills. Rows are checked in order and a draw stops at its first
    violated row, so put the most often violated rows first."""
    np.random.seed(seed)
    m, d = A.shape
    g = np.empty(d)
    for k in range(n_batches):
        count = 0
        for _ in range(draws_per_batch):
            for j in range(d):
                g[j] = np.random.standard_normal()
            inside = True
            for i in range(m):
                row = A[i]
                acc = 0.0
                for j in range(d):
                    acc += row[j] * g[j]
                if acc < 0.0:
                    inside = False
                    break
            if inside:
                count += 1
        hits[k] = count


def warm_up() -> None:
    """Compile (or load from cache) every kernel once, e.g. at the start of a test session."""
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    AT = np.ascontiguousarray(A.T)
    INV = reciprocals(AT)
    b = np.zeros(2)
    w = np.ones(2)

    def state():
        """A fresh one-chain state (X, S, stats, keep, found, trace) at θ = (0.1, 0.1)."""
        X = np.full((1, 2), 0.1)
        empty = np.empty((1, 2))
        return X, X @ A.T - b, empty.copy(), empty.copy(), np.zeros(1, dtype=np.bool_), np.empty((1, 0, 2))

    X, S, stats, keep, found, trace = state()
    coordinate_hit_and_run(AT, INV, b, X, S, 1.0, w, 0.0, 2, 2, 1, 0, stats, keep, found, trace)
    X, S, stats, keep, found, trace = state()
    direction_hit_and_run(AT, b, X, S, 1.0, w, 0.0, 2, 2, 1, 0, stats, keep, found, trace)
    X, S, stats, keep, found, trace = state()
    coordinate_hit_and_run_naive(A, AT, INV, b, X, S, 1.0, w, 0.0, 2, 2, 0, stats, keep, found, trace)
    gaussian_cone_hits(A, 1, 2, 0, np.zeros(1, dtype=np.int64))
