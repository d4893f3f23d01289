"""The fast solvers' passes over a blocked Δ (memory-mapped or Dask, :mod:`fairl_opt.programs.blocks`):
the MaxEnt value/gradient/Hessian evaluator (:class:`BlockedMaxEnt`, the map-reduce twin of
:class:`~fairl_opt.solvers.fused_maxent.FusedMaxEnt`) and the working-set QP's screening
(:func:`screen`, dual coordinate descent walked block by block).

Each block computes exactly what the in-memory code computes for those rows — the same float64
operations in the same order per row — and the driver adds the blocks' d-vectors and d×d matrices
and keeps the n-vectors (scores, curvatures, multipliers). Only sums over rows differ in their
order, so the two paths agree to rounding (≈1e-16 relative), far inside the certificate.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import dsyrk as _dsyrk

from fairl_opt.programs import MaxEntProgram
from fairl_opt.programs.blocks import RowBlocks
from fairl_opt.solvers._kernels import dual_coordinate_descent
from fairl_opt.solvers.fused_maxent import FusedMaxEnt


def _value_grad_block(block, weights, inv_t, shift, v_scale, theta):
    """One block of the fused MaxEnt pass: (Σ w ℓ(s), Δ_blockᵀ v, e = exp(−|s|)) with
    s = (Δθ)/T + o/T and v = w β/T, β = σ(−s) (the arithmetic of ``FusedMaxEnt._dual_weights``)."""
    s = block @ theta
    if inv_t is not None:
        s *= inv_t
    if shift is not None:
        s += shift
    e = np.exp(-np.abs(s))
    tmp = np.log1p(e)
    tmp -= np.minimum(s, 0.0)
    loss = float(tmp.sum() if weights is None else weights @ tmp)
    v = e / (e + 1.0)
    negative = s < 0.0
    np.subtract(1.0, v, out=v, where=negative)
    if v_scale is not None:
        v *= v_scale
    return loss, block.T @ v, e


def _hessp_block(block, curv, p):
    """Δ_blockᵀ (c ⊙ Δ_block p)."""
    return block.T @ ((block @ p) * curv)


def _hessian_block(block, root):
    """Σ_block c_i Δ_iᵀΔ_i (upper triangle by syrk, then symmetrised), with root = √c."""
    scaled = block * root[:, None]
    h = _dsyrk(1.0, scaled.T, trans=0, lower=0)
    return np.triu(h) + np.triu(h, 1).T


class BlockedMaxEnt:
    """Value, gradient, Hessian-vector products and Hessian of a :class:`MaxEntProgram` whose Δ is
    a :class:`RowBlocks`: one pass over Δ (one task per block on Dask) for each.

    The interface of :class:`~fairl_opt.solvers.fused_maxent.FusedMaxEnt` (``value_grad``,
    ``hessp``, ``hessian``, ``n``, ``d``, ``nfev``, ``nhvp``, ``nhess``), so
    :class:`~fairl_opt.solvers.lbfgs.LbfgsMaxEnt` runs unchanged on it.
    """

    def __init__(self, program: MaxEntProgram):
        rows = program.delta
        if not isinstance(rows, RowBlocks):
            raise TypeError("BlockedMaxEnt needs a program whose delta is a RowBlocks")
        self.rows = rows
        self.n, self.d = rows.shape
        self.reg = program.reg
        w, t, o = program.weights, program.temperatures, program.offsets
        unit_w, unit_t = bool(np.all(w == 1.0)), bool(np.all(t == 1.0))
        self.weights = None if unit_w else w
        self.inv_t = None if unit_t else 1.0 / t
        self.shift = None if not np.any(o != 0.0) else o / t
        self.v_scale = None if unit_w and unit_t else w / t
        self.c_scale = None if unit_w and unit_t else w / (t * t)
        self.e = None
        self.curv = None
        self.nfev = 0
        self.nhvp = 0
        self.nhess = 0

    def value_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """P(θ) and ∇P(θ) = λθ − Δᵀv in one pass; keeps e = exp(−|s|) for the curvature."""
        theta = np.asarray(theta, dtype=np.float64)
        self.nfev += 1
        self.curv = None
        parts = self.rows.map(_value_grad_block, self.weights, self.inv_t, self.shift, self.v_scale,
                              shared=(theta,))
        loss = sum(part[0] for part in parts)
        acc = np.sum([part[1] for part in parts], axis=0)
        self.e = np.concatenate([part[2] for part in parts])
        value = loss + 0.5 * self.reg * float(theta @ theta)
        return value, self.reg * theta - acc

    #: the per-pair curvature at the last θ, cached: the same code as the in-memory evaluator's
    _curvature = FusedMaxEnt._curvature

    def hessp(self, p: np.ndarray) -> np.ndarray:
        """(Δᵀ diag(c) Δ + λI) p at the θ of the last :meth:`value_grad` (one pass)."""
        self.nhvp += 1
        p = np.asarray(p, dtype=np.float64)
        parts = self.rows.map(_hessp_block, self._curvature(), shared=(p,))
        return self.reg * p + np.sum(parts, axis=0)

    def hessian(self) -> np.ndarray:
        """The d×d Hessian Σ c_i Δ_iᵀΔ_i + λI (one pass; each block sends back a d×d matrix)."""
        self.nhess += 1
        h = np.sum(self.rows.map(_hessian_block, np.sqrt(self._curvature())), axis=0)
        h[np.diag_indices(self.d)] += self.reg
        return h


def _screen_block(block, state, margins, upper, alpha, qdiag, seed):
    """One epoch of dual coordinate descent on one block's rows; state = θ, out = the block's α."""
    theta = np.array(state, dtype=np.float64)
    alpha = np.array(alpha, dtype=np.float64)
    dual_coordinate_descent(block, margins, upper, alpha, theta, qdiag, 1, -1.0, seed)
    return theta, alpha


def screen(rows: RowBlocks, margins, upper, alpha, theta, qdiag, epochs: int) -> None:
    """The working-set QP's screening on a blocked Δ: ``epochs`` epochs of the same dual coordinate
    descent as in memory (:func:`~fairl_opt.solvers._kernels.dual_coordinate_descent`), each
    epoch a sequential walk over the blocks carrying θ (d floats) from one to the next (on Dask a
    chain of tasks, each on the worker that holds its block). Updates ``alpha`` and ``theta`` in
    place. Pairs are visited in a random order within each block rather than over all n, so the
    screened working set can differ from the in-memory one; the cutting-plane rounds and the
    certificate make the answer the same."""
    for epoch in range(epochs):
        state, parts = rows.scan(_screen_block, theta, margins, upper, alpha, qdiag, shared=(epoch,))
        theta[...] = state
        alpha[...] = np.concatenate(parts)


__all__ = ["BlockedMaxEnt", "screen"]
