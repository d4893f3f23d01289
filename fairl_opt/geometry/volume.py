"""Volume fractions and ratios of feasible sets, with error bars from the chains themselves.

Estimators
----------
* **Gaussian** (cones only, b = 0): the fraction of the unit ball inside {Aθ ≥ 0} equals
  P(Ag ≥ 0) for g ~ N(0, I). Draws are independent, so the standard error is the binomial one and
  the interval is Wilson's; ``effective_samples`` is the number of draws.
* **Telescoping hit-and-run** (any F): a path of nested sets F(t) = {‖θ‖ ≤ 1, Uθ ≥ c(t)},
  t ∈ [0, 1] per segment, c(t) = c₀ + t·(c₁ − c₀) with c₁ ≥ c₀ (rows normalised to unit
  length).
  The ratio vol(F(1))/vol(F(0)) is a product of phase ratios vol(F(t_{k+1}))/vol(F(t_k)), each
  estimated as the fraction of hit-and-run samples from F(t_k) that lie in F(t_{k+1}). Each phase
  first runs a *pilot* whose samples choose t_{k+1} (the level that a fraction ``target`` of them
  reach) and then a separate *main* run whose samples give the estimate, so the schedule does not
  bias it. A fraction of the ball starts from c₀ = −1 (every half-space contains the ball); a ratio
  of nested sets starts from the larger set; FA rounds are the segments' end points.

The estimators themselves (phases, batch means, how a product's error bar is combined) live in
:mod:`fairl_opt.geometry.telescope`.
"""

from __future__ import annotations

import time

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.geometry.feasible_set import FeasibleSet
from fairl_opt.geometry.telescope import (
    DEFAULT_GAUSSIAN_DRAWS,
    DEFAULT_SAMPLES,
    METHODS,
    Options,
    PhaseEstimate,
    VolumeEstimate,
    combine,
    exact_estimate,
    gaussian_fraction,
    quotient,
    replace_estimate,
    run_kernel,
    telescope,
    union_path,
)

__all__ = [
    "DEFAULT_GAUSSIAN_DRAWS",
    "DEFAULT_SAMPLES",
    "METHODS",
    "PhaseEstimate",
    "VolumeEstimate",
    "effective_sample_size",
    "nested_volume_ratio",
    "sample_points",
    "volume_fraction",
    "volume_ratio",
]


def volume_fraction(fset: FeasibleSet, *, samples: int | None = None, seed: int = 0, method: str = "auto",
                    chains: int = 8, batches: int = 5, target: float = 0.25, confidence: float = 0.95,
                    burn_in: int | None = None, max_phases: int = 500) -> VolumeEstimate:
    """vol(F) / vol(unit ball).

    Parameters
    ----------
    fset : FeasibleSet
    samples : int, optional
        Gaussian: draws (default 10⁶). Hit-and-run: recorded samples per phase over all chains
        (default 16,000); one record per sweep of d coordinate steps (coordinate) or per step
        (direction).
    seed : int
    method : {"auto", "gaussian", "coordinate", "direction"}
        ``"auto"``: Gaussian for a cone filling at least ~0.5 % of the ball (100 hits in a pilot of
        20,000 draws), otherwise telescoping coordinate hit-and-run, which reaches a given relative
        error faster for smaller sets (each phase ratio stays near ``target``).
    chains, batches : int
        Independent chains, and batches per chain for the batch-means error.
    target : float
        Fraction of each phase's samples meant to reach the next set (0 < target < 1).
    confidence : float
        Level of the interval.
    burn_in : int, optional
        Records discarded before the first phase (default max(100, 2d)); later phases start from
        points of the previous phase that already lie in the new set.
    max_phases : int
        Give up (SolverError) past this many phases: the set is smaller than ~target^max_phases.

    Returns
    -------
    VolumeEstimate
        ``kind="fraction"``.

    Raises
    ------
    InfeasibleError
        F is empty (with a certificate); DataError when F is flat.

    Examples
    --------
    >>> import numpy as np
    >>> F = FeasibleSet.cone(np.eye(3))           # the positive orthant: 1/8 of the ball
    >>> est = volume_fraction(F, samples=200_000, seed=1)
    >>> abs(est.estimate - 0.125) < 4 * est.stderr
    True
    """
    options = Options.make(samples, seed, method, chains, batches, target, confidence, burn_in, max_phases)
    start = time.perf_counter()
    if fset.n_rows == 0:
        return exact_estimate("fraction", 1.0, confidence, start)
    fset.interior_point()  # raises InfeasibleError / DataError(flat) before any sampling
    if options.method in ("auto", "gaussian") and fset.is_cone:
        est = gaussian_fraction(fset, options, start)
        if est is not None:
            return est
    elif options.method == "gaussian":
        raise DataError("method='gaussian' needs a cone (b = 0); this set has b != 0")
    U, c = fset.unit_rows
    waypoints = [np.full(fset.n_rows, -1.0), c]
    segments = telescope(U, waypoints, np.zeros(fset.dim), options)
    return combine("fraction", segments, options, start)


