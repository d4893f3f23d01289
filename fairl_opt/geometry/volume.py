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

Error bars
----------
Per phase, the main run of each chain is cut into ``batches`` consecutive batches; the standard
error is the standard deviation of the chains × batches batch means over √K, which stays honest
when successive samples are correlated (as long as a batch is much longer than the autocorrelation
time), unlike the binomial formula. ``effective_samples`` of a phase is r(1 − r)/se², the number of
independent draws that would give the same error. A product is combined on the log scale,
Var(log R) = Σ se_k²/r_k², with Welch–Satterthwaite degrees of freedom, and the interval is
R·exp(±t·sd), clipped to [0, 1] (every quantity here is a fraction of a larger set). A phase in which
every sample landed in the next set has no variance estimate: it contributes the one-sided
Clopper–Pearson bound over its K batch means instead of a zero error.

Phases are not independent (each starts where the previous one left its chains), and slow mixing
in high dimension correlates their errors. The chains themselves are independent, so each chain's
own product of phase ratios is a replicate of the whole estimate; when the spread of those
replicates is significantly larger than the batch-means error (variance-ratio F test at 5 %), it
becomes the error bar, with chains − 1 degrees of freedom (``error_from = "between chains"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as st

from fairl_opt.exceptions import DataError, SolverError
from fairl_opt.geometry import kernels
from fairl_opt.geometry.feasible_set import FeasibleSet

DEFAULT_SAMPLES = 16_000
DEFAULT_GAUSSIAN_DRAWS = 1_000_000
METHODS = ("auto", "gaussian", "coordinate", "direction")
#: Gaussian pilot draws for method="auto", and the hits it needs to pick the Gaussian estimator.
GAUSSIAN_PILOT = 20_000
GAUSSIAN_MIN_HITS = 100


@dataclass(frozen=True)
class PhaseEstimate:
    """One factor of a telescoping product: vol(F(t_end)) / vol(F(t_start)) within a segment."""

    segment: int
    t_start: float
    t_end: float
    ratio: float
    stderr: float
    effective_samples: float
    samples: int
    batches: int
    chain_ratios: tuple = field(default=(), repr=False)


@dataclass(frozen=True)
class VolumeEstimate:
    """A volume fraction (of the unit ball) or a ratio of volumes, with its uncertainty.

    Attributes
    ----------
    kind : {"fraction", "ratio"}
    estimate : float
    stderr : float
        Standard error (delta method on the log scale for products).
    ci_low, ci_high : float
        The ``confidence`` interval.
    effective_samples : float
        Independent draws worth of information: the draws (Gaussian), or the smallest over the
        telescoping phases (the bottleneck of the product).
    method : str
        ``"gaussian"``, ``"coordinate"`` or ``"direction"`` hit-and-run, ``"exact"`` (identical
        sets), or ``"quotient"`` (a ratio of two fractions, when the sets are not nested).
    samples : int
        Samples or draws used for the estimate (pilots and burn-in excluded).
    seconds : float
    phases : tuple of PhaseEstimate
    steps : tuple of VolumeEstimate
        For a nested sequence: the ratio of each set to the one before (FA round by round).
    confidence : float
    """

    kind: str
    estimate: float
    stderr: float
    ci_low: float
    ci_high: float
    effective_samples: float
    method: str
    samples: int
    seconds: float
    phases: tuple = ()
    steps: tuple = ()
    confidence: float = 0.95
    error_from: str = "batch means"
    log_sd: float = field(default=0.0, repr=False)
    dof: float = field(default=np.inf, repr=False)

    def to_dict(self, with_phases: bool = False) -> dict:
        """JSON-ready: ``{kind: estimate, "stderr", "ci_low", "ci_high", "effective_samples", ...}``."""
        out = {
            self.kind: self.estimate,
            "stderr": self.stderr,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "effective_samples": self.effective_samples,
            "method": self.method,
            "samples": self.samples,
            "n_phases": len(self.phases),
            "error_from": self.error_from,
            "seconds": self.seconds,
        }
        if self.steps:
            # the steps share one run: their own timings are not separable
            out["steps"] = [{k: v for k, v in s.to_dict().items() if k != "seconds"} for s in self.steps]
        if with_phases:
            out["phases"] = [p.__dict__.copy() for p in self.phases]
        return out


# -- public API ------------------------------------------------------------------------------------

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
    EmptySetError
        F is empty (with a certificate); DataError when F is flat.

    Examples
    --------
    >>> import numpy as np
    >>> F = FeasibleSet.cone(np.eye(3))           # the positive orthant: 1/8 of the ball
    >>> est = volume_fraction(F, samples=200_000, seed=1)
    >>> abs(est.estimate - 0.125) < 4 * est.stderr
    True
    """
    options = _Options.make(samples, seed, method, chains, batches, target, confidence, burn_in, max_phases)
    start = time.perf_counter()
    if fset.n_rows == 0:
        return _exact("fraction", 1.0, confidence, start)
    fset.interior_point()  # raises EmptySetError / DataError(flat) before any sampling
    if options.method in ("auto", "gaussian") and fset.is_cone:
        est = _gaussian_fraction(fset, options, start)
        if est is not None:
            return est
    elif options.method == "gaussian":
        raise DataError("method='gaussian' needs a cone (b = 0); this set has b != 0")
    U, c = fset.unit_rows
    waypoints = [np.full(fset.n_rows, -1.0), c]
    segments = _telescope(U, waypoints, np.zeros(fset.dim), options)
    return _combine("fraction", segments, options, start)


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
    options = _Options.make(samples, seed, method, chains, batches, target, confidence, burn_in, max_phases)
    start = time.perf_counter()
    x0 = reference.interior_point()  # raises EmptySetError / DataError(flat) before any sampling
    fset.interior_point()
    gaussian_pair = fset.is_cone and reference.is_cone and options.method in ("auto", "gaussian")
    if fset.subset_of(reference):
        U, c_end, c_start = _union_path(fset, reference)
        if np.array_equal(c_start, c_end):
            return _exact("ratio", 1.0, confidence, start)
        if not gaussian_pair:
            segments = _telescope(U, [c_start, c_end], x0, options)
            return _combine("ratio", segments, options, start)
    common = dict(samples=samples, method=method, chains=chains, batches=batches, target=target,
                  confidence=confidence, burn_in=burn_in, max_phases=max_phases)
    top = volume_fraction(fset, seed=seed, **common)
    bottom = volume_fraction(reference, seed=seed + 1_000_003, **common)
    return _quotient(top, bottom, confidence, start)


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
    options = _Options.make(samples, seed, method, chains, batches, target, confidence, burn_in, max_phases)
    start = time.perf_counter()
    x0 = first.interior_point()  # raises EmptySetError / DataError(flat) before any sampling
    sets[-1].interior_point()
    if np.array_equal(first.b, sets[-1].b):
        exact = _exact("ratio", 1.0, confidence, start)
        return _replace(exact, steps=tuple(exact for _ in sets[1:]))
    U, _ = first.unit_rows
    waypoints = [s.unit_rows[1] for s in sets]
    segments = _telescope(U, waypoints, x0, options)
    steps = tuple(_combine("ratio", [seg], options, start) for seg in segments)
    total = _combine("ratio", segments, options, start)
    return _replace(total, steps=steps)


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
        _run_kernel(direction, AT, b, X, S, weights, np.inf, burn, int(rng.integers(2**31)))
    trace = np.empty((chains, per_chain, fset.dim))
    _run_kernel(direction, AT, b, X, S, weights, np.inf, per_chain, int(rng.integers(2**31)), trace=trace)
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


# -- internals -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Options:
    samples: int
    seed: int
    method: str
    chains: int
    batches: int
    target: float
    confidence: float
    burn_in: int | None
    max_phases: int

    @staticmethod
    def make(samples, seed, method, chains, batches, target, confidence, burn_in, max_phases):
        if method not in METHODS:
            raise DataError(f"method must be one of {METHODS}, got {method!r}")
        for name, value, low in (("chains", chains, 1), ("batches", batches, 2), ("max_phases", max_phases, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
        least = 2 * chains * batches
        if samples is not None and (not isinstance(samples, (int, np.integer)) or samples < least):
            raise DataError(f"samples must be an integer >= 2·chains·batches = {least}, got {samples!r}")
        if burn_in is not None and (not isinstance(burn_in, (int, np.integer)) or burn_in < 0):
            raise DataError(f"burn_in must be an integer >= 0, got {burn_in!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DataError(f"seed must be a non-negative integer, got {seed!r}")
        if not 0 < target < 1:
            raise DataError(f"target must lie in (0, 1), got {target}")
        if not 0 < confidence < 1:
            raise DataError(f"confidence must lie in (0, 1), got {confidence}")
        return _Options(samples, int(seed), method, int(chains), int(batches), float(target), float(confidence),
                        burn_in, int(max_phases))


def _exact(kind, value, confidence, start):
    return VolumeEstimate(kind, value, 0.0, value, value, float("inf"), "exact", 0,
                          time.perf_counter() - start, confidence=confidence, error_from="exact")


def _replace(est: VolumeEstimate, **changes) -> VolumeEstimate:
    from dataclasses import replace

    return replace(est, **changes)


def _union_path(fset: FeasibleSet, reference: FeasibleSet):
    """Rows of ``fset`` (⊇ reference's rows) and the path's two ends: reference (rows it lacks set
    to c = −1, vacuous on the ball) and fset."""
    U, c_end = fset.unit_rows
    c_start = np.full(fset.n_rows, -1.0)
    index = {row.tobytes(): i for i, row in enumerate(fset.A)}
    _, c_ref = reference.unit_rows
    for j, row in enumerate(reference.A):
        c_start[index[row.tobytes()]] = c_ref[j]
    return U, c_end, np.minimum(c_start, c_end)


def _gaussian_fraction(fset: FeasibleSet, options: _Options, start) -> VolumeEstimate | None:
    U, _ = fset.unit_rows
    A = np.ascontiguousarray(U)
    rng = np.random.default_rng(options.seed)
    if options.method == "auto":
        pilot = np.zeros(1, dtype=np.int64)
        kernels.gaussian_cone_hits(A, 1, GAUSSIAN_PILOT, int(rng.integers(2**31)), pilot)
        if pilot[0] < GAUSSIAN_MIN_HITS:
            return None
    draws = options.samples or DEFAULT_GAUSSIAN_DRAWS
    n_batches = 100 if draws >= 100 else draws
    per_batch = -(-draws // n_batches)
    hits = np.zeros(n_batches, dtype=np.int64)
    kernels.gaussian_cone_hits(A, n_batches, per_batch, int(rng.integers(2**31)), hits)
    n = n_batches * per_batch
    k = int(hits.sum())
    if k == 0:
        # F has interior (checked), so 0 is wrong, and a log-scale error bar does not exist
        raise SolverError(
            f"no Gaussian draw out of {n} landed in the cone (its fraction is below about {3 / n:.2g}); "
            "use method='coordinate' (telescoping hit-and-run) for small sets"
        )
    p = k / n
    z = float(st.norm.ppf(0.5 + options.confidence / 2))
    # Wilson score interval: sensible also for k = 0 or k = n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    stderr = float(np.sqrt(p * (1 - p) / n))
    return VolumeEstimate(
        "fraction", p, stderr, max(0.0, centre - half), min(1.0, centre + half), float(n), "gaussian", n,
        time.perf_counter() - start, confidence=options.confidence, error_from="binomial",
        log_sd=stderr / p, dof=np.inf,
    )


def _run_kernel(direction, AT, b, X, S, weights, threshold, n_records, seed, trace=None, INV=None):
    chains, d = X.shape
    stats = np.empty((chains, n_records))
    keep = np.empty_like(X)
    found = np.zeros(chains, dtype=np.bool_)
    trace = np.empty((chains, 0, d)) if trace is None else trace
    if direction:
        kernels.direction_hit_and_run(AT, b, X, S, 1.0, weights, threshold, n_records, 1, 64, seed, stats,
                                      keep, found, trace)
    else:
        kernels.coordinate_hit_and_run(AT, kernels.reciprocals(AT) if INV is None else INV, b, X, S, 1.0,
                                       weights, threshold, n_records, d, 64, seed, stats, keep, found, trace)
    return stats, keep, found


def _telescope(U, waypoints, x0, options: _Options):
    """Phases along the piecewise-linear path through ``waypoints`` (normalised right-hand sides).

    Returns one list of :class:`PhaseEstimate` per segment.
    """
    m, d = U.shape
    AT = np.ascontiguousarray(U.T)
    INV = kernels.reciprocals(AT)
    direction = options.method == "direction"
    rng = np.random.default_rng(options.seed)
    samples = options.samples or DEFAULT_SAMPLES
    per_chain = -(-samples // options.chains)
    per_chain = -(-per_chain // options.batches) * options.batches
    n_pilot = max(per_chain // 4, 20)
    burn_in = options.burn_in if options.burn_in is not None else max(100, 2 * d)
    X = np.tile(np.asarray(x0, dtype=np.float64), (options.chains, 1))
    first = True
    n_phases = 0
    segments = []
    for seg, (c0, c1) in enumerate(zip(waypoints[:-1], waypoints[1:])):
        dc = c1 - c0
        phases = []
        segments.append(phases)
        tightened = dc > 0
        if not tightened.any():
            phases.append(PhaseEstimate(seg, 0.0, 1.0, 1.0, 0.0, float("inf"), 0, 0))
            continue
        weights = np.where(tightened, 1.0 / np.where(tightened, dc, 1.0), 0.0)
        t = 0.0
        while t < 1.0:
            n_phases += 1
            if n_phases > options.max_phases:
                done = sum(np.log(p.ratio) for s in segments for p in s)
                raise SolverError(
                    f"the telescoping product needed more than max_phases={options.max_phases} phases "
                    f"(log-volume so far {done:.4g}); raise max_phases or check that the set is not "
                    "nearly flat"
                )
            b = np.ascontiguousarray(c0 + t * dc)
            S = X @ U.T - b
            if first and burn_in:
                _run_kernel(direction, AT, b, X, S, weights, np.inf, burn_in, int(rng.integers(2**31)), INV=INV)
            first = False
            pilot, _, _ = _run_kernel(direction, AT, b, X, S, weights, np.inf, n_pilot,
                                      int(rng.integers(2**31)), INV=INV)
            # stats = how much further t can move before the sample leaves F(t)
            reach = float(np.quantile(pilot, 1.0 - options.target))
            # finish the segment when enough pilot samples already reach its end, rather than
            # leaving a last phase with a ratio near 1 (all cost, little information)
            if np.mean(pilot >= 1.0 - t) >= options.target / 2:
                reach = 1.0 - t
            step = min(1.0 - t, reach)
            if not step > 0.0:
                raise SolverError(
                    f"phase {n_phases}: no sample can tighten further (segment {seg}, t = {t:.6g}); the set "
                    "is flat along this path"
                )
            if t + step >= 1.0 - 1e-12:
                step = 1.0 - t
            main, keep, found = _run_kernel(direction, AT, b, X, S, weights, step, per_chain,
                                            int(rng.integers(2**31)), INV=INV)
            inside = main >= step
            phases.append(_phase_estimate(seg, t, t + step, inside, options.batches))
            if phases[-1].ratio == 0.0:
                raise SolverError(
                    f"phase {n_phases}: no main-run sample reached the next set (segment {seg}); raise samples"
                )
            # restart each chain from its last point inside the next set (uniform there); a chain that
            # never got there borrows one from another chain
            donors = np.flatnonzero(found)
            for ch in range(options.chains):
                X[ch] = keep[ch] if found[ch] else keep[donors[ch % donors.size]]
            t += step
    return segments


def _phase_estimate(seg, t0, t1, inside, batches) -> PhaseEstimate:
    chains, n = inside.shape
    means = inside.reshape(chains, batches, n // batches).mean(axis=2).ravel()
    ratio = float(means.mean())
    stderr = float(means.std(ddof=1) / np.sqrt(means.size))
    ess = ratio * (1 - ratio) / stderr**2 if stderr > 0 else float(inside.size)
    chain_ratios = tuple(float(v) for v in inside.mean(axis=1))
    return PhaseEstimate(seg, t0, t1, ratio, stderr, float(ess), int(inside.size), int(means.size), chain_ratios)


def _combine(kind, segments, options: _Options, start) -> VolumeEstimate:
    phases = [p for seg in segments for p in seg]
    sampled = [p for p in phases if p.samples > 0]
    log_r = float(sum(np.log(p.ratio) for p in sampled))
    estimate = float(np.exp(log_r))
    alpha = 1 - options.confidence
    var_terms = []
    dofs = []
    for p in sampled:
        dof = p.batches - 1
        if p.stderr > 0:
            var_terms.append((p.stderr / p.ratio) ** 2)
        else:
            # every batch mean was 1: one-sided Clopper–Pearson bound over K batches, as a log-sd
            low = (alpha / 2) ** (1.0 / p.batches)
            var_terms.append((np.log(low) / st.t.ppf(1 - alpha / 2, dof)) ** 2)
        dofs.append(dof)
    var = float(sum(var_terms))
    if var > 0:
        dof = var**2 / sum(v**2 / k for v, k in zip(var_terms, dofs))
        quantile = float(st.t.ppf(1 - alpha / 2, dof))
    else:
        dof, quantile = np.inf, 0.0
    sd = float(np.sqrt(var))
    # Phases share chain trajectories (each starts where the last one left its chains), so slow
    # mixing correlates their errors, which the per-phase terms above miss. Each chain's own
    # product of ratios is an independent replicate of the whole path: when their spread is
    # significantly larger (variance-ratio F test at 5 %), the chains have not mixed and that
    # spread is the error bar, with chains − 1 degrees of freedom.
    error_from = "batch means"
    if sampled and len(sampled[0].chain_ratios) >= 2 and var > 0:
        per_chain = np.zeros(len(sampled[0].chain_ratios))
        for p in sampled:
            per_record = 1.0 / (p.samples / len(p.chain_ratios))
            per_chain += np.log(np.maximum(np.asarray(p.chain_ratios), 0.5 * per_record))
        between = float(per_chain.std(ddof=1) / np.sqrt(per_chain.size))
        if between**2 / var > st.f.ppf(0.95, per_chain.size - 1, dof):
            sd, dof, error_from = between, per_chain.size - 1, "between chains"
            quantile = float(st.t.ppf(1 - alpha / 2, dof))
    ess = min((p.effective_samples for p in sampled), default=float("inf"))
    method = "direction" if options.method == "direction" else "coordinate"
    return VolumeEstimate(
        kind, estimate, estimate * sd, estimate * float(np.exp(-quantile * sd)),
        min(1.0, estimate * float(np.exp(quantile * sd))), float(ess), method,
        int(sum(p.samples for p in sampled)), time.perf_counter() - start, phases=tuple(phases),
        confidence=options.confidence, log_sd=float(sd), dof=float(dof), error_from=error_from,
    )


def _quotient(top: VolumeEstimate, bottom: VolumeEstimate, confidence, start) -> VolumeEstimate:
    estimate = top.estimate / bottom.estimate
    v1, v2 = top.log_sd**2, bottom.log_sd**2
    var = v1 + v2
    if var > 0 and np.isfinite(var):
        denom = (v1**2 / top.dof if v1 else 0.0) + (v2**2 / bottom.dof if v2 else 0.0)
        dof = var**2 / denom if denom > 0 else np.inf
        quantile = float(st.t.ppf(0.5 + confidence / 2, dof))
    else:
        dof, quantile = np.inf, 0.0
    sd = float(np.sqrt(var))
    return VolumeEstimate(
        "ratio", estimate, estimate * sd, estimate * float(np.exp(-quantile * sd)),
        estimate * float(np.exp(quantile * sd)), min(top.effective_samples, bottom.effective_samples),
        "quotient", top.samples + bottom.samples, time.perf_counter() - start,
        phases=top.phases + bottom.phases, confidence=confidence, log_sd=sd, dof=float(dof),
        error_from=f"{top.error_from} / {bottom.error_from}",
    )
