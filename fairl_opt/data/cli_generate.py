"""``fairl generate``: preference pairs from a base and an aligned model (:mod:`fairl_opt.data.generate`).

The command only parses, calls :func:`fairl_opt.data.generate.generate_pairs` and prints its
summary as one JSON object; every check runs there, before any model loads.
"""

from __future__ import annotations

import argparse

from fairl_opt._args import HelpFormatter, nonnegative_int, positive_float, positive_int

MODEL_HELP = ("smollm2, a local transformers or GGUF directory, a PEFT/LoRA adapter directory, or "
              "BASE+ADAPTER_DIR")


def unit_interval(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def cmd_generate(args) -> int:
    from fairl_opt._json import emit_json
    from fairl_opt.cluster import check_scheduler_arguments, client_for
    from fairl_opt.data.generate import generate_pairs
    from fairl_opt.lm import SamplingConfig

    config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k)
    check_scheduler_arguments(args)
    with client_for(args.scheduler) as client:
        summary = generate_pairs(args.base, args.aligned, args.prompts, args.out, n_samples=args.n_samples,
                                 seed=args.seed, config=config, chat_template=args.chat_template,
                                 workers=args.workers, cache_dir=args.cache_dir, progress=not args.quiet,
                                 scheduler=client)
    emit_json(summary)
    return 0


def add_generate_parser(sub) -> None:
    summary = "preference pairs from two models: aligned completions chosen over the base's"
    p = sub.add_parser("generate", help=summary, description=summary, formatter_class=HelpFormatter,
                       epilog="Writes OUT (JSONL: prompt, chosen, rejected, prompt_id, sample) and OUT.meta.json; "
                              "an interrupted run resumes from the cache.")
    p.add_argument("--base", required=True, help=f"the base model (rejected side): {MODEL_HELP}")
    p.add_argument("--aligned", required=True, help=f"the aligned model (chosen side): {MODEL_HELP}")
    p.add_argument("--prompts", required=True,
                   help=".txt (one prompt per line) or .jsonl (field prompt or text), UTF-8")
    p.add_argument("--out", required=True, help="output pairs file (JSONL); its metadata goes to OUT.meta.json")
    p.add_argument("--n-samples", type=positive_int, default=1,
                   help="completions per prompt from each model (sample k of one paired with sample k of the other)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="sampling seed (the same for both models)")
    p.add_argument("--max-new-tokens", type=positive_int, default=30, help="tokens sampled per completion")
    p.add_argument("--temperature", type=positive_float, default=1.0, help="sampling temperature")
    p.add_argument("--top-p", type=unit_interval, default=1.0, help="nucleus cut (1 = off)")
    p.add_argument("--top-k", type=nonnegative_int, default=0, help="top-k cut (0 = off)")
    p.add_argument("--chat-template", action="store_true",
                   help="render each prompt as a user turn through each model's chat template "
                        "(default: raw text continuation)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes (one thread each)")
    from fairl_opt.cluster import add_scheduler_argument

    add_scheduler_argument(p)
    p.add_argument("--cache-dir", default=None, help="chunk cache (default: OUT.cache); reruns resume")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_generate)