def volume_ratio(fset: FeasibleSet, reference: FeasibleSet, *, samples: int | None = None, seed: int = 0,
                 method: str = "auto", chains: int = 8, batches: int = 5, target: float = 0.25,
                 confidence: float = 0.95, burn_in: int | None = None,
                 max_phases: int = 500) -> VolumeEstimate:
    """vol(fset) / vol(reference).

    When ``fset ⊆ reference`` is evident from the rows (every row of ``reference`` is a row of
    ``fset`` with an equal or larger b, as for F_FA and F_std), one telescoping path runs from
    ``reference`` to ``fset``. Otherwise the ratio is the quotient of the two fractions of the ball
    (``method="quotient"``), their log-scale errors added. Two cones use the Gaussian estimator
    for both fractions under ``method="auto"``. Parameters as in :func:`volume_fraction`.

    Returns
    -------
    VolumeEstimate
        ``kind="ratio"``.
    """
    if fset.dim != reference.dim:
        raise DataError(f"the sets have different dimensions: {fset.dim} and {reference.dim} (reference)")
    options = Options.make(samples, seed, method, chains, batches, target, confidence, burn_in, max_phases)
    start = time.perf_counter()
    x0 = reference.interior_point()  # raises InfeasibleError / DataError(flat) before any sampling
    fset.interior_point()
    gaussian_pair = fset.is_cone and reference.is_cone and options.method in ("auto", "gaussian")
    if fset.subset_of(reference):
        U, c_end, c_start = union_path(fset, reference)
        if np.array_equal(c_start, c_end):
            return exact_estimate("ratio", 1.0, confidence, start)
        if not gaussian_pair:
            segments = telescope(U, [c_start, c_end], x0, options)
            return combine("ratio", segments, options, start)
    common = dict(samples=samples, method=method, chains=chains, batches=batches, target=target,
                  confidence=confidence, burn_in=burn_in, max_phases=max_phases)
    top = volume_fraction(fset, seed=seed, **common)
    bottom = volume_fraction(reference, seed=seed + 1_000_003, **common)
    return quotient(top, bottom, confidence, start)


