"""Certificates: how far a solver's answer can be from the true optimum, computed by our own code.

Every backend hands back θ and dual multipliers; :func:`certify` evaluates, the same way for all of
them, the primal objective P(θ), a dual objective D(α) that lower-bounds the optimum for ANY
dual-feasible α (weak duality, see :meth:`MarginProgram.dual_objective` and
:meth:`MaxEntProgram.dual_objective`), the gap P − D and the largest constraint violation. So a
certificate with a small gap and no violation proves θ is near-optimal without trusting the solver.

The acceptance rule is scale-invariant (``proofs/T11_certificate_scale.md``): the gap is compared
with the objective's own size, ``P − D ≤ gap_tol · |P|`` (no floor of 1 in the objective's units:
features of size 10⁶ give objectives of 10⁻¹², and an absolute floor would then accept any answer),
and a hard margin's shortfall with the margins' own size, ``max_i (m_i − Δ_iθ)₊ ≤ feas_tol · max|m|``.
Under Δ → sΔ, m → tm (θ → tθ/s, C → tC/s² for the QP, tC·… see the note) both ratios are unchanged,
so the same answer is accepted or refused at every scale.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

import numpy as np

from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.programs.blocks import EXTENDED, as_rows

#: Default acceptance: relative gap (to |P|) and hard-margin shortfall (relative to max|m|).
GAP_TOL = 1e-6
FEAS_TOL = 1e-7


class Status(str, enum.Enum):
    """A certificate's verdict. A ``str`` subclass: ``cert.status == "optimal"`` holds, and
    ``str()``, ``repr()``, f-strings and JSON give the plain value (so printed certificates and
    documented examples read as they did when the status was a string); compare with ``is``."""

    #: The relative gap and the relative violation are within the tolerances.
    OPTIMAL = "optimal"
    #: At least one of them is not (or a figure is not finite): the answer is not certified.
    INACCURATE = "inaccurate"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Certificate:
    """Evidence that θ solves a program.

    Attributes
    ----------
    status : Status
        :attr:`Status.OPTIMAL` when ``relative_gap <= gap_tol`` and ``relative_violation <= feas_tol``.
    solver_status : str
        What the backend itself reported.
    primal_objective, dual_objective : float
        P(θ) and D(α); D(α) ≤ optimum ≤ P(θ) when θ is feasible.
    gap, relative_gap : float
        P − D (absolute, in the objective's units) and (P − D)₊ / |P| (0 when P = D = 0).
    max_violation, relative_violation : float
        max_i max(0, m_i − Δ_i θ) for hard margins (soft programs and MaxEnt: 0), and the same
        divided by max_i |m_i| (by max_i |Δ_i|·|θ| when every margin is 0).
    gradient_bound : float or None
        MaxEnt only: ‖∇P(θ)‖² / (2λ) ≥ P(θ) − P* by λ-strong convexity.
    solve_seconds : float
        Time in the solver call alone.
    backend : str
    row_scale, margin_scale : float
        The powers of two s, t the backend solved on (Δ/s, m/t; see
        :mod:`fairl_opt.solvers.scaling`); 1 when the data were used as given.
    """

    status: Status
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
    relative_violation: float = 0.0
    row_scale: float = 1.0
    margin_scale: float = 1.0

    def __post_init__(self):
        # a plain string (a certificate read back from JSON) becomes the enum; unknown values fail
        object.__setattr__(self, "status", Status(self.status))

    @property
    def optimal(self) -> bool:
        """Whether the certificate accepts the answer (status :attr:`Status.OPTIMAL`)."""
        return self.status is Status.OPTIMAL

    def to_dict(self) -> dict:
        """The fields as plain Python values (``status`` as its string value), ready for JSON."""
        out = asdict(self)
        out["status"] = self.status.value
        return out


def relative_gap(primal: float, dual: float) -> float:
    """(P − D)₊ / |P|: 0 when the gap is ≤ 0 (rounding), ∞ when P = 0 < P − D."""
    gap = primal - dual
    if not (np.isfinite(primal) and np.isfinite(dual)):
        return float("inf")
    if gap <= 0:
        return 0.0
    return float(gap / abs(primal)) if primal != 0 else float("inf")


def relative_violation(program: MarginProgram, theta: np.ndarray, violation: float) -> float:
    """A hard margin's largest shortfall relative to the margins' own size (see :class:`Certificate`)."""
    if violation <= 0:
        return 0.0
    scale = float(np.abs(program.margins).max())
    if scale == 0:
        scale = float(as_rows(program.delta).abs_matvec(np.abs(theta)).max())
    return float(violation / scale) if scale > 0 else float("inf")


#: Products Δθ, Δᵀα in the certificate are accumulated in extended precision (80-bit on x86),
#: so that a θ of norm 10⁹ on rows of norm 1 still has its margins checked to 10⁻⁹.
_EXTENDED = EXTENDED

# Every pass over Δ below goes through :func:`~fairl_opt.programs.blocks.as_rows`: the whole-array
# numpy expressions for an in-memory Δ, a map-reduce over row blocks for a memory-mapped or Dask Δ —
# one set of formulas for every kind of Δ and every backend.


def _shortfall(program: MarginProgram, theta: np.ndarray) -> tuple[float, float]:
    """(max_i (m_i − Δ_iθ)₊ for hard margins (0 for soft), a bound on that figure's rounding).

    Δθ is accumulated in extended precision; the bound is γ_d·max_i Σ_j |Δ_ij θ_j| with γ_d for
    that precision (Higham's bound for a dot product), so a shortfall the float64 answer hides
    in rounding is not called feasible."""
    if not program.hard:
        return 0.0, 0.0
    d = program.dim
    rows = as_rows(program.delta)
    size = float(rows.abs_matvec(np.abs(theta)).max())
    top = float(np.abs(program.margins).max()) or size
    for dtype in (np.float64, _EXTENDED):
        eps = float(np.finfo(dtype).eps)
        gamma = (d + 2) * eps / (1 - (d + 2) * eps)
        # float64 suffices when its rounding is far below the tolerance (the usual case)
        if dtype is np.float64 and gamma * size > 1e-3 * FEAS_TOL * top:
            continue
        if dtype is np.float64:
            residual = program.margins - rows.matvec(theta)
        else:
            residual = program.margins.astype(_EXTENDED) - rows.matvec(theta, extended=True)
        return float(max(residual.max(), 0.0)), float(gamma * size)
    raise AssertionError("unreachable")  # pragma: no cover


def _soft_objective_upper(program: MarginProgram, theta: np.ndarray, primal: float, gap_tol: float) -> float:
    """An upper bound on a soft margin's true objective at θ.

    The slack term Σ C_i (m_i − Δ_iθ)₊ multiplies the rounding of each Δ_iθ by C_i, which can
    dwarf a small ½‖θ‖². When that rounding (Higham's bound, summed with the prices) is not
    negligible next to gap_tol·P, the slacks are recomputed in extended precision and the
    remaining bound is added, so the certificate never understates P."""
    d = program.dim
    prices = program.prices
    rows = as_rows(program.delta)
    size = rows.abs_matvec(np.abs(theta))
    eps = float(np.finfo(np.float64).eps)
    gamma = (d + 2) * eps / (1 - (d + 2) * eps)
    # only pairs within rounding of their margin (or short of it) can be mispriced: for the others
    # (m_i − Δ_iθ)₊ is 0 whatever the rounding
    residual = program.margins - rows.matvec(theta)
    near = residual > -2 * gamma * size
    if float(prices[near] @ size[near]) * gamma <= 1e-3 * gap_tol * abs(primal):
        return primal
    eps_x = float(np.finfo(_EXTENDED).eps)
    gamma_x = (d + 2) * eps_x / (1 - (d + 2) * eps_x)
    residual_x = program.margins.astype(_EXTENDED) - rows.matvec(theta, extended=True)
    slack_term = prices.astype(_EXTENDED) @ np.maximum(residual_x, 0)
    near = residual_x > -2 * gamma_x * size
    bound = float(prices[near] @ size[near]) * gamma_x
    return float(program.regulariser(theta) + float(slack_term) + bound)


def _dual_rounding(program: MarginProgram, alpha: np.ndarray) -> float:
    """A bound on the float64 rounding of mᵀα − ½‖Δᵀα‖² (terms of both signs cancel)."""
    alpha = program.project_dual(alpha)
    eps = float(np.finfo(np.float64).eps)
    n, d = program.delta.shape
    g_size = as_rows(program.delta).abs_rmatvec(np.abs(alpha))
    return float((n + 2) * eps * (np.abs(program.margins) @ alpha + g_size @ g_size))


def _qp_dual(program: MarginProgram, alpha: np.ndarray) -> float:
    """The QP's dual mᵀα − ½‖Δᵀα‖² at the projected α, accumulated in extended precision."""
    alpha = program.project_dual(alpha)
    g = as_rows(program.delta).rmatvec(alpha, extended=True)
    return float(program.margins.astype(_EXTENDED) @ alpha.astype(_EXTENDED) - g @ g / 2)


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
    duals = np.asarray(duals, dtype=np.float64)
    finite = bool(np.isfinite(theta).all() and np.isfinite(duals).all())
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        primal = program.objective(theta) if finite else float("nan")
        dual = program.dual_objective(duals) if finite else float("nan")
        gradient_bound = None
        if isinstance(program, MaxEntProgram):
            violation = 0.0
            rel_violation = 0.0
            if finite:
                grad = program.gradient(theta)
                gradient_bound = float(grad @ grad / (2.0 * program.reg))
        elif finite:
            violation, rounding = _shortfall(program, theta)
            rel_violation = relative_violation(program, theta, violation + rounding)
            if not program.hard:
                primal = _soft_objective_upper(program, theta, primal, gap_tol)
            if program.norm == "l2" and _dual_rounding(program, duals) > 1e-3 * gap_tol * abs(primal):
                dual = _qp_dual(program, duals)
        else:
            violation = rel_violation = float("nan")
    gap = primal - dual
    rel_gap = relative_gap(primal, dual)
    ok = bool(
        finite
        and np.isfinite(primal)
        and np.isfinite(dual)
        and rel_gap <= gap_tol
        and rel_violation <= feas_tol
    )
    return Certificate(
        status=Status.OPTIMAL if ok else Status.INACCURATE,
        solver_status=str(solver_status),
        primal_objective=float(primal),
        dual_objective=float(dual),
        gap=float(gap),
        relative_gap=float(rel_gap),
        max_violation=float(violation),
        solve_seconds=float(solve_seconds),
        backend=backend,
        gradient_bound=gradient_bound,
        gap_tol=gap_tol,
        feas_tol=feas_tol,
        relative_violation=float(rel_violation),
    )
