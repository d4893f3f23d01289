"""MaxEnt by L-BFGS with a certified stop, finished by Newton steps when L-BFGS is slow.

The MaxEnt objective ``P(θ) = Σ w_i ℓ(s_i) + (λ/2)‖θ‖²`` with ``s_i = (Δ_i θ + o_i)/T_i`` and
``ℓ(s) = log(1 + e^{−s})`` is smooth and λ-strongly convex, so two bounds on ``P(θ) − P*`` are cheap:

* the Fenchel duality gap ``P(θ) − D(β(θ))`` at ``β_i = σ(−s_i)`` (:meth:`MaxEntProgram.dual_objective`);
* the strong-convexity bound ``‖∇P(θ)‖²/(2λ)``.

At ``β = β(θ)`` the two are equal in exact arithmetic (``ℓ(s) = H(β) − βs`` there, and the gap
collapses to ``‖λθ − Σ w_i β_i Δ_i/T_i‖²/(2λ)``), so the gradient — which every L-BFGS evaluation
computes anyway — gives the certificate for free; the gap is evaluated independently, in float64,
by the shared :func:`certify` at the end, and the returned status is that certificate's.

Algorithm
---------
1. ``scipy.optimize.minimize(method="L-BFGS-B")`` on a fused value+gradient function: one product
   Δθ and one product Δᵀv per call, numerically stable ``log1p(exp(−|s|))``, preallocated buffers.
   Its own stopping tests are switched off (``ftol = gtol = 0``); instead every evaluation checks
   ``‖∇P‖²/(2λ) ≤ tol·|P|`` and stops the run at the first point that passes (a line-search
   trial point counts: any evaluated point with a small gradient is certified).
2. Stagnation switch: from iteration ``_MIN_ITER`` on, the linear rate of the best ‖∇P‖ over the
   last ``_WINDOW`` iterations predicts how many more iterations L-BFGS needs; when that exceeds
   both the number already used and a typical Newton finish (3 × one Hessian's cost in products)
   — ill-conditioned problems: small λ, correlated features — or when
   L-BFGS stops uncertified (line search exhausted, budget), inexact Newton steps take over:
   conjugate gradients on Hessian-vector products ``Δᵀ(c ⊙ Δv) + λv`` with a superlinear forcing
   term and Armijo backtracking. For ``d ≤ dense_max_dim``, a step whose CG would cost more than
   one d×d Hessian (about ``d/10 + 10`` products, measured) forms the Hessian instead (syrk over
   row blocks, d² floats — never an n×d temporary) and factors it, for this and later steps.
3. ``certify(program, θ, program.dual_variables(θ), gap_tol=tol)``: the Solution is returned in
   every case; an uncertified one has status ``"inaccurate"``.

Memory and precision
--------------------
Δ is never copied. Small float64 Δ (≤ ``_SMALL_BYTES``, contiguous) is used whole by BLAS gemv
twice per evaluation (it stays in the last-level cache). Larger Δ, float32 Δ and non-contiguous Δ
are streamed in row blocks of a few MiB: each block is multiplied by θ, turned into its dual
weights and multiplied back while it is still in cache — one pass over memory per evaluation
instead of two. A float32 block is first upcast into one reusable float64 buffer, so every product
is accumulated in float64: the solver optimises exactly the float64 program defined by the float32
values, the same program :func:`certify` evaluates (which, being shared code, upcasts Δ itself).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.linalg.blas import dsyrk as _dsyrk
from scipy.optimize import minimize

from fairl_opt.exceptions import DataError
from fairl_opt.programs import MaxEntProgram
from fairl_opt.solvers.base import Backend, Solution
from fairl_opt.solvers.certificate import certify

#: float64 Δ up to this size is multiplied whole (two gemv per evaluation, cache-resident).
_SMALL_BYTES = 16 * 2**20
#: Target size of one streamed block of Δ (in float64 bytes).
_BLOCK_BYTES = 4 * 2**20
#: Stagnation switch: not before this many L-BFGS iterations; rate measured over this window.
_MIN_ITER = 50
_WINDOW = 20


def _hessian_cost(d: int) -> int:
    """A d×d Hessian (syrk over row blocks) costs about this many Hessian-vector products
    (measured for d = 128 .. 1024 on n = 3000 .. 30000)."""
    return d // 10 + 10


class _Certified(Exception):
    """Raised inside the objective to end L-BFGS at the first certified point."""


class _FusedMaxEnt:
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


def _cg(hessp, b: np.ndarray, atol: float, max_iter: int) -> tuple[np.ndarray, bool]:
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


class LbfgsMaxEnt(Backend):
    """Certified MaxEnt by L-BFGS-B (scipy), finished by Newton steps when L-BFGS is slow.

    Parameters
    ----------
    tol : float, default 1e-8
        Certified relative suboptimality: stop at the first θ with ``‖∇P(θ)‖²/(2λ) ≤ tol·|P|``
        (equal, in exact arithmetic, to the duality gap at β(θ)); the certificate is built with
        ``gap_tol=tol``. Below ~1e-13 the gap is at the level of float64 rounding of P and D and may
        not certify.
    theta_tol : float or None
        Also require the certified distance bound ``‖θ − θ*‖ ≤ ‖∇P(θ)‖/λ`` (strong convexity) to be
        at most this. ``tol`` alone pins θ only to ``sqrt(2·tol·|P|/λ)``.
    memory : int, default 10
        L-BFGS memory (``maxcor``); larger values cost more per iteration than they save here.
    max_iter : int, default 2000
        L-BFGS iteration budget (an iteration is about 1.1 evaluations).
    switch : bool, default True
        Leave L-BFGS for Newton steps once it is predicted to need more iterations than it has used
        and than a Newton finish costs (linear rate over the last ``_WINDOW`` iterations, after at
        least ``_MIN_ITER``).
    newton_steps : int, default 30
        Budget of Newton steps after L-BFGS.
    cg_max_iter : int or None
        Hessian-vector products per Newton step when d > ``dense_max_dim`` (default ``min(d, 500)``).
    dense_max_dim : int, default 1024
        For ``d`` up to this, a Newton step whose CG needs more products than one d×d Hessian costs
        (≈ ``d/10 + 10`` products) forms the Hessian (syrk over row blocks, d² floats) and factors
        it; later steps then factor directly. Set 0 to never form it.
    block_rows : int or None
        Rows of Δ per streamed block (default: whole Δ when it is small float64, else ~4 MiB blocks).

    Attributes (after each ``solve``)
    --------------------------------
    last_nfev_ : int
        Fused value+gradient evaluations (L-BFGS and Newton line searches).
    last_lbfgs_nfev_, last_nit_ : int
        Evaluations and iterations of the L-BFGS stage.
    last_newton_steps_, last_hvp_, last_hessians_ : int
        Newton steps, Hessian-vector products and d×d Hessians of the finishing stage.
    last_stage_ : str
        ``"lbfgs"`` (certified by L-BFGS), ``"newton"`` (certified by the finishing stage), or
        ``"budget"`` (not certified: the certificate says "inaccurate").

    Examples
    --------
    >>> import numpy as np
    >>> from fairl_opt.programs import MaxEntProgram
    >>> delta = np.random.default_rng(0).normal(size=(50, 5)) + 1.0
    >>> sol = LbfgsMaxEnt().solve(MaxEntProgram(delta, reg=0.1))
    >>> sol.status, sol.certificate.gradient_bound <= 1e-8 * abs(sol.objective)
    ('optimal', True)
    """

    name = "lbfgs"
    solves = "MaxEntProgram"

    def __init__(
        self,
        tol: float = 1e-8,
        theta_tol: float | None = None,
        memory: int = 10,
        max_iter: int = 2000,
        switch: bool = True,
        newton_steps: int = 30,
        cg_max_iter: int | None = None,
        dense_max_dim: int = 1024,
        block_rows: int | None = None,
    ):
        if not (np.isfinite(tol) and tol > 0):
            raise DataError(f"tol must be positive and finite, got {tol}")
        if theta_tol is not None and not (np.isfinite(theta_tol) and theta_tol > 0):
            raise DataError(f"theta_tol must be positive and finite (or None), got {theta_tol}")
        if memory < 1 or max_iter < 1 or newton_steps < 0:
            raise DataError(
                f"memory and max_iter must be >= 1 and newton_steps >= 0, got {memory}, {max_iter}, {newton_steps}"
            )
        if block_rows is not None and block_rows < 1:
            raise DataError(f"block_rows must be >= 1 (or None), got {block_rows}")
        self.tol = float(tol)
        self.theta_tol = None if theta_tol is None else float(theta_tol)
        self.memory = int(memory)
        self.max_iter = int(max_iter)
        self.switch = bool(switch)
        self.newton_steps = int(newton_steps)
        self.cg_max_iter = cg_max_iter
        self.dense_max_dim = int(dense_max_dim)
        self.block_rows = block_rows
        self.last_nfev_ = self.last_lbfgs_nfev_ = self.last_nit_ = 0
        self.last_newton_steps_ = self.last_hvp_ = self.last_hessians_ = 0
        self.last_stage_ = ""

    def supports(self, program) -> bool:
        return isinstance(program, MaxEntProgram)

    # -- the stopping rule -------------------------------------------------------------------------
    def _gnorm_target(self, value: float, reg: float) -> float:
        """The ‖∇P‖ that certifies: ‖∇P‖²/(2λ) ≤ tol·|P|, and ‖∇P‖/λ ≤ theta_tol if set."""
        target = math.sqrt(2.0 * reg * self.tol * abs(value))
        if self.theta_tol is not None:
            target = min(target, reg * self.theta_tol)
        return target

    def _solve(self, program: MaxEntProgram, warm_start: Solution | None = None) -> Solution:
        if not isinstance(program, MaxEntProgram):
            raise TypeError(f"lbfgs backend solves maxent programs only, got {type(program).__name__}")
        start = time.perf_counter()
        ev = _FusedMaxEnt(program, self.block_rows)
        theta = np.zeros(program.dim)
        if warm_start is not None:
            previous = np.asarray(warm_start.theta, dtype=np.float64)
            if previous.shape == theta.shape and np.all(np.isfinite(previous)):
                theta = previous.copy()

        theta, nit, stage, status = self._lbfgs(ev, theta, program.reg)
        lbfgs_nfev = ev.nfev
        steps = 0
        if stage != "lbfgs" and self.newton_steps > 0 and np.all(np.isfinite(theta)):
            theta, steps, ok = self._newton(ev, theta, program.reg)
            if ok:
                stage, status = "newton", f"converged ({status}; certified by {steps} newton steps)"
            else:
                status += f"; not certified after {steps} newton steps"
        seconds = time.perf_counter() - start

        self.last_nfev_, self.last_lbfgs_nfev_, self.last_nit_ = ev.nfev, lbfgs_nfev, nit
        self.last_newton_steps_, self.last_hvp_, self.last_hessians_ = steps, ev.nhvp, ev.nhess
        self.last_stage_ = stage
        duals = program.dual_variables(theta)
        cert = certify(
            program, theta, duals, backend=self.name, solver_status=status, solve_seconds=seconds, gap_tol=self.tol
        )
        return Solution(program, theta, duals, cert)

    # -- stage 1: L-BFGS with a certified stop and a stagnation switch ------------------------------
    def _lbfgs(self, ev: _FusedMaxEnt, theta0: np.ndarray, reg: float):
        found: dict = {}
        best = [math.inf, math.inf]  # log10 of the smallest ‖∇P‖ seen, log10 of its target
        history: list[float] = []  # best log10 ‖∇P‖ after each iteration
        switched: list[int] = []
        # what the Newton stage typically costs, in evaluations: ~3 steps of at most one Hessian each
        newton_cost = min(3 * _hessian_cost(ev.d), 600)

        def fun(x):
            value, grad = ev.value_grad(x)
            gnorm = math.sqrt(float(grad @ grad))
            target = self._gnorm_target(value, reg)
            if gnorm <= target:
                found["theta"] = np.array(x, dtype=np.float64)
                raise _Certified
            if gnorm > 0 and math.log10(gnorm) < best[0]:
                best[0], best[1] = math.log10(gnorm), math.log10(target)
            return value, grad

        def callback(intermediate_result):
            history.append(best[0])
            k = len(history)
            if not self.switch or k < _MIN_ITER:
                return
            rate = (history[k - 1 - _WINDOW] - history[-1]) / _WINDOW  # decades per iteration
            if rate <= 0 or (best[0] - best[1]) / rate > max(k, newton_cost):
                switched.append(k)  # more than doubling its work, and dearer than Newton: hand over
                raise StopIteration

        try:
            result = minimize(
                fun,
                theta0,
                jac=True,
                method="L-BFGS-B",
                callback=callback,
                options=dict(
                    maxcor=self.memory, maxiter=self.max_iter, maxfun=10 * self.max_iter, ftol=0.0, gtol=0.0
                ),
            )
        except _Certified:
            return found["theta"], len(history), "lbfgs", f"converged (lbfgs, {ev.nfev} evaluations)"
        message = f"switched after {switched[0]} iterations (slow)" if switched else result.message
        return np.asarray(result.x, dtype=np.float64), int(result.nit), "budget", f"lbfgs: {message}"

    # -- stage 2: Newton steps (CG on Hessian-vector products, or the d×d Hessian if cheaper) ------
    def _newton(self, ev: _FusedMaxEnt, theta: np.ndarray, reg: float) -> tuple[np.ndarray, int, bool]:
        """Inexact Newton from θ with Armijo backtracking; returns (θ, steps, certified)."""
        value, grad = ev.value_grad(theta)
        gnorm0 = math.sqrt(float(grad @ grad))
        can_factor = ev.d <= self.dense_max_dim
        factor = False
        hessian_cost = _hessian_cost(ev.d)
        cg_max = self.cg_max_iter if self.cg_max_iter is not None else min(ev.d, 500)
        eps = np.finfo(float).eps
        for step in range(self.newton_steps + 1):
            gnorm = math.sqrt(float(grad @ grad))
            target = self._gnorm_target(value, reg)
            if gnorm <= target:
                return theta, step, True
            if step == self.newton_steps:
                break
            direction = None
            if not factor:
                # forcing term: superlinear (η → 0 with ‖g‖), never tighter than the target needs
                forcing = min(0.1, math.sqrt(gnorm / max(gnorm0, 1e-300)))
                atol = max(forcing * gnorm, 0.25 * target)
                budget = min(cg_max, hessian_cost) if can_factor else cg_max
                direction, converged = _cg(ev.hessp, -grad, atol, budget)
                if not converged and can_factor:
                    factor, direction = True, None  # CG is costlier than the Hessian on this problem
            if direction is None:
                try:
                    direction = -cho_solve(cho_factor(ev.hessian()), grad)
                except np.linalg.LinAlgError:
                    break
            slope = float(grad @ direction)
            if not slope < 0.0:
                break
            t = 1.0
            accepted = False
            while t >= 1e-10:
                candidate = theta + t * direction
                new_value, new_grad = ev.value_grad(candidate)
                if new_value <= value + 1e-4 * t * slope:
                    accepted = True
                # in the last digits P cannot show a decrease: accept a smaller gradient instead
                elif new_value <= value + 8 * eps * abs(value) and new_grad @ new_grad < grad @ grad:
                    accepted = True
                if accepted:
                    break
                t *= 0.5
            if not accepted:
                break
            theta, value, grad = candidate, new_value, new_grad  # ev's buffers now hold this θ
        return theta, step, False


__all__ = ["LbfgsMaxEnt"]
