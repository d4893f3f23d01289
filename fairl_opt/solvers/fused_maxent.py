"""The MaxEnt objective's value, gradient, Hessian-vector products and Hessian with reused buffers,
streamed over row blocks of Δ (:class:`FusedMaxEnt`), and conjugate gradients on its Hessian
products (:func:`cg`): the arithmetic of :class:`~fairl_opt.solvers.lbfgs.LbfgsMaxEnt` (its module
docstring explains the memory and precision choices).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.blas import dsyrk as _dsyrk

from fairl_opt.programs import MaxEntProgram

#: float64 Δ up to this size is multiplied whole (two gemv per evaluation, cache-resident).
_SMALL_BYTES = 16 * 2**20
#: Target size of one streamed block of Δ (in float64 bytes).
_BLOCK_BYTES = 4 * 2**20
def hessian_cost(d: int) -> int:
    """A d×d Hessian (syrk over row blocks) costs about this many Hessian-vector products
    (measured for d = 128 .. 1024 on n = 3000 .. 30000)."""
    return d // 10 + 10


class FusedMaxEnt:
    """Value, gradient and Hessian-vector products of a :class:`MaxEntProgram`, with reused buffers.

    After :meth:`value_grad` at θ the buffers hold e_i = exp(−|s_i|) at that θ; :meth:`hessp` and
    :meth:`hessian` use the curvature there, ``w_i β_i(1 − β_i)/T_i² = w_i/T_i² · e_i/(1 + e_i)²``.
    """

    def __init__(self, program: MaxEntProgram, block_rows: int | None = None):
        delta = program.delta
        n, d = delta.shape
        self.delta = delta
        self.n, self.d = n, d
        self.reg = program.reg
        w, t, o = program.weights, program.temperatures, program.offsets
        unit_w, unit_t = bool(np.all(w == 1.0)), bool(np.all(t == 1.0))
        self.weights = None if unit_w else w
        self.inv_t = None if unit_t else 1.0 / t
        self.shift = None if not np.any(o != 0.0) else o / t
        self.v_scale = None if unit_w and unit_t else w / t  # v_i = w_i β_i / T_i
        self.c_scale = None if unit_w and unit_t else w / (t * t)  # curvature factor
        contiguous = delta.flags.c_contiguous or delta.flags.f_contiguous
        whole = delta.dtype == np.float64 and contiguous and delta.nbytes <= _SMALL_BYTES
        if block_rows is None:
            block_rows = n if whole else max(64, _BLOCK_BYTES // (8 * d))
        self.block_rows = int(min(max(1, block_rows), n))
        self.blocks = [(i, min(i + self.block_rows, n)) for i in range(0, n, self.block_rows)]
        self.upcast = delta.dtype != np.float64
        self.buffer = np.empty((self.block_rows, d)) if self.upcast else None
        self.s = np.empty(n)
        self.e = np.empty(n)
        self.v = np.empty(n)
        self.tmp = np.empty(n)
        self.mask = np.empty(n, dtype=bool)
        self.acc = np.empty(d)
        self.part = np.empty(d)
        self.curv = None
        self.nfev = 0
        self.nhvp = 0
        self.nhess = 0

    def _block(self, i: int, j: int) -> np.ndarray:
        rows = self.delta[i:j]
        if not self.upcast:
            return rows
        buf = self.buffer[: j - i]
        buf[...] = rows  # exact float32 -> float64
        return buf

    def _dual_weights(self, i: int, j: int) -> float:
        """From s[i:j] = Δθ (unscaled): scale s, fill e = exp(−|s|), v = w β/T; return Σ w ℓ(s)."""
        s, e, v, tmp, mask = self.s[i:j], self.e[i:j], self.v[i:j], self.tmp[i:j], self.mask[i:j]
        if self.shift is not None:
            if self.inv_t is not None:
                s *= self.inv_t[i:j]
            s += self.shift[i:j]
        elif self.inv_t is not None:
            s *= self.inv_t[i:j]
        np.abs(s, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)  # e = exp(−|s|) ∈ (0, 1]
        np.log1p(e, out=tmp)
        np.minimum(s, 0.0, out=v)
        tmp -= v  # ℓ(s) = log1p(e^{−|s|}) + max(−s, 0)
        loss = float(tmp.sum() if self.weights is None else self.weights[i:j] @ tmp)
        # β = σ(−s): q = e/(1+e) when s ≥ 0, 1 − q when s < 0 (q ≤ ½: no cancellation)
        np.add(e, 1.0, out=tmp)
        np.divide(e, tmp, out=v)
        np.less(s, 0.0, out=mask)
        np.subtract(1.0, v, out=v, where=mask)
        if self.v_scale is not None:
            v *= self.v_scale[i:j]
        return loss

    def value_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """P(θ) and ∇P(θ) = λθ − Δᵀv with one pass (streamed) or two gemv (small Δ)."""
        theta = np.asarray(theta, dtype=np.float64)
        self.nfev += 1
        self.curv = None
        acc = self.acc
        loss = 0.0
        for k, (i, j) in enumerate(self.blocks):
            block = self._block(i, j)
            np.matmul(block, theta, out=self.s[i:j])
            loss += self._dual_weights(i, j)
            if k == 0:
                np.matmul(block.T, self.v[i:j], out=acc)
            else:
                np.matmul(block.T, self.v[i:j], out=self.part)
                acc += self.part
        value = loss + 0.5 * self.reg * float(theta @ theta)
        grad = self.reg * theta - acc
        return value, grad

    def _curvature(self) -> np.ndarray:
        if self.curv is None:
            e = self.e
            curv = e / (1.0 + e) ** 2  # β(1 − β), accurate for both signs of s
            if self.c_scale is not None:
                curv *= self.c_scale
            self.curv = curv
        return self.curv

    def hessp(self, p: np.ndarray) -> np.ndarray:
        """(Δᵀ diag(c) Δ + λI) p at the θ of the last :meth:`value_grad`."""
        self.nhvp += 1
        curv = self._curvature()
        out = self.reg * p
        for i, j in self.blocks:
            block = self._block(i, j)
            np.matmul(block, p, out=self.tmp[i:j])
            self.tmp[i:j] *= curv[i:j]
            out += block.T @ self.tmp[i:j]
        return out

    def hessian(self) -> np.ndarray:
        """The d×d Hessian Σ c_i Δ_iᵀΔ_i + λI by rank-k updates (syrk) over ~4 MiB row blocks."""
        self.nhess += 1
        root = np.sqrt(self._curvature())
        h = np.zeros((self.d, self.d), order="F")
        rows = max(1, _BLOCK_BYTES // (8 * self.d))
        for i0, j0 in self.blocks:
            for i in range(i0, j0, rows):
                j = min(i + rows, j0)
                scaled = self.delta[i:j] * root[i:j, None]  # float64 (B × d), also upcasts float32
                # h += scaledᵀ scaled (upper triangle); scaled.T is Fortran-ordered: no copy
                h = _dsyrk(1.0, scaled.T, beta=1.0, c=h, trans=0, lower=0, overwrite_c=1)
        h = np.triu(h) + np.triu(h, 1).T
        h[np.diag_indices(self.d)] += self.reg
        return h


def cg(hessp, b: np.ndarray, atol: float, max_iter: int) -> tuple[np.ndarray, bool]:
    """Conjugate gradients for H x = b from x = 0; (x, whether ‖Hx − b‖ ≤ atol was reached)."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    for _ in range(max_iter):
        if math.sqrt(rr) <= atol:
            return x, True
        hp = hessp(p)
        php = float(p @ hp)
        if not php > 0.0:  # cannot happen for λ > 0 unless the products overflowed
            return x, False
        alpha = rr / php
        x += alpha * p
        r -= alpha * hp
        rr_new = float(r @ r)
        p *= rr_new / rr
        p += r
        rr = rr_new
    return x, math.sqrt(rr) <= atol


__all__ = ["FusedMaxEnt", "cg", "hessian_cost"]
