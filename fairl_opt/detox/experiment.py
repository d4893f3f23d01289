"""The detox experiment (``fairl detox run``): recover r* from (aligned ≻ base) pairs, judge it, report.

For each of the dataset's random prompt-level splits (never tuned on a test split):

* features are standardised with the mean/sd of every completion of the **training** prompts;
* the regularisation (C, λ) is chosen from a small grid by validation inside the training prompts
  (:data:`REG_GRID`, scikit-learn's ``GridSearchCV`` over prompt folds); the FA settings are fixed;
* training pairs are (aligned ≻ base) of the training prompts; each method in :data:`METHODS` is
  fitted with the fixed settings :data:`OPTIONS` / :data:`FA_OPTIONS`;
* held-out metrics: pairwise accuracy on the test prompts' pairs; accuracy / F1 / ROC-AUC of the
  reward as a toxicity detector (toxic is the positive class, predicted when r(y) is below a
  threshold fitted for F1 on the training prompts' completions) on every labelled completion
  of the test prompts; STARC distance to r* on those completions;
* re-alignment: on each test prompt, best-of-K among the K candidates by the recovered reward; the
  toxicity rate (under the ground truth) and mean r* of the picks, next to the base policy, the
  aligned policy (the data's SIR draw) and best-of-K by r* itself;
* ambiguity (max-margin, one value per split): in the space of the top :data:`GEOMETRY_DIM` principal
  components of the training completions, on the training pairs the soft standard reward ranks
  correctly (a separable set, so the hard-margin feasible sets are non-empty), the standard and FA
  feasible sets' volume ratio, Chebyshev radii and held-out reward-interval widths
  (:func:`fairl_opt.geometry.geometry_summary`);
* ablation: training sets of fixed size whose fraction of T→NT pairs is varied, scored by held-out
  ROC-AUC and STARC.

Randomness: every random draw derives from the run's ``seed`` and the split index alone
(:func:`split_seeds`), never from time, process ids, global state or the number of worker
processes, so the same command on the same data gives the same summary.json bit for bit (apart from
its timing fields and ``workers``). The streams of split s are: the validation folds of the
regularisation choice, the out-of-fold mining folds of the FA fits, the FA rule and hit-and-run
chains of the geometry (the volume estimator draws one sub-seed per phase from its own seeded
generator), and the ablation's subsets. The prompt splits themselves are stored in the dataset
(``test_masks``). Each split runs with its BLAS pool held to one thread (:func:`_one_blas_thread`):
OpenBLAS sums matrix products in a different order with more threads, and the hit-and-run chains
amplify that last-bit difference into a different volume estimate (split 0 of the shipped data:
0.157 with one thread, 0.170 with two).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from fairl_opt._progress import progress_bar
from fairl_opt.detox.dataset import DEFAULT_DIR, DetoxDataset
from fairl_opt.detox.split import OPTIONS, Split
from fairl_opt.estimators import get_method, make_estimator
from fairl_opt.exceptions import DataError, FairlError
from fairl_opt.fa import FASettings

#: row name → (method of :data:`fairl_opt.estimators.METHODS`, changes to the FA settings). With soft
#: margins, raising the margin of a pair whose dual sits at its bound C does not move θ (proofs/T10);
#: "slack ×2" also doubles the slack price C_i of each failure, which does. The "rule" rows up-weight
#: only the failures a :attr:`~fairl_opt.fa.FASettings.failure_rule` keeps (proofs/T12 §7): "band"
#: those within τ of the boundary on the wrong side, "posterior" those the out-of-fold coin-flip
#: mixture does not call noise.
METHODS = {
    "mm-qp": ("mm-qp", {}),
    "fa-mm-qp": ("fa-mm-qp", {}),
    "fa-mm-qp (no curriculum)": ("fa-mm-qp", {"curriculum": False}),
    "fa-mm-qp (dual path)": ("fa-mm-qp", {"dual_path": True}),
    "fa-mm-qp (slack ×2)": ("fa-mm-qp", {"slack_upweight": 2.0}),
    "fa-mm-qp (slack ×2, out-of-fold)": ("fa-mm-qp", {"slack_upweight": 2.0, "oof_folds": 5}),
    "mm-lp": ("mm-lp", {}),
    "fa-mm-lp": ("fa-mm-lp", {}),
    "fa-mm-lp (slack ×2)": ("fa-mm-lp", {"slack_upweight": 2.0}),
    "maxent": ("maxent", {}),
    "fa-maxent": ("fa-maxent", {}),
    "fa-maxent (no curriculum)": ("fa-maxent", {"curriculum": False}),
    "fa-maxent (dual path)": ("fa-maxent", {"dual_path": True}),
    "fa-maxent (out-of-fold)": ("fa-maxent", {"oof_folds": 5}),
    "fa-maxent (band rule)": ("fa-maxent", {"failure_rule": "band"}),
    "fa-maxent (posterior rule)": ("fa-maxent", {"failure_rule": "posterior"}),
}
QUICK_METHODS = ("mm-qp", "fa-mm-qp", "fa-mm-qp (slack ×2)", "mm-lp", "fa-mm-lp", "maxent", "fa-maxent")
ABLATION_METHODS = ("mm-qp", "fa-mm-qp", "fa-mm-qp (slack ×2)", "maxent", "fa-maxent")
ABLATION_METRICS = ("roc_auc", "starc", "heldout_pair_accuracy", "starc_implicit")
ABLATION_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5)
#: Failures are the training pairs the current reward misranks or nearly ties (lowest 10 % of
#: normalised margins); out-of-fold mining (5 prompt-level folds, one refit per fold and round) only in
#: the "(out-of-fold)" variants.
FA_OPTIONS = dict(near_tie_quantile=0.1, oof_folds=0, max_rounds=5, margin_step=0.5, upweight=2.0)
GEOMETRY_DIM = 8
#: Offset of the ablation stream's seed from the split's seed (see :func:`split_seeds`).
ABLATION_SEED_OFFSET = 1000


def split_seeds(seed: int, split: int) -> dict:
    """The seeds of split ``split`` of a run with ``seed``: ``base = seed·1000003 + split`` drives the
    regularisation folds, the FA fits' out-of-fold folds and the geometry; ``ablation = base + 1000``
    the ablation's subsets. Every (seed, split, stream) gets its own value for split < 1000. With
    ``seed = 0`` these are the seeds the shipped report was made with (split s: s and 1000 + s)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    base = int(seed) * 1_000_003 + int(split)
    return {"base": base, "ablation": base + ABLATION_SEED_OFFSET}
