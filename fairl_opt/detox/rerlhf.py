"""Re-RLHF with a recovered reward: a detox policy's (aligned ≻ base) pairs as a pairs file for
``fairl fit`` / ``fairl audit`` (``fairl detox pairs``), and the stored completions ranked by a saved
reward folder for ``fairl detox train --reward`` — the same DPO loop, prompts and budget as the aligned
model, with best ≻ worst chosen by the recovered reward instead of r*.

The pairs file of split s holds every prompt's pair (:meth:`DetoxDataset.pairs
<fairl_opt.detox.dataset.DetoxDataset.pairs>`) with the split's test prompts as its test mask, the
texts, and the split's standardisation (:meth:`DetoxDataset.standardiser`) in its feature recipe, so
``fairl fit`` fits exactly the experiment's training pairs and a reward fitted there scores the
dataset's raw features through its own recipe.

The re-RLHF evaluation file (``benchmarks/rerlhf.py --evaluate … --save``, read by ``fairl detox run
--rerlhf``) maps model labels to toxicity measurements; a label ``name@seed`` is one training run of
model ``name`` with training seed ``seed``, so :func:`summarise_rerlhf` gives every model its mean and
standard deviation over seeds and every listed comparison its paired differences (common sampling seeds
make the per-prompt r* differences paired).
"""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError

#: z of a two-sided 95 % normal interval.
Z95 = 1.959963984540054

#: Tokens kept per text when the detox features were embedded (``embed_texts``' default).
EMBED_MAX_LENGTH = 128


def policy_pairs_data(ds, policy: str = "sir", split: int = 0):
    """:class:`~fairl_opt.data.pairs_file.PairsData` of ``policy``'s pairs in dataset ``ds`` with
    split ``split``'s test prompts held out (see the module docstring)."""
    from fairl_opt.data.features import FeatureSpec
    from fairl_opt.data.pairs_file import PairsData
    from fairl_opt.detox.policy import dataset_feature_model

    if not 0 <= split < ds.test_masks.shape[0]:
        raise DataError(f"split must lie in 0..{ds.test_masks.shape[0] - 1}, got {split}")
    train = np.flatnonzero(~ds.test_masks[split])
    mean, scale = ds.standardiser(train)
    pairs, _ = ds.pairs(np.arange(ds.n_prompts), mean, scale, policy)
    rows = pairs.prompt_ids
    _, _, texts = ds.aligned(policy)
    model = dataset_feature_model(ds.manifest)
    from fairl_opt.models import NAMED_MODELS

    named = model.base is None and model.name in NAMED_MODELS
    spec = FeatureSpec(model.name if named else str(model.path), model.fingerprint(), EMBED_MAX_LENGTH, False,
                       mean, scale)
    meta = {"source": "fairl detox pairs", "dataset": ds.manifest.get("dataset"), "policy": policy, "split": split,
            "rule": "chosen = the policy's aligned completion, rejected = the base completion (sample 0); pairs "
                    "with identical texts dropped; test = the split's test prompts"}
    return PairsData(pairs, prompt_text=[ds.prompts[i] for i in rows], chosen_text=[texts[i] for i in rows],
                     rejected_text=[ds.texts[i][0] for i in rows], test_mask=ds.test_masks[split][rows],
                     source_rows=rows, features=spec, meta=meta)


def reward_scores(ds, reward_dir) -> tuple[np.ndarray, dict]:
    """(rewards (n_prompts, K+1) of the stored completions, description) under the reward folder
    ``reward_dir`` (``fairl fit``); its feature recipe must name the dataset's feature model."""
    from fairl_opt.data.reward import RewardModel
    from fairl_opt.detox.policy import dataset_feature_model

    reward = RewardModel.load(reward_dir)
    spec = reward.features
    model = dataset_feature_model(ds.manifest)
    if spec is None or spec.fingerprint != model.fingerprint() or spec.with_prompt:
        raise DataError(f"--reward {reward_dir}: fitted on other features than the dataset's ({model.name} of the "
                        "completion alone); fit it on `fairl detox pairs` output")
    scores = reward.score_raw(ds.features.reshape(-1, ds.dim)).reshape(ds.n_prompts, ds.K + 1)
    return scores, {"reward": str(reward_dir), "method": reward.method, "theta_norm": float(np.linalg.norm(reward.theta))}


