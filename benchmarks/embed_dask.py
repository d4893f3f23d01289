"""Embedding throughput over a Dask cluster (issue 14): local processes vs ``distributed.LocalCluster``
workers, in one run, on the same texts, chunks and model.

Run ``python -m benchmarks.embed_dask`` (about eight minutes on 2 cores with SmolLM2; ``--n`` texts,
default 512, from the shipped ``data/detox`` completions; ``--model``, default ``smollm2``;
``--chunk-size``, default 64, so that two workers have chunks to share). Rows, each a fresh cache
and a timed call of :func:`fairl_opt.lm.embed_texts` (one thread per process everywhere):

1. **local, 1 process** — in this process (torch imported before the clock; loads the model once);
2. **local, 2 processes** — ``workers=2`` (spawned for the call, each importing torch and loading
   the model: what every local run pays);
3. **Dask, 1 worker** and 4. **Dask, 2 workers** — ``scheduler=`` a LocalCluster of that many
   one-thread workers, started (and torch and fairl_opt imported on them) before the clock starts;
   the first call loads the model on each worker (``cold``), the later calls on fresh caches find
   it loaded (``warm``: what a long-lived cluster gives every run after its first).

Both clusters are started before the clock; the setups then run ``--rounds`` times in turn
(default 2) and each row keeps its best round (other jobs on a shared machine slow some rounds
more than others). Each row prints texts/s, its ratio to row 1 and whether its features equal row
1's bit for bit; the time to load the model once in one process and the 1-minute load average
before and after are printed too. Compare the ratios of one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402


def _texts(n: int) -> list[str]:
    """``n`` completions of the shipped detox dataset (their real length mix), drawn with seed 0."""
    from fairl_opt.detox.dataset import DetoxDataset

    ds = DetoxDataset.load(verify=False)
    rng = np.random.default_rng(0)
    idx = rng.choice(ds.n_prompts * (ds.K + 1), n, replace=False)
    return [ds.texts[i // (ds.K + 1)][i % (ds.K + 1)] or " " for i in idx]


def _warm_imports() -> str:
    """Run on each worker before timing: import torch and fairl_opt.lm (not the model)."""
    import importlib

    for name in ("torch", "transformers", "fairl_opt.lm"):
        importlib.import_module(name)
    return "ok"


def _timed(texts, model, chunk_size, root: Path, name: str, **kwargs) -> tuple[float, np.ndarray]:
    """Seconds and features of one embed_texts call on a fresh cache ``root/name``."""
    from fairl_opt.lm import embed_texts

    t = time.perf_counter()
    feats = embed_texts(texts, model=model, cache_dir=root / name, chunk_size=chunk_size, progress=False, **kwargs)
    return time.perf_counter() - t, feats


def _model_load_seconds(model) -> float:
    """Seconds to load the tokenizer and the model once in this process (what every local run pays)."""
    from fairl_opt.models import load_model, load_tokenizer, resolve_model

    t = time.perf_counter()
    spec = resolve_model(model)
    load_tokenizer(spec), load_model(spec, causal=False)
    return time.perf_counter() - t


def main(argv=None) -> int:
    """Print (and with ``--out`` write as JSON) the rows described in the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="number of texts")
    parser.add_argument("--model", default="smollm2", help="feature model (a name or a local directory)")
    parser.add_argument("--chunk-size", type=int, default=64, help="texts per chunk (the same in every row)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds over the setups (best kept)")
    parser.add_argument("--out", help="write the rows as JSON")
    args = parser.parse_args(argv)

    import distributed

    texts = _texts(args.n)
    _warm_imports()  # row 1 should not pay this process's first torch import
    load_seconds = _model_load_seconds(args.model)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {}
    equal: dict[str, bool] = {}
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fairl-bench-dask-")))
        clients = {}
        for n_workers in (1, 2):
            local = stack.enter_context(distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=1, dashboard_address=None, processes=True))
            clients[n_workers] = stack.enter_context(distributed.Client(local))
            clients[n_workers].run(_warm_imports)
        setups = {"local, 1 process": {}, "local, 2 processes": {"workers": 2},
                  "Dask, 1 worker": {"scheduler": clients[1]}, "Dask, 2 workers": {"scheduler": clients[2]}}
        reference = None
        for name in ("Dask, 1 worker", "Dask, 2 workers"):  # the first call loads the model on the workers
            seconds, feats = _timed(texts, args.model, args.chunk_size, root, f"{name} cold", **setups[name])
            times[f"{name} (cold)"], equal[f"{name} (cold)"] = [seconds], feats
        for r in range(args.rounds):
            for name, kwargs in setups.items():
                label = name if name.startswith("local") else f"{name} (warm)"
                seconds, feats = _timed(texts, args.model, args.chunk_size, root, f"{label} {r}", **kwargs)
                times.setdefault(label, []).append(seconds)
                if reference is None:
                    reference = feats
                equal[label] = feats
    equal = {k: bool(np.array_equal(v, reference)) for k, v in equal.items()}
    load_after = os.getloadavg()[0]
    order = ["local, 1 process", "local, 2 processes", "Dask, 1 worker (cold)", "Dask, 1 worker (warm)",
             "Dask, 2 workers (cold)", "Dask, 2 workers (warm)"]
    rows = [{"setup": k, "seconds": min(times[k]), "all_seconds": times[k], "equal": equal[k]} for k in order]
    base = rows[0]["seconds"]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, one thread per process")
    print(f"{args.n} detox completions, model {args.model} (loading it: {load_seconds:.1f} s), chunks of "
          f"{args.chunk_size}, best of {args.rounds} rounds; {machine}; load average {load_before:.2f} before, "
          f"{load_after:.2f} after")
    print(f"{'setup':<26} {'seconds':>8} {'texts/s':>8} {'x local 1':>9}  bit-identical  all rounds (s)")
    for r in rows:
        r["texts_per_second"] = args.n / r["seconds"]
        r["ratio_vs_local_1"] = base / r["seconds"]
        print(f"{r['setup']:<26} {r['seconds']:>8.1f} {r['texts_per_second']:>8.1f} {r['ratio_vs_local_1']:>9.2f}  "
              f"{'yes' if r['equal'] else 'NO':<13}  {', '.join(f'{t:.1f}' for t in r['all_seconds'])}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"n": args.n, "model": args.model, "chunk_size": args.chunk_size, "machine": machine,
                       "model_load_seconds": load_seconds, "load_average": [load_before, load_after],
                       "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