METRICS = ("heldout_pair_accuracy", "accuracy", "f1", "roc_auc", "starc", "bok_toxic_rate", "bok_mean_r_star",
           "roc_auc_challenge", "roc_auc_other", "starc_implicit")


def _estimator(row: str, seed: int, chosen: dict | None = None):
    """The estimator of row ``row`` of :data:`METHODS` with the regularisation ``chosen[its standard
    program]`` (else :data:`OPTIONS`) and, for FA rows, :data:`FA_OPTIONS` with ``seed`` and the row's
    changes."""
    name, changes = METHODS[row]
    method = get_method(name)
    settings = FASettings(**FA_OPTIONS, seed=seed).replace(**changes) if method.failure_aware else None
    return make_estimator(name, **dict(OPTIONS, **(chosen or {}).get(method.program, {})), settings=settings)


def _standard(row: str) -> str:
    """The standard program of row ``row`` (``"fa-mm-qp (slack ×2)"`` → ``"mm-qp"``)."""
    return get_method(METHODS[row][0]).program


def _geometry(split: Split, seed: int, C: float) -> dict:
    """Ambiguity of standard vs FA max-margin in the top-q PCA space (see the module docstring)."""
    from fairl_opt.fa import FASettings, run_fa
    from fairl_opt.geometry import geometry_summary
    from fairl_opt.pairs import PreferencePairs
    from fairl_opt.programs import MarginProgram

    x_tr, _, _, _ = split.completions(split.train_prompts)
    _, _, vt = np.linalg.svd(x_tr - x_tr.mean(0), full_matrices=False)
    basis = vt[:GEOMETRY_DIM].T
    delta = split.train.delta @ basis
    soft = make_estimator("mm-qp", **dict(OPTIONS, C=C)).fit(PreferencePairs(delta, np.zeros_like(delta), duplicates="allow"))
    keep = np.flatnonzero(delta @ soft.theta_ > 1e-9)
    if keep.size < 2 * GEOMETRY_DIM:
        raise DataError(f"geometry: only {keep.size} training pairs are ranked correctly in {GEOMETRY_DIM}-d")
    program = MarginProgram(delta[keep], 1.0, "l2", None)
    result = run_fa(program, "auto", FASettings(near_tie_quantile=FA_OPTIONS["near_tie_quantile"], oof_folds=0, seed=seed, margin_step=FA_OPTIONS["margin_step"], upweight=2.0, sharpen=1.0, backoff=0.99, max_rounds=FA_OPTIONS["max_rounds"]))
    x_te, _, _, _ = split.completions(split.test_prompts)
    summary = geometry_summary(result, x_te[:200] @ basis, samples=1000, seed=seed)
    vr = summary["volume_ratio"]
    return {
        "dim": GEOMETRY_DIM, "pairs_kept": int(keep.size), "pairs": int(delta.shape[0]),
        "volume_ratio": vr.get("ratio"), "volume_ratio_ci": [vr["ci_low"], vr["ci_high"]],
        "chebyshev_standard": summary["chebyshev_radius"]["standard"],
        "chebyshev_fa": summary["chebyshev_radius"]["fa"],
        "interval_width_standard": summary["interval_width"]["standard"],
        "interval_width_fa": summary["interval_width"]["fa"],
    }


