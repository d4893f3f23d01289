"""Resumable, verified chunk jobs: a cache directory with one file per finished chunk, each followed
by a checksum record ``<chunk>.meta``, a progress line on stderr, and one runner (:func:`run_chunks`)
that computes the missing chunks in local processes or on the workers of a Dask cluster.
:mod:`fairl_opt.lm` runs its embedding and sampling jobs through it.

A chunk is trusted only after it verifies against its record (shape, dtype and sha256 of the array
bytes, or sha256 of the JSON text) and its expected size; one that does not is reported on stderr and
recomputed. A chunk without a record is unfinished.

A job is a :class:`ChunkWork`: ``setup(resource)`` (load a model) once per worker process, then
``compute(state, payload)`` for each chunk; chunk ``c``'s result depends on its payload alone, so
results do not depend on how many workers share the chunks or on where they run. Local processes
write their chunks to the cache themselves; on a Dask cluster each worker keeps its state in a
per-process memo (loaded on its first chunk, reused for the next ones and the next runs) and returns
each result to the driver, which writes it to the cache — so the cache needs no filesystem shared
with the workers, and an interrupted run keeps every chunk that reached the driver.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fairl_opt.exceptions import DataError

log = logging.getLogger(__name__)


class Progress:
    """A tqdm progress bar on stderr (:func:`fairl_opt._progress.progress_bar`) fed absolute counts.

    ``resumed`` units were already done (served from a cache) when the count started: they are the
    bar's initial count, so the rate and the ETA count only the units computed since and a resumed
    run reports its real speed. Messages for the same stream go to :attr:`stream`. When the bar
    does not draw (stderr is not a terminal) one summary line is printed at the end instead, e.g.
    ``embed [smollm2]: 10/10 texts, 7 computed at 3.20 texts/s (3 cached), 2.2 s`` (or ``all cached``).
    """

    def __init__(self, label: str, total: int, unit: str, stream=None, resumed: int = 0):
        from fairl_opt._progress import progress_bar

        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = resumed
        self.resumed = resumed
        self.bar = progress_bar(total, label, unit, initial=resumed)
        self.start = time.perf_counter()

    def update(self, done: int, force: bool = False) -> None:
        """Move the bar to ``done`` units; ``force`` (the end) closes it."""
        step = done - self.bar.n
        if step > 0:
            self.bar.update(step)
        self.done = done
        if (force or done >= self.total) and not self.closed:
            self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return getattr(self, "_closed", False)

    def close(self) -> None:
        """Close the bar; without a drawn bar (and without ``--quiet``), print the summary line."""
        from fairl_opt import _progress

        self._closed = True
        drawn = not self.bar.disable
        self.bar.close()
        if drawn or _progress.is_quiet():
            return
        seconds = time.perf_counter() - self.start
        fresh = max(self.done - self.resumed, 0)
        head = f"{self.label}: {self.done}/{self.total} {self.unit}"
        if fresh == 0:
            tail = "all cached" if self.done >= self.total else f"0 computed, {self.resumed} cached"
        else:
            tail = f"{fresh} computed at {fresh / max(seconds, 1e-9):.2f} {self.unit}/s"
            tail += f" ({self.resumed} cached), {seconds:.1f} s" if self.resumed else f", {seconds:.1f} s"
        print(f"{head}, {tail}", file=self.stream, flush=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def open_cache(cache_dir, prefix: str):
    """(cache directory, TemporaryDirectory or None): ``cache_dir`` created, or a temporary one."""
    import tempfile

    tmp = None
    if cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        cache_dir = tmp.name
    cache = Path(cache_dir)
    if cache.exists() and not cache.is_dir():
        raise DataError(f"cache directory {cache} exists and is not a directory")
    cache.mkdir(parents=True, exist_ok=True)
    return cache, tmp


def chunk_key(*parts) -> str:
    """16 hex digits of sha256 over the JSON of ``parts`` (keys sorted, NUL-separated)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


#: Format tag of a chunk's checksum record ``<chunk file>.meta`` (JSON).
CHUNK_RECORD = "fairl chunk v1"


def record_path(path: Path) -> Path:
    """The checksum record ``<chunk file>.meta`` of the chunk at ``path``."""
    return path.with_name(path.name + ".meta")


