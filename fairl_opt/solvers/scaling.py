"""Exact internal rescaling: every backend sees rows and margins of size about 1.

A program is solved on Δ̃ = Δ/s and m̃ = m/t with s and t powers of two, so the scaled data are
the original bits with a shifted exponent (exact in float64 and float32 away from overflow and
subnormals) and the answer maps back exactly:

================  ==============  ==================  ==============  ==============
program           θ               duals               objective       price / λ
================  ==============  ==================  ==============  ==============
``mm-qp``         θ = (t/s) θ̃    α = (t/s²) α̃       P = (t²/s²) P̃   C̃ = s² C / t
``mm-lp``         θ = (t/s) θ̃    α = α̃ / s          P = (t/s) P̃     C̃ = s C
``maxent``        θ = θ̃ / s      β = β̃              P = P̃           λ̃ = λ / s²
================  ==============  ==================  ==============  ==============

(Substitute into the programs of :mod:`fairl_opt.programs`: the slacks map as ξ = t ξ̃; MaxEnt has
no margins, so t = 1.) Because every product Δ_ij θ_j is the scaled product times the same power of
two, the certificate of the scaled answer on the scaled program is, bit for bit, the certificate
of the mapped answer on the original program with its absolute figures multiplied by the factors
above (``proofs/T11_certificate_scale.md``). Data already of size 2⁻¹⁰ … 2¹⁰ are used as given
(no copy of Δ).

Scale-free parameters whose float64 solution would over- or underflow are refused with a
:class:`~fairl_opt.exceptions.DataError` that names the argument and its usable range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.programs.blocks import as_rows, is_blocked

#: Rows and margins whose largest entry lies in [2^-WINDOW, 2^WINDOW] are not rescaled.
WINDOW = 10
#: Usable range of the scale-free slack price C̃ = s²C/t (QP) or sC (LP) once the shortcuts of
#: :meth:`fairl_opt.solvers.base.Backend.solve` (hard margin first for huge prices, every
#: multiplier at its bound for tiny ones) do not apply: beyond it the dual box spans more than
#: float64 can resolve next to rows and margins of size 1.
PRICE_RANGE = (1e-100, 1e8)
#: Usable range of λ̃ = λ/s² for MaxEnt (a huge λ̃ only pins θ near 0, which Newton handles).
REG_RANGE = (1e-100, 1e250)
#: Largest scale-free curvature w_i‖Δ_i‖²/(T_i²λ) of one MaxEnt pair a float64 Hessian can hold
#: beside λI.
CURVATURE_MAX = 1e30


def power_of_two(value: float) -> int:
    """The exponent e of the power of two 2^e nearest below ``value`` (> 0); 0 inside the
    no-rescale window."""
    if not (value > 0 and math.isfinite(value)):
        return 0
    exponent = math.frexp(value)[1] - 1  # value = f·2^(e+1), f ∈ [0.5, 1): 2^e ≤ value < 2^(e+1)
    return 0 if -WINDOW <= exponent <= WINDOW else exponent


def _pow2(exponent: int) -> float:
    with np.errstate(over="ignore", under="ignore"):
        return float(np.ldexp(1.0, exponent))


@dataclass(frozen=True)
class Scaling:
    """The powers of two s = 2^row_exp (rows) and t = 2^margin_exp (margins) a program is solved
    at, and the exact factors between the two sets of units."""

    row_exp: int = 0
    margin_exp: int = 0
    kind: str = "mm-qp"

    @property
    def identity(self) -> bool:
        return self.row_exp == 0 and self.margin_exp == 0

    @property
    def row_scale(self) -> float:
        return _pow2(self.row_exp)

    @property
    def margin_scale(self) -> float:
        return _pow2(self.margin_exp)

    # θ = theta_factor · θ̃, duals = dual_factor · dual̃, P = objective_factor · P̃
    @property
    def theta_factor(self) -> float:
        if self.kind == "maxent":
            return _pow2(-self.row_exp)
        return _pow2(self.margin_exp - self.row_exp)

    @property
    def dual_factor(self) -> float:
        if self.kind == "maxent":
            return 1.0
        if self.kind == "mm-qp":
            return _pow2(self.margin_exp - 2 * self.row_exp)
        return _pow2(-self.row_exp)

    @property
    def objective_factor(self) -> float:
        if self.kind == "maxent":
            return 1.0
        if self.kind == "mm-qp":
            return _pow2(2 * (self.margin_exp - self.row_exp))
        return _pow2(self.margin_exp - self.row_exp)

    @property
    def price_exp(self) -> int:
        """C̃ = 2^price_exp · C (margin programs) or λ̃ = 2^price_exp · λ (MaxEnt)."""
        if self.kind == "maxent":
            return -2 * self.row_exp
        return 2 * self.row_exp - self.margin_exp if self.kind == "mm-qp" else self.row_exp


def choose_scaling(program) -> Scaling:
    """The scaling for ``program``: s from its largest |Δ_ij|, t from its largest |m_i|."""
    s = power_of_two(as_rows(program.delta).abs_max())
    if isinstance(program, MaxEntProgram):
        return Scaling(s, 0, "maxent")
    return Scaling(s, power_of_two(float(np.abs(program.margins).max())), program.kind)


def scale_free_prices(program: MarginProgram) -> np.ndarray:
    """C_i in the units where rows and margins have size 1: C·max|Δ|²/max|m| (``mm-qp``) or
    C·max|Δ| (``mm-lp``) — invariant under the rescalings of the table above."""
    size = as_rows(program.delta).abs_max()
    top = float(np.abs(program.margins).max()) or 1.0
    prices = np.atleast_1d(np.asarray(program.C, dtype=np.float64))
    with np.errstate(over="ignore", under="ignore"):
        if program.norm == "l2":
            return prices * (size / top) * size
        return prices * size


def scale_free_reg(program: MaxEntProgram) -> float:
    """λ / max|Δ|², invariant under Δ → sΔ, λ → s²λ."""
    size = as_rows(program.delta).abs_max()
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        return float(program.reg / size / size) if size > 0 else float("inf")


def check_range(scaled) -> None:
    """Refuse a scaled program whose scale-free parameters float64 cannot solve (see the ranges
    above), naming the argument and the range it would need in the caller's units."""
    if isinstance(scaled, MaxEntProgram):
        lo, hi = REG_RANGE
        reg = scale_free_reg(scaled)
        if not (lo <= reg <= hi):
            raise DataError(
                f"reg (λ) is {reg:.3g} times the squared size of the rows; float64 solves "
                f"{lo:g} … {hi:g} (λ relative to max|Δ|²): "
                + ("a smaller λ leaves separable data with no resolvable optimum" if reg < lo
                   else "rescale the features")
            )
        row = as_rows(scaled.delta).row_abs_max()
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            curvature = scaled.weights * (row / scaled.temperatures) ** 2 / scaled.reg
        bad = ~(curvature <= CURVATURE_MAX)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"pair {i}: its curvature relative to the regulariser, w_i·max|Δ_i|²/(T_i²·λ) = "
                f"{curvature[i]:.3g} (weight {scaled.weights[i]:.3g}, temperature "
                f"{scaled.temperatures[i]:.3g}), is beyond the {CURVATURE_MAX:g} a float64 Hessian "
                "resolves: use a larger reg (λ), larger temperatures (sharpening compounds over FA "
                "rounds) or smaller weights"
            )
        return
    if scaled.hard:
        return
    lo, hi = PRICE_RANGE
    prices = scale_free_prices(scaled)
    bad = ~((prices >= lo) & (prices <= hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        shown = f"C[{i}] (pair {i})" if prices.size > 1 else "C"
        raise DataError(
            f"{shown}: the slack price relative to the rows and margins (C·max|Δ|²/max|m| for mm-qp, "
            f"C·max|Δ| for mm-lp) is {prices[i]:.3g}, outside the {lo:g} … {hi:g} float64 resolves for "
            "data that neither a hard margin nor all-slack answer fits; choose C in that range"
        )


def scaled_program(program, scaling: Scaling, delta=None):
    """``program`` on Δ/s (``delta`` when the caller already holds it) and m/t, with C or λ mapped."""
    if scaling.identity:
        return program
    if delta is None:
        delta = scale_rows(program.delta, scaling.row_exp)
    with np.errstate(over="ignore", under="ignore"):
        if isinstance(program, MaxEntProgram):
            reg = float(np.ldexp(program.reg, scaling.price_exp))
            if not (np.isfinite(reg) and reg > 0):
                raise DataError(f"reg (λ) = {program.reg:.3g} with rows as large as "
                                f"{as_rows(program.delta).abs_max():.3g} is outside float64")
            return replace(program, delta=delta, reg=reg)
        C = None if program.hard else np.ldexp(program.C, scaling.price_exp)
        if C is not None and not (np.all(np.isfinite(C)) and np.all(np.asarray(C) > 0)):
            raise DataError(f"C = {program.C} with rows as large as {as_rows(program.delta).abs_max():.3g} "
                            "is outside float64 once the rows are scaled to size 1; choose C closer to "
                            "max|m|/max|Δ|²")
        if np.ndim(C) == 0 and C is not None:
            C = float(C)
        margins = np.ldexp(program.margins, -scaling.margin_exp)
    return MarginProgram(delta, margins, program.norm, C)


def scale_rows(delta: np.ndarray, exponent: int) -> np.ndarray:
    """Δ/2^exponent in Δ's own dtype (exact away from overflow and subnormals); for a blocked Δ
    (memory-mapped or Dask) a view that scales each block as it is read, never a copy."""
    if exponent == 0:
        return delta
    if is_blocked(delta):
        return delta.scaled(exponent)
    with np.errstate(under="ignore"):
        return np.ldexp(delta, -exponent).astype(delta.dtype, copy=False)
