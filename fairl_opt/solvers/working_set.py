"""Exact max-margin QP (``mm-qp``) by cutting planes over a working set of pairs.

The dual of ``min ½‖θ‖² + Σ C_i ξ_i s.t. Δ_iθ ≥ m_i − ξ_i, ξ ≥ 0`` is the box QP
``max mᵀα − ½‖Δᵀα‖², 0 ≤ α_i ≤ C_i`` (C_i = C for one slack price, ∞ for a hard margin),
θ = Δᵀα. Pairs with α_i = 0 do not shape θ, so the program restricted to a working set W that
holds every support pair has the same solution. The loop:

1. pick W: every pair when n is moderate; the support of the previous solution (FA rounds, warm);
   or, for large n, the pairs that a few epochs of dual coordinate descent (a Numba kernel, O(d)
   per pair) leave on or inside their margin;
2. solve the program on W exactly: a dense interior-point method on the dual box QP
   (:func:`fairl_opt.solvers.box_qp.solve_box_qp`, O(|W| d²) per iteration, no |W|×|W| matrix);
3. check all n constraints (the cutting-plane test): a pair outside W with Δ_iθ < m_i violates
   its constraint; add the violators (most violated first, in a batch) and go to 2.

A memory-mapped or Dask Δ (:mod:`fairl_opt.programs.blocks`) goes through the same loop: the
screening (:func:`fairl_opt.solvers.blocked.screen`), each round's violation check Δθ − m and the
certificate are map-reduce passes over its row blocks, and only the working set's rows are
gathered into memory for the box QP (``delta[rows]``).

When no pair is violated, α extended by zeros is dual feasible for the full program, so the
certificate (:func:`certify` over ALL n pairs, as for every backend) proves θ optimal. If it
cannot be certified, the backend falls back to the cvxpy reference and says so in
``solver_status``; an uncertified θ is never returned as optimal.
"""

from __future__ import annotations

import time

import numpy as np

from fairl_opt.programs import MarginProgram
from fairl_opt.programs.blocks import as_rows, is_blocked
from fairl_opt.solvers._kernels import dual_coordinate_descent
from fairl_opt.solvers.base import Backend, Solution
from fairl_opt.solvers.blocked import screen
from fairl_opt.solvers.infeasibility import find_conflict, raise_infeasible
from fairl_opt.solvers.screening import smoothed_primal_guess
from fairl_opt.solvers.box_qp import solve_box_qp
from fairl_opt.solvers.certificate import certify
from fairl_opt.solvers.settings import WorkingSetSettings


