"""Δ as a row-chunked Dask array: the blocks stay on the workers, each pass is one task per block.

:class:`DaskRows` is the Dask implementation of :class:`~fairl_opt.programs.blocks.RowBlocks`. The
array is rechunked to whole rows (one chunk across the features) and persisted once, so with a
``distributed`` client every block lives in a worker's memory and each pass sends the worker only
the small arguments (θ, the block's slice of an n-vector) and brings back the block's small result
(its slice of Δθ, a d-vector, a d×d matrix); the driver reduces them. Without a distributed client
the same graph runs on Dask's default (threaded) scheduler. Chunks may be uneven.
"""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.programs.blocks import RowBlocks, _take, prepare_block


def _apply(fn, block, row_exp, raw, *args):
    """``fn`` on a block as the kernels see it (float64, divided by 2^row_exp; see
    :func:`~fairl_opt.programs.blocks.prepare_block`)."""
    return fn(prepare_block(block, row_exp, raw), *args)


def _apply_scan(fn, block, row_exp, state, *args):
    """One step of a sequential fold: ``fn(block, state, *args)`` → (state, out)."""
    return fn(prepare_block(block, row_exp), state, *args)


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


class DaskRows(RowBlocks):
    """A 2-D Dask array Δ (float32 or float64) behind :class:`RowBlocks`.

    Parameters
    ----------
    array : dask.array.Array
        Chunked along rows in any (even uneven) chunks; chunks along the features are merged.
    persist : bool
        Persist the blocks (on the workers of the current distributed client, if any) so that
        passes do not recompute them (default True).
    """

    kind = "dask"

    def __init__(self, array, persist: bool = True, row_exp: int = 0, counter=None, _blocks=None):
        if array.ndim != 2:
            raise DataError(f"delta must be a non-empty 2-D array (pairs x features), got shape {array.shape}")
        if any(np.isnan(c) for c in array.shape):
            raise DataError("delta: a Dask delta must have known chunk sizes (call compute_chunk_sizes())")
        super().__init__(array.shape, array.dtype, row_exp, counter)
        if _blocks is None:
            if len(array.chunks[1]) > 1:
                array = array.rechunk({1: -1})
            if persist:
                array = array.persist()
            _blocks = (array, list(array.to_delayed().ravel()))
        self.array, self._delayed = _blocks
        edges = np.concatenate([[0], np.cumsum(self.array.chunks[0])]).astype(int)
        self._bounds = [(int(i), int(j)) for i, j in zip(edges[:-1], edges[1:])]

    @property
    def bounds(self):
        return self._bounds

    def _view(self, row_exp):
        return DaskRows(self.array, row_exp=row_exp, counter=self._counter, _blocks=(self.array, self._delayed))

    def _map(self, fn, row_args, shared, raw=False):
        import dask

        tasks = [
            dask.delayed(_apply, pure=False)(fn, block, self.row_exp, raw, *self._slices(row_args, i, j), *shared)
            for block, (i, j) in zip(self._delayed, self._bounds)
        ]
        return list(dask.compute(*tasks))

    def _scan(self, fn, state, row_args, shared):
        import dask

        outs = []
        current = state
        for block, (i, j) in zip(self._delayed, self._bounds):
            step = dask.delayed(_apply_scan, pure=False)(fn, block, self.row_exp, current,
                                                         *self._slices(row_args, i, j), *shared)
            current = dask.delayed(_first, pure=False)(step)
            outs.append(dask.delayed(_second, pure=False)(step))
        final, outs = dask.compute(current, outs)
        return final, list(outs)

    def _take_blocks(self, blocks, locals_):
        import dask

        tasks = [dask.delayed(_apply, pure=False)(_take, self._delayed[k], self.row_exp, True, local)
                 for k, local in zip(blocks, locals_)]
        return list(dask.compute(*tasks))


#: Default chunk of :func:`from_npy` and :func:`distribute`: about this many stored bytes per block.
CHUNK_BYTES = 64 * 2**20


def _chunk_rows(n: int, d: int, itemsize: int, chunk_rows: int | None) -> int:
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // max(1, d * itemsize))
    return int(max(1, min(chunk_rows, n)))


def _load_rows(path: str, start: int, stop: int) -> np.ndarray:
    """Rows start:stop of the .npy at ``path``, read (memory-mapped) by the worker that runs this."""
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def from_npy(path, chunk_rows: int | None = None):
    """A row-chunked Dask array over the ``.npy`` at ``path`` whose chunks the workers read from
    the file themselves (the driver reads only its header): every worker must see ``path``
    (one machine, or a shared file system)."""
    import dask
    import dask.array as da

    path = str(path)
    header = np.load(path, mmap_mode="r")
    if header.ndim != 2:
        raise DataError(f"{path}: delta must be a 2-D array (pairs x features), got shape {header.shape}")
    n, d = header.shape
    rows = _chunk_rows(n, d, header.dtype.itemsize, chunk_rows)
    parts = [da.from_delayed(dask.delayed(_load_rows, pure=True)(path, i, min(i + rows, n)),
                             shape=(min(i + rows, n) - i, d), dtype=header.dtype)
             for i in range(0, n, rows)]
    return da.concatenate(parts, axis=0)


def distribute(delta, chunk_rows: int | None = None):
    """``delta`` as a row-chunked Dask array: a memory-mapped ``.npy`` through :func:`from_npy`
    (the workers read it), an in-memory array sent to the workers chunk by chunk, a Dask array
    as it is."""
    import dask.array as da

    if isinstance(delta, np.memmap) and delta.filename is not None and delta.offset is not None:
        whole = np.load(delta.filename, mmap_mode="r")
        if whole.shape == delta.shape and whole.dtype == delta.dtype:
            return from_npy(delta.filename, chunk_rows)
    if isinstance(delta, np.memmap):
        raise DataError("delta: a memory-mapped delta goes to the workers as its whole .npy file (they read it); "
                        "this one is a part of a file: pass np.load(path, mmap_mode='r') itself")
    if type(delta).__module__.startswith("dask.array"):
        return delta
    delta = np.asarray(delta)
    rows = _chunk_rows(delta.shape[0], delta.shape[1], delta.dtype.itemsize, chunk_rows)
    return da.from_array(delta, chunks=(rows, delta.shape[1]))


__all__ = ["CHUNK_BYTES", "DaskRows", "distribute", "from_npy"]
