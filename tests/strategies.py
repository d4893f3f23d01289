"""Hypothesis strategies for preference data, including the hard cases the theory must survive.

Every strategy draws its *structure* from Hypothesis (sizes, which hard case, scales, counts) and its
bulk numbers from one NumPy generator seeded by a drawn integer: generation stays fast at 10,000
examples, examples are reproducible, and shrinking still simplifies the structure.

Hard cases (each can be switched on or off, and :func:`test_strategies_cover_hard_cases` in
``tests/test_theory.py`` checks that each one is actually generated):

* shape: ``d > n`` (wide, the usual embedding regime: separable, every tightening admissible) and
  ``n > d`` (tall);
* duplicated rows (exact copies) and collinear rows (positive multiples, and low-rank row spaces);
* scales: near-zero (down to 1e-6) and huge (up to 1e6) overall, and row norms spread over decades;
* nearly separable data (planted direction with margins down to 1e-9) and contradictory pairs
  (a row and a negative multiple of it: no hard margin can hold);
* small-integer rows (exact ties and exactly degenerate geometry).

The drawn data are difference rows Δ (``chosen = Δ``, ``rejected = 0``, so ``pairs.delta`` equals Δ
bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from fairl_opt.pairs import PreferencePairs

#: Scale exponents: overall factor 10^e.
EXTREME_SCALES = (-6, 6)
#: Scales the iterative solvers are asked to handle in solver-based properties (their certificates
#: use absolute tolerances of ~1e-7 on margins of 1).
SOLVER_SCALES = (-2, 2)


@dataclass(frozen=True)
class PreferenceCase:
    """Difference rows plus what the generator knows about them.

    Attributes
    ----------
    delta : (n, d) float array, no zero row
    planted : (d,) unit vector or None
        When ``separable``: Δθ* ≥ ``gap`` > 0 for every row (a hard margin is feasible).
    separable : bool
    gap : float
        Smallest Δ_iθ* (separable cases; ``nan`` otherwise).
    tags : frozenset of str
        The hard cases present: "wide", "tall", "duplicate", "collinear", "lowrank", "tiny", "huge",
        "spread", "nearly-separable", "contradictory", "integer".
    """

    delta: np.ndarray
    planted: np.ndarray | None
    separable: bool
    gap: float
    tags: frozenset

    @property
    def n(self) -> int:
        return self.delta.shape[0]

    @property
    def d(self) -> int:
        return self.delta.shape[1]

    def pairs(self) -> PreferencePairs:
        return PreferencePairs(self.delta, np.zeros_like(self.delta), duplicates="allow")

    def __repr__(self) -> str:  # Hypothesis prints this for a falsifying example
        return (f"PreferenceCase(n={self.n}, d={self.d}, tags={sorted(self.tags)}, separable={self.separable}, "
                f"gap={self.gap:.3g}, delta={np.array2string(self.delta, precision=17, separator=',')})")


@st.composite
def preference_cases(draw, *, min_n=1, max_n=12, min_d=1, max_d=10, shape=None, separable=None,
                     scales=EXTREME_SCALES, duplicates=True, collinear=True, contradictions=True,
                     integer_rows=True, near_gaps=(None, 1e-9, 1e-6, 1e-3), spreads=(0, 0, 1, 3),
                     collinear_factors=(0.5, 2.0, 3.0, 1e-3, 1e3)):
    """Difference rows Δ with the hard cases of the module docstring.

    Parameters
    ----------
    shape : {None, "wide", "tall"}
        Force d > n or n > d (None: any).
    separable : bool or None
        True: a planted θ* with Δθ* > 0 (no contradictions); False: at least one contradictory pair;
        None: either.
    scales : (int, int)
        Range of the overall scale exponent e (factor 10^e).
    near_gaps : tuple
        Separable cases: the smallest margin along θ* is drawn from these (None: 0.1, i.e. not near).
    spreads : tuple of int
        Row norms are spread over 10^±s decades, s drawn from these.
    collinear_factors : tuple of float
        A collinear row is another row times one of these.
    """
    if shape == "wide":
        n = draw(st.integers(min_n, max(min_n, min(max_n, max_d - 1))))
        d = draw(st.integers(max(min_d, n + 1), max(max_d, n + 1)))
    elif shape == "tall":
        d = draw(st.integers(min_d, max(min_d, min(max_d, max_n - 1))))
        n = draw(st.integers(max(min_n, d + 1), max(max_n, d + 1)))
    else:
        n = draw(st.integers(min_n, max_n))
        d = draw(st.integers(min_d, max_d))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    tags = set()
    kind = draw(st.sampled_from(("gaussian", "lowrank", "integer") if integer_rows else ("gaussian", "lowrank")))
    if kind == "gaussian" or d == 1:
        rows = rng.normal(size=(n, d))
    elif kind == "lowrank":
        rank = draw(st.integers(1, max(1, d - 1)))
        rows = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
        tags.add("lowrank")
    else:
        rows = rng.integers(-2, 3, size=(n, d)).astype(np.float64)
        tags.add("integer")
    if kind == "integer" and d > 1:
        planted = rng.integers(-3, 4, size=d).astype(np.float64)
        planted[0] = planted[0] or 1.0
    else:
        planted = rng.normal(size=d)
    planted /= np.linalg.norm(planted)

    want_separable = draw(st.booleans()) if separable is None else separable
    gap = float("nan")
    if want_separable:
        scores = rows @ planted
        rows = rows * np.where(scores < 0, -1.0, 1.0)[:, None]
        near = draw(st.sampled_from(near_gaps))
        floor = near if near is not None else 0.1
        scores = rows @ planted
        low = scores < floor
        # lift the rows that are too close to (or on) the boundary: Δ_i += (floor − Δ_iθ*)θ*
        rows[low] += (floor - scores[low])[:, None] * planted[None, :]
        if near is not None:
            tags.add("nearly-separable")
            i = int(rng.integers(n))
            rows[i] += (near - rows[i] @ planted) * planted  # one row exactly at the tiny margin
    # structural copies (appended rows replace random rows so n is kept)
    if duplicates and n >= 2 and draw(st.booleans()):
        k = draw(st.integers(1, max(1, n // 2)))
        src = rng.integers(0, n, size=k)
        dst = rng.choice(n, size=k, replace=False)
        for s, t in zip(src, dst):
            if s != t:
                rows[t] = rows[s]
                tags.add("duplicate")
    if collinear and n >= 2 and draw(st.booleans()):
        k = draw(st.integers(1, max(1, n // 2)))
        for _ in range(k):
            s, t = rng.choice(n, size=2, replace=False)
            rows[t] = rows[s] * float(draw(st.sampled_from(collinear_factors)))
            tags.add("collinear")
    if not want_separable and contradictions and n >= 2:
        k = draw(st.integers(1, max(1, n // 3)))
        for _ in range(k):
            s, t = rng.choice(n, size=2, replace=False)
            rows[t] = -rows[s] * float(draw(st.sampled_from((1.0, 0.5, 2.0))))
            tags.add("contradictory")
    # scales
    exponent = draw(st.integers(*scales))
    spread = draw(st.sampled_from(spreads))
    if spread:
        row_scale = 10.0 ** rng.uniform(-spread, spread, size=n)
        rows = rows * row_scale[:, None]
        tags.add("spread")
    rows = rows * 10.0**exponent
    if exponent <= -3:
        tags.add("tiny")
    if exponent >= 3:
        tags.add("huge")
    # no zero rows (a tie carries no preference; PreferencePairs refuses them)
    zero = ~rows.any(axis=1)
    if zero.any():
        fix = planted if want_separable else np.eye(d)[0]
        rows[zero] = fix * 10.0**exponent
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    separable_now = False
    if want_separable:
        scores = rows @ planted
        separable_now = bool(np.all(scores > 0))
        gap = float(scores.min())
    tags.add("wide" if d > n else ("tall" if n > d else "square"))
    if not separable_now:
        planted, gap = None, float("nan")
    return PreferenceCase(rows, planted, separable_now, gap, frozenset(tags))


def separable_cases(**kwargs):
    """:func:`preference_cases` with a planted direction (every hard margin is feasible)."""
    kwargs.setdefault("separable", True)
    return preference_cases(**kwargs).filter(lambda c: c.separable)


@st.composite
def tightenings(draw, n: int, *, min_step=0.0, max_step=5.0, proper=True):
    """A failure set S ⊆ {0..n−1} and steps δ_j ≥ min_step on it (δ = 0 off S; δ_j = 0 also drawn when
    min_step is 0).

    ``proper``: S is a strict, non-empty subset when n ≥ 2 (as the FA loop guarantees).
    """
    if n == 1 or not proper:
        size = draw(st.integers(1 if proper else 0, n))
    else:
        size = draw(st.integers(1, n - 1))
    subset = sorted(draw(st.permutations(range(n)))[:size])
    steps = np.zeros(n)
    step = st.floats(min_step, max_step, allow_nan=False)
    if min_step == 0.0:  # a zero step on a pair of S is allowed (and is an edge case worth drawing)
        step = st.one_of(st.just(0.0), step)
    for j in subset:
        steps[j] = draw(step)
    return np.asarray(subset, dtype=np.int64), steps


@st.composite
def maxent_edits(draw, n: int, d: int):
    """A MaxEnt program's per-pair state and one FA edit of it.

    Returns dict with ``weights``, ``temperatures``, ``offsets``, ``reg``, ``theta`` (a point to
    look at), ``subset`` (edited pairs), ``upweight`` (≥ 1) and ``sharpen`` (in (0, 1]).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    size = draw(st.integers(1, n))
    return {
        "weights": 10.0 ** rng.uniform(-1, 1, size=n),
        "temperatures": 10.0 ** rng.uniform(-1, 1, size=n),
        "offsets": rng.normal(size=n) * draw(st.sampled_from((0.0, 1.0))),
        "reg": float(draw(st.sampled_from((1e-3, 1e-1, 1.0, 10.0)))),
        "theta": rng.normal(size=d) * float(draw(st.sampled_from((0.0, 0.1, 1.0, 10.0)))),
        "subset": np.sort(rng.choice(n, size=size, replace=False)),
        "upweight": float(draw(st.sampled_from((1.0, 1.5, 2.0, 10.0, 1e3)))),
        "sharpen": float(draw(st.sampled_from((1.0, 0.9, 0.5, 0.1)))),
    }


