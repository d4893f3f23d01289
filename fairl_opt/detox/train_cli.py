"""``fairl detox train``: the aligned model of the detox experiment, trained with DPO
(:func:`fairl_opt.detox.train.train_dpo`) on best ≻ worst pairs of a detox dataset.

Which prompts (no test prompt is ever used): the training prompts of split ``--split`` (the
dataset's ``test_masks``), shuffled with ``--seed``; the first ``--val-fraction`` of them are held
out as validation prompts (eval loss/margin/accuracy on their pairs, at most ``--eval-pairs`` of
them, and the KL prompts, the first ``--kl-prompts``); the rest give the training pairs
(:func:`best_worst_pairs`), the first ``--max-pairs`` of them when set. The
prompts are rendered as the dataset's generator saw them (raw text, or the chat template when the
manifest says so). Every check runs before a model loads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from fairl_opt._args import HelpFormatter, nonnegative_int, positive_float, positive_int
from fairl_opt._io import check_output_dir, sha256_file
from fairl_opt._json import run_record
from fairl_opt.exceptions import DataError

log = logging.getLogger(__name__)


HELP_RULE = """\
Training prompts only: the training prompts of split --split, shuffled with --seed; the first
--val-fraction of them are validation prompts (the first --eval-pairs of their best > worst pairs
are scored at each eval, the first --kl-prompts are the KL prompts); the others give the training
pairs: best > worst of each prompt's stored completions by r*, the first --max-pairs when set.
Prompts are rendered as the dataset's generator saw them. An interrupted run resumes from its last
checkpoint in --out when rerun with the same settings."""


def _fraction(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def best_worst_pairs(dataset, prompts, reward=None) -> list[dict]:
    """For each prompt of ``prompts`` (indices into ``dataset``, a
    :class:`~fairl_opt.detox.dataset.DetoxDataset`): its best ≻ worst of the K+1 stored completions by
    ``reward`` (an (n_prompts, K+1) array; default r*, so re-RLHF with a recovered reward runs the same
    loop on the same prompts), first index on ties; prompts whose completions all have the same reward
    or text are skipped. Each pair: prompt_id, prompt, chosen, rejected, their sample indices and
    their rewards (``r_chosen``, ``r_rejected``)."""
    from fairl_opt.exceptions import DataError

    scores = dataset.r_star if reward is None else np.asarray(reward, dtype=np.float64)
    if scores.shape != dataset.r_star.shape or not np.isfinite(scores).all():
        raise DataError(f"reward must be a finite array of shape {dataset.r_star.shape} (prompts x completions), "
                        f"got {scores.shape}")
    out = []
    for i in np.asarray(prompts, dtype=np.int64):
        r = scores[i]
        b, w = int(np.argmax(r)), int(np.argmin(r))
        if r[b] == r[w] or dataset.texts[i][b] == dataset.texts[i][w]:
            continue
        out.append({"prompt_id": int(i), "prompt": dataset.prompts[i], "chosen": dataset.texts[i][b],
                    "rejected": dataset.texts[i][w], "chosen_sample": b, "rejected_sample": w,
                    "r_chosen": float(r[b]), "r_rejected": float(r[w])})
    return out


def detox_pairs(dataset, split: int, val_fraction: float, seed: int, max_pairs: int | None, reward=None):
    """(training pairs, validation pairs, training prompt ids, validation prompt ids) by the module's
    rule; best ≻ worst by ``reward`` ((n_prompts, K+1), default r*) — the validation pairs too."""
    if not 0 <= split < dataset.test_masks.shape[0]:
        raise DataError(f"--split must lie in 0..{dataset.test_masks.shape[0] - 1}, got {split}")
    train = np.flatnonzero(~dataset.test_masks[split])
    train = train[np.random.default_rng(seed).permutation(len(train))]
    n_val = int(round(val_fraction * len(train)))
    val, fit = np.sort(train[:n_val]), train[n_val:]
    pairs = best_worst_pairs(dataset, fit, reward)
    if max_pairs is not None:
        pairs = pairs[:max_pairs]
    if not pairs:
        raise DataError(f"--data: no best ≻ worst pair on the {len(fit)} training prompts of split {split} "
                        "(every prompt's completions have the same r*)")
    return pairs, best_worst_pairs(dataset, val, reward), sorted(p["prompt_id"] for p in pairs), val.tolist()


def _target_modules(spec, text: str) -> list[str]:
    """The module names of ``--target-modules``, each the last part of a Linear's name in the base other
    than the LM head (checked on a weightless copy built from its config on torch's meta device)."""
    from fairl_opt.models import _quiet_transformers, _torch

    modules = [m.strip() for m in text.split(",") if m.strip()]
    torch = _torch()
    _quiet_transformers()
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(spec.path, **({"gguf_file": spec.gguf_file} if spec.gguf_file else {}))
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    head = skeleton.get_output_embeddings()  # TRL computes log-probs from its weight: an adapter there never trains
    names = {n.rsplit(".", 1)[-1] for n, m in skeleton.named_modules()
             if isinstance(m, torch.nn.Linear) and m is not head}
    missing = [m for m in modules if m not in names] or ([] if modules else ["(none)"])
    if missing:
        raise DataError(f"--target-modules {text!r}: {', '.join(missing)} is not a linear module of the base "
                        f"other than its LM head (it has {', '.join(sorted(names))})")
    return modules


def cmd_train(args) -> int:
    from fairl_opt.detox.cli import _check_dataset
    from fairl_opt.detox.dataset import TEMPLATES
    from fairl_opt.detox.train import prepare_output, train_dpo
    from fairl_opt.models import resolve_model

    if args.force:
        check_output_dir(args.out)
    else:
        prepare_output(args.out, force=False)
    if not Path(args.data).is_dir():
        raise DataError(f"--data {args.data}: no such folder (make one with `fairl detox generate --out {args.data}`)")
    dataset = _check_dataset(args.data)
    try:
        spec = resolve_model(args.base)
    except DataError as exc:
        raise DataError(f"--base {args.base}: {exc}") from None
    if spec.is_adapter:
        raise DataError(f"--base {args.base}: is an adapter; train on its merged base")
    modules = _target_modules(spec, args.target_modules)
    reward, recovered = None, None
    if args.reward is not None:
        from fairl_opt.detox.rerlhf import reward_scores

        reward, recovered = reward_scores(dataset, args.reward)
    pairs, val_pairs, train_ids, val_ids = detox_pairs(dataset, args.split, args.val_fraction, args.seed,
                                                       args.max_pairs, reward)
    chat = dataset.manifest.get("generator", {}).get("template") == TEMPLATES[True]
    eval_pairs = val_pairs[: args.eval_pairs] if args.eval_pairs and val_pairs else None
    kl_prompts = [dataset.prompts[i] for i in val_ids[: args.kl_prompts]]  # [] = no KL estimate
    source = {"dataset": str(args.data), "manifest_sha256": sha256_file(Path(args.data) / "manifest.json"),
              "dataset_files": {k: v["sha256"] for k, v in dataset.manifest["files"].items()},
              "rule": "fairl_opt.detox.train_cli.detox_pairs: best ≻ worst by "
                      + ("r*" if reward is None else "the recovered reward of `reward`") + " of the K+1 completions "
                      "on the training prompts of the split, minus the validation prompts", "reward": recovered,
              "split": args.split, "val_fraction": args.val_fraction, "max_pairs": args.max_pairs,
              "train_prompt_ids": train_ids, "val_prompt_ids": val_ids,
              "eval_prompt_ids": [p["prompt_id"] for p in eval_pairs or []],
              "kl_prompt_ids": val_ids[: args.kl_prompts]}
    prov = train_dpo(
        args.base, pairs, args.out, beta=args.beta, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
        target_modules=modules, learning_rate=args.learning_rate, epochs=args.epochs, batch_size=args.batch_size,
        max_length=args.max_length, seed=args.seed, eval_pairs=eval_pairs, progress=not args.quiet,
        kl_prompts=kl_prompts, kl_max_new_tokens=args.kl_max_new_tokens, log_every=args.log_every,
        save_every=args.save_every, eval_every=args.eval_every, warmup_steps=args.warmup_steps,
        max_steps=args.max_steps, chat_template=chat, force=args.force, keep_checkpoints=args.keep_checkpoints,
        data_source=source)
    params = {k: getattr(args, k) for k in (
        "base", "reward", "split", "val_fraction", "max_pairs", "eval_pairs", "kl_prompts", "beta", "epochs", "lora_r",
        "lora_alpha", "target_modules", "learning_rate", "batch_size", "max_length", "seed", "log_every",
        "save_every", "eval_every", "warmup_steps", "max_steps", "kl_max_new_tokens", "force")}
    print(json.dumps({"out": str(args.out), "n_pairs": len(pairs), "n_eval_pairs": len(eval_pairs or []),
                      "cost": prov["cost"], "final": prov["final"],
                      "run": run_record("detox train", {"data": args.data, "out": args.out}, params)}, indent=2))
    return 0


def add_train_parser(dsub) -> None:
    """``fairl detox train`` on the detox sub-parsers."""
    summary = "train the aligned model: DPO with TRL through a LoRA adapter on CPU → adapter folder"
    t = dsub.add_parser("train", help=summary, description=summary + "\n\n" + HELP_RULE, formatter_class=HelpFormatter)
    t.add_argument("--data", default="data/detox", help="dataset folder from `fairl detox generate`")
    t.add_argument("--out", default="data/aligned", help="adapter folder (created)")
    t.add_argument("--base", default="smollm2", help="base model: smollm2 or a local transformers or GGUF directory")
    t.add_argument("--split", type=nonnegative_int, default=0, help="split whose training prompts are used")
    t.add_argument("--reward", default=None, metavar="REWARD_DIR",
                   help="re-RLHF: rank each prompt's completions by this `fairl fit` reward instead of r* "
                        "(fit it on `fairl detox pairs` output)")
    t.add_argument("--val-fraction", type=_fraction, default=0.1, help="training prompts held out for eval and KL")
    t.add_argument("--max-pairs", type=positive_int, default=None, metavar="N", help="train on the first N pairs only")
    t.add_argument("--eval-pairs", type=nonnegative_int, default=32, metavar="N",
                   help="validation pairs scored at each eval (0 = none)")
    t.add_argument("--kl-prompts", type=nonnegative_int, default=16, metavar="N",
                   help="validation prompts of the KL estimate (0 = none)")
    t.add_argument("--beta", type=positive_float, default=0.1, help="DPO β (KL weight)")
    t.add_argument("--epochs", type=positive_int, default=1, help="passes over the training pairs")
    t.add_argument("--lora-r", type=positive_int, default=8, help="LoRA rank")
    t.add_argument("--lora-alpha", type=positive_float, default=16.0, help="LoRA α (scale α/r)")
    t.add_argument("--target-modules", default="q_proj,v_proj", help="comma-separated modules LoRA adapts")
    t.add_argument("--learning-rate", type=positive_float, default=5e-4, help="AdamW learning rate")
    t.add_argument("--warmup-steps", type=nonnegative_int, default=10, help="linear warm-up steps")
    t.add_argument("--batch-size", type=positive_int, default=8, help="pairs per optimizer step")
    t.add_argument("--max-length", type=positive_int, default=128, help="tokens kept of prompt + completion")
    t.add_argument("--max-steps", type=positive_int, default=None, metavar="N", help="stop after N steps")
    t.add_argument("--log-every", type=positive_int, default=10, metavar="N", help="log loss, rewards and KL")
    t.add_argument("--eval-every", type=positive_int, default=50, metavar="N", help="score the eval pairs")
    t.add_argument("--save-every", type=positive_int, default=25, metavar="N", help="checkpoint (reruns resume)")
    t.add_argument("--kl-max-new-tokens", type=positive_int, default=30, help="tokens sampled per KL prompt")
    t.add_argument("--seed", type=nonnegative_int, default=0, help="seeds the prompt shuffle, LoRA init and data order")
    t.add_argument("--keep-checkpoints", action="store_true", help="keep checkpoints/ after the run finishes")
    t.add_argument("--force", action="store_true", help="replace a finished adapter in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no log lines")
    t.set_defaults(func=cmd_train)
