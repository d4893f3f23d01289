"""Fast exact LP backend for the ``mm-lp`` programs: HiGHS called directly (highspy), cutting planes.

Programs (``MarginProgram`` with ``norm="l1"`` or ``"linf"``, hard or soft margin)::

    min ‖θ‖₁ or ‖θ‖_∞ (+ Σ C_i ξ_i)   s.t.  Δ_i θ (+ ξ_i) ≥ m_i,  ξ ≥ 0

What HiGHS is given: the LP DUAL of the program over a working set W of pairs (one column α_i per
pair, d rows)::

    l1:    max Σ_{i∈W} m_i α_i   s.t.  −1 ≤ Σ_i α_i Δ_ik ≤ 1  (k = 1..d),     0 ≤ α_i ≤ C_i
    linf:  max Σ_{i∈W} m_i α_i   s.t.  Σ_i α_i Δ_ik − p_k + q_k = 0,  Σ_k (p_k + q_k) ≤ 1,
                                       p, q ≥ 0,  0 ≤ α_i ≤ C_i              (C_i = ∞ when hard)

(C_i = C for a scalar slack price, or the program's per-pair prices.)

θ is read off the row duals (θ = −y[:d]; HiGHS minimises −mᵀα), α off the column values.

Why the dual, and which HiGHS method (measured on dense Δ, n=3000, d=576, l1, one thread):

* primal rows + dual-simplex cutting planes: 297 s soft (C=1) / 17 s hard. The primal basis has
  one row per working-set pair (~2600 for the soft margin) and each hinge ξ_i > 0 costs a pivot.
* the dual (d×d basis; every α_i = C is a bound flip, not a pivot), dual simplex: 39 s / 40 s
  (~7 ms per pivot: HiGHS's LU is sparse, the basis here is a dense 576×576).
* the dual with HiGHS's interior point (IPX) + crossover: ≈ 7 s / 7 s. cvxpy + HiGHS: 90 s / 75 s.

So a cold solve of a large LP ((pairs in W)·d ≥ ``ipm_above``) runs IPX + crossover (crossover
leaves the basis that later rounds and warm re-solves hot-start from); small LPs use the dual
simplex. Hard-margin infeasibility shows up as an unbounded dual (a Farkas ray y ≥ 0, Δᵀy = 0,
mᵀy > 0) and is explained by :func:`raise_infeasible`.

Cutting planes (= column generation on the dual): W starts with the pairs closest to violation under
a cheap direction θ₀ = Σ m_i Δ_i/‖Δ_i‖² (or the warm solution's support and θ). Each round finds
every pair outside W with Δ_i θ < m_i − tol (for soft margins: every pair whose hinge would be
positive; outside W, ξ_i is 0 and α_i = 0, so the test is the same), adds the deepest batch (by
distance to the half-space) as columns in one ``addCols`` call and re-solves from the kept basis
(new α_i enter at 0: primal feasible, so the primal simplex hot-starts for hard margins; for soft
margins α_i ∈ [0, C] is boxed and the dual simplex hot-starts by bound flips). A large LP with many
violated pairs is instead re-solved cold by IPX with all of them added. The loop ends when no pair
is violated; the α of W extended by zeros are dual feasible for the full program, so
:func:`certify` checks all n constraints.

When cutting planes pay: a hot simplex pivot costs ~d² (dense basis) plus a pass over W·d, i.e.
7 ms at d=576 and 15-45 ms at d=1024, so a round that adds ~100 pairs to a large dense LP can cost
more than IPX on every pair (10000×1024 hard: 4096 → 4198 pairs in four rounds took 145 s, IPX on
all 10000 pairs ≈ 50 s; soft: 346 s). So large LPs (n·d ≥ ``ipm_above``) with n ≤ 32d start with
W = all pairs; CG is the default for smaller LPs (simplex throughout) and for n ≫ d, where the
active set (≤ d + 1 pairs for a hard margin at a vertex) is a small fraction of n.

Warm re-solve (the FA loop edits margins, and soft-margin slack prices when ``slack_upweight > 1``):
``solve(program, warm_start=prev)`` with the SAME ``delta`` object keeps the Highs instance and
changes the working-set COSTS in place (``changeColsCost``: the basis stays primal feasible, simplex
hot start; ~2 s instead of ~7 s cold on the benchmark after tightening 5% of the margins), then
continues the cutting-plane loop; changed prices C_i only change the α bounds
(``changeColsBounds``). Any other change rebuilds the model, seeded with the warm solution's support
and θ when the pair count matches.
"""