@st.composite
def reward_pairs(draw, *, max_completions=30, max_prompts=6):
    """Two reward vectors on the same completions, prompt ids, a scale c > 0 and per-prompt shifts.

    Returns dict ``a``, ``b`` (rewards), ``prompts`` (int ids), ``scale`` (c > 0) and ``shift`` (one
    value per prompt, bounded by 100·max|a| so the shifted reward keeps its within-prompt signal).
    """
    m = draw(st.integers(2, max_completions))
    k = draw(st.integers(1, min(max_prompts, m)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    prompts = np.concatenate([np.arange(k), rng.integers(0, k, size=m - k)])
    rng.shuffle(prompts)
    exponent = draw(st.integers(-6, 6))
    a = rng.normal(size=m) * 10.0**exponent
    b = rng.normal(size=m) * 10.0 ** draw(st.integers(-6, 6))
    if draw(st.booleans()):
        b = a + 1e-3 * np.abs(a).max() * rng.normal(size=m)  # nearly the same reward
    scale = float(10.0 ** draw(st.floats(-6, 6, allow_nan=False)))
    shift = rng.normal(size=k) * draw(st.sampled_from((0.0, 1.0, 100.0))) * np.abs(a).max()
    return {"a": a, "b": b, "prompts": prompts, "scale": scale, "shift": shift}
