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

#: Rows and margins whose largest entry lies in [2^-WINDOW, 2^WINDOW] are not rescaled.
WINDOW = 10
#: Usable range of the scale-free slack price C̃ = s²C/t (QP) or sC (LP), and of λ̃ = λ/s² (MaxEnt):
#: beyond it the dual box or the Hessian spans more than float64 can hold next to the data.
PRICE_RANGE = (1e-150, 1e150)


def power_of_two(value: float) -> float:
    """The power of two nearest to ``value`` (> 0) on a log scale; 1 inside the no-rescale window."""
    if not (value > 0 and math.isfinite(value)):
        return 1.0
    exponent = math.frexp(value)[1] - 1  # value = f·2^(e+1), f ∈ [0.5, 1): 2^e ≤ value < 2^(e+1)
    if -WINDOW <= exponent <= WINDOW:
        return 1.0
    return math.ldexp(1.0, exponent)


@dataclass(frozen=True)
class Scaling:
    """The powers of two s (rows) and t (margins) a program is solved at, and the maps between."""

    row_scale: float = 1.0
    margin_scale: float = 1.0
    kind: str = "mm-qp"

    @property
    def identity(self) -> bool:
        return self.row_scale == 1.0 and self.margin_scale == 1.0

    # θ = θ_factor · θ̃, duals = dual_factor · dual̃, P = objective_factor · P̃
    @property
    def theta_factor(self) -> float:
        if self.kind == "maxent":
            return 1.0 / self.row_scale
        return self.margin_scale / self.row_scale

    @property
    def dual_factor(self) -> float:
        if self.kind == "maxent":
            return 1.0
        if self.kind == "mm-qp":
            return self.margin_scale / self.row_scale**2
        return 1.0 / self.row_scale

    @property
    def objective_factor(self) -> float:
        if self.kind == "maxent":
            return 1.0
        if self.kind == "mm-qp":
            return (self.margin_scale / self.row_scale) ** 2
        return self.margin_scale / self.row_scale

    def price_factor(self) -> float:
        """C̃ = price_factor · C (margin programs) or λ̃ = price_factor · λ (MaxEnt)."""
        s, t = self.row_scale, self.margin_scale
        if self.kind == "maxent":
            return 1.0 / s**2
        return s * s / t if self.kind == "mm-qp" else s


def choose_scaling(program) -> Scaling:
    """The scaling for ``program``: s from its largest |Δ_ij|, t from its largest |m_i|."""
    s = power_of_two(float(np.abs(program.delta).max()))
    if isinstance(program, MaxEntProgram):
        scaling = Scaling(s, 1.0, "maxent")
    else:
        t = power_of_two(float(np.abs(program.margins).max()))
        scaling = Scaling(s, t, program.kind)
    _check_range(program, scaling)
    return scaling


def _check_range(program, scaling: Scaling) -> None:
    lo, hi = PRICE_RANGE
    f = scaling.price_factor()
    if isinstance(program, MaxEntProgram):
        name, values = "reg (λ)", np.array([program.reg])
    elif program.hard:
        return
    else:
        name, values = "C", np.atleast_1d(program.C)
    scaled = values * f
    bad = ~((scaled >= lo) & (scaled <= hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        shown = f"{name}[{i}]" if values.size > 1 else name
        size = float(np.abs(program.delta).max())
        span = (lo / f, hi / f)
        raise DataError(
            f"{shown} = {values[i]:.3g} is outside the range float64 can solve for these data "
            f"(largest |Δ| = {size:.3g}"
            + ("" if isinstance(program, MaxEntProgram) else f", largest |m| = {float(np.abs(program.margins).max()):.3g}")
            + f"): use {span[0]:.3g} ≤ {name} ≤ {span[1]:.3g}"
        )


def scaled_program(program, scaling: Scaling, delta=None):
    """``program`` on Δ/s (``delta`` when the caller already holds it) and m/t, with C or λ mapped."""
    if scaling.identity:
        return program
    if delta is None:
        delta = scale_rows(program.delta, scaling.row_scale)
    f = scaling.price_factor()
    if isinstance(program, MaxEntProgram):
        return replace(program, delta=delta, reg=program.reg * f)
    C = None if program.hard else program.C * f
    return MarginProgram(delta, program.margins / scaling.margin_scale, program.norm, C)


def scale_rows(delta: np.ndarray, s: float) -> np.ndarray:
    """Δ/s in Δ's own dtype (exact: s is a power of two)."""
    if s == 1.0:
        return delta
    return np.ldexp(delta, -int(math.log2(s))).astype(delta.dtype, copy=False)