from __future__ import annotations

import time

import highspy
import numpy as np

from fairl_opt.exceptions import DataError, SolverError
from fairl_opt.programs import MarginProgram
from fairl_opt.solvers.base import Backend, Solution
from fairl_opt.solvers.infeasibility import raise_infeasible
from fairl_opt.solvers.certificate import FEAS_TOL, certify
from fairl_opt.solvers.settings import HighsSettings
from fairl_opt.solvers.reference import _stdout_silenced

INF = highspy.kHighsInf
_MS = highspy.HighsModelStatus
_DUAL_SIMPLEX, _PRIMAL_SIMPLEX = 1, 4

#: HiGHS options: silent, one thread, tolerances two orders tighter than the certificate's.
HIGHS_LP_OPTIONS = dict(
    output_flag=False,
    log_to_console=False,
    threads=1,
    primal_feasibility_tolerance=1e-9,
    dual_feasibility_tolerance=1e-9,
    small_matrix_value=1e-12,
)


class HighsLP(Backend):
    """Cutting-plane HiGHS backend for ``mm-lp`` (``norm`` "l1" / "linf", hard and soft margins).

    Parameters
    ----------
    settings : HighsSettings, optional
        The knobs (first working set, batch, violation tolerance, cutting planes on/off, when to
        use IPX, crossover, hot-start strategy, refinements, extra HiGHS options); see
        :class:`~fairl_opt.solvers.settings.HighsSettings`.

    Each solution's ``diagnostics``: ``working_set_size`` (pairs in the LP at the end, ≤ n),
    ``rounds`` (HiGHS runs in the call), ``reused`` (whether the call hot-started the kept Highs
    instance), ``iterations`` (simplex plus interior-point iterations over the runs). The Highs
    instance and its working set are kept (privately) for warm re-solves on the same rows.
    """

    name = "highs"
    solves = "MarginProgram with norm 'l1' or 'linf'"
    settings_class = HighsSettings

    def _reset(self) -> None:
        self._options = dict(HIGHS_LP_OPTIONS, **(self.settings.options or {}))
        self._highs = None
        self._delta = None  # the program.delta object the model was built from
        self._stats = {}

    def supports(self, program) -> bool:
        return isinstance(program, MarginProgram) and program.norm in ("l1", "linf")

    # -- public ------------------------------------------------------------------------------------
    def _solve(self, program, warm_start: Solution | None = None) -> Solution:
        if not self.supports(program):
            what = f"norm={program.norm!r}" if isinstance(program, MarginProgram) else type(program).__name__
            raise DataError(
                f"backend 'highs' solves only MarginProgram with norm 'l1' or 'linf', got {what}; "
                "use backend='cvxpy' (or the QP/MaxEnt backends) for it"
            )
        start = time.perf_counter()
        reuse = (
            self._highs is not None
            and program.delta is self._delta
            and program.norm == self._norm
            and program.hard == self._hard
        )
        self._stats = dict(rounds=0, working_set_size=0, reused=reuse, iterations=0)
        if reuse:
            self._update(program)
        else:
            self._build(program, warm_start)
        theta, alpha_ws, status = self._cutting_planes(program)
        duals = np.zeros(program.n_pairs)
        duals[self._ws] = alpha_ws
        self._stats["working_set_size"] = len(self._ws)
        seconds = time.perf_counter() - start
        cert = certify(program, theta, duals, backend=self.name, solver_status=status, solve_seconds=seconds)
        return Solution(program, theta, duals, cert, dict(self._stats))

    # -- model construction ---------------------------------------------------------------------
    def _build(self, program: MarginProgram, warm_start) -> None:
        self._highs = None
        with _stdout_silenced():
            highs = highspy.Highs()  # prints a banner to fd 1
            highs.disableCallbacks()  # highspy enables Python callbacks by default; none are used
            for key, value in self._options.items():
                if highs.setOptionValue(key, value) != highspy.HighsStatus.kOk:
                    raise DataError(f"HiGHS rejected option {key}={value!r}")
        self._delta = program.delta
        self._norm = program.norm
        self._hard = program.hard
        self._prices = program.prices  # C_i per pair (None for hard margins)
        D = np.ascontiguousarray(program.delta, dtype=np.float64)
        self._D = D
        n, d = D.shape
        self._row_norms = np.sqrt(np.einsum("ij,ij->i", D, D))
        none_i, none_f = np.zeros(0, dtype=np.int32), np.zeros(0)
        if program.norm == "l1":  # −1 ≤ Δᵀα ≤ 1
            highs.addRows(d, -np.ones(d), np.ones(d), 0, np.zeros(d, dtype=np.int32), none_i, none_f)
            self._base_cols = 0
        else:  # Δᵀα − p + q = 0,  Σ(p + q) ≤ 1
            highs.addRows(d, np.zeros(d), np.zeros(d), 0, np.zeros(d, dtype=np.int32), none_i, none_f)
            highs.addRow(-INF, 1.0, 0, none_i, none_f)
            index = np.empty((2 * d, 2), dtype=np.int32)
            index[:, 0] = np.r_[np.arange(d), np.arange(d)]
            index[:, 1] = d
            values = np.empty((2 * d, 2))
            values[:, 0] = np.r_[-np.ones(d), np.ones(d)]
            values[:, 1] = 1.0
            highs.addCols(
                2 * d, np.zeros(2 * d), np.zeros(2 * d), np.full(2 * d, INF), 4 * d,
                np.arange(0, 4 * d, 2, dtype=np.int32), index.ravel(), values.ravel(),
            )
            self._base_cols = 2 * d
        self._highs = highs
        self._has_basis = False  # a simplex basis to hot-start from (none after IPX without crossover)
        self._ws = np.zeros(0, dtype=np.int64)
        self._shift = np.zeros(0)  # cost offsets from _refine, per working-set pair
        self._in_ws = np.zeros(n, dtype=bool)
        self._add_pairs(program, self._initial_rows(program, warm_start))

    def _initial_rows(self, program: MarginProgram, warm_start) -> np.ndarray:
        n, d = program.delta.shape
        k = n if not self.settings.cutting_planes else self.settings.initial_rows
        if k is None:  # large dense LPs with n ≤ 32d: CG rounds cost more than IPX on all pairs
            k = n if n <= 32 * d and n * d >= self.settings.ipm_above else max(100, 4 * d, n // 5)
        k = int(min(n, max(1, k)))
        if k == n:
            return np.arange(n)
        D, m = self._D, program.margins
        norms = np.where(self._row_norms > 0, self._row_norms, 1.0)
        seeds = np.zeros(0, dtype=np.int64)
        theta0 = None
        if warm_start is not None and warm_start.program.n_pairs == n and np.shape(warm_start.theta) == (d,):
            seeds = np.flatnonzero(np.abs(np.asarray(warm_start.duals)) > 0)[:k]
            theta0 = np.asarray(warm_start.theta, dtype=np.float64)
        if theta0 is None or not np.any(theta0):
            theta0 = D.T @ (m / norms**2)
        z = D @ theta0
        zz = float(z @ z)
        c = float(m @ z) / zz if zz > 0 else 0.0
        c = c if c > 0 else 1.0
        score = (c * z - m) / norms  # signed distance to each half-space: smallest = most binding
        score[seeds] = -np.inf
        return np.argpartition(score, k - 1)[:k]

    def _add_pairs(self, program: MarginProgram, rows: np.ndarray) -> None:
        """Columns α_i for ``rows``: entries Δ_i in the first d rows, cost −m_i, 0 ≤ α_i ≤ C_i."""
        rows = np.asarray(rows, dtype=np.int64)
        k = len(rows)
        if k == 0:
            return
        D = self._D
        d = D.shape[1]
        values = D[rows]
        keep = values != 0.0
        counts = keep.sum(axis=1)
        starts = np.zeros(k, dtype=np.int32)
        np.cumsum(counts[:-1], out=starts[1:])
        index = np.broadcast_to(np.arange(d, dtype=np.int32), (k, d))[keep]
        upper = np.full(k, INF) if program.hard else self._prices[rows]
        self._highs.addCols(
            k, -program.margins[rows], np.zeros(k), upper, int(counts.sum()), starts, index, values[keep]
        )
        self._ws = np.r_[self._ws, rows]
        self._shift = np.r_[self._shift, np.zeros(k)]
        self._in_ws[rows] = True

    def _update(self, program: MarginProgram) -> None:
        """Same Δ: new margins as α costs (and new prices C_i as α bounds), in place; the basis is kept."""
        k = len(self._ws)
        self._shift = np.zeros(k)
        prices = program.prices
        if k:
            cols = (self._base_cols + np.arange(k)).astype(np.int32)
            self._highs.changeColsCost(k, cols, -program.margins[self._ws])
            if not program.hard:
                changed = prices[self._ws] != self._prices[self._ws]
                if changed.any():
                    self._highs.changeColsBounds(k, cols, np.zeros(k), prices[self._ws])
        self._prices = prices

    def _refine(self, program: MarginProgram, ws_violation: np.ndarray, refine_tol: float) -> bool:
        """Hard margins: raise the margin of working-set pairs that numpy finds violated.

        θ comes from HiGHS's row duals (y = B⁻ᵀc_B); when Σ_k|Δ_ik θ_k| ~ 1e7 (badly scaled data)
        Δ_i θ recomputed here differs by ~1e-14 relative, up to ~1e-7 absolute, which the
        certificate's absolute tolerance can reject. Raising those pairs' margins by the measured
        shortfall (their costs, in the dual) and re-solving (hot start, a few pivots) is one step
        of iterative refinement; the objective moves by Σ α_i·shift_i, far below the gap tolerance.
        """
        bad = np.flatnonzero(ws_violation > refine_tol)
        if len(bad) == 0:
            return False
        self._shift[bad] += ws_violation[bad]
        cols = (self._base_cols + bad).astype(np.int32)
        self._highs.changeColsCost(len(bad), cols, -(program.margins[self._ws[bad]] + self._shift[bad]))
        return True

    # -- the loop ----------------------------------------------------------------------------------
    def _large(self) -> bool:
        return len(self._ws) * self._D.shape[1] >= self.settings.ipm_above

    def _run_round(self) -> tuple:
        """One HiGHS run; cold first runs of large models use IPX + crossover. If the run ends in
        a status other than optimal or unbounded (seen on infeasible, badly scaled subproblems),
        the basis is dropped and the LP solved cold by the simplex, then by IPX."""
        highs = self._highs
        first = "ipm" if self._large() and not self._has_basis else "simplex"
        for attempt, solver in enumerate((first, "simplex", "ipm")):
            if attempt:
                highs.clearSolver()  # drop the basis: solve cold
            highs.setOptionValue("solver", solver)
            highs.setOptionValue("run_crossover", self.settings.crossover)
            hot = attempt == 0 and self._has_basis
            strategy = self.settings.hot_strategy or (_PRIMAL_SIMPLEX if self._hard else _DUAL_SIMPLEX)
            highs.setOptionValue("simplex_strategy", strategy if hot else _DUAL_SIMPLEX)
            _run(highs)
            info = highs.getInfo()
            self._stats["rounds"] += 1
            self._stats["iterations"] += max(0, int(info.simplex_iteration_count))
            self._stats["iterations"] += max(0, int(info.ipm_iteration_count))
            status = highs.getModelStatus()
            if status in (_MS.kOptimal, _MS.kUnbounded, _MS.kUnboundedOrInfeasible):
                break
        self._has_basis = status == _MS.kOptimal and (solver == "simplex" or self.settings.crossover != "off")
        return status

    def _cutting_planes(self, program: MarginProgram):
        D, m = self._D, program.margins
        n, d = D.shape
        tol = self.settings.tol * (float(np.abs(m).max()) or 1.0)
        refine_tol = 0.1 * FEAS_TOL * (float(np.abs(m).max()) or 1.0)
        batch = self.settings.batch if self.settings.batch is not None else max(50, n // 10)
        refinements = 0
        while True:
            status = self._run_round()
            text = self._highs.modelStatusToString(status)
            if status in (_MS.kUnbounded, _MS.kUnboundedOrInfeasible) and program.hard:
                self._highs = None  # do not hot-start from this model again
                raise_infeasible(program, f"HiGHS: dual LP {text}")
            if status != _MS.kOptimal:
                self._highs = None
                raise SolverError(
                    f"HiGHS returned model status {text!r} on {program.kind} ({program.norm}, "
                    f"{'hard' if program.hard else 'soft'} margin, n={n}, d={d}, "
                    f"{len(self._ws)} pairs in the working set); "
                    + ("try a soft margin or backend='cvxpy'" if program.hard else
                       "try a smaller C (a price this high makes it a hard margin the pairs do not "
                       "meet) or backend='cvxpy'"),
                    status=text,
                )
            solution = self._highs.getSolution()
            theta = -np.asarray(solution.row_dual, dtype=np.float64)[:d]
            violation = m - D @ theta
            refined = False
            if program.hard and refinements < self.settings.max_refinements:
                refined = self._refine(program, violation[self._ws], refine_tol)
                refinements += refined
            violation[self._in_ws] = -np.inf
            candidates = np.flatnonzero(violation > tol)
            if len(candidates) == 0 and not refined:
                alpha = np.asarray(solution.col_value, dtype=np.float64)[self._base_cols :]
                return theta, alpha, text
            if self._large() and len(candidates) > max(50, d // 4):
                # many violated pairs in a large LP: a hot simplex would need thousands of pivots
                # at ~d² each; IPX (+ crossover) on the enlarged working set is faster
                self._highs.clearSolver()
                self._has_basis = False
            elif len(candidates) > batch:
                norms = self._row_norms[candidates]
                depth = violation[candidates] / np.where(norms > 0, norms, 1.0)
                candidates = candidates[np.argpartition(-depth, batch - 1)[:batch]]
            self._add_pairs(program, candidates)


def _run(highs) -> None:
    """``highs.run()`` silenced. HiGHS keeps one process-wide thread scheduler: if another Highs
    instance (e.g. cvxpy's) created it with more threads, a run with ``threads=1`` fails at once
    with status kError / model status Notset; then the scheduler is reset and the run retried."""
    with _stdout_silenced():
        result = highs.run()
        if result == highspy.HighsStatus.kError and highs.getModelStatus() == _MS.kNotset:
            reset = getattr(highspy.Highs, "resetThreadScheduler", None) or highspy.Highs.resetGlobalScheduler
            reset(True)
            highs.run()


__all__ = ["HighsLP", "HIGHS_LP_OPTIONS"]