def write_record(path: Path, **fields) -> None:
    """The checksum record of the chunk at ``path``, written (atomically) after the chunk itself: a
    chunk without a record is unfinished and is recomputed."""
    record = {"format": CHUNK_RECORD, "file": path.name, **fields}
    atomic_write_bytes(record_path(path), (json.dumps(record, sort_keys=True) + "\n").encode())


class ChunkError(Exception):
    """A cached chunk that fails verification; the message is the reason."""


def read_record(path: Path) -> dict:
    """The checksum record of the chunk at ``path``, checked for its format; :class:`ChunkError` if not."""
    rec_path = record_path(path)
    if not rec_path.exists():
        raise ChunkError(f"no checksum record {rec_path.name}: unfinished or written by an older version")
    try:
        record = json.loads(rec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChunkError(f"checksum record {rec_path.name} is unreadable: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != CHUNK_RECORD or record.get("file") != path.name:
        raise ChunkError(f"checksum record {rec_path.name} is not a {CHUNK_RECORD!r} record for {path.name}")
    if not isinstance(record.get("sha256"), str):
        raise ChunkError(f"checksum record {rec_path.name} has no sha256")
    return record


def drop_chunk(path: Path, reason: str) -> None:
    """Report a chunk that failed verification (always, on stderr) and remove it and its record."""
    log.warning(f"cache: chunk {path} failed verification ({reason}); recomputing")
    for p in (record_path(path), path):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def array_sha256(arr: np.ndarray) -> str:
    """sha256 of the C-contiguous bytes of ``arr``."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def save_npy(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` (.npy, no pickle), then its checksum record (shape, dtype, sha256 of
    the array bytes), both atomically."""
    from io import BytesIO

    arr = np.ascontiguousarray(arr)
    buf = BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    write_record(path, kind="array", shape=list(arr.shape), dtype=arr.dtype.str, sha256=array_sha256(arr))


def load_npy(path: Path, rows: int, dim: int | None = None) -> np.ndarray:
    """The verified array of chunk ``path``: it must match its record (shape, dtype, sha256), have
    ``rows`` rows (and ``dim`` columns when given) and be finite. Raises :class:`ChunkError`."""
    if not path.exists():
        raise ChunkError("missing")
    record = read_record(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # a truncated or mangled .npy: ValueError, EOFError, OSError...
        raise ChunkError(f"unreadable .npy: {type(exc).__name__}: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise ChunkError(f"holds an array of shape {getattr(arr, 'shape', '?')}, expected 2-d")
    if list(arr.shape) != record.get("shape") or arr.dtype.str != record.get("dtype"):
        raise ChunkError(f"holds {arr.dtype.str} {tuple(arr.shape)}, its record says "
                         f"{record.get('dtype')} {tuple(record.get('shape') or ())}")
    if arr.shape[0] != rows or (dim is not None and arr.shape[1] != dim):
        want = f"({rows}, {dim})" if dim is not None else f"{rows} rows"
        raise ChunkError(f"shape {tuple(arr.shape)}, expected {want}")
    if arr.dtype != np.float32:
        raise ChunkError(f"dtype {arr.dtype}, expected float32")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise ChunkError(f"non-finite values in row {int(np.flatnonzero(~finite)[0])}")
    if array_sha256(arr) != record["sha256"]:
        raise ChunkError("sha256 of the array bytes does not match its record")
    return arr


def save_json(path: Path, obj, **fields) -> None:
    """Write ``obj`` as JSON to ``path``, then its checksum record (sha256 of the JSON text)."""
    data = json.dumps(obj).encode()
    atomic_write_bytes(path, data)
    write_record(path, kind="json", sha256=hashlib.sha256(data).hexdigest(), **fields)


def load_samples(path: Path, n_prompts: int, n_samples: int) -> list[list[str]]:
    """The verified samples of generation chunk ``path``: sha256 as recorded, ``n_prompts`` lists of
    ``n_samples`` strings. Raises :class:`ChunkError`."""
    if not path.exists():
        raise ChunkError("missing")
    record = read_record(path)
    try:
        data = path.read_bytes()
        texts = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChunkError(f"not valid JSON: {exc}") from None
    if not isinstance(texts, list) or len(texts) != n_prompts:
        got = f"{len(texts)} prompts" if isinstance(texts, list) else type(texts).__name__
        raise ChunkError(f"holds {got}, expected {n_prompts} prompts")
    for i, row in enumerate(texts):
        if not isinstance(row, list) or len(row) != n_samples or not all(isinstance(t, str) for t in row):
            got = f"{len(row)} entries" if isinstance(row, list) else type(row).__name__
            raise ChunkError(f"prompt {i} has {got}, expected {n_samples} sample strings")
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ChunkError("sha256 of the JSON text does not match its record")
    return texts


def verified_chunks(paths, load) -> tuple[dict, list[int]]:
    """({chunk index: value} of the cached chunks that verify, [indices to compute]); each cached
    chunk that fails verification is reported on stderr and removed."""
    good, todo = {}, []
    for c, path in enumerate(paths):
        try:
            good[c] = load(c)
        except ChunkError as exc:
            if path.exists() or record_path(path).exists():
                drop_chunk(path, str(exc))
            todo.append(c)
    return good, todo


def load_fresh(paths, todo, load) -> dict:
    """The chunks just computed, verified (a failure now is an error, not a cache problem)."""
    out = {}
    for c in todo:
        try:
            out[c] = load(c)
        except ChunkError as exc:
            raise DataError(f"cache: chunk {paths[c]} failed verification right after it was written "
                            f"({exc}); is another process writing to the same cache?") from None
    return out


def run_sharded(worker_fn, jobs, poll) -> None:
    """Run ``worker_fn`` over ``jobs`` (one process each when more than one), calling ``poll`` every 5 s."""
    if len(jobs) == 1:
        stop = threading.Event()

        def loop():
            while not stop.wait(5.0):
                poll()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            worker_fn(jobs[0])
        finally:
            stop.set()
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        pending = pool.map_async(worker_fn, jobs)
        while not pending.ready():
            pending.wait(5.0)
            poll()
        pending.get()


# ----------------------------------------------------------------------------------------------
# one runner, two executors


@dataclass(frozen=True)
class ChunkWork:
    """What computing one chunk takes, in a form that pickles to another process or machine.

    Attributes
    ----------
    setup : callable
        A module-level function, ``setup(resource) -> state`` (e.g. load a tokenizer and a model);
        run once per worker process.
    resource : hashable
        Its argument; with ``setup`` it keys the per-worker memo on a Dask cluster, so keep it
        small and hashable (a frozen dataclass).
    compute : callable
        ``compute(state, payload) -> value``, a module-level function or a ``functools.partial``
        of one; ``value`` is what ``save`` writes.
    """

    setup: Callable
    resource: Any
    compute: Callable


def _local_worker(args):
    """One local process: set up once, then compute and save its chunks (strided share)."""
    work, save, items = args
    if items:
        state = work.setup(work.resource)
        for c, payload in items:
            save(c, work.compute(state, payload))
    return len(items)


def run_chunks(work: ChunkWork, payloads: dict, save, *, workers: int = 1, client=None, poll=None,
               on_saved=None) -> None:
    """Compute the chunks of ``payloads`` ({chunk index: payload}) and ``save(c, value)`` each.

    Parameters
    ----------
    work : ChunkWork
        How a chunk is computed.
    payloads : dict
        The chunks to compute; each worker gets only its own chunks' payloads.
    save : callable
        ``save(c, value)`` writes chunk ``c`` and its record to the cache. It must pickle (a
        ``functools.partial`` of a module-level function): local processes call it themselves; with
        a Dask ``client`` the driver calls it as each result arrives.
    workers : int
        Local processes (one thread each); 1 runs in this process. Ignored with ``client``.
    client : distributed.Client, optional
        Run the chunks on this Dask cluster instead (:func:`fairl_opt.cluster.run_on_workers`).
    poll : callable, optional
        Called every 5 s while local processes run (a progress bar reading the cache).
    on_saved : callable, optional
        ``on_saved(c)`` after the driver saved chunk ``c`` (Dask only).
    """
    todo = sorted(payloads)
    if not todo:
        return
    if client is not None:
        from fairl_opt.cluster import run_on_workers

        run_on_workers(client, work, payloads, save, on_saved)
        return
    n = min(workers, len(todo))
    shares = [(work, save, [(c, payloads[c]) for c in todo[w::n]]) for w in range(n)]
    run_sharded(_local_worker, shares, poll if poll is not None else (lambda: None))
