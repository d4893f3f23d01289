"""Standard vs failure-aware on one pairs file: paired held-out differences over prompt splits.

    python examples/compare_standard_fa.py runs/preferences/pairs.npz
    python examples/compare_standard_fa.py pairs.npz --pairs-of maxent:fa-maxent mm-qp:fa-mm-qp --splits 5

Each split holds out 20 % of the prompts (``fairl_opt.pairs.group_split`` with seed = split); both
methods of a pair are fitted with fixed settings on the same training pairs and scored on the same
held-out pairs, and the table reports FA − standard as mean ± sd over splits. Nothing is tuned on the
held-out pairs. Where FA does not help, the table shows it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fairl_opt.data import PairsData
from fairl_opt.estimators import make_estimator
from fairl_opt.pairs import group_split


def compare(data: PairsData, standard: str, fa: str, splits: int = 5) -> dict:
    """Held-out pair accuracy of both methods and their paired difference over ``splits`` splits."""
    pairs = data.pairs
    groups = pairs.prompt_ids if pairs.prompt_ids is not None else np.arange(pairs.n_pairs)
    rows = []
    for s in range(splits):
        train, test = group_split(groups, 0.2, seed=s)
        fit, held = pairs.subset(train), pairs.subset(test)
        a = make_estimator(standard).fit(fit).score(held)
        b = make_estimator(fa).fit(fit).score(held)
        rows.append((a, b))
    acc = np.array(rows)
    diff = acc[:, 1] - acc[:, 0]
    return {"standard": standard, "fa": fa, "splits": splits,
            "standard_accuracy": [float(acc[:, 0].mean()), float(acc[:, 0].std(ddof=1)) if splits > 1 else 0.0],
            "fa_accuracy": [float(acc[:, 1].mean()), float(acc[:, 1].std(ddof=1)) if splits > 1 else 0.0],
            "fa_minus_standard": [float(diff.mean()), float(diff.std(ddof=1)) if splits > 1 else 0.0]}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("pairs", help="pairs .npz (fairl pairs or fairl simulate)")
    parser.add_argument("--pairs-of", nargs="+", default=["maxent:fa-maxent", "mm-qp:fa-mm-qp"],
                        help="standard:fa method pairs to compare")
    parser.add_argument("--splits", type=int, default=5, help="prompt-level splits (seeds 0..N-1)")
    args = parser.parse_args(argv)
    data = PairsData.load(args.pairs, duplicates="allow")
    results = [compare(data, *spec.split(":"), splits=args.splits) for spec in args.pairs_of]
    print(f"{'standard':>10} {'fa':>12} {'held-out acc. standard':>24} {'FA':>16} {'FA - standard':>18}")
    for r in results:
        f = lambda v: f"{v[0]:.3f} ± {v[1]:.3f}"  # noqa: E731
        print(f"{r['standard']:>10} {r['fa']:>12} {f(r['standard_accuracy']):>24} {f(r['fa_accuracy']):>16} "
              f"{f(r['fa_minus_standard']):>18}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