def _ablation_subset(split: Split, fraction: float, size: int, rng) -> np.ndarray:
    kinds = split.train.kinds
    tnt = np.flatnonzero(kinds == "T->NT")
    rest = np.flatnonzero(kinds != "T->NT")
    n_t = int(round(fraction * size))
    if n_t > tnt.size or size - n_t > rest.size:
        raise DataError(f"ablation: fraction {fraction} of {size} pairs needs {n_t} T->NT pairs "
                        f"(have {tnt.size}) and {size - n_t} others (have {rest.size})")
    return np.sort(np.concatenate([rng.choice(tnt, n_t, replace=False), rng.choice(rest, size - n_t, replace=False)]))


def _tightened_at_bound(model) -> float | None:
    """For a soft-margin FA fit: the share of tightened pairs whose dual in the standard (round-0) fit
    sits at its bound C — the pairs whose margin step cannot move θ (proofs/T10). None otherwise."""
    from fairl_opt.programs import MarginProgram

    result = getattr(model, "result_", None)
    if result is None or result.tightened.size == 0:
        return None
    base = result.base_solution
    if not isinstance(base.program, MarginProgram) or base.program.hard:
        return None
    t = result.tightened
    return float(np.mean(base.duals[t] >= base.program.prices[t] * (1 - 1e-6)))


def _describe_choice(chosen: dict) -> str:
    return ", ".join(f"{m} {p} = {v:g}" for m, values in chosen.items() for p, v in values.items())


