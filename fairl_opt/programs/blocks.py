"""Δ as row blocks: the one seam through which programs, solvers and certificates pass over the rows.

A program's ``delta`` is either a plain in-memory ndarray (used as it always was) or a
:class:`RowBlocks`: a memory-mapped ``.npy`` (:class:`StreamedRows`, read block by block, never
whole) or a row-chunked Dask array (:class:`~fairl_opt.programs.dask_rows.DaskRows`, blocks
persisted on the workers). Every pass over Δ is a map over row blocks followed by a reduction in
the driver: :meth:`RowBlocks.map` applies a module-level function ``fn(block, *row_slices,
*shared)`` to each block (upcast to float64 and divided by the block set's power of two) and
returns the per-block results in row order; the operations the toolkit needs (Δx, Δᵀy, |Δ||x|,
per-row norms, Σ c_i Δ_iᵀΔ_i, the rows of a working set) are written once on top of it. The
driver only ever holds n-vectors, d-vectors, d×d matrices and the rows it asks for.

:func:`as_rows` wraps any Δ in this interface; for an in-memory ndarray it is
:class:`InMemoryRows`, whose operations are the whole-array numpy expressions the code used before
(no copy, no slowdown), so :func:`fairl_opt.solvers.certificate.certify` and the scaling code run
one path for every kind of Δ. A :class:`RowBlocks` refuses ``np.asarray`` (loading Δ into RAM is
never silent); take rows with ``delta[rows]``.
"""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError

#: Target size of one streamed block of a memory-mapped Δ, in float64 bytes.
STREAM_BLOCK_BYTES = 8 * 2**20
#: Products in extended precision (80-bit on x86) go in blocks of at most this many elements.
EXTENDED_BLOCK_ELEMENTS = 1 << 18
EXTENDED = np.longdouble


# -- per-block kernels (module level: they travel to Dask workers by reference) --------------------
def _matvec(block, x):
    return block @ x


def _matvec_extended(block, x):
    return block.astype(EXTENDED) @ x


def _rmatvec(block, y, extended=False):
    if extended:
        return block.astype(EXTENDED).T @ y
    return block.T @ y


def _abs_matvec(block, x):
    return np.abs(block) @ x


def _abs_rmatvec(block, y):
    return np.abs(block).T @ y


def _row_sq_norms(block):
    return np.einsum("ij,ij->i", block, block, dtype=np.float64)


def _weighted_gram(block, c):
    return (block.T * c) @ block


def _check_block(block):
    """(index of the first row with NaN/inf in this block or -1, each row's largest |Δ_ij|)."""
    finite = np.isfinite(block).all(axis=1)
    bad = -1 if finite.all() else int(np.flatnonzero(~finite)[0])
    return bad, np.abs(block).max(axis=1)


def _take(block, local):
    return block[local]


def prepare_block(block, row_exp: int, raw: bool = False) -> np.ndarray:
    """A stored block as the kernels see it: Δ_block / 2^row_exp, in float64 (``raw``: in the
    stored dtype, as ``delta[rows]`` of an in-memory Δ would give). Exact: float32 → float64 and
    powers of two lose nothing away from overflow and subnormals."""
    block = np.asarray(block)
    if raw:
        if row_exp == 0:
            return block
        with np.errstate(under="ignore"):
            return np.ldexp(block, -row_exp).astype(block.dtype, copy=False)
    out = block.astype(np.float64, copy=False)
    if row_exp:
        with np.errstate(under="ignore"):
            out = np.ldexp(out, -row_exp)
    return out


class _Transposed:
    """``delta.T`` of a :class:`RowBlocks`: supports ``delta.T @ y`` (Δᵀy by blocks) only."""

    def __init__(self, rows: RowBlocks):
        self.rows = rows

    def __matmul__(self, y):
        return self.rows.rmatvec(y)


