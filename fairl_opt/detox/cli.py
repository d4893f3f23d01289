"""``fairl embed`` and ``fairl detox generate|run``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from fairl_opt.exceptions import DataError


def _read_texts(path) -> list[str]:
    """Texts from a .txt (one per line) or a .jsonl (field ``text``, else ``completion``)."""
    from fairl_opt.detox.prompts import iter_jsonl

    path = Path(path)
    texts = []
    if path.suffix == ".jsonl":
        for lineno, obj in iter_jsonl(path, "input file"):
            text = obj.get("text", obj.get("completion")) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{path}:{lineno}: no string field 'text' or 'completion'")
            texts.append(text)
    else:
        if not path.exists():
            raise DataError(f"input file {path} does not exist")
        texts = path.read_text(encoding="utf-8").splitlines()
    if not texts:
        raise DataError(f"{path} holds no texts")
    return texts


def cmd_embed(args) -> int:
    from fairl_opt.lm import embed_texts

    texts = _read_texts(args.input)
    out = Path(args.out)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")  # what np.savez writes
    cache = Path(args.cache_dir) if args.cache_dir else out.with_name(out.name + ".cache")
    feats = embed_texts(texts, model=args.model, cache_dir=cache, batch_size=args.batch_size,
                        max_length=args.max_length, workers=args.workers, progress=not args.quiet)
    arrays = {"features": feats.astype(np.float16 if args.float16 else np.float32)}
    if args.train_rows is not None:
        if not 0 < args.train_rows <= len(texts):
            raise DataError(f"--train-rows must lie in 1..{len(texts)}, got {args.train_rows}")
        train = feats[: args.train_rows].astype(np.float64)
        mean, scale = train.mean(0), np.maximum(train.std(0), 1e-8)
        arrays.update(mean=mean, scale=scale,
                      standardised=((feats - mean) / scale).astype(arrays["features"].dtype))
    np.savez(out, **arrays)
    print(json.dumps({"out": str(out), "n": len(texts), "dim": int(feats.shape[1]), "model": args.model,
                      "cache": str(cache), "standardised_on_rows": args.train_rows}))
    return 0


def cmd_generate(args) -> int:
    from fairl_opt.detox.dataset import generate_dataset

    manifest = generate_dataset(
        args.out, n_prompts=args.n_prompts, K=args.K, beta=args.beta, seed=args.seed, model=args.model,
        feature_model=args.feature_model, prompts_file=args.prompts, max_new_tokens=args.max_new_tokens,
        n_splits=args.splits, workers=args.workers, cache_dir=args.cache_dir, progress=not args.quiet,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(json.dumps({k: manifest[k] for k in ("n_prompts", "K", "beta", "rates", "cost", "files")}, indent=2))
    return 0


def cmd_run(args) -> int:
    from fairl_opt.detox.experiment import run_experiment

    from fairl_opt.detox.report import ablation_headline, difference_table, main_table

    summary = run_experiment(args.data, args.out, quick=args.quick, progress=not args.quiet,
                             geometry=not args.no_geometry, workers=args.workers)
    if not args.quiet:
        table, plain = difference_table(summary)
        print(main_table(summary), "", table, *plain, "", ablation_headline(summary), "",
              f"report: {Path(args.out) / 'report.md'}", sep="\n")
    return 0


def add_embed_parser(sub) -> None:
    p = sub.add_parser("embed", help="mean-pooled frozen LLM features of texts (resumable)")
    p.add_argument("input", help=".txt (one text per line) or .jsonl (field text)")
    p.add_argument("--out", required=True, help="output .npz (features[, mean, scale, standardised])")
    p.add_argument("--model", default="smollm2", help="smollm2, minilm or a local model directory")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128, help="tokens kept per text")
    p.add_argument("--workers", type=int, default=1, help="processes (one thread each)")
    p.add_argument("--train-rows", type=int, default=None,
                   help="standardise with mean/sd of the first N rows (the training split)")
    p.add_argument("--float16", action="store_true", help="store float16 (half the size)")
    p.add_argument("--cache-dir", default=None, help="chunk cache (default <out>.cache); reruns resume")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_embed)


def add_detox_parser(sub) -> None:
    p = sub.add_parser("detox", help="the LLM detoxification experiment")
    dsub = p.add_subparsers(dest="detox_command", required=True)
    g = dsub.add_parser("generate", help="prompts → base/aligned completions → r* → features → data dir")
    g.add_argument("--out", default="data/detox")
    g.add_argument("--n-prompts", type=int, default=3000)
    g.add_argument("--K", type=int, default=4, help="candidates per prompt for the aligned policy")
    g.add_argument("--beta", type=float, default=1.0, help="KL temperature of π* ∝ π₀ exp(r*/β)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--model", default="smollm2", help="generator: smollm2 or a local model directory")
    g.add_argument("--feature-model", default=None, help="feature model (default: the generator)")
    g.add_argument("--prompts", default=None, help="RealToxicityPrompts-format JSONL instead of templates")
    g.add_argument("--max-new-tokens", type=int, default=30)
    g.add_argument("--splits", type=int, default=5, help="random prompt-level train/test splits")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--cache-dir", default=None, help="chunk cache (default <out>/.cache); reruns resume")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_generate)
    r = dsub.add_parser("run", help="the experiment on a detox data dir → report")
    r.add_argument("--data", default="data/detox")
    r.add_argument("--out", default="reports/detox")
    r.add_argument("--quick", action="store_true", help="fewer splits and methods (for tests)")
    r.add_argument("--no-geometry", action="store_true")
    r.add_argument("--workers", type=int, default=2, help="processes sharing the splits (one thread each)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)
