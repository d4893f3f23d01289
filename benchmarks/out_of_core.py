"""Out of core and Dask (issue 14): maxent and mm-qp on a memory-mapped Δ that is never loaded, and the
same solves on a LocalCluster with 1 and 2 workers.

``python -m benchmarks.out_of_core [--n 1000000 --d 1024] [--dir /tmp]`` writes a float32 Δ
(n × d, 4 GB at the default size) to ``DIR/out_of_core-N-D.npy`` in chunks of rows — never holding
it in RAM — from a seeded generator with planted structure (rows z ~ N(0, I) oriented along a
unit θ* with a margin of 0.5 there, 0.2 % of them flipped against it: see :func:`write_delta`), then solves and certifies maxent (λ = 1, lbfgs) and mm-qp (soft, C = 1, working-set)
on ``np.load(path, mmap_mode="r")``. Each row gives the wall time, the passes over Δ (the
:class:`~fairl_opt.programs.blocks.RowBlocks` counter), the working set, and memory: peak RSS
(VmHWM, which counts the file's pages the kernel keeps mapped) and peak anonymous RSS (sampled
every 0.1 s: the process's own memory — what holding Δ would show as 4 GB, twice if copied).

``--dask`` instead times the same two solves with Δ (default n = 200,000, d = 576) as a Dask
array read by the workers from the .npy, on a LocalCluster of 1 and then 2 worker processes (one
thread each), and prints the ratio.

``--in-memory`` loads the same .npy into RAM (default n = 100,000, d = 576) and times both programs
on the float32 array as loaded and on a float64 copy of it (the same values), with the ratio: a
float32 Δ's products go by float64 row blocks, so it should cost no more than its copy.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import threading
import time
from datetime import date
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from fairl_opt.programs import MarginProgram, MaxEntProgram  # noqa: E402
from fairl_opt.solvers import get_backend  # noqa: E402

#: Rows generated per chunk when writing Δ (64 MiB of float32 at d = 1024).
WRITE_ROWS = 16384


def write_delta(path: Path, n: int, d: int, seed: int = 0, gap: float = 0.5, noise: float = 0.002) -> Path:
    """Write the planted float32 Δ (n × d) to ``path`` chunk by chunk (skipped when it exists with
    that shape); returns the path. Rows z ~ N(0, I) get their component t = z·θ* along a unit θ*
    moved to sign(t)(gap + |t|) and are oriented so that it is positive (chosen ≻ rejected along θ*
    by a margin ``gap``); a fraction ``noise`` is flipped (preferences against θ*)."""
    if path.exists():
        old = np.load(path, mmap_mode="r")
        if old.shape == (n, d) and old.dtype == np.float32:
            return path
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=d)
    theta /= np.linalg.norm(theta)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for i in range(0, n, WRITE_ROWS):
        j = min(i + WRITE_ROWS, n)
        z = rng.standard_normal(size=(j - i, d), dtype=np.float32)
        t = z @ theta
        z += np.outer(np.sign(t) * (gap + np.abs(t)) - t, theta).astype(np.float32)
        z *= np.where(rng.random(j - i) < noise, -1.0, 1.0).astype(np.float32)[:, None] * np.sign(t)[:, None]
        out[i:j] = z
    out.flush()
    del out
    return path


class AnonPeak:
    """Peak anonymous RSS (RssAnon of /proc/self/status, bytes), sampled in a thread while active."""

    def __init__(self, every: float = 0.1):
        self.every, self.peak, self._stop = every, 0, threading.Event()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def __enter__(self):
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def programs(delta):
    """(name, program, backend) for the two programs of the benchmark."""
    return [("maxent", MaxEntProgram(delta, reg=1.0), "lbfgs"),
            ("mm-qp", MarginProgram(delta, C=1.0), "working-set")]


def solve_one(name, program, backend) -> dict:
    """Solve and certify ``program``; wall time, status, passes over Δ, diagnostics, memory."""
    rows = program.delta_rows
    passes0 = rows.passes
    with AnonPeak() as anon:
        start = time.perf_counter()
        solution = get_backend(backend, program).solve(program)
        seconds = time.perf_counter() - start
    cert = solution.certificate
    return {"program": name, "seconds": seconds, "status": str(cert.status), "relative_gap": cert.relative_gap,
            "objective": cert.primal_objective, "passes": rows.passes - passes0,
            "diagnostics": solution.diagnostics, "peak_anon_gib": anon.peak / 2**30,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def run_memmap(path: Path, only=None) -> list[dict]:
    """Both programs on the memory-mapped Δ at ``path``."""
    delta = np.load(path, mmap_mode="r")
    out = []
    with AnonPeak() as anon:
        start = time.perf_counter()
        checked = MaxEntProgram(delta, reg=1.0)  # the validation pass (finite rows, row sizes)
        check_seconds = time.perf_counter() - start
    print(f"  validation pass {check_seconds:.1f}s, peak anon {anon.peak / 2**30:.2f} GiB")
    for name, program, backend in programs(checked.delta):
        if only and name not in only:
            continue
        row = solve_one(name, program, backend)
        out.append(row)
        print(f"  {name:<7} {row['seconds']:7.1f}s {row['status']} gap {row['relative_gap']:.1e}, "
              f"{row['passes']} passes over Δ ({row['seconds'] / max(row['passes'], 1):.2f} s each), peak anon "
              f"{row['peak_anon_gib']:.2f} GiB, peak RSS {row['peak_rss_gib']:.2f} GiB; {row['diagnostics']}",
              flush=True)
    return out


def run_dask(path: Path, workers: int, only=None) -> list[dict]:
    """Both programs with Δ as a Dask array over ``path`` on a LocalCluster of ``workers``."""
    import distributed

    from fairl_opt.programs.dask_rows import from_npy

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        delta = from_npy(path)
        start = time.perf_counter()
        checked = MaxEntProgram(delta, reg=1.0)  # persist on the workers + the validation pass
        print(f"  {workers} worker(s): load + validation {time.perf_counter() - start:.1f}s, "
              f"{len(checked.delta.bounds)} blocks", flush=True)
        out = []
        for name, program, backend in programs(checked.delta):
            if only and name not in only:
                continue
            row = solve_one(name, program, backend)
            row["workers"] = workers
            out.append(row)
            print(f"    {name:<7} {row['seconds']:7.1f}s {row['status']} gap {row['relative_gap']:.1e}, "
                  f"{row['passes']} passes", flush=True)
    return out


def run_in_memory(path: Path, only=None) -> dict:
    """Both programs on ``path`` loaded into RAM as float32 and as a float64 copy; {program: {dtype: row}}."""
    stored = np.load(path)
    out = {}
    for dtype in ("float32", "float64"):
        delta = stored if dtype == "float32" else stored.astype(np.float64)
        for name, program, backend in programs(delta):
            if only and name not in only:
                continue
            row = solve_one(name, program, backend)
            out.setdefault(name, {})[dtype] = row
            print(f"  {name:<7} {dtype} {row['seconds']:6.2f}s {row['status']} gap {row['relative_gap']:.1e}, "
                  f"objective {row['objective']:.12g}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="pairs (default 1,000,000; --dask 200,000)")
    parser.add_argument("--d", type=int, default=None, help="features (default 1024; --dask 576)")
    parser.add_argument("--dir", default="/tmp", help="where the .npy is written")
    parser.add_argument("--dask", action="store_true", help="1 vs 2 LocalCluster workers instead")
    parser.add_argument("--in-memory", action="store_true", help="float32 vs its float64 copy, in RAM")
    parser.add_argument("--only", default=None, help="comma-separated programs (maxent, mm-qp)")
    args = parser.parse_args(argv)
    n = args.n or (200_000 if args.dask else 100_000 if args.in_memory else 1_000_000)
    d = args.d or (576 if args.dask or args.in_memory else 1024)
    only = set(args.only.split(",")) if args.only else None
    print(f"{date.today()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, OMP={os.environ['OMP_NUM_THREADS']}; load {os.getloadavg()[0]:.2f}")
    path = Path(args.dir) / f"out_of_core-{n}-{d}.npy"
    start = time.perf_counter()
    write_delta(path, n, d)
    print(f"Δ: {path} ({n} x {d} float32, {path.stat().st_size / 2**30:.2f} GiB) ready in "
          f"{time.perf_counter() - start:.0f}s", flush=True)
    if args.in_memory:
        for name, rows in run_in_memory(path, only).items():
            print(f"  {name}: float32 {rows['float32']['seconds']:.2f}s, float64 copy {rows['float64']['seconds']:.2f}s, "
                  f"ratio {rows['float32']['seconds'] / rows['float64']['seconds']:.2f}")
    elif not args.dask:
        run_memmap(path, only)
    else:
        timings = {w: {r["program"]: r["seconds"] for r in run_dask(path, w, only)} for w in (1, 2)}
        for name in timings[1]:
            print(f"  {name}: 1 worker {timings[1][name]:.1f}s, 2 workers {timings[2][name]:.1f}s, "
                  f"speed-up {timings[1][name] / timings[2][name]:.2f}x")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
