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
from scipy.optimize import minimize

from fairl_opt.programs import MaxEntProgram
from fairl_opt.programs.blocks import is_blocked
from fairl_opt.solvers.base import Backend, Solution
from fairl_opt.solvers.blocked import BlockedMaxEnt
from fairl_opt.solvers.certificate import certify
from fairl_opt.solvers.fused_maxent import FusedMaxEnt, cg, hessian_cost
from fairl_opt.solvers.line_search import backtrack
from fairl_opt.solvers.settings import LBFGSSettings

#: The fused evaluator under its former name (tests and benchmarks import it from here).
_FusedMaxEnt = FusedMaxEnt

#: Stagnation switch: not before this many L-BFGS iterations; rate measured over this window.
_MIN_ITER = 50
_WINDOW = 20


class _Certified(Exception):
    """Raised inside the objective to end L-BFGS at the first certified point."""


class LbfgsMaxEnt(Backend):
    """Certified MaxEnt by L-BFGS-B (scipy), finished by Newton steps when L-BFGS is slow.

    Parameters
    ----------
    settings : LBFGSSettings, optional
        The knobs (``tol``, ``theta_tol``, L-BFGS memory and budget, the switch to Newton, the
        Newton budget, CG and dense-Hessian limits, block rows); see
        :class:`~fairl_opt.solvers.settings.LBFGSSettings`. The stagnation switch measures the
        linear rate over the last ``_WINDOW`` iterations, after at least ``_MIN_ITER``.

    Each solution's ``diagnostics``: ``nfev`` (fused value+gradient evaluations, L-BFGS and Newton
    line searches), ``lbfgs_nfev`` and ``nit`` (the L-BFGS stage), ``newton_steps``, ``hvp`` and
    ``hessians`` (the finishing stage), ``stage``: ``"lbfgs"`` (certified by L-BFGS), ``"newton"``
    (certified by the finishing stage) or ``"budget"`` (not certified: the certificate says
    "inaccurate").

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

    settings_class = LBFGSSettings
    streams_rows = True

    def supports(self, program) -> bool:
        return isinstance(program, MaxEntProgram)

    # -- the stopping rule -------------------------------------------------------------------------
    def _gnorm_target(self, value: float, reg: float) -> float:
        """The ‖∇P‖ that certifies: ‖∇P‖²/(2λ) ≤ tol·|P|, and ‖∇P‖/λ ≤ theta_tol if set."""
        target = math.sqrt(2.0 * reg * self.settings.tol * abs(value))
        if self.settings.theta_tol is not None:
            target = min(target, reg * self.settings.theta_tol)
        return target

    def _solve(self, program: MaxEntProgram, warm_start: Solution | None = None) -> Solution:
        if not isinstance(program, MaxEntProgram):
            raise TypeError(f"lbfgs backend solves maxent programs only, got {type(program).__name__}")
        start = time.perf_counter()
        settings = self.settings
        # a memory-mapped or Dask Δ: the same evaluations as map-reduce over its row blocks
        ev = BlockedMaxEnt(program) if is_blocked(program.delta) else FusedMaxEnt(program, settings.block_rows)
        theta = np.zeros(program.dim)
        if warm_start is not None:
            previous = np.asarray(warm_start.theta, dtype=np.float64)
            if previous.shape == theta.shape and np.all(np.isfinite(previous)):
                theta = previous.copy()

        theta, nit, stage, status = self._lbfgs(ev, theta, program.reg)
        lbfgs_nfev = ev.nfev
        steps = 0
        if stage != "lbfgs" and settings.newton_steps > 0 and np.all(np.isfinite(theta)):
            theta, steps, ok = self._newton(ev, theta, program.reg)
            if ok:
                stage, status = "newton", f"converged ({status}; certified by {steps} newton steps)"
            else:
                status += f"; not certified after {steps} newton steps"
        seconds = time.perf_counter() - start

        diagnostics = dict(nfev=ev.nfev, lbfgs_nfev=lbfgs_nfev, nit=nit, newton_steps=steps, hvp=ev.nhvp,
                           hessians=ev.nhess, stage=stage)
        duals = program.dual_variables(theta)
        cert = certify(
            program, theta, duals, backend=self.name, solver_status=status, solve_seconds=seconds,
            gap_tol=settings.tol,
        )
        return Solution(program, theta, duals, cert, diagnostics)

    # -- stage 1: L-BFGS with a certified stop and a stagnation switch ------------------------------
    def _lbfgs(self, ev: FusedMaxEnt, theta0: np.ndarray, reg: float):
        """L-BFGS-B from θ₀ until a certified point, the stagnation switch or the budget:
        (θ, iterations, stage "lbfgs" or "budget", status text)."""
        found: dict = {}
        best = [math.inf, math.inf]  # log10 of the smallest ‖∇P‖ seen, log10 of its target
        history: list[float] = []  # best log10 ‖∇P‖ after each iteration
        switched: list[int] = []
        # what the Newton stage typically costs, in evaluations: ~3 steps of at most one Hessian each
        newton_cost = min(3 * hessian_cost(ev.d), 600)
        settings = self.settings

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
            if not settings.switch or k < _MIN_ITER:
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
                    maxcor=settings.memory, maxiter=settings.max_iter, maxfun=10 * settings.max_iter,
                    ftol=0.0, gtol=0.0,
                ),
            )
        except _Certified:
            return found["theta"], len(history), "lbfgs", f"converged (lbfgs, {ev.nfev} evaluations)"
        message = f"switched after {switched[0]} iterations (slow)" if switched else result.message
        return np.asarray(result.x, dtype=np.float64), int(result.nit), "budget", f"lbfgs: {message}"

    # -- stage 2: Newton steps (CG on Hessian-vector products, or the d×d Hessian if cheaper) ------
    def _newton(self, ev: FusedMaxEnt, theta: np.ndarray, reg: float) -> tuple[np.ndarray, int, bool]:
        """Inexact Newton from θ with the shared backtracking
        (:func:`~fairl_opt.solvers.line_search.backtrack`); returns (θ, steps, certified)."""
        settings = self.settings
        value, grad = ev.value_grad(theta)
        gnorm0 = math.sqrt(float(grad @ grad))
        can_factor = ev.d <= settings.dense_max_dim
        factor = False
        cost = hessian_cost(ev.d)
        cg_max = settings.cg_max_iter if settings.cg_max_iter is not None else min(ev.d, 500)
        for step in range(settings.newton_steps + 1):
            gnorm = math.sqrt(float(grad @ grad))
            target = self._gnorm_target(value, reg)
            if gnorm <= target:
                return theta, step, True
            if step == settings.newton_steps:
                break
            direction = None
            if not factor:
                # forcing term: superlinear (η → 0 with ‖g‖), never tighter than the target needs
                forcing = min(0.1, math.sqrt(gnorm / max(gnorm0, 1e-300)))
                atol = max(forcing * gnorm, 0.25 * target)
                budget = min(cg_max, cost) if can_factor else cg_max
                direction, converged = cg(ev.hessp, -grad, atol, budget)
                if not converged and can_factor:
                    factor, direction = True, None  # CG is costlier than the Hessian on this problem
            if direction is None:
                try:
                    direction = -cho_solve(cho_factor(ev.hessian()), grad)
                except np.linalg.LinAlgError:
                    break
            if not float(grad @ direction) < 0.0:
                break
            found = backtrack(ev.value_grad, theta, direction, value, grad)
            if found is None:
                break
            theta, value, grad = found  # ev's buffers now hold this θ
        return theta, step, False


__all__ = ["LbfgsMaxEnt"]