class RowBlocks:
    """Δ (n × d) behind row blocks; subclasses provide :meth:`_map`, :meth:`_scan` and storage.

    Supports ``delta @ x`` (Δx), ``delta.T @ y`` (Δᵀy), ``delta[rows]`` (those rows as an
    in-memory ndarray in the stored dtype), ``shape``, ``ndim``, ``dtype``. ``passes`` counts the
    full passes over Δ made through this object (and the views :meth:`scaled` made of it).
    """

    #: Short name of the storage, for messages ("memory-mapped", "dask").
    kind = "blocked"
    ndim = 2

    def __init__(self, shape, dtype, row_exp: int = 0, counter=None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.row_exp = int(row_exp)
        self._counter = counter if counter is not None else {"passes": 0, "takes": 0}
        self._row_abs_max = None

    # -- what a subclass provides ----------------------------------------------------------------
    def _map(self, fn, row_args, shared, raw=False) -> list:  # pragma: no cover - interface
        raise NotImplementedError

    def _scan(self, fn, state, row_args, shared) -> tuple:  # pragma: no cover - interface
        raise NotImplementedError

    def _view(self, row_exp: int) -> RowBlocks:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def bounds(self) -> list[tuple[int, int]]:  # pragma: no cover - interface
        """The (start, stop) rows of each block, in order."""
        raise NotImplementedError

    # -- the generic map-reduce --------------------------------------------------------------------
    @property
    def passes(self) -> int:
        """Full passes over Δ so far (shared with the scaled views of the same storage)."""
        return self._counter["passes"]

    def map(self, fn, *row_args, shared=(), raw=False) -> list:
        """``[fn(block_k, *(a[i_k:j_k] for a in row_args), *shared) for each block k]``, in row
        order; one pass over Δ. ``None`` in ``row_args`` is passed as None to every block."""
        self._counter["passes"] += 1
        return self._map(fn, row_args, tuple(shared), raw)

    def scan(self, fn, state, *row_args, shared=()) -> tuple:
        """A sequential fold over the blocks in row order: ``state, out_k = fn(block_k, state,
        *row_slices, *shared)``; returns ``(final state, [out_k])``. One pass over Δ."""
        self._counter["passes"] += 1
        return self._scan(fn, state, row_args, tuple(shared))

    def _slices(self, args, i, j):
        return [None if a is None else a[i:j] for a in args]

    # -- operations ----------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return self.shape[0]

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def T(self) -> _Transposed:
        return _Transposed(self)

    def __matmul__(self, x):
        return self.matvec(x)

    def __array__(self, *args, **kwargs):
        raise DataError(
            f"delta is a {self.kind} array of {self.shape[0]} x {self.shape[1]} {self.dtype} rows and is "
            "never loaded into memory silently: use an operation of fairl_opt.programs.blocks.RowBlocks, "
            "or delta[rows] for the rows you need"
        )

    def matvec(self, x, extended: bool = False) -> np.ndarray:
        """Δx (float64, or extended precision with ``extended``)."""
        x = np.asarray(x, dtype=EXTENDED if extended else np.float64)
        return np.concatenate(self.map(_matvec_extended if extended else _matvec, shared=(x,)))

    def rmatvec(self, y, extended: bool = False) -> np.ndarray:
        """Δᵀy (float64, or extended precision with ``extended``)."""
        y = np.asarray(y, dtype=EXTENDED if extended else np.float64)
        return np.sum(self.map(_rmatvec, y, shared=(extended,)), axis=0)

    def abs_matvec(self, x) -> np.ndarray:
        """|Δ| x (entrywise absolute values): the size of each Δ_i x for rounding bounds."""
        return np.concatenate(self.map(_abs_matvec, shared=(np.asarray(x, dtype=np.float64),)))

    def abs_rmatvec(self, y) -> np.ndarray:
        """|Δ|ᵀ y."""
        return np.sum(self.map(_abs_rmatvec, np.asarray(y, dtype=np.float64)), axis=0)

    def row_sq_norms(self) -> np.ndarray:
        """‖Δ_i‖² for every row (float64)."""
        return np.concatenate(self.map(_row_sq_norms))

    def weighted_gram(self, c) -> np.ndarray:
        """Σ c_i Δ_iᵀΔ_i (d × d)."""
        return np.sum(self.map(_weighted_gram, np.asarray(c, dtype=np.float64)), axis=0)

    def validate(self) -> RowBlocks:
        """One pass: every row finite (else a DataError naming the pair) and each row's largest
        |Δ_ij| kept for :meth:`row_abs_max`. Done once per storage; returns self."""
        if self._row_abs_max is not None:
            return self
        if self.dtype not in (np.float32, np.float64):
            raise DataError(f"delta: a {self.kind} delta must be float32 or float64, got {self.dtype}")
        if 0 in self.shape:
            raise DataError(f"delta must be a non-empty 2-D array (pairs x features), got shape {self.shape}")
        found = self.map(_check_block)
        for (i, _), (bad, _) in zip(self.bounds, found):
            if bad >= 0:
                raise DataError(f"pair {i + bad}: delta has NaN/inf")
        self._row_abs_max = np.concatenate([m for _, m in found])
        return self

    def row_abs_max(self) -> np.ndarray:
        """max_j |Δ_ij| for every row (float64; from the validation pass)."""
        return self.validate()._row_abs_max

    def abs_max(self) -> float:
        """max_ij |Δ_ij|."""
        return float(self.row_abs_max().max())

    def scaled(self, exponent: int) -> RowBlocks:
        """Δ/2^exponent as a view of the same storage (exact; no copy, no pass)."""
        if exponent == 0:
            return self
        view = self._view(self.row_exp + int(exponent))
        if self._row_abs_max is not None:
            with np.errstate(under="ignore"):
                view._row_abs_max = np.ldexp(self._row_abs_max, -int(exponent))
        return view

    def __getitem__(self, rows) -> np.ndarray:
        """The rows ``rows`` (indices, a boolean mask or a slice) as an in-memory ndarray in the
        stored dtype (divided by the view's power of two), in the order asked for."""
        n = self.shape[0]
        if isinstance(rows, slice):
            idx = np.arange(n)[rows]
        else:
            idx = np.asarray(rows)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise DataError(f"delta[mask]: the mask must have one entry per row ({n}), got {idx.shape}")
                idx = np.flatnonzero(idx)
            idx = idx.astype(np.int64).ravel()
            idx = np.where(idx < 0, idx + n, idx)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise DataError(f"delta[rows]: row index out of range for {n} rows")
        order = np.argsort(idx, kind="stable")
        ordered = idx[order]
        self._counter["takes"] += 1
        locals_ = [ordered[(ordered >= i) & (ordered < j)] - i for i, j in self.bounds]
        wanted = [k for k, loc in enumerate(locals_) if loc.size]
        parts = self._take_blocks(wanted, [locals_[k] for k in wanted])
        out = np.empty((idx.size, self.shape[1]), dtype=self.dtype)
        if parts:
            out[order] = np.concatenate(parts)
        return out

    def _take_blocks(self, blocks, locals_) -> list:  # pragma: no cover - interface
        """The rows ``locals_[m]`` (local indices) of block ``blocks[m]``, stored dtype, for every m."""
        raise NotImplementedError


class StreamedRows(RowBlocks):
    """A memory-mapped (or any on-disk-backed) ndarray Δ read in row blocks of about
    :data:`STREAM_BLOCK_BYTES` through one reused float64 buffer: a pass reads Δ once from the
    page cache or the disk and never holds more than one block of it.

    Parameters
    ----------
    array : (n, d) ndarray, typically ``np.load(path, mmap_mode="r")`` (float32 or float64)
    block_rows : int, optional
        Rows per block (default: about 8 MiB of float64).
    """

    kind = "memory-mapped"

    def __init__(self, array, block_rows: int | None = None, row_exp: int = 0, counter=None):
        if array.ndim != 2:
            raise DataError(f"delta must be a non-empty 2-D array (pairs x features), got shape {array.shape}")
        super().__init__(array.shape, array.dtype, row_exp, counter)
        self.array = array
        n, d = self.shape
        if block_rows is None:
            block_rows = max(1, STREAM_BLOCK_BYTES // (8 * max(1, d)))
        self.block_rows = int(max(1, min(block_rows, max(1, n))))
        self._bounds = [(i, min(i + self.block_rows, n)) for i in range(0, n, self.block_rows)]
        self._buffer = None

    @property
    def bounds(self):
        return self._bounds

    def _view(self, row_exp):
        return StreamedRows(self.array, self.block_rows, row_exp, self._counter)

    def _blocks(self, raw=False):
        for i, j in self._bounds:
            stored = self.array[i:j]
            if raw:
                yield i, j, prepare_block(stored, self.row_exp, raw=True)
                continue
            if self.dtype != np.float64:
                if self._buffer is None:
                    self._buffer = np.empty((self.block_rows, self.shape[1]))
                block = self._buffer[: j - i]
                block[...] = stored  # exact float32 -> float64, no allocation per block
            else:
                block = np.asarray(stored)
            yield i, j, prepare_block(block, self.row_exp)

    def _map(self, fn, row_args, shared, raw=False):
        return [fn(block, *self._slices(row_args, i, j), *shared) for i, j, block in self._blocks(raw)]

    def _scan(self, fn, state, row_args, shared):
        outs = []
        for i, j, block in self._blocks():
            state, out = fn(block, state, *self._slices(row_args, i, j), *shared)
            outs.append(out)
        return state, outs

    def _take_blocks(self, blocks, locals_):
        out = []
        for k, local in zip(blocks, locals_):
            i = self._bounds[k][0]
            out.append(prepare_block(np.asarray(self.array[i + local]), self.row_exp, raw=True))
        return out


class InMemoryRows(RowBlocks):
    """An in-memory ndarray Δ behind the same interface: what :func:`as_rows` gives for a plain
    ndarray. A float64 Δ's operations are the whole-array numpy expressions (no copy). A float32
    Δ's products go through float64 row blocks as a memory-mapped Δ's do (a mixed-precision
    whole-array product copies Δ per call and leaves BLAS: 3-4x slower at 10^5 x 576)."""

    kind = "in-memory"

    def __init__(self, array: np.ndarray):
        super().__init__(array.shape, array.dtype)
        self.array = array
        self._streamed = None if array.dtype == np.float64 else StreamedRows(array, counter=self._counter)

    @property
    def bounds(self):
        return [(0, self.shape[0])] if self._streamed is None else self._streamed.bounds

    def _map(self, fn, row_args, shared, raw=False):
        if self._streamed is not None:
            return self._streamed._map(fn, row_args, shared, raw)
        return [fn(self.array, *row_args, *shared)]

    def _scan(self, fn, state, row_args, shared):
        state, out = fn(self.array, state, *row_args, *shared)
        return state, [out]

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype, copy=False)

    def __getitem__(self, rows):
        return self.array[rows]

    def matvec(self, x, extended=False):
        if self._streamed is not None and not extended:
            return super().matvec(x)
        if not extended:
            return self.array @ x
        x = np.asarray(x).astype(EXTENDED)
        out = np.empty(self.shape[0], dtype=EXTENDED)
        for start, block in self._extended_blocks():
            out[start:start + block.shape[0]] = block @ x
        return out

    def rmatvec(self, y, extended=False):
        if self._streamed is not None and not extended:
            return super().rmatvec(y)
        if not extended:
            return self.array.T @ y
        y = np.asarray(y).astype(EXTENDED)
        out = np.zeros(self.shape[1], dtype=EXTENDED)
        for start, block in self._extended_blocks():
            out += block.T @ y[start:start + block.shape[0]]
        return out

    def _extended_blocks(self):
        rows = max(1, EXTENDED_BLOCK_ELEMENTS // max(1, self.shape[1]))
        for start in range(0, self.shape[0], rows):
            yield start, self.array[start:start + rows].astype(EXTENDED)

    def abs_matvec(self, x):
        return super().abs_matvec(x) if self._streamed is not None else np.abs(self.array) @ x

    def abs_rmatvec(self, y):
        return super().abs_rmatvec(y) if self._streamed is not None else np.abs(self.array).T @ y

    def row_sq_norms(self):
        return np.einsum("ij,ij->i", self.array, self.array, dtype=np.float64)

    def weighted_gram(self, c):
        return super().weighted_gram(c) if self._streamed is not None else (self.array.T * c) @ self.array

    def row_abs_max(self):
        return np.abs(self.array).max(axis=1).astype(np.float64)

    def abs_max(self):
        return float(np.abs(self.array).max())

    def validate(self):
        return self


def _is_dask_array(value) -> bool:
    return type(value).__module__.startswith("dask.array") and hasattr(value, "chunks")


def to_blocks(delta) -> RowBlocks | None:
    """``delta`` as a validated :class:`RowBlocks` when it must not be loaded whole (a
    :class:`RowBlocks`, an ``np.memmap``, a Dask array); None for anything else (it is then
    validated as an in-memory array, as before)."""
    if isinstance(delta, RowBlocks) and not isinstance(delta, InMemoryRows):
        return delta.validate()
    if isinstance(delta, np.memmap):
        return StreamedRows(delta).validate()
    if _is_dask_array(delta):
        from fairl_opt.programs.dask_rows import DaskRows

        return DaskRows(delta).validate()
    return None


def is_blocked(delta) -> bool:
    """Whether ``delta`` is a :class:`RowBlocks` (memory-mapped or Dask), not an in-memory ndarray."""
    return isinstance(delta, RowBlocks) and not isinstance(delta, InMemoryRows)


def as_rows(delta) -> RowBlocks:
    """Any Δ behind the :class:`RowBlocks` interface: itself when blocked, else
    :class:`InMemoryRows` (a wrapper, no copy)."""
    if isinstance(delta, RowBlocks):
        return delta
    return InMemoryRows(np.asarray(delta))


__all__ = ["InMemoryRows", "RowBlocks", "StreamedRows", "as_rows", "is_blocked", "prepare_block", "to_blocks"]