def _mean_sd(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def _load(data, max_prompts: int | None) -> DetoxDataset:
    ds = DetoxDataset.load(data)
    if max_prompts is not None and max_prompts < ds.n_prompts:
        ds = ds.subset(np.arange(max_prompts))
    return ds


def run_split(ds: DetoxDataset, s: int, methods, fractions, geometry: bool, say, seed: int = 0,
              policy: str = "sir") -> dict:
    """Everything for split ``s`` with the pairs of aligned policy ``policy``: sizes, reference
    policies, selection, one row per method, geometry and the ablation rows; every random stream is
    seeded from :func:`split_seeds` ``(seed, s)`` (the same for every policy: paired comparisons)."""
    seeds = split_seeds(seed, s)
    split = Split(ds, ds.test_masks[s], policy)
    counts = {str(k): int((split.train.kinds == k).sum()) for k in np.unique(split.train.kinds)}
    out = {"policy": policy, "implicit": split.implicit_reference(),
           "size": {"split": s, "policy": policy, "train_prompts": int(split.train_prompts.size),
                    "test_prompts": int(split.test_prompts.size), "train_pairs": split.train.n_pairs,
                    "test_pairs": split.test.n_pairs, "dropped_identical_or_duplicate":
                    split.train_dropped + split.test_dropped, "train_kinds": counts},
           "ref": split.reference_policies(), "rows": [], "geo": None, "ablation": []}
    say(f"{split.train.n_pairs} train pairs {counts}, {split.test.n_pairs} test pairs")
    t0 = time.perf_counter()
    chosen, scores = split.select_regularisation(seed=seeds["base"])
    out["selection"] = {"split": s, "chosen": chosen, "validation_roc_auc": scores,
                        "seconds": time.perf_counter() - t0}
    say(f"selected on training prompts: {_describe_choice(chosen)} ({time.perf_counter() - t0:.1f}s)")
    for method in methods:
        model = _estimator(method, seed=seeds["base"], chosen=chosen)
        t0 = time.perf_counter()
        try:
            model.fit(split.train)
        except FairlError as exc:
            raise type(exc)(f"split {s}, {method}: {exc}") from exc
        seconds = time.perf_counter() - t0
        metrics = split.evaluate(model.theta_)
        rounds = len(model.history_) - 1 if get_method(METHODS[method][0]).failure_aware else 0
        out["rows"].append({"split": s, "policy": policy, "method": method, "seconds": seconds, "rounds": rounds,
                            "gap": model.certificate_.relative_gap,
                            "tightened_at_bound": _tightened_at_bound(model), **metrics})
        say(f"{method:<34} pair acc {metrics['heldout_pair_accuracy']:.3f}  ROC-AUC {metrics['roc_auc']:.3f}  "
            f"STARC {metrics['starc']:.3f}  BoK toxic {metrics['bok_toxic_rate']:.3f}  "
            f"({seconds:.1f}s, {rounds} rounds)")
    if geometry:
        t0 = time.perf_counter()
        g = _geometry(split, seed=seeds["base"], C=chosen["mm-qp"]["C"])
        g["seconds"] = time.perf_counter() - t0
        g["split"] = s
        out["geo"] = g
        say(f"geometry ({GEOMETRY_DIM}-d PCA, {g['pairs_kept']}/{g['pairs']} pairs): volume ratio "
            f"{g['volume_ratio']:.3g}, Chebyshev {g['chebyshev_standard']:.3g} → {g['chebyshev_fa']:.3g}")
    tnt = int((split.train.kinds == "T->NT").sum())
    size = min(int(tnt / max(fractions)), int((split.train.kinds != "T->NT").sum() / (1 - min(fractions))))
    rng = np.random.default_rng(seeds["ablation"])
    for fraction in fractions:
        sub = split.train.subset(_ablation_subset(split, fraction, size, rng))
        for method in ABLATION_METHODS:
            m = split.evaluate(_estimator(method, seed=seeds["base"], chosen=chosen).fit(sub).theta_)
            out["ablation"].append({"split": s, "policy": policy, "fraction": fraction, "size": size, "method": method,
                                    **{k: m[k] for k in ABLATION_METRICS}})
    say(f"ablation: {len(fractions)} fractions × {len(ABLATION_METHODS)} methods, {size} pairs each")
    return out


def _printer(prefix: str, progress: bool):
    """A log function (INFO on the ``fairl_opt`` logger) with ``prefix``, silent without ``progress``."""
    import logging

    if not progress:
        return lambda msg: None
    log = logging.getLogger(__name__)
    return lambda msg: log.info(f"{prefix}{msg}")


def _one_blas_thread():
    """A context holding the BLAS/OpenMP pools to one thread (threadpoolctl, a core dependency), so
    the numbers do not depend on OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (module docstring)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _run_split_pinned(ds, s, methods, fractions, geometry, progress, seed, policy="sir"):
    with _one_blas_thread():
        return run_split(ds, s, methods, fractions, geometry, _printer(f"[{policy} split {s}] ", progress),
                         seed=seed, policy=policy)


def _split_worker(args):
    from fairl_opt._progress import configure_logging

    data, max_prompts, s, methods, fractions, geometry, progress, seed, policy = args
    configure_logging(quiet=not progress)  # a spawned process starts without the parent's logging
    return _run_split_pinned(_load(data, max_prompts), s, methods, fractions, geometry, progress, seed, policy)


def run_experiment(data=DEFAULT_DIR, out="reports/detox", quick: bool = False, progress: bool = True,
                   geometry: bool = True, max_prompts: int | None = None, workers: int = 1, seed: int = 0,
                   rerlhf: dict | None = None) -> dict:
    """Run everything on the dataset in ``data`` and write ``report.md``, ``summary.json`` and figures to
    ``out``. ``quick`` runs two splits, the core methods and a two-point ablation; ``workers`` processes
    (one thread each) share the splits — the results do not depend on it; ``seed`` seeds every random
    stream (:func:`split_seeds`)."""
    split_seeds(seed, 0)  # validates seed
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise DataError(f"workers must be an integer >= 1, got {workers!r}")
    say = _printer("", progress)
    start = time.perf_counter()
    ds = _load(data, max_prompts)
    n_splits = min(2, ds.test_masks.shape[0]) if quick else ds.test_masks.shape[0]
    methods = QUICK_METHODS if quick else tuple(METHODS)
    fractions = (ABLATION_FRACTIONS[0], ABLATION_FRACTIONS[-1]) if quick else ABLATION_FRACTIONS
    policies = ds.policy_names
    tasks = [(p, s) for p in policies for s in range(n_splits)]
    parts = []
    with progress_bar(len(tasks), "detox splits", "split", enabled=progress) as bar:
        if workers > 1 and len(tasks) > 1:
            import multiprocessing as mp

            jobs = [(data, max_prompts, s, methods, fractions, geometry, progress, seed, p) for p, s in tasks]
            with mp.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
                for part in pool.imap(_split_worker, jobs, chunksize=1):  # in task order
                    parts.append(part)
                    bar.update(1)
        else:
            for p, s in tasks:
                parts.append(_run_split_pinned(ds, s, methods, fractions, geometry, progress, seed, p))
                bar.update(1)
    by_policy = {}
    for policy in policies:
        mine = [q for q in parts if q["policy"] == policy]
        rows = [r for q in mine for r in q["rows"]]
        ablation = [a for q in mine for a in q["ablation"]]
        geo = [q["geo"] for q in mine if q["geo"] is not None]
        by_policy[policy] = _summarise_policy(rows, [q["ref"] for q in mine], geo, ablation,
                                              [q["size"] for q in mine], methods, fractions)
        by_policy[policy]["selection"] = [q["selection"] for q in mine]
        implicit = [q["implicit"] for q in mine if q["implicit"] is not None]
        by_policy[policy]["implicit_reference"] = (
            {"policy": implicit[0]["policy"], "completions_per_split": implicit[0]["completions"],
             "starc_r_star_vs_implicit": _mean_sd([x["starc_r_star_vs_implicit"] for x in implicit])}
            if implicit else None)
    summary = _summarise(ds, by_policy, methods, fractions, n_splits, quick, seed)
    t0 = time.perf_counter()
    summary["planted"] = planted_study(quick)
    summary["planted"]["seconds"] = time.perf_counter() - t0
    say(f"planted regimes: {summary['planted']['settings']['seeds']} seeds in {summary['planted']['seconds']:.0f}s")
    summary["rerlhf"] = rerlhf  # measured by `make rerlhf` (report.read_rerlhf), shown as given
    summary["workers"] = workers
    summary["seconds"] = time.perf_counter() - start
    from fairl_opt.detox.report import write_report

    write_report(summary, out)
    say(f"wrote {out}/report.md, summary.json and figures in {summary['seconds']:.0f}s")
    return summary


#: The planted study of the report (:func:`fairl_opt.misspecified.study`): seeds, pairs, d, λ; quick mode
#: uses :data:`PLANTED_QUICK`.
PLANTED = {"seeds": 8, "n_pairs": 1500, "dim": 16, "reg": 1.0}
PLANTED_QUICK = {"seeds": 2, "n_pairs": 400, "dim": 8, "reg": 1.0}
PLANTED_METHODS = ("fa", "fa-band", "fa-posterior", "fa-agree", "fa-oracle")


def planted_study(quick: bool = False) -> dict:
    """FA and the failure rules against MaxEnt on every planted regime of :mod:`fairl_opt.misspecified`
    (:func:`~fairl_opt.misspecified.study_summary` with :data:`PLANTED` or, quick, :data:`PLANTED_QUICK`)."""
    from fairl_opt.misspecified import study_summary

    return study_summary(**(PLANTED_QUICK if quick else PLANTED), methods=PLANTED_METHODS)


def paired_differences(rows, method: str, versus: str) -> dict:
    """Per metric, mean ± sd over splits of (``method`` − ``versus``) on the same split."""
    by_split = {r["split"]: r for r in rows if r["method"] == versus}
    mine = [r for r in rows if r["method"] == method and r["split"] in by_split]
    return {m: _mean_sd([r[m] - by_split[r["split"]][m] for r in mine
                         if r[m] is not None and by_split[r["split"]][m] is not None]) for m in METRICS}


def _summarise_policy(rows, refs, geo, ablation, sizes, methods, fractions) -> dict:
    """One aligned policy's part of the summary: the method table, FA − standard paired differences,
    reference policies, geometry and ablation (each mean ± sd over splits)."""
    table = {}
    for method in methods:
        group = [r for r in rows if r["method"] == method]
        table[method] = {m: _mean_sd([r[m] for r in group])
                         for m in METRICS + ("seconds", "rounds", "tightened_at_bound")}
    references = {}
    for name in refs[0]:
        references[name] = {m: _mean_sd([r[name][m] for r in refs]) for m in ("bok_toxic_rate", "bok_mean_r_star")}
    paired = {}
    for method in methods:
        base = _standard(method)
        if base == method or base not in methods:
            continue
        paired[method] = {"versus": base, "difference": paired_differences(rows, method, base)}
    abl, abl_diff = {}, {}
    for method in ABLATION_METHODS:
        abl[method], abl_diff[method] = {}, {}
        base = _standard(method)
        for f in fractions:
            group = [a for a in ablation if a["method"] == method and a["fraction"] == f]
            abl[method][str(f)] = {m: _mean_sd([a[m] for a in group]) for m in ABLATION_METRICS}
            if base != method:
                ref = {a["split"]: a for a in ablation if a["method"] == base and a["fraction"] == f}
                abl_diff[method][str(f)] = {m: _mean_sd([a[m] - ref[a["split"]][m] for a in group
                                                         if a[m] is not None and ref[a["split"]][m] is not None])
                                            for m in ABLATION_METRICS}
    geometry = None
    if geo:
        geometry = {k: _mean_sd([g[k] for g in geo]) for k in ("volume_ratio", "chebyshev_standard", "chebyshev_fa",
                                                               "interval_width_standard", "interval_width_fa",
                                                               "pairs_kept", "seconds")}
        geometry["per_split"] = geo
        geometry["dim"] = GEOMETRY_DIM
    return {"methods": list(methods), "table": table, "fa_minus_standard": paired, "references": references,
            "sizes": sizes, "geometry": geometry,
            "ablation": {"fractions": list(fractions), "methods": list(ABLATION_METHODS), "table": abl,
                         "fa_minus_standard": {m: v for m, v in abl_diff.items() if v}, "rows": ablation},
            "rows": rows}


def _summarise(ds, by_policy, methods, fractions, n_splits, quick, seed=0) -> dict:
    man = ds.manifest
    return {
        "dataset": {k: man.get(k) for k in ("dataset", "n_prompts", "K", "beta", "seed", "rates", "cost",
                                            "generator", "feature_model", "ground_truth", "families")},
        "policies": {name: {k: p.meta[k] for k in ("model", "samples", "rates", "implicit_reward", "cost")}
                     for name, p in ds.policies.items()},
        "n_prompts_used": ds.n_prompts,
        "quick": quick, "n_splits": n_splits, "seed": int(seed),
        "seeds": [split_seeds(seed, s)["base"] for s in range(n_splits)],
        "options": OPTIONS, "fa_options": FA_OPTIONS, "methods": list(methods),
        "by_policy": by_policy,
    }


def load_summary(path) -> dict:
    return json.loads(Path(path).read_text())
