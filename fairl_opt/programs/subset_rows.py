"""A subset of a blocked Δ's rows as a blocked Δ of its own (:class:`SubsetRows`), without copying.

The failure-aware loop fits each out-of-fold program on the pairs outside one fold, and its
dual-path corrections on the tightened pairs. For an in-memory Δ, ``program.restrict(rows)`` cuts
those rows out (``delta[rows]``). For a memory-mapped or Dask Δ a cut of most rows would load most
of Δ into the driver, so :func:`subset_rows` returns a view instead. Each of its blocks is the
selected rows of one block of the parent. A pass over the view is one pass over the parent's
blocks, on the same workers, each task keeping only its selected rows before it computes. Its
results are the in-memory cut's to rounding, because each row goes through the same arithmetic.
The view shares the parent's pass counter, since every pass over it reads the parent's storage.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.programs.blocks import RowBlocks


def _expand(arg, rows, n):
    """A row argument of the subset (one entry per selected row) as one of the parent (n entries;
    the unselected rows' entries are never read)."""
    if arg is None:
        return None
    arg = np.asarray(arg)
    full = np.zeros((n,) + arg.shape[1:], dtype=arg.dtype)
    full[rows] = arg
    return full


def _on_subset(fn, count, block, keep, *rest):
    """``fn(block[keep], *(a[keep] for the count row arguments), *shared)``, rest = (*row
    arguments, *shared); module level (bound with functools.partial), so that it travels to Dask
    workers by reference."""
    args = [None if a is None else a[keep] for a in rest[:count]]
    return fn(block[keep], *args, *rest[count:])


def _on_subset_scan(fn, count, block, state, keep, *rest):
    """The :meth:`RowBlocks.scan` twin of :func:`_on_subset`."""
    args = [None if a is None else a[keep] for a in rest[:count]]
    return fn(block[keep], state, *args, *rest[count:])


class SubsetRows(RowBlocks):
    """The rows ``rows`` (strictly increasing) of the blocked Δ ``parent``, as a :class:`RowBlocks`.

    Block k of the view is the selected rows of the parent's block k (possibly none), so the
    view's blocks live where the parent's do. ``delta[rows]`` of the view takes the rows from the
    parent's storage.
    """

    def __init__(self, parent: RowBlocks, rows):
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = parent.shape[0]
        if rows.size == 0:
            raise DataError("a subset of the pairs must hold at least one pair")
        if rows.min() < 0 or rows.max() >= n:
            raise DataError(f"a subset of the pairs names a row outside 0 … {n - 1}")
        if np.any(np.diff(rows) <= 0):
            raise DataError("a subset of a blocked delta takes its rows in increasing order, each once")
        super().__init__((rows.size, parent.shape[1]), parent.dtype, parent.row_exp, parent._counter)
        self.parent, self.rows = parent, rows
        self.kind = parent.kind
        self._mask = np.zeros(n, dtype=bool)
        self._mask[rows] = True
        # the parent-local indices of the selected rows of each parent block, and the view's bounds
        self._locals, bounds, start = [], [], 0
        for i, j in parent.bounds:
            local = rows[(rows >= i) & (rows < j)] - i
            self._locals.append(local)
            bounds.append((start, start + local.size))
            start += local.size
        self._bounds = bounds
        if parent._row_abs_max is not None:
            self._row_abs_max = parent._row_abs_max[rows]

    @property
    def bounds(self):
        return self._bounds

    def _parent_args(self, row_args):
        n = self.parent.shape[0]
        return [self._mask] + [_expand(a, self.rows, n) for a in row_args]

    def _map(self, fn, row_args, shared, raw=False):
        args = self._parent_args(row_args)
        return self.parent._map(partial(_on_subset, fn, len(row_args)), args, shared, raw)

    def _scan(self, fn, state, row_args, shared):
        args = self._parent_args(row_args)
        return self.parent._scan(partial(_on_subset_scan, fn, len(row_args)), state, args, shared)

    def _view(self, row_exp):
        return SubsetRows(self.parent._view(row_exp), self.rows)

    def _take_blocks(self, blocks, locals_):
        return self.parent._take_blocks(blocks, [self._locals[k][local] for k, local in zip(blocks, locals_)])


def subset_rows(delta: RowBlocks, rows) -> SubsetRows:
    """The rows ``rows`` (strictly increasing indices) of the blocked ``delta`` as a view."""
    return SubsetRows(delta, rows)


__all__ = ["SubsetRows", "subset_rows"]