def nested_volume_ratio(sets, *, samples: int | None = None, seed: int = 0, method: str = "auto",
                        chains: int = 8, batches: int = 5, target: float = 0.25, confidence: float = 0.95,
                        burn_in: int | None = None, max_phases: int = 500) -> VolumeEstimate:
    """vol(sets[-1]) / vol(sets[0]) for nested sets sharing A with non-decreasing b (FA rounds).

    Identical end sets (a single set, or rounds that changed nothing) give exactly 1.

    The sets themselves are the waypoints of one telescoping path, with extra phases inside a step
    whose ratio is small; ``steps`` holds each set's ratio to the one before. Parameters as in
    :func:`volume_fraction`; ``method`` may be ``"auto"`` (coordinate), ``"coordinate"`` or
    ``"direction"``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 0.0]])
    >>> sets = [FeasibleSet(A, [0.0]), FeasibleSet(A, [0.5])]
    >>> est = nested_volume_ratio(sets, samples=4000)
    >>> est.ci_low < est.estimate < est.ci_high, len(est.steps)
    (True, 1)
    """
    sets = list(sets)
    if not sets or not all(isinstance(s, FeasibleSet) for s in sets):
        raise DataError("sets must be a non-empty sequence of FeasibleSet")
    first = sets[0]
    for k, s in enumerate(sets[1:], start=1):
        if s.A.shape != first.A.shape or not np.array_equal(s.A, first.A):
            raise DataError(f"set {k} has different rows A than set 0: nested_volume_ratio needs shared A")
        if np.any(s.b < sets[k - 1].b):
            i = int(np.flatnonzero(s.b < sets[k - 1].b)[0])
            raise DataError(f"set {k} loosens row {i} (b {sets[k - 1].b[i]:g} -> {s.b[i]:g}): not nested")
    if method == "gaussian":
        raise DataError("nested_volume_ratio samples with hit-and-run: method must be 'auto', "
                        "'coordinate' or 'direction'")
    options = Options.make(samples, seed, method, chains, batches, target, confidence, burn_in, max_phases)
    start = time.perf_counter()
    x0 = first.interior_point()  # raises InfeasibleError / DataError(flat) before any sampling
    sets[-1].interior_point()
    if np.array_equal(first.b, sets[-1].b):
        exact = exact_estimate("ratio", 1.0, confidence, start)
        return replace_estimate(exact, steps=tuple(exact for _ in sets[1:]))
    U, _ = first.unit_rows
    waypoints = [s.unit_rows[1] for s in sets]
    segments = telescope(U, waypoints, x0, options)
    steps = tuple(combine("ratio", [seg], options, start) for seg in segments)
    total = combine("ratio", segments, options, start)
    return replace_estimate(total, steps=steps)


def sample_points(fset: FeasibleSet, n: int, *, seed: int = 0, chains: int = 4, method: str = "coordinate",
                  burn_in: int | None = None) -> np.ndarray:
    """``n`` approximately uniform points of F from hit-and-run chains started at the Chebyshev centre.

    One point per sweep of d coordinate steps (``method="coordinate"``) or per step
    (``"direction"``), after ``burn_in`` records (default max(100, 2d)). Returns (n, d), chain by
    chain; consecutive points of a chain are correlated.
    """
    if method not in ("coordinate", "direction"):
        raise DataError(f"method must be 'coordinate' or 'direction', got {method!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer, got {n!r}")
    x0 = fset.interior_point()
    U, c = fset.unit_rows
    AT = np.ascontiguousarray(U.T)
    b = np.ascontiguousarray(c)
    rng = np.random.default_rng(seed)
    per_chain = -(-n // chains)
    X = np.tile(x0, (chains, 1))
    S = X @ U.T - b
    weights = np.zeros(fset.n_rows)
    direction = method == "direction"
    burn = burn_in if burn_in is not None else max(100, 2 * fset.dim)
    if burn:
        run_kernel(direction, AT, b, X, S, weights, np.inf, burn, int(rng.integers(2**31)))
    trace = np.empty((chains, per_chain, fset.dim))
    run_kernel(direction, AT, b, X, S, weights, np.inf, per_chain, int(rng.integers(2**31)), trace=trace)
    return trace.reshape(-1, fset.dim)[:n]


def effective_sample_size(draws) -> float:
    """Effective sample size of a scalar from several chains (Geyer's initial monotone sequence).

    ``draws`` is (chains, n) or (n,). Uses the between- and within-chain variances (as in Stan) so
    that chains stuck in different places lower the answer. Used by the benchmark to compare
    samplers on equal terms.
    """
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    chains, n = x.shape
    if n < 4:
        raise DataError(f"need at least 4 draws per chain, got {n}")
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=1)[:, :n] / n
    within = acov[:, 0].mean() * n / (n - 1)
    between = n * x.mean(axis=1).var(ddof=1) if chains > 1 else 0.0
    var_plus = within * (n - 1) / n + between / n
    if var_plus <= 0:
        return float(chains * n)
    rho = 1.0 - (within - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    pairs = rho[0:n - 1:2] + rho[1:n:2]
    total = 0.0
    previous = np.inf
    for p in pairs:
        if p <= 0:
            break
        p = min(p, previous)
        total += p
        previous = p
    tau = max(2.0 * total - 1.0, 1.0 / np.log10(max(chains * n, 10)))
    return float(chains * n / tau)
