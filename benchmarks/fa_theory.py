"""When can failure-aware (FA) MaxEnt help? The study of proofs/T12_when_fa_helps.md, section (f).

Run ``python -m benchmarks.fa_theory`` (about a minute on one core; ``--quick`` for a smoke run):
for every regime of :mod:`fairl_opt.misspecified` and every seed, the pairs are split by prompt
(:func:`fairl_opt.pairs.group_split`, 30 % of prompts held out), MaxEnt and each FA variant are fitted
on the training pairs, and held-out ROC-AUC (non-toxic vs toxic completions), STARC distance to r*
and pair accuracy are measured. The table prints, per regime and method, the MaxEnt value and the
paired difference method − MaxEnt over seeds, mean ± standard error (sd/√seeds), and the share of
noise pairs among the pairs each method up-weighted; a second table compares the failure rules with
the toolkit's FA. Controls: ``maxent-matched-λ`` (MaxEnt with λ scaled by n/Σw of the FA fit: the
lighter effective ridge of up-weighting, without the focus), ``maxent-mixture``
(:func:`fairl_opt.fa.noise.mixture_maxent`) and ``oracle-weights`` (weight 2 on the truth's
``informative`` pairs: the inverse-probability weights of the filtered regime). Nothing is tuned on
the test prompts: every setting is ``FASettings()``'s default (up-weight 2, near-tie quantile 0.1,
5 out-of-fold folds, 5 rounds) or fixed in advance below.
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from fairl_opt.estimators import MaxEntReward  # noqa: E402
from fairl_opt.fa import FASettings  # noqa: E402
from fairl_opt.fa.noise import mixture_maxent  # noqa: E402
from fairl_opt.misspecified import REGIMES, held_out_metrics, paired_differences, planted_regime  # noqa: E402
from fairl_opt.misspecified import selective_fa  # noqa: E402
from fairl_opt.pairs import group_split  # noqa: E402
from fairl_opt.programs import MaxEntProgram  # noqa: E402
from fairl_opt.solvers import solve  # noqa: E402

#: (name, failure rule, settings): every FA variant of the study; "fa" is the toolkit's FA-MaxEnt. The
#: rules other than "oracle" are the FA loop's own setting (FASettings.failure_rule).
VARIANTS = (
    ("fa", "all", FASettings()),
    ("fa-sharpen", "all", FASettings(upweight=1.0, sharpen=0.5)),
    ("fa-band", "band", FASettings()),
    ("fa-posterior", "posterior", FASettings()),
    ("fa-agree", "agree", FASettings()),
    ("fa-oracle", "oracle", FASettings()),
)
METRICS = ("roc_auc", "starc", "pair_acc")


def run_seed(regime: str, seed: int, n_pairs: int, dim: int, reg: float) -> dict:
    """{method: {metric: value, "noise_share": ..., "edited": ...}} for one regime and seed."""
    problem = planted_regime(regime, n_pairs, dim, seed=seed)
    train, test = group_split(problem.pairs.prompt_ids, 0.3, seed)
    delta, groups = problem.pairs.delta[train], problem.pairs.prompt_ids[train]
    noise = problem.noise[train]
    out = {"maxent": held_out_metrics(problem, MaxEntReward(reg).fit(delta).theta_, test)}
    out["maxent"].update(noise_share=float("nan"), edited=0)
    out["maxent-mixture"] = held_out_metrics(problem, mixture_maxent(delta, reg)[0], test)
    out["maxent-mixture"].update(noise_share=float("nan"), edited=0)
    # the truth's own weights: 2 = 1/(1 − drop_rate) on the pairs a regime under-represents (the
    # inverse-probability weights of "filtered"; the rare kind's T→NT pairs of "two-kinds")
    informative = problem.informative[train]
    theta = solve(MaxEntProgram(delta, reg, weights=np.where(informative, 2.0, 1.0)), "newton").theta
    out["oracle-weights"] = held_out_metrics(problem, theta, test)
    out["oracle-weights"].update(noise_share=float("nan"), edited=int(informative.sum()))
    for name, rule, settings in VARIANTS:
        theta, record = selective_fa(delta, groups, reg, settings, rule, noise=noise)
        if name == "fa":
            # the same λ per unit of total weight as the FA fit: separates focusing from the lighter
            # effective ridge that up-weighting brings at a fixed λ
            total = delta.shape[0] + (settings.upweight - 1) * record["edited"].size
            matched = MaxEntReward(reg * delta.shape[0] / total).fit(delta).theta_
            out["maxent-matched-λ"] = held_out_metrics(problem, matched, test)
            out["maxent-matched-λ"].update(noise_share=float("nan"), edited=0)
        row = held_out_metrics(problem, theta, test)
        edited = record["edited"]
        row["noise_share"] = float(noise[edited].mean()) if edited.size else float("nan")
        row["edited"] = int(edited.size)
        out[name] = row
    return out


def study(seeds: int, n_pairs: int, dim: int, reg: float, regimes=REGIMES) -> dict:
    """{regime: {method: {metric: array over seeds}}}."""
    table = {}
    for regime in regimes:
        runs = [run_seed(regime, seed, n_pairs, dim, reg) for seed in range(seeds)]
        table[regime] = {m: {k: np.array([r[m][k] for r in runs]) for k in runs[0][m]} for m in runs[0]}
    return table


def markdown(table: dict, baseline: str = "maxent", methods=None) -> str:
    """The study as a markdown table: the baseline's mean, then method − baseline (mean ± se over
    seeds, paired) per metric, for ``methods`` (default: all)."""
    head = ("| regime | method | " + " | ".join(f"Δ {m}" for m in METRICS)
            + " | pairs up-weighted | noise share |")
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for regime, rows in table.items():
        base = rows[baseline]
        cells = " | ".join(f"{base[m].mean():.4f}" for m in METRICS)
        lines.append(f"| {regime} | {baseline} (value) | {cells} | | |")
        for name, row in rows.items():
            if name == baseline or (methods is not None and name not in methods):
                continue
            diffs = []
            for m in METRICS:
                mean, se = paired_differences(row[m], base[m])
                diffs.append(f"{mean:+.4f} ± {se:.4f}")
            shares = row["noise_share"][np.isfinite(row["noise_share"])]
            share = f"{shares.mean():.2f}" if shares.size else "–"
            lines.append(f"| {regime} | {name} | " + " | ".join(diffs) + f" | {row['edited'].mean():.0f} | {share} |")
    return "\n".join(lines)


def direction_errors(regime: str, n_pairs: int, seeds: int, dim: int = 16, reg: float = 1.0) -> dict:
    """Mean angle (degrees) between θ̂ and θ* over seeds, fitted on all pairs, for MaxEnt, the
    toolkit's FA and FA-sharpen: the symmetric-design effect of T12 (d)(iv)."""
    angles = {"maxent": [], "fa": [], "fa-sharpen": []}
    for seed in range(seeds):
        problem = planted_regime(regime, n_pairs, dim, seed=seed)
        delta, groups = problem.pairs.delta, problem.pairs.prompt_ids
        truth = problem.info["theta_true"]
        fits = {"maxent": MaxEntReward(reg).fit(delta).theta_,
                "fa": selective_fa(delta, groups, reg, VARIANTS[0][2])[0],
                "fa-sharpen": selective_fa(delta, groups, reg, VARIANTS[1][2])[0]}
        for name, theta in fits.items():
            cosine = theta @ truth / (np.linalg.norm(theta) * np.linalg.norm(truth))
            angles[name].append(np.degrees(np.arccos(min(1.0, cosine))))
    return {name: np.array(v) for name, v in angles.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=1500)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--reg", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 400 pairs, d = 8")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.pairs, args.dim = 2, 400, 8
    start = time.perf_counter()
    table = study(args.seeds, args.pairs, args.dim, args.reg)
    print(f"{args.seeds} seeds, {args.pairs} pairs, d = {args.dim}, λ = {args.reg:g}, "
          f"{time.perf_counter() - start:.0f} s\n")
    print(markdown(table))
    print("\nThe failure rules against the toolkit's FA (rule − fa):\n")
    print(markdown(table, "fa", ("fa-band", "fa-posterior", "fa-agree", "fa-oracle")))
    print("\nAngle between θ̂ and θ* (degrees, mean ± se over seeds; all pairs, no split):\n")
    print("| regime | n | maxent | fa − maxent | fa-sharpen − maxent |\n|---|---|---|---|---|")
    for regime in ("linear", "gaussian"):
        for n in (1500, 6000):
            angles = direction_errors(regime, n, max(2, min(args.seeds, 6)), args.dim, args.reg)
            cells = [f"{angles['maxent'].mean():.2f}"]
            for name in ("fa", "fa-sharpen"):
                mean, se = paired_differences(angles[name], angles["maxent"])
                cells.append(f"{mean:+.2f} ± {se:.2f}")
            print(f"| {regime} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
