"""``fairl embed`` and ``fairl detox generate|run``.

Every check that can fail runs before a model loads: output and cache paths, the input texts (their
UTF-8 and JSON, with the line at fault), ``--train-rows``, the prompt file and the dataset to run on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from fairl_opt._args import HelpFormatter, nonnegative_int, positive_int
from fairl_opt._io import atomic_savez, check_output_dir, check_output_path, read_texts
from fairl_opt._json import run_record
from fairl_opt.exceptions import DataError


def _read_texts(path) -> list[str]:
    """Texts from a .txt (one per line) or a .jsonl (field ``text``, else ``completion``):
    :func:`fairl_opt._io.read_texts` (DataError naming the file and line)."""
    return read_texts(path, "input file")[0]


def cmd_embed(args) -> int:
    from fairl_opt.cluster import check_scheduler_arguments, client_for
    from fairl_opt.lm import embed_texts

    check_scheduler_arguments(args)
    out = check_output_path(args.out, suffix=".npz")  # what np.savez would write
    cache = Path(args.cache_dir) if args.cache_dir else out.with_name(out.name + ".cache")
    check_output_dir(cache, "--cache-dir")
    texts = _read_texts(args.input)
    if args.train_rows is not None and not args.train_rows <= len(texts):
        raise DataError(f"--train-rows must lie in 1..{len(texts)}, got {args.train_rows}")
    with client_for(args.scheduler) as client:  # connected (or refused) before any model loads
        feats = embed_texts(texts, model=args.model, cache_dir=cache, batch_size=args.batch_size,
                            max_length=args.max_length, workers=args.workers, progress=not args.quiet,
                            scheduler=client)
    arrays = {"features": feats.astype(np.float16 if args.float16 else np.float32)}
    if args.train_rows is not None:
        from fairl_opt.data.features import fit_standardisation

        mean, scale = fit_standardisation(feats[: args.train_rows])
        arrays.update(mean=mean, scale=scale,
                      standardised=((feats - mean) / scale).astype(arrays["features"].dtype))
    atomic_savez(out, **arrays)
    params = {k: getattr(args, k) for k in ("model", "batch_size", "max_length", "workers", "scheduler",
                                            "train_rows", "float16")}
    print(json.dumps({"out": str(out), "n": len(texts), "dim": int(feats.shape[1]), "model": args.model,
                      "cache": str(cache), "standardised_on_rows": args.train_rows,
                      "run": run_record("embed", {"input": args.input}, params)}))
    return 0


def _check_models(args) -> None:
    """Resolve ``--model`` and ``--feature-model`` (an adapter checked against its base) and, with
    ``--chat-template``, the generator's template, before any model loads: a DataError names the
    option."""
    from fairl_opt.models import chat_template_of, check_adapter, load_tokenizer, resolve_model

    for option, given, causal in (("--model", args.model, True), ("--feature-model", args.feature_model, False)):
        if given is None:
            continue
        try:
            spec = resolve_model(given)
            check_adapter(spec, causal=causal)
            if args.chat_template and option == "--model":
                chat_template_of(load_tokenizer(spec), spec)
        except DataError as exc:
            raise DataError(f"{option} {given}: {exc}") from None


def _mix(text: str) -> dict:
    """argparse type for ``--mix family=share,...`` (checked again by build_prompts)."""
    import argparse

    from fairl_opt.detox.prompts import mix_counts

    mix = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected family=share[,family=share...], got {text!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected family=share[,family=share...], got {text!r}")
    try:
        mix_counts(100, mix)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return mix


def cmd_generate(args) -> int:
    from fairl_opt.detox.dataset import generate_dataset

    check_output_dir(args.out)
    if args.mix is not None and args.prompts is not None:
        raise DataError("--mix applies to the template prompts, not with --prompts")
    if args.cache_dir is not None:
        check_output_dir(args.cache_dir, "--cache-dir")
    if args.prompts is not None:  # read once here so that a bad line fails before any model loads
        from fairl_opt.detox.prompts import load_rtp_jsonl

        load_rtp_jsonl(args.prompts, limit=args.n_prompts)
    _check_models(args)
    from fairl_opt.cluster import check_scheduler_arguments, client_for

    check_scheduler_arguments(args)
    with client_for(args.scheduler) as client:  # connected (or refused) before any model loads
        manifest = generate_dataset(
            args.out, n_prompts=args.n_prompts, K=args.K, beta=args.beta, seed=args.seed, model=args.model,
            feature_model=args.feature_model, prompts_file=args.prompts, max_new_tokens=args.max_new_tokens,
            n_splits=args.splits, workers=args.workers, cache_dir=args.cache_dir, progress=not args.quiet,
            log=logging.getLogger(__name__).info, chat_template=args.chat_template, mix=args.mix, scheduler=client,
        )
    params = {k: getattr(args, k) for k in ("n_prompts", "K", "beta", "seed", "model", "feature_model", "max_new_tokens",
                                            "splits", "workers", "scheduler", "chat_template", "mix")}
    print(json.dumps({**{k: manifest[k] for k in ("n_prompts", "K", "beta", "rates", "cost", "files")},
                      "run": run_record("detox generate", {"prompts": args.prompts, "out": args.out}, params)},
                     indent=2))
    return 0


def _check_dataset(data):
    """The dataset in ``data``, loaded and checked once before the run (callers reuse it): a loader's ValueError, KeyError or TypeError
    (a manifest that is not JSON or lacks a field) becomes a DataError naming the folder."""
    from fairl_opt.detox.dataset import DetoxDataset

    try:
        return DetoxDataset.load(data)
    except DataError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise DataError(
            f"{data}: not a readable detox dataset ({type(exc).__name__}: {detail}); regenerate it with "
            f"`fairl detox generate --out {data}`"
        ) from exc


def cmd_run(args) -> int:
    from fairl_opt.detox.experiment import run_experiment

    from fairl_opt.detox.report import _view, helps_section, main_table

    check_output_dir(args.out)
    _check_dataset(args.data)
    rerlhf = None
    if args.rerlhf is not None:
        from fairl_opt.detox.rerlhf import read_rerlhf

        rerlhf = read_rerlhf(args.rerlhf)
    summary = run_experiment(args.data, args.out, quick=args.quick, progress=not args.quiet,
                             geometry=not args.no_geometry, workers=args.workers, seed=args.seed, rerlhf=rerlhf)
    if not args.quiet:
        for policy in summary["by_policy"]:
            print(f"aligned policy {policy}:", main_table(_view(summary, policy)), "", sep="\n")
        print(*helps_section(summary), f"report: {Path(args.out) / 'report.md'}", sep="\n")
    return 0


def cmd_add_policy(args) -> int:
    from fairl_opt.detox.policy import add_policy, check_name

    check_name(args.name)
    if not Path(args.data).is_dir():
        raise DataError(f"--data {args.data}: no such folder (make one with `fairl detox generate --out {args.data}`)")
    _check_dataset(args.data)
    if args.cache_dir is not None:
        check_output_dir(args.cache_dir, "--cache-dir")
    try:
        from fairl_opt.models import check_adapter, resolve_model

        check_adapter(resolve_model(args.model), causal=True)
    except DataError as exc:
        raise DataError(f"--model {args.model}: {exc}") from None
    from fairl_opt.cluster import check_scheduler_arguments, client_for

    check_scheduler_arguments(args)
    with client_for(args.scheduler) as client:
        meta = add_policy(args.data, args.name, args.model, samples=args.samples, workers=args.workers,
                          beta=args.beta, cache_dir=args.cache_dir, progress=not args.quiet, force=args.force,
                          log=logging.getLogger(__name__).info, scheduler=client)
    params = {k: getattr(args, k) for k in ("name", "model", "samples", "beta", "workers", "scheduler", "force")}
    print(json.dumps({**{k: meta[k] for k in ("name", "samples", "rates", "implicit_reward", "cost", "files")},
                      "run": run_record("detox add-policy", {"data": args.data}, params)}, indent=2))
    return 0


def add_embed_parser(sub) -> None:
    summary = "mean-pooled frozen LLM features of texts (resumable)"
    p = sub.add_parser("embed", help=summary, description=summary, formatter_class=HelpFormatter)
    p.add_argument("input", help=".txt (one text per line) or .jsonl (field text), UTF-8")
    p.add_argument("--out", required=True,
                   help="output .npz (features[, mean, scale, standardised]); .npz is appended when missing")
    p.add_argument("--model", default="smollm2", help="smollm2, minilm or a local model directory")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass")
    p.add_argument("--max-length", type=positive_int, default=128, help="tokens kept per text")
    p.add_argument("--workers", type=positive_int, default=1, help="processes (one thread each)")
    from fairl_opt.cluster import add_scheduler_argument; add_scheduler_argument(p)  # --scheduler
    p.add_argument("--train-rows", type=positive_int, default=None,
                   help="standardise with mean/sd of the first N rows (the training split)")
    p.add_argument("--float16", action="store_true", help="store float16 (half the size)")
    p.add_argument("--cache-dir", default=None, help="chunk cache (default: <out>.cache); reruns resume")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_embed)


def add_detox_parser(sub) -> None:
    from fairl_opt.cluster import add_scheduler_argument

    summary = "the LLM detoxification experiment"
    p = sub.add_parser("detox", help=summary, description=summary, formatter_class=HelpFormatter)
    dsub = p.add_subparsers(dest="detox_command", required=True, metavar="COMMAND")
    summary = "prompts → base/aligned completions → r* → features → data dir"
    g = dsub.add_parser("generate", help=summary, description=summary, formatter_class=HelpFormatter)
    g.add_argument("--out", default="data/detox", help="dataset folder (created)")
    g.add_argument("--n-prompts", type=positive_int, default=3000, help="prompts")
    g.add_argument("--K", type=positive_int, default=4, help="candidates per prompt for the aligned policy")
    g.add_argument("--beta", type=float, default=1.0, help="KL temperature of π* ∝ π₀ exp(r*/β)")
    g.add_argument("--seed", type=nonnegative_int, default=0, help="seed of prompts, sampling and splits")
    g.add_argument("--model", default="smollm2",
                   help="generator: smollm2, a local transformers or GGUF directory, a PEFT/LoRA adapter "
                        "directory, or BASE+ADAPTER_DIR")
    g.add_argument("--feature-model", default=None, help="feature model, same forms (default: the generator)")
    g.add_argument("--chat-template", action="store_true",
                   help="render each prompt as a user turn through the generator's chat template "
                        "(default: raw text continuation)")
    g.add_argument("--prompts", default=None,
                   help="RealToxicityPrompts-format JSONL (UTF-8) instead of templates")
    g.add_argument("--mix", type=_mix, default=None,
                   help="template families' shares, e.g. neutral=0.2,provocative=0.2,challenge=0.6 "
                        "(default: neutral=0.5,provocative=0.5)")
    g.add_argument("--max-new-tokens", type=positive_int, default=30, help="tokens sampled per completion")
    g.add_argument("--splits", type=positive_int, default=5, help="random prompt-level train/test splits")
    g.add_argument("--workers", type=positive_int, default=1, help="processes (one thread each)")
    add_scheduler_argument(g)
    g.add_argument("--cache-dir", default=None, help="chunk cache (default: <out>/.cache); reruns resume")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.set_defaults(func=cmd_generate)
    summary = "the experiment on a detox data dir → report"
    r = dsub.add_parser("run", help=summary, description=summary, formatter_class=HelpFormatter)
    r.add_argument("--data", default="data/detox", help="dataset folder from `fairl detox generate`")
    r.add_argument("--out", default="reports/detox", help="report folder (created)")
    r.add_argument("--quick", action="store_true", help="fewer splits and methods (for tests)")
    r.add_argument("--no-geometry", action="store_true", help="skip the feasible-set geometry")
    r.add_argument("--workers", type=positive_int, default=2, help="processes sharing the splits (one thread each)")
    r.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seeds every random stream (folds, FA mining, geometry, ablation subsets); "
                        "results do not depend on --workers")
    r.add_argument("--rerlhf", default=None, metavar="FILE",
                   help="re-RLHF toxicity measured by `make rerlhf` (JSON) to show beside the aligned model's")
    r.add_argument("--quiet", action="store_true", help="no progress lines and no tables")
    r.set_defaults(func=cmd_run)
    summary = "add a trained aligned policy to a dataset: its samples, r*, features and implicit reward"
    a = dsub.add_parser("add-policy", help=summary, description=summary + " (fairl_opt.detox.policy)",
                        formatter_class=HelpFormatter)
    a.add_argument("--data", default="data/detox", help="dataset folder from `fairl detox generate`")
    a.add_argument("--name", default="dpo", help="the policy's name in the dataset (policies/NAME/)")
    a.add_argument("--model", default="data/aligned", help="the policy: a model, adapter or BASE+ADAPTER")
    a.add_argument("--samples", type=positive_int, default=1, help="completions per prompt")
    a.add_argument("--beta", type=float, default=None, help="β of the implicit reward (default: the adapter's DPO β)")
    a.add_argument("--workers", type=positive_int, default=1, help="processes (one thread each)")
    add_scheduler_argument(a)
    a.add_argument("--cache-dir", default=None, help="chunk cache (default: <data>/.cache); reruns resume")
    a.add_argument("--force", action="store_true", help="replace a policy of the same name")
    a.add_argument("--quiet", action="store_true", help="no progress lines")
    a.set_defaults(func=cmd_add_policy)
    from fairl_opt.detox.train_cli import add_train_parser; add_train_parser(dsub)  # fairl detox train
    from fairl_opt.detox.rerlhf import add_pairs_parser; add_pairs_parser(dsub)  # fairl detox pairs
