"""Audit an aligned model against its base: sample pairs from both, fit the reward that explains the
difference, and write the audit report.

    python examples/audit_two_models.py --base smollm2 --aligned path/to/lora_adapter \\
        --prompts examples/data/prompts.txt --feature-model smollm2 --out runs/two_models

A model is a name the toolkit knows (smollm2, minilm), a local transformers directory, a PEFT/LoRA
adapter directory (its base is read from adapter_config.json) or BASE+ADAPTER_DIR. The same steps as
the command line:

    fairl generate --base BASE --aligned ALIGNED --prompts PROMPTS --out OUT/pairs.jsonl
    fairl pairs OUT/pairs.jsonl --model FEATURES --out OUT/pairs.npz
    fairl fit OUT/pairs.npz --method METHOD --out OUT/reward
    fairl audit OUT/pairs.npz --reward OUT/reward --out OUT/audit
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fairl_opt.audit.core import AuditOptions, audit
from fairl_opt.audit.inputs import check_inputs
from fairl_opt.data.build import build_pairs
from fairl_opt.data.fitting import fit_reward
from fairl_opt.data.generate import generate_pairs
from fairl_opt.data.preferences import read_preferences
from fairl_opt.lm import SamplingConfig

HERE = Path(__file__).resolve().parent


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--base", default="smollm2", help="the base model")
    parser.add_argument("--aligned", required=True, help="the aligned model (directory, adapter or BASE+ADAPTER)")
    parser.add_argument("--prompts", default=str(HERE / "data" / "prompts.txt"), help=".txt or .jsonl prompts")
    parser.add_argument("--feature-model", default="smollm2", help="frozen model that embeds the completions")
    parser.add_argument("--method", default="maxent", help="reward program")
    parser.add_argument("--n-samples", type=int, default=2, help="completions per prompt from each model")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="tokens sampled per completion")
    parser.add_argument("--chat-template", action="store_true", help="render prompts with the chat template")
    parser.add_argument("--out", default="runs/two_models", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    generated = generate_pairs(args.base, args.aligned, args.prompts, out / "pairs.jsonl",
                               n_samples=args.n_samples, config=SamplingConfig(max_new_tokens=args.max_new_tokens),
                               chat_template=args.chat_template, cache_dir=out / "gen-cache",
                               progress=not args.quiet)
    texts = read_preferences(out / "pairs.jsonl", skip_bad=True)
    data = build_pairs(texts, model=args.feature_model, test_fraction=0.25, seed=0, cache_dir=out / "emb-cache",
                       progress=not args.quiet, skip_bad=True)
    data.save(out / "pairs.npz")
    reward, _ = fit_reward(data, args.method, input_path=out / "pairs.npz")
    reward.save(out / "reward")
    summary = audit(check_inputs(data, reward), out / "audit", AuditOptions(top=5, min_count=2))
    result = {"generated_pairs": generated["n_pairs"], "pairs": data.pairs.n_pairs, "status": reward.status,
              "train_pair_accuracy": reward.training["train_pair_accuracy"],
              "test_pair_accuracy": reward.training["test_pair_accuracy"],
              "report": str(out / "audit" / "report.md"), "audit_keys": sorted(summary)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
