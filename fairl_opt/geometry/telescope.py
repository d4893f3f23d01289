"""The estimators behind :mod:`fairl_opt.geometry.volume`: result types, the Gaussian cone estimator,
telescoping hit-and-run along a path of nested sets, and how the phases' errors combine.

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
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as st

from fairl_opt._progress import progress_bar
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


@dataclass(frozen=True)
class Options:
    """The estimators' options, checked once (:meth:`make`): samples per phase, seed, method, chains, batches
    per chain, pilot target, confidence, burn-in and the phase limit."""

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
        """Options from the public functions' arguments; a DataError names the first bad one."""
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
        return Options(samples, int(seed), method, int(chains), int(batches), float(target), float(confidence),
                        burn_in, int(max_phases))


def exact_estimate(kind, value, confidence, start):
    """A known value (identical sets, the whole ball) as a zero-error estimate."""
    return VolumeEstimate(kind, value, 0.0, value, value, float("inf"), "exact", 0,
                          time.perf_counter() - start, confidence=confidence, error_from="exact")


def replace_estimate(est: VolumeEstimate, **changes) -> VolumeEstimate:
    """A copy of ``est`` with ``changes`` (it is frozen)."""
    return replace(est, **changes)


def union_path(fset: FeasibleSet, reference: FeasibleSet):
    """Rows of ``fset`` (⊇ reference's rows) and the path's two ends: reference (rows it lacks set
    to c = −1, vacuous on the ball) and fset."""
    U, c_end = fset.unit_rows
    c_start = np.full(fset.n_rows, -1.0)
    index = {row.tobytes(): i for i, row in enumerate(fset.A)}
    _, c_ref = reference.unit_rows
    for j, row in enumerate(reference.A):
        c_start[index[row.tobytes()]] = c_ref[j]
    return U, c_end, np.minimum(c_start, c_end)


def gaussian_fraction(fset: FeasibleSet, options: Options, start) -> VolumeEstimate | None:
    """P(Ag ≥ 0) for g ~ N(0, I) with a Wilson interval (cones only); None when ``method="auto"`` and a
    pilot sees too few hits for the Gaussian estimator to beat hit-and-run."""
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


def run_kernel(direction, AT, b, X, S, weights, threshold, n_records, seed, trace=None, INV=None):
    """Advance the chains X (slacks S) by ``n_records`` records with the direction or coordinate kernel;
    returns (stats, keep, found) as described in :mod:`fairl_opt.geometry.kernels`."""
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


def telescope(U, waypoints, x0, options: Options):
    """Phases along the piecewise-linear path through ``waypoints`` (normalised right-hand sides),
    with a progress bar over the path's segments.

    Returns one list of :class:`PhaseEstimate` per segment.
    """
    with progress_bar(len(waypoints) - 1, "volume (hit-and-run)", "segment") as bar:
        return _telescope(U, waypoints, x0, options, bar)


def _telescope(U, waypoints, x0, options: Options, bar):
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
        bar.update(seg - bar.n)
        bar.set_postfix(phases=n_phases, refresh=False)
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
                run_kernel(direction, AT, b, X, S, weights, np.inf, burn_in, int(rng.integers(2**31)), INV=INV)
            first = False
            pilot, _, _ = run_kernel(direction, AT, b, X, S, weights, np.inf, n_pilot,
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
            main, keep, found = run_kernel(direction, AT, b, X, S, weights, step, per_chain,
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
    """One phase's ratio from its main run's hits (chains × records), with its batch-means error."""
    chains, n = inside.shape
    means = inside.reshape(chains, batches, n // batches).mean(axis=2).ravel()
    ratio = float(means.mean())
    stderr = float(means.std(ddof=1) / np.sqrt(means.size))
    ess = ratio * (1 - ratio) / stderr**2 if stderr > 0 else float(inside.size)
    chain_ratios = tuple(float(v) for v in inside.mean(axis=1))
    return PhaseEstimate(seg, t0, t1, ratio, stderr, float(ess), int(inside.size), int(means.size), chain_ratios)


def combine(kind, segments, options: Options, start) -> VolumeEstimate:
    """The product of the phases' ratios with its log-scale error bar (module docstring)."""
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


def quotient(top: VolumeEstimate, bottom: VolumeEstimate, confidence, start) -> VolumeEstimate:
    """top / bottom for two independent estimates (sets that are not nested), log-scale errors added."""
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
