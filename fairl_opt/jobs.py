"""Resumable, verified chunk jobs: a cache directory with one file per finished chunk, each followed
by a checksum record ``<chunk>.meta``, a progress line on stderr, and a runner that shards chunks over
local processes. :mod:`fairl_opt.lm` runs its embedding and sampling jobs through it.

A chunk is trusted only after it verifies against its record (shape, dtype and sha256 of the array
bytes, or sha256 of the JSON text) and its expected size; one that does not is reported on stderr and
recomputed. A chunk without a record is unfinished.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from fairl_opt.exceptions import DataError




class Progress:
    """A one-line progress report on stderr, at most every ``every`` seconds (and at the end).

    ``resumed`` units were already done (served from a cache) when the count started: the rate and
    the ETA count only the units computed since, so a resumed run reports its real speed.
    """

    def __init__(self, label: str, total: int, unit: str, stream=None, every: float = 5.0, resumed: int = 0):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.last = -np.inf
        self.done = resumed
        self.resumed = resumed

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.perf_counter()
        if not force and now - self.last < self.every and done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        fresh = max(done - self.resumed, 0)
        pct = 100.0 * done / self.total if self.total else 100.0
        if fresh == 0:
            speed = "all cached" if done >= self.total else f"0 computed so far, {self.resumed} cached"
            eta_s = "0.0 min" if done >= self.total else "?"
        else:
            rate = fresh / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - done) / rate
            speed = f"{rate:.2f} {self.unit}/s"
            if self.resumed:
                speed += f" over {fresh} computed ({self.resumed} cached)"
            eta_s = f"{eta / 60:.1f} min"
        print(f"{self.label}: {done}/{self.total} {self.unit} ({pct:.1f}%), {speed}, eta {eta_s}",
              file=self.stream, flush=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
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
    return path.with_name(path.name + ".meta")


def write_record(path: Path, **fields) -> None:
    """The checksum record of the chunk at ``path``, written (atomically) after the chunk itself: a
    chunk without a record is unfinished and is recomputed."""
    record = {"format": CHUNK_RECORD, "file": path.name, **fields}
    atomic_write_bytes(record_path(path), (json.dumps(record, sort_keys=True) + "\n").encode())


class ChunkError(Exception):
    """A cached chunk that fails verification; the message is the reason."""


def read_record(path: Path) -> dict:
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
    print(f"cache: chunk {path} failed verification ({reason}); recomputing", file=sys.stderr, flush=True)
    for p in (record_path(path), path):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def array_sha256(arr: np.ndarray) -> str:
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
    import threading

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
