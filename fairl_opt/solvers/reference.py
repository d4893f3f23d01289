"""The reference backend: cvxpy with Clarabel (QP, exponential cone) and HiGHS (LP).

Margins (and per-pair slack prices) enter as cvxpy Parameters, so a re-solve after the FA loop
edits margins or prices reuses the canonicalised problem (cvxpy's DPP cache) instead of rebuilding
it. The certificate is computed from θ and the constraint duals by
:func:`fairl_opt.solvers.certificate.certify`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import cvxpy as cp
import numpy as np

from fairl_opt.exceptions import SolverError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers.base import Backend, Solution
from fairl_opt.solvers.infeasibility import raise_infeasible
from fairl_opt.solvers.certificate import certify
from fairl_opt.solvers.settings import CvxpySettings

CLARABEL_OPTIONS = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=500)
HIGHS_OPTIONS = dict(log_to_console=False, output_flag=False)

_SOLVED = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
_INFEASIBLE = (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE)


class CvxpyBackend(Backend):
    """cvxpy reference backend (Clarabel for ``mm-qp`` and ``maxent``, HiGHS for ``mm-lp``).

    ``settings``: :class:`~fairl_opt.solvers.settings.CvxpySettings` (no knobs). Each solution's
    ``diagnostics``: ``solver`` (the cvxpy solver name). The last margin problem is kept (privately)
    so FA re-solves on the same rows only change its parameters.
    """

    name = "cvxpy"
    solves = "MarginProgram and MaxEntProgram"
    settings_class = CvxpySettings

    def _reset(self) -> None:
        self._cache = None  # (key, problem, theta_var, margin_param, constraint)

    def supports(self, program) -> bool:
        return isinstance(program, (MarginProgram, MaxEntProgram))

    def _solve(self, program, warm_start: Solution | None = None) -> Solution:
        if isinstance(program, MarginProgram):
            return self._solve_margin(program)
        if isinstance(program, MaxEntProgram):
            return self._solve_maxent(program)
        raise TypeError(f"cvxpy backend cannot solve {type(program).__name__}")

    # -- max-margin ------------------------------------------------------------------------------
    def _margin_problem(self, program: MarginProgram):
        # a scalar C is a constant of the problem (part of the key); per-pair prices are a
        # Parameter like the margins, so the FA loop's price edits also re-use the problem
        per_pair = program.per_pair_prices
        key = (program.norm, "per-pair" if per_pair else program.C, program.delta.shape)
        if self._cache is not None and self._cache[0] == key and self._cache[1] is program.delta:
            return self._cache[2:]
        n, d = program.delta.shape
        theta = cp.Variable(d)
        margins = cp.Parameter(n)
        prices = cp.Parameter(n, nonneg=True) if per_pair else None
        delta = np.asarray(program.delta, dtype=np.float64)
        if program.norm == "l2":
            reg = 0.5 * cp.sum_squares(theta)
        else:
            reg = cp.norm1(theta) if program.norm == "l1" else cp.norm_inf(theta)
        if program.hard:
            constraint = delta @ theta >= margins
            objective = reg
        else:
            slack = cp.Variable(n, nonneg=True)
            constraint = delta @ theta + slack >= margins
            objective = reg + (prices @ slack if per_pair else program.C * cp.sum(slack))
        problem = cp.Problem(cp.Minimize(objective), [constraint])
        self._cache = (key, program.delta, problem, theta, margins, prices, constraint)
        return problem, theta, margins, prices, constraint

    def _solve_margin(self, program: MarginProgram) -> Solution:
        problem, theta, margins, prices, constraint = self._margin_problem(program)
        margins.value = program.margins
        if prices is not None:
            prices.value = program.C
        solver = cp.CLARABEL if program.norm == "l2" else cp.HIGHS
        options = CLARABEL_OPTIONS if solver == cp.CLARABEL else HIGHS_OPTIONS
        seconds, status = _run(problem, solver, options)
        if status in _INFEASIBLE and program.hard:
            raise_infeasible(program, status)
        if status not in _SOLVED or theta.value is None:
            raise SolverError(
                f"{solver} returned status {status!r} on {program.kind} "
                f"({'hard' if program.hard else 'soft'} margin, n={program.n_pairs}, d={program.dim}); "
                + ("try a soft margin or another backend" if program.hard else
                   "try a smaller C (a price this high makes it a hard margin the pairs do not meet) "
                   "or another backend"),
                status=status,
            )
        duals = np.asarray(constraint.dual_value, dtype=np.float64)
        theta_value = np.asarray(theta.value, dtype=np.float64)
        cert = certify(program, theta_value, duals, backend=self.name, solver_status=status, solve_seconds=seconds)
        return Solution(program, theta_value, duals, cert, {"solver": solver})

    # -- maxent ----------------------------------------------------------------------------------
    def _solve_maxent(self, program: MaxEntProgram) -> Solution:
        d = program.dim
        theta = cp.Variable(d)
        scaled = np.asarray(program.delta, dtype=np.float64) / program.temperatures[:, None]
        shift = program.offsets / program.temperatures
        loss = cp.sum(cp.multiply(program.weights, cp.logistic(-(scaled @ theta + shift))))
        problem = cp.Problem(cp.Minimize(loss + 0.5 * program.reg * cp.sum_squares(theta)))
        seconds, status = _run(problem, cp.CLARABEL, CLARABEL_OPTIONS)
        if status not in _SOLVED or theta.value is None:
            raise SolverError(
                f"Clarabel returned status {status!r} on maxent (n={program.n_pairs}, d={d}); "
                "try backend='newton' or a larger reg",
                status=status,
            )
        theta_value = np.asarray(theta.value, dtype=np.float64)
        duals = program.dual_variables(theta_value)
        cert = certify(program, theta_value, duals, backend=self.name, solver_status=status, solve_seconds=seconds)
        return Solution(program, theta_value, duals, cert, {"solver": cp.CLARABEL})


def _run(problem: cp.Problem, solver: str, options: dict) -> tuple[float, str]:
    quiet = _stdout_silenced() if solver == cp.HIGHS else contextlib.nullcontext()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), quiet:
            warnings.simplefilter("ignore")  # cvxpy warns on inaccurate solutions; the certificate says it
            problem.solve(solver=solver, verbose=False, **options)
    except (cp.error.SolverError, ValueError) as exc:  # ValueError: cvxpy cannot unpack a failed solve
        raise SolverError(f"{solver} failed inside cvxpy: {exc}; try another backend or rescale the data") from None
    return time.perf_counter() - start, problem.status


@contextlib.contextmanager
def _stdout_silenced():
    """Silence file descriptor 1: HiGHS prints a banner from C on first use, which would corrupt
    JSON written to stdout by the CLI."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
