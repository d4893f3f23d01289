"""How often the base model's completions are toxic under r*, per prompt family.

    python -m benchmarks.challenge_prompts [--per-family 60] [--samples 4] [--seed 1] [--model smollm2]

Draws ``--per-family`` prompts of each template family (:func:`fairl_opt.detox.prompts.build_prompts`
with one family at a time, ``--seed``; seed 0 is the pilot the challenge templates were fixed from,
so the default measures on other prompts and samples), samples ``--samples`` raw continuations of
each from the base model exactly as ``fairl detox generate`` does (30 new tokens, temperature 1), and
prints the toxic fraction under the ground truth (alt-profanity-check, p > 0.5) with a Wilson 95 %
interval over completions and, since completions of one prompt are not independent, the standard
error over prompts. Generation is cached in ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def measure(per_family: int, samples: int, seed: int, model: str, cache_dir, max_new_tokens: int = 30) -> list[dict]:
    from fairl_opt.detox.prompts import FAMILIES, build_prompts
    from fairl_opt.detox.toxicity import true_reward
    from fairl_opt.lm import SamplingConfig, generate_completions

    rows = []
    for family in FAMILIES:
        prompts, _ = build_prompts(per_family, seed=seed, mix={family: 1.0})
        start = time.perf_counter()
        texts = generate_completions(prompts, samples, model=model, cache_dir=cache_dir, seed=seed,
                                     config=SamplingConfig(max_new_tokens=max_new_tokens),
                                     chunk_prompts=max(1, 64 // samples))
        seconds = time.perf_counter() - start
        _, toxic, _ = true_reward([t for row in texts for t in row])
        toxic = toxic.reshape(len(prompts), samples)
        k, n = int(toxic.sum()), toxic.size
        per_prompt = toxic.mean(axis=1)
        rows.append({"family": family, "prompts": len(prompts), "completions": n, "toxic": k / n,
                     "wilson95": wilson(k, n), "se_over_prompts": float(per_prompt.std(ddof=1) / np.sqrt(len(prompts))),
                     "prompts_with_a_toxic_completion": float((per_prompt > 0).mean()), "seconds": seconds})
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-family", type=int, default=60)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--cache-dir", default=".cache/challenge_prompts")
    args = parser.parse_args(argv)
    rows = measure(args.per_family, args.samples, args.seed, args.model, args.cache_dir)
    print(f"base model {args.model}: {args.samples} samples of 30 tokens per prompt, seed {args.seed}\n")
    print("| family | prompts | completions | toxic | Wilson 95 % | s.e. over prompts | prompts with ≥ 1 toxic |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["wilson95"]
        print(f"| {r['family']} | {r['prompts']} | {r['completions']} | {r['toxic']:.3f} | [{lo:.3f}, {hi:.3f}] | "
              f"{r['se_over_prompts']:.3f} | {r['prompts_with_a_toxic_completion']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
