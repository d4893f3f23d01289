"""Fit a reward on your own preference file, save it, score new texts and audit it — no glue code.

    python examples/fit_preference_file.py                      # the shipped example file, MiniLM
    python examples/fit_preference_file.py --data my_prefs.jsonl --model smollm2 --method fa-maxent

The same steps as the command line:

    fairl pairs DATA --model MODEL --out OUT/pairs.npz
    fairl fit OUT/pairs.npz --method METHOD --out OUT/reward
    fairl score OUT/reward texts.txt
    fairl audit OUT/pairs.npz --reward OUT/reward --out OUT/audit
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fairl_opt.audit.core import AuditOptions, audit
from fairl_opt.audit.inputs import check_inputs
from fairl_opt.data import RewardModel
from fairl_opt.data.build import build_pairs
from fairl_opt.data.fitting import fit_reward
from fairl_opt.data.preferences import read_preferences

HERE = Path(__file__).resolve().parent


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=str(HERE / "data" / "preferences.jsonl"),
                        help="preference file (JSONL/JSON/CSV/Parquet or a save_to_disk folder)")
    parser.add_argument("--model", default="minilm", help="feature model: smollm2, minilm or a directory")
    parser.add_argument("--method", default="maxent", help="reward program (fairl solve --help lists them)")
    parser.add_argument("--out", default="runs/preferences", help="folder for pairs, reward and audit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    texts = read_preferences(args.data)                                     # any layout, checked
    data = build_pairs(texts, model=args.model, test_fraction=0.2, seed=0,  # one standardisation
                       cache_dir=out / "cache", progress=not args.quiet)
    data.save(out / "pairs.npz")
    reward, _ = fit_reward(data, args.method, input_path=out / "pairs.npz")  # certified, train pairs only
    reward.save(out / "reward")

    reward = RewardModel.load(out / "reward")                                # verified against its checksums
    new = ["Happy to help! To plant tomatoes, dig a deep hole, then water them every morning. I hope this helps.",
           "Ugh. What a dumb question. Figure it out yourself."]
    scores = reward.score_texts(new, cache_dir=out / "cache", progress=not args.quiet)
    summary = audit(check_inputs(data, reward), out / "audit", AuditOptions(top=5))
    result = {
        "pairs": data.pairs.n_pairs, "train": int(data.train_index.size), "test": int(data.test_index.size),
        "status": reward.status, "test_pair_accuracy": reward.training["test_pair_accuracy"],
        "scores": dict(zip(new, map(float, scores))), "report": str(out / "audit" / "report.md"),
        "audit_keys": sorted(summary),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
