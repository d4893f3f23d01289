"""Re-RLHF inputs: the best standard and the best FA recovered reward of one split, chosen on the
training prompts only, saved as `fairl fit` reward folders for `fairl detox train --reward`.

    python -m benchmarks.rerlhf [--data data/detox] [--policy sir] [--split 0] [--out data/rerlhf]
    python -m benchmarks.rerlhf --evaluate base=smollm2 dpo=data/aligned standard@0=data/rerlhf/standard-seed0 \
        fa@0=data/rerlhf/fa-seed0 ... --compare fa:standard --save data/rerlhf/evaluation.json

On split ``--split``'s training pairs of aligned policy ``--policy``: the regularisation of each
standard program is chosen as in the experiment (:meth:`fairl_opt.detox.split.Split.select_regularisation`),
then every candidate row of :data:`CANDIDATES` (the experiment's estimators, FA settings fixed) is
scored by the same 3-fold prompt-level validation ROC-AUC on the training prompts; the best standard
and the best FA row are refitted on all training pairs and written to ``OUT/reward-standard`` and
``OUT/reward-fa`` (with ``choice.json``: every validation score). No test prompt is looked at. The
two `fairl detox train --reward` commands to run next are printed (use `make aligned`'s settings); the
rewards' held-out pair accuracy is recorded, never used for the choice.

``--evaluate`` labels are NAME or NAME@SEED (one training run of NAME with that training seed); the
saved file keeps every completion's r* and the adapter's last KL record, and ``--compare A:B`` lists
the paired comparisons the report shows (:mod:`fairl_opt.detox.rerlhf`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STANDARD = ("mm-qp", "mm-lp", "maxent")
FA = ("fa-maxent", "fa-maxent (out-of-fold)", "fa-mm-qp (slack ×2)", "fa-mm-lp (slack ×2)")
CANDIDATES = STANDARD + FA


def choose(data: str, policy: str, split: int, seed: int = 0) -> dict:
    from sklearn.model_selection import cross_val_score

    from fairl_opt.detox.dataset import DetoxDataset
    from fairl_opt.detox.experiment import _estimator, split_seeds
    from fairl_opt.detox.split import SELECTION_FOLDS, Split
    from fairl_opt.pairs import PromptFolds

    ds = DetoxDataset.load(data)
    sp = Split(ds, ds.test_masks[split], policy)
    base = split_seeds(seed, split)["base"]
    chosen, _ = sp.select_regularisation(seed=base)
    ids = sp.train.prompt_ids
    scores = {}
    for row in CANDIDATES:
        est = _estimator(row, seed=base, chosen=chosen)
        scores[row] = float(np.mean(cross_val_score(est, sp.train.delta, ids, groups=ids, scoring=sp.validation_roc_auc,
                                                    cv=PromptFolds(SELECTION_FOLDS, base), error_score="raise")))
    best_std = max(STANDARD, key=lambda r: scores[r])
    best_fa = max(FA, key=lambda r: scores[r])
    return {"policy": policy, "split": split, "seed": base, "chosen_regularisation": chosen,
            "validation_roc_auc": scores, "standard": best_std, "fa": best_fa}


def evaluate(data: str, models: dict, split: int = 0, samples: int = 1, workers: int = 1, cache_dir=None) -> dict:
    """Toxicity under r* of ``samples`` fresh completions per test prompt of ``split`` from each model of
    ``models`` ({label: model}), every model drawing from the same seeds (common random numbers), with
    Wilson 95 % intervals, overall and by prompt family."""
    from benchmarks.challenge_prompts import wilson
    from fairl_opt.detox.dataset import DetoxDataset
    from fairl_opt.detox.toxicity import true_reward
    from fairl_opt.lm import SamplingConfig, generate_completions

    ds = DetoxDataset.load(data)
    rows = np.flatnonzero(ds.test_masks[split])
    prompts = [ds.prompts[i] for i in rows]
    fam = np.repeat(np.asarray(ds.families)[rows], samples)
    config = SamplingConfig(**ds.manifest["generator"]["sampling"])
    out = {}
    for label, model in models.items():
        texts = generate_completions(prompts, samples, model=model, seed=int(ds.manifest["seed"]) + 7, config=config,
                                     chunk_prompts=max(1, 64 // samples), workers=workers,
                                     cache_dir=None if cache_dir is None else Path(cache_dir) / label)
        r, toxic, _ = true_reward([t for row in texts for t in row])
        entry = {"toxic": float(toxic.mean()), "wilson95": wilson(int(toxic.sum()), toxic.size),
                 "mean_r_star": float(r.mean()), "n": int(toxic.size), "r_star": [round(float(v), 6) for v in r]}
        log = Path(model) / "training_log.json"
        if log.is_file():
            last = [rec for rec in json.loads(log.read_text())["records"] if "kl" in rec][-1]
            entry["kl"] = {"mean": last["kl"], "se": last.get("kl_se"), "step": last["step"]}
        for f in sorted(set(fam)):
            k = toxic[fam == f]
            entry[f] = {"toxic": float(k.mean()), "wilson95": wilson(int(k.sum()), k.size), "n": int(k.size)}
        out[label] = entry
    return out


def main(argv=None) -> dict:
    from fairl_opt.data.fitting import fit_reward
    from fairl_opt.detox.dataset import DetoxDataset
    from fairl_opt.detox.experiment import FA_OPTIONS, METHODS, OPTIONS
    from fairl_opt.detox.rerlhf import policy_pairs_data
    from fairl_opt.estimators import get_method
    from fairl_opt.fa import FASettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/detox")
    parser.add_argument("--policy", default="sir")
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--out", default="data/rerlhf")
    parser.add_argument("--evaluate", nargs="+", metavar="LABEL=MODEL", default=None,
                        help="instead: toxicity of fresh samples from each model on the split's test prompts")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--compare", nargs="*", metavar="A:B", default=[],
                        help="with --save: model names whose paired differences A − B the report shows")
    parser.add_argument("--save", default=None, help="with --evaluate: write the results as JSON (the detox report reads it)")
    parser.add_argument("--update", action="store_true",
                        help="with --save: keep the saved models not named here (same split, same seeds) and add or "
                             "replace the ones named; --compare adds to the saved comparisons")
    args = parser.parse_args(argv)
    if args.evaluate:
        models = dict(item.split("=", 1) for item in args.evaluate)
        compare = [c.split(":", 1) for c in args.compare]
        saved = None
        if args.update:
            if not args.save or not Path(args.save).is_file():
                parser.error("--update needs --save naming an existing evaluation file")
            saved = json.loads(Path(args.save).read_text())
            if saved.get("split") != args.split:
                parser.error(f"--update: {args.save} is of split {saved.get('split')}, not {args.split}")
            compare = [c for c in saved["comparisons"] if c not in compare] + compare
        names = {label.partition("@")[0] for label in {**(saved or {}).get("models", {}), **models}}
        if any(len(c) != 2 or not set(c) <= names for c in compare):
            parser.error(f"--compare takes A:B with names among {sorted(names)}")
        result = evaluate(args.data, models, args.split, workers=args.workers, cache_dir=".cache/rerlhf_eval")
        def families(e):
            return sorted(k for k, v in e.items() if isinstance(v, dict) and "toxic" in v)

        print("| model | toxic | Wilson 95 % | mean r* | " + " | ".join(families(next(iter(result.values())))) + " |")
        for label, e in result.items():
            fams = families(e)
            print(f"| {label} | {e['toxic']:.3f} | [{e['wilson95'][0]:.3f}, {e['wilson95'][1]:.3f}] | {e['mean_r_star']:.2f} | "
                  + " | ".join(f"{e[f]['toxic']:.3f}" for f in fams) + " |")
        print(json.dumps({k: {f: v for f, v in e.items() if f != "r_star"} for k, e in result.items()}, indent=1))
        if saved is not None:
            models = {**{k: v for k, v in saved["models"].items() if k not in models}, **models}
            result = {k: (result[k] if k in result else saved["results"][k]) for k in models}
        if args.save:
            doc = {"what": "toxicity under r* of one fresh sample per test prompt of split "
                           f"{args.split}, every model drawing from the same seeds; Wilson 95 % over completions "
                           "(python -m benchmarks.rerlhf --evaluate)", "split": args.split, "models": models,
                   "comparisons": compare, "results": result}
            Path(args.save).write_text(json.dumps(doc, indent=1) + "\n")
        return result
    choice = choose(args.data, args.policy, args.split)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = policy_pairs_data(DetoxDataset.load(args.data), args.policy, args.split)
    for kind in ("standard", "fa"):
        row = choice[kind]
        name, changes = METHODS[row]
        m = get_method(name)
        params = dict(OPTIONS, **choice["chosen_regularisation"].get(m.program, {}))
        settings = FASettings(**FA_OPTIONS, seed=choice["seed"]).replace(**changes) if m.failure_aware else None
        reward, _ = fit_reward(pairs, name, margin=params["margin"], C=params["C"], reg=params["reg"],
                               settings=settings, input_path=f"fairl detox pairs --data {args.data} --policy "
                                                             f"{args.policy} --split {args.split}")
        reward.save(out / f"reward-{kind}")
        choice[f"{kind}_test_pair_accuracy"] = reward.training["test_pair_accuracy"]
    (out / "choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    print(json.dumps(choice, indent=2))
    for kind in ("standard", "fa"):
        print(f"fairl detox train --data {args.data} --reward {out}/reward-{kind} --out {out}/{kind}-seed0 --seed 0 "
              "(plus make aligned's settings)")
    return choice


if __name__ == "__main__":
    main()
