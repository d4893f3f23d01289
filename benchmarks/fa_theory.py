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
from fairl_opt.misspecified import VARIANTS, markdown, paired_differences, planted_regime  # noqa: E402
from fairl_opt.misspecified import selective_fa, study  # noqa: E402

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