def _group(label: str, path) -> tuple[str, int | None]:
    name, at, seed = label.partition("@")
    if not at:
        return label, None
    try:
        return name, int(seed)
    except ValueError:
        raise DataError(f"--rerlhf {path}: label {label!r} must be NAME or NAME@SEED with an integer seed") from None


def read_rerlhf(path) -> dict:
    """The re-RLHF evaluation file ``path`` checked for form (see the module docstring): a JSON object
    whose ``results`` map each label to ``toxic``, ``wilson95``, ``mean_r_star`` and ``n`` (optionally
    ``r_star``, the n per-completion rewards, and ``kl``), and whose optional ``comparisons`` list
    [A, B] pairs of model names. A DataError names the file and what is wrong. The result carries its
    ``summary`` (:func:`summarise_rerlhf`) and the results without the per-completion rewards."""
    import json
    from pathlib import Path

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--rerlhf {path}: not a readable JSON file ({exc})") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict) or not results:
        raise DataError(f"--rerlhf {path}: expected an object with non-empty 'results'")
    for label, e in results.items():
        if not (isinstance(e, dict) and all(k in e for k in ("toxic", "wilson95", "mean_r_star", "n"))):
            raise DataError(f"--rerlhf {path}: results[{label!r}] needs toxic, wilson95, mean_r_star and n")
        r = e.get("r_star")
        if r is not None and not (isinstance(r, list) and len(r) == e["n"] and np.isfinite(np.asarray(r, float)).all()):
            raise DataError(f"--rerlhf {path}: results[{label!r}]['r_star'] must be {e['n']} finite numbers")
        _group(label, path)
    names = {_group(label, path)[0] for label in results}
    comparisons = doc.get("comparisons", [])
    for c in comparisons:
        if not (isinstance(c, list) and len(c) == 2 and set(c) <= names):
            raise DataError(f"--rerlhf {path}: comparison {c!r} must be [A, B] with model names among {sorted(names)}")
    rerlhf = {"file": str(path), "what": doc.get("what", ""), "models": doc.get("models", {}), "results": results,
              "comparisons": comparisons}
    rerlhf["summary"] = summarise_rerlhf(rerlhf)
    rerlhf["results"] = {label: {k: v for k, v in e.items() if k != "r_star"} for label, e in results.items()}
    return rerlhf


def _mean_sd(values) -> tuple[float, float | None]:
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def summarise_rerlhf(rerlhf: dict) -> dict:
    """Per model name: its runs' seeds and toxicity, mean and sd over seeds of the toxic rate, mean r*
    and KL; per comparison [A, B]: on every seed both have, A − B in toxic rate and in mean r* (with a
    95 % interval over prompts when per-completion r* is stored), then the mean and sd over those seeds."""
    groups: dict = {}
    for label, e in rerlhf["results"].items():
        name, seed = _group(label, rerlhf["file"])
        groups.setdefault(name, {})[seed] = e
    out = {"groups": {}, "comparisons": []}
    for name, runs in groups.items():
        seeds = sorted(runs, key=lambda s: -1 if s is None else s)
        g = {"seeds": seeds, "n": [runs[s]["n"] for s in seeds], "toxic": [runs[s]["toxic"] for s in seeds],
             "mean_r_star": [runs[s]["mean_r_star"] for s in seeds],
             "kl": [runs[s]["kl"]["mean"] for s in seeds if isinstance(runs[s].get("kl"), dict)]}
        g["toxic_mean"], g["toxic_sd"] = _mean_sd(g["toxic"])
        g["r_mean"], g["r_sd"] = _mean_sd(g["mean_r_star"])
        out["groups"][name] = g
    for a, b in rerlhf["comparisons"]:
        per_seed = []
        for seed in sorted(set(groups[a]) & set(groups[b]), key=lambda s: -1 if s is None else s):
            ea, eb = groups[a][seed], groups[b][seed]
            row = {"seed": seed, "d_toxic": ea["toxic"] - eb["toxic"], "d_r": ea["mean_r_star"] - eb["mean_r_star"]}
            if ea.get("r_star") is not None and eb.get("r_star") is not None and ea["n"] == eb["n"]:
                d = np.asarray(ea["r_star"], float) - np.asarray(eb["r_star"], float)
                half = Z95 * d.std(ddof=1) / np.sqrt(d.size)
                row["d_r_ci"] = [float(d.mean() - half), float(d.mean() + half)]
            per_seed.append(row)
        c = {"a": a, "b": b, "per_seed": per_seed}
        if per_seed:
            c["d_toxic_mean"], c["d_toxic_sd"] = _mean_sd([r["d_toxic"] for r in per_seed])
            c["d_r_mean"], c["d_r_sd"] = _mean_sd([r["d_r"] for r in per_seed])
        out["comparisons"].append(c)
    return out


