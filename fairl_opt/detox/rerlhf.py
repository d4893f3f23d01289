"""Re-RLHF with a recovered reward: a detox policy's (aligned ≻ base) pairs as a pairs file for
``fairl fit`` / ``fairl audit`` (``fairl detox pairs``), and the stored completions ranked by a saved
reward folder for ``fairl detox train --reward`` — the same DPO loop, prompts and budget as the aligned
model, with best ≻ worst chosen by the recovered reward instead of r*.

The pairs file of split s holds every prompt's pair (:meth:`DetoxDataset.pairs
<fairl_opt.detox.dataset.DetoxDataset.pairs>`) with the split's test prompts as its test mask, the
texts, and the split's standardisation (:meth:`DetoxDataset.standardiser`) in its feature recipe, so
``fairl fit`` fits exactly the experiment's training pairs and a reward fitted there scores the
dataset's raw features through its own recipe.
"""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError

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
