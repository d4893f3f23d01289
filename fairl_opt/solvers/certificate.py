"""Certificates: how far a solver's answer can be from the true optimum, computed by our own code.

Every backend hands back θ and dual multipliers; :func:`certify` evaluates, the same way for all of
them, the primal objective P(θ), a dual objective D(α) that lower-bounds the optimum for ANY
dual-feasible α (weak duality, see :meth:`MarginProgram.dual_objective` and
:meth:`MaxEntProgram.dual_objective`), the gap P − D and the largest constraint violation. So a
certificate with a small gap and no violation proves θ is near-optimal without trusting the solver.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fairl_opt.programs import MarginProgram, MaxEntProgram

#: Default acceptance: relative gap and violation (relative to the margin scale).
GAP_TOL = 1e-6
FEAS_TOL = 1e-7


@dataclass(frozen=True)
class Certificate:
    """Evidence that θ solves a program.

    Attributes
    ----------
    status : {"optimal", "inaccurate"}
        "optimal" when ``relative_gap <= gap_tol`` and ``max_violation <= feas_tol``.
    solver_status : str
        What the backend itself reported.
    primal_objective, dual_objective : float
        P(θ) and D(α); D(α) ≤ optimum ≤ P(θ) when θ is feasible.
    gap, relative_gap : float
        P − D and (P − D) / max(1, |P|).
    max_violation : float
        max_i max(0, m_i − Δ_i θ) for hard margins (soft programs and MaxEnt: 0).
    gradient_bound : float or None
        MaxEnt only: ‖∇P(θ)‖² / (2λ) ≥ P(θ) − P* by λ-strong convexity.
    solve_seconds : float
        Time in the solver call alone.
    backend : str
    """

    status: str
    solver_status: str
    primal_objective: float
    dual_objective: float
    gap: float
    relative_gap: float
    max_violation: float
    solve_seconds: float
    backend: str
    gradient_bound: float | None = None
    gap_tol: float = GAP_TOL
    feas_tol: float = FEAS_TOL

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"

    def to_dict(self) -> dict:
        return asdict(self)


def certify(
    program: MarginProgram | MaxEntProgram,
    theta: np.ndarray,
    duals: np.ndarray,
    *,
    backend: str,
    solver_status: str,
    solve_seconds: float,
    gap_tol: float = GAP_TOL,
    feas_tol: float = FEAS_TOL,
) -> Certificate:
    """Build the certificate of ``theta`` (with multipliers ``duals``) for ``program``."""
    theta = np.asarray(theta, dtype=np.float64)
    primal = program.objective(theta)
    gradient_bound = None
    if isinstance(program, MaxEntProgram):
        dual = program.dual_objective(duals)
        violation = 0.0
        grad = program.gradient(theta)
        gradient_bound = float(grad @ grad / (2.0 * program.reg))
        scale = 1.0
    else:
        dual = program.dual_objective(duals)
        violation = program.max_violation(theta)
        scale = max(1.0, float(np.abs(program.margins).max()))
    gap = primal - dual
    relative_gap = gap / max(1.0, abs(primal))
    ok = (
        np.isfinite(primal)
        and np.isfinite(dual)
        and relative_gap <= gap_tol
        and violation <= feas_tol * scale
    )
    return Certificate(
        status="optimal" if ok else "inaccurate",
        solver_status=str(solver_status),
        primal_objective=float(primal),
        dual_objective=float(dual),
        gap=float(gap),
        relative_gap=float(relative_gap),
        max_violation=float(violation),
        solve_seconds=float(solve_seconds),
        backend=backend,
        gradient_bound=gradient_bound,
        gap_tol=gap_tol,
        feas_tol=feas_tol,
    )