def _pm(mean: float, sd: float | None, digits: int, sign: str = "") -> str:
    return f"{mean:{sign}.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def rerlhf_lines(rerlhf: dict | None) -> list[str]:
    """The report's re-RLHF section of a :func:`read_rerlhf` result (empty for None): per model, toxicity per run and mean ± sd
    over training seeds; per comparison, the paired differences per seed and over seeds."""
    if not rerlhf:
        return []
    s = rerlhf["summary"]
    lines = ["## Re-RLHF: the base retrained with recovered rewards", "",
             f"Measured by `make rerlhf`, read from `{rerlhf['file']}` (not recomputed in this run): "
             f"{rerlhf['what']}. Models: " + ", ".join(f"{k} = `{v}`" for k, v in rerlhf["models"].items()) + ".",
             "A model with several runs (NAME@SEED) is the same training with another seed; ± is the sd over them.",
             "", "| model | training seeds | completions | toxic↓ per run | toxic↓ | mean r* | KL (nats) |",
             "|---|---|---|---|---|---|---|"]
    for name, g in s["groups"].items():
        seeds = ", ".join("—" if x is None else str(x) for x in g["seeds"])
        kl = _pm(*_mean_sd(g["kl"]), 1) if g["kl"] else "—"
        lines.append(f"| {name} | {seeds} | {g['n'][0]} | " + ", ".join(f"{t:.3f}" for t in g["toxic"])
                     + f" | {_pm(g['toxic_mean'], g['toxic_sd'], 3)} | {_pm(g['r_mean'], g['r_sd'], 2)} | {kl} |")
    if s["comparisons"]:
        lines += ["", "Paired differences (same prompts, same sampling seeds; the interval is 95 % over prompts):", "",
                  "| A − B | training seed | Δ toxic | Δ mean r* | 95 % over prompts |", "|---|---|---|---|---|"]
        for c in s["comparisons"]:
            for r in c["per_seed"]:
                ci = "[{:.3f}, {:.3f}]".format(*r["d_r_ci"]) if "d_r_ci" in r else "—"
                lines.append(f"| {c['a']} − {c['b']} | {'—' if r['seed'] is None else r['seed']} | "
                             f"{r['d_toxic']:+.4f} | {r['d_r']:+.3f} | {ci} |")
            if len(c["per_seed"]) > 1:
                lines.append(f"| {c['a']} − {c['b']} | mean ± sd over {len(c['per_seed'])} seeds | "
                             f"{_pm(c['d_toxic_mean'], c['d_toxic_sd'], 4, '+')} | {_pm(c['d_r_mean'], c['d_r_sd'], 3, '+')} | |")
    return lines + [""]


def cmd_pairs(args) -> int:
    import json

    from fairl_opt._json import run_record
    from fairl_opt.detox.cli import _check_dataset

    ds = _check_dataset(args.data)
    data = policy_pairs_data(ds, args.policy, args.split)
    data.save(args.out)
    n_test = int(data.test_mask.sum())
    print(json.dumps({"out": str(args.out), "n_pairs": data.pairs.n_pairs, "n_test": n_test,
                      "kinds": {str(k): int((data.pairs.kinds == k).sum()) for k in np.unique(data.pairs.kinds)},
                      "run": run_record("detox pairs", {"data": args.data, "out": args.out},
                                        {"policy": args.policy, "split": args.split})}, indent=2))
    return 0


def add_pairs_parser(dsub) -> None:
    """``fairl detox pairs`` on the detox sub-parsers."""
    from fairl_opt._args import HelpFormatter, nonnegative_int

    summary = "a detox policy's (aligned > base) pairs as a pairs file for `fairl fit` / `fairl audit`"
    p = dsub.add_parser("pairs", help=summary, description=summary, formatter_class=HelpFormatter)
    p.add_argument("--data", default="data/detox", help="dataset folder from `fairl detox generate`")
    p.add_argument("--policy", default="sir", help="aligned policy: sir or an added one (fairl detox add-policy)")
    p.add_argument("--split", type=nonnegative_int, default=0, help="split whose test prompts are held out")
    p.add_argument("--out", required=True, help="pairs file (.npz) to write")
    p.set_defaults(func=cmd_pairs)