class WorkingSetQP(Backend):
    """Fast exact backend for :class:`MarginProgram` with ``norm="l2"`` (hard or soft).

    Parameters
    ----------
    settings : WorkingSetSettings, optional
        The knobs (working-set sizes, rounds, fallback); see
        :class:`~fairl_opt.solvers.settings.WorkingSetSettings`.

    Each solution's ``diagnostics``: ``rounds``, ``working_set_size``, ``ipm_iterations``,
    ``fallback``, ``polished`` (see :class:`~fairl_opt.solvers.base.Solution`). The previous
    solution is kept (privately) as the warm start of the next solve on the same rows.
    """

    name = "working-set"
    solves = "MarginProgram with norm 'l2'"
    settings_class = WorkingSetSettings
    streams_rows = True

    def _reset(self) -> None:
        self._last: Solution | None = None

    def supports(self, program) -> bool:
        return isinstance(program, MarginProgram) and program.norm == "l2"

    def _solve(self, program: MarginProgram, warm_start: Solution | None = None) -> Solution:
        if not self.supports(program):
            raise TypeError("working-set backend solves MarginProgram with norm='l2' only")
        return self._solve_box(program, warm_start)

    def _solve_box(self, program: MarginProgram, warm_start: Solution | None = None) -> Solution:
        start = time.perf_counter()
        delta, margins = program.delta, program.margins
        view = as_rows(delta)  # full products by float64 blocks when Δ is float32 or blocked
        n = program.n_pairs
        # the dual box: a scalar (∞ or C) or, for per-pair prices, the (n,) array C_i
        upper = np.inf if program.hard else (program.C if program.per_pair_prices else float(program.C))
        per_pair = np.ndim(upper) == 1
        scale = float(np.abs(margins).max()) or 1.0
        tol = 1e-9 * scale
        caps = np.full(n, float(upper)) if not per_pair else np.asarray(upper, dtype=np.float64)
        work, fixed = self._initial_working_set(program, upper, warm_start)
        status = "max_rounds"
        theta = alpha = None
        stats = dict(rounds=0, working_set_size=0, ipm_iterations=0, fallback=False, polished=False)
        settings = self.settings
        for round_ in range(1, settings.max_rounds + 1):
            rows = np.flatnonzero(work)
            # no row copy when every pair is in the working set (a blocked Δ: always the rows)
            full = rows.size == n and not is_blocked(delta)
            box = (upper if full else upper[rows]) if per_pair else upper
            # pairs held at their price (α_i = C_i) leave the box QP: their θ_B = Σ C_i Δ_i shifts
            # the others' margins, m_W − Δ_W θ_B (one pass over Δ, no copy of the held rows)
            theta_fixed = view.T @ np.where(fixed, caps, 0.0) if fixed.any() else None
            rows_delta = np.asarray(delta if full else delta[rows], dtype=np.float64)
            shifted = margins[rows] if theta_fixed is None else margins[rows] - rows_delta @ theta_fixed
            result = solve_box_qp(rows_delta, shifted, box)
            stats["ipm_iterations"] += result.iterations
            if result.status == "unbounded":
                # a dual that grows without bound means infeasible — or a margin so thin that the
                # multipliers are huge: let the active-set polish try the IPM's support first
                guess = np.zeros(n)
                guess[rows] = result.alpha
                polished = self._polish(program, guess, upper, start, "unbounded", stats)
                if polished is not None:
                    return polished
                # (a blocked Δ: the conflict lies among the working set's rows, searched in memory)
                found = find_conflict(delta[rows], margins[rows], rows) if is_blocked(delta) else \
                    find_conflict(delta, margins)
                if found is not None:
                    raise_infeasible(program, "infeasible (dual unbounded on the working set)",
                                     rows if is_blocked(delta) else None)
                status = "unbounded-but-feasible"
                break
            theta = result.theta if theta_fixed is None else result.theta + theta_fixed
            alpha = np.where(fixed, caps, 0.0)
            alpha[rows] = result.alpha
            slack = view @ theta - margins
            violated = np.flatnonzero(~work & ~fixed & (slack < -tol))
            # a held pair that now clears its margin wants α_i < C_i: back into the box QP
            released = np.flatnonzero(fixed & (slack > tol))
            stats["rounds"] = round_
            stats["working_set_size"] = int(rows.size)
            if violated.size == 0 and released.size == 0:
                status = f"working-set:{result.status}"
                break
            worst = violated[np.argsort(slack[violated], kind="stable")[: settings.batch]]
            work[worst] = True
            if released.size > settings.batch:
                # the guess of who sits at its price was wrong on a large scale (θ_B is a sum over
                # many rows, so a few wrong rows move θ far): stop holding any
                work |= fixed
                fixed[:] = False
            work[released] = True
            fixed[released] = False
            if fixed.any() and violated.size + released.size <= settings.batch:
                # the pairs the next θ moves past their margin lie next to it now: take in the
                # band around this θ too (held pairs and pairs out of W alike), so that the
                # violators do not trickle in one cold box QP per round
                outside = ~work
                count = min(int(outside.sum()), settings.warm_band, n // 6)
                near = outside & (np.abs(slack) <= _band(slack[outside], count))
                work |= near
                fixed &= ~near
        if theta is not None:
            cert = certify(program, theta, alpha, backend=self.name, solver_status=status,
                           solve_seconds=time.perf_counter() - start)
            if cert.optimal:
                return self._keep(Solution(program, theta, alpha, cert, stats))
            polished = self._polish(program, alpha, upper, start, status, stats)
            if polished is not None:
                return polished
            if not settings.fallback:
                return self._keep(Solution(program, theta, alpha, cert, stats))
        if status == "unbounded-but-feasible" and program.hard:
            raise_infeasible(program, "dual unbounded; no verified conflict")
        from fairl_opt.solvers.reference import CvxpyBackend

        if is_blocked(delta):
            # cvxpy needs rows in memory: solve on the working set, whose optimum is the full one when no
            # other pair is violated — which the certificate over all n pairs checks
            reference = CvxpyBackend().solve(program.restrict(np.flatnonzero(work)))
            duals = np.zeros(n)
            duals[work] = reference.duals
        else:
            reference = CvxpyBackend().solve(program)
            duals = reference.duals
        cert = certify(program, reference.theta, duals, backend=self.name,
                       solver_status=f"fallback-cvxpy({status}):{reference.certificate.solver_status}",
                       solve_seconds=time.perf_counter() - start)
        stats["fallback"] = True
        return self._keep(Solution(program, reference.theta, duals, cert, stats))

    def _polish(self, program, alpha_guess, upper, start, status, stats, max_iter: int = 30) -> Solution | None:
        """Exact KKT point from a guess of the support, by a primal–dual active-set method.

        With F the pairs on their margin (0 < α_i < C_i) and B those at their price (α_i = C_i),
        the KKT point is θ = θ_B + u with θ_B = Σ_{i∈B} C_i Δ_i and u the least-norm solution of
        Δ_F u = m_F − Δ_F θ_B (the QP's optimality θ = Δᵀα forces u into the row space of Δ_F),
        and α_F solves Δ_Fᵀ α_F = u. Both are least-squares problems solved by SVD, whose error
        grows with the condition of Δ_F, not its square as in the interior point's normal
        equations (measured: a hard margin 10⁻⁴ of the row scale certifies after one polish step
        where the interior point alone did not). Sets are corrected until the KKT signs hold (α_F ∈ [0, C], slacks of the other
        pairs ≥ 0, of B ≤ 0); the certificate judges the result as for every answer."""
        n = program.n_pairs
        caps = np.full(n, float(upper)) if np.ndim(upper) == 0 else np.asarray(upper, dtype=np.float64)
        # (no cold start: with more free pairs than features the equality system is
        # overdetermined and this simple method can cycle; it is a polish, not a solver)
        if not float(alpha_guess.max(initial=0.0)) > 0:
            return None
        return self._active_set(program, alpha_guess, caps, start, status, stats, max_iter)

    def _active_set(self, program, alpha_guess, caps, start, status, stats, max_iter) -> Solution | None:
        """The active-set iterations of :meth:`_polish`; the certified solution or None."""
        delta, margins = program.delta, program.margins
        view = as_rows(delta)
        top = float(alpha_guess.max()) if alpha_guess.size else 0.0
        bound = np.isfinite(caps) & (alpha_guess >= caps * (1 - 1e-6)) & (top > 0)
        free = (alpha_guess > 1e-6 * top) & ~bound & (top > 0)
        for iteration in range(1, max_iter + 1):
            theta_b = view.T @ np.where(bound, caps, 0.0) if bound.any() else np.zeros(program.dim)
            alpha = np.where(bound, caps, 0.0)
            if free.any():
                rows = np.asarray(delta[free], dtype=np.float64)
                u = np.linalg.lstsq(rows, margins[free] - rows @ theta_b, rcond=None)[0]
                alpha_free = np.linalg.lstsq(rows.T, u, rcond=None)[0]
                alpha[free] = alpha_free
                theta = theta_b + u
            else:
                theta = theta_b
            slack = view @ theta - margins
            tol = 1e-12 * (float(np.abs(margins).max()) or 1.0)
            leave = free & (alpha < 0)
            over = free & (alpha > caps)
            enter = ~free & ~bound & (slack < -tol)
            release = bound & (slack > tol)
            if not (leave.any() or over.any() or enter.any() or release.any()):
                alpha = np.clip(alpha, 0.0, caps)
                cert = certify(program, theta, alpha, backend=self.name,
                               solver_status=f"active-set polish ({iteration} steps, after {status})",
                               solve_seconds=time.perf_counter() - start)
                diagnostics = dict(stats, polished=True)
                return self._keep(Solution(program, theta, alpha, cert, diagnostics)) if cert.optimal else None
            # one change of each kind per step, the worst first (keeps the method from cycling)
            if leave.any():
                free[np.flatnonzero(leave)[np.argmin(alpha[leave])]] = False
            if over.any():
                j = np.flatnonzero(over)[np.argmax(alpha[over] - caps[over])]
                free[j], bound[j] = False, True
            if enter.any():
                free[np.flatnonzero(enter)[np.argmin(slack[enter])]] = True
            if release.any():
                j = np.flatnonzero(release)[np.argmax(slack[release])]
                bound[j], free[j] = False, True
        return None

    def _keep(self, solution: Solution) -> Solution:
        """Remember ``solution`` as the warm start of the next solve; return it."""
        self._last = solution
        return solution

    def _initial_working_set(self, program, upper, warm_start) -> tuple[np.ndarray, np.ndarray]:
        """(W, H): the pairs of the first box QP and those held at their price α_i = C_i.

        A pair is held when its multiplier sits at its price (previous solution or screening) and
        it falls short of its margin by more than the band of pairs the screening is unsure about:
        such pairs stay at C_i at the optimum, and leaving them out of the box QP shrinks it from
        every pair at its price (most of the data when many pairs are noisy) to the few near their
        margins. A held pair that turns out to clear its margin is released by the rounds."""
        delta, margins = program.delta, program.margins
        view = as_rows(delta)
        n = program.n_pairs
        caps = np.array(upper, dtype=np.float64) if np.ndim(upper) == 1 else np.full(n, float(upper))
        warm = warm_start if warm_start is not None else self._last
        if warm is not None and warm.program.delta is delta and warm.duals.shape == (n,):
            # FA rounds edit margins (and prices) only: start from the previous support, what now
            # binds and the pairs within the band of their margin
            slack = view @ warm.theta - margins
            support = _support(warm.duals)
            at_cap = np.isfinite(caps) & (warm.duals >= caps * (1 - 1e-6))
            # the band: the warm_band pairs nearest their margins among those not on it already
            others = ~support | at_cap
            band = _band(slack[others], min(int(others.sum()), self.settings.warm_band, n // 6))
            held = at_cap & (slack < -band)
            work = (support | (slack <= band)) & ~held
            # a working set of more than half the pairs saves little and costs extra rounds
            if work.any() and work.sum() <= n // 2:
                return work, held
        if n <= self.settings.full_set_below:
            return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
        if self.settings.screening_levels and np.isfinite(caps).all():
            # soft margins: a few Newton steps on the smoothed primal find the pairs at their
            # price, which dual coordinate descent from α = 0 is slow to raise (a blocked Δ: two
            # passes over its blocks per step, and the sampled Hessian's rows gathered)
            levels = self.settings.screening_levels
            slack = view @ smoothed_primal_guess(delta, margins, caps, levels=levels) - margins
            band = max(_band(slack, 2 * program.dim + 50), 5 * levels[-1] * (float(np.abs(margins).max()) or 1.0))
            held = slack < -band
            return (slack <= band) & ~held, held
        alpha = np.zeros(n)
        theta = np.zeros(program.dim)
        qdiag = view.row_sq_norms()
        if is_blocked(delta):
            screen(delta, margins, caps, alpha, theta, qdiag, self.settings.screening_epochs)
        else:
            dual_coordinate_descent(delta, margins, caps, alpha, theta, qdiag, self.settings.screening_epochs,
                                    0.0, 0)
        slack = view @ theta - margins
        # the support candidates: on or inside the margin, with a band for the screening's error
        band = _band(slack, 2 * program.dim + 50)
        held = np.isfinite(caps) & (alpha >= caps) & (slack < -band)
        return ((alpha > 0) | (slack <= band)) & ~held, held


def _band(slack: np.ndarray, count: int) -> float:
    """The distance |Δ_iθ − m_i| within which the ``count`` pairs nearest their margins lie."""
    n = slack.size
    return float(np.quantile(np.abs(slack), min(1.0, count / n))) if n else 0.0


def _support(alpha: np.ndarray) -> np.ndarray:
    """Pairs whose multiplier is not negligible (interior-point duals are never exactly 0)."""
    top = float(alpha.max()) if alpha.size else 0.0
    return alpha > 1e-8 * top if top > 0 else np.zeros(alpha.shape, dtype=bool)
