"""The convex reward programs as data. Nothing here solves; backends translate these.

Conventions (Δ = ``delta``, one row per preference pair):

* :class:`MarginProgram` with ``norm="l2"`` (``mm-qp``)::

      min ½‖θ‖₂² (+ Σ C_i ξ_i)   s.t.  Δ_i θ ≥ m_i (− ξ_i),  ξ ≥ 0

  with one slack price C for every pair or a price C_i per pair.

* ``norm="l1"`` / ``norm="linf"`` (``mm-lp``): the same constraints with ‖θ‖₁ or ‖θ‖_∞ as objective.
* :class:`MaxEntProgram` (``maxent``, Bradley–Terry)::

      min Σ_i w_i log(1 + exp(−(Δ_i θ + o_i) / T_i)) + (λ/2)‖θ‖₂²,   λ > 0

  ``o`` is an offset per pair (0 by default); the dual-path correction uses it.

``delta`` is an in-memory array, or — for data that should not be loaded whole — an ``np.memmap``
(e.g. ``np.load(path, mmap_mode="r")``) or a row-chunked Dask array, float32 or float64: those are
kept as :class:`~fairl_opt.programs.blocks.RowBlocks` (validated block by block, never copied into
RAM) and every pass over them is a map-reduce over row blocks (:mod:`fairl_opt.programs.blocks`).

``C=None`` means a hard margin. Each program also knows its own objective and the dual function
whose value at any dual-feasible point lower-bounds the optimum (weak duality): certificates use
those, the same for every backend.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.programs.blocks import RowBlocks, as_rows, is_blocked, to_blocks

NORMS = ("l2", "l1", "linf")
_DUAL_NORM_ORD = {"l1": np.inf, "linf": 1}


def _cut(delta, rows):
    """Δ's rows ``rows``: a copy of them for an in-memory Δ, a view
    (:class:`~fairl_opt.programs.subset_rows.SubsetRows`, rows in increasing order) for a blocked one."""
    if is_blocked(delta):
        from fairl_opt.programs.subset_rows import subset_rows

        return subset_rows(delta, rows)
    return delta[rows]


def _check_delta(delta) -> np.ndarray | RowBlocks:
    blocked = to_blocks(delta)  # memmap / Dask / RowBlocks: checked block-wise, never loaded
    if blocked is not None:
        return blocked
    delta = _real_array("delta", delta, keep_float32=True)
    if delta.ndim != 2 or delta.shape[0] == 0 or delta.shape[1] == 0:
        raise DataError(f"delta must be a non-empty 2-D array (pairs x features), got shape {delta.shape}")
    bad = ~np.isfinite(delta).all(axis=1)
    if bad.any():
        raise DataError(f"pair {int(np.flatnonzero(bad)[0])}: delta has NaN/inf")
    return delta


def real_scalar(name: str, value) -> float:
    """``value`` as a float, or a DataError naming ``name`` (strings, bools, complex and arrays
    are refused: ``C="1"`` is a mistake, not a number)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise DataError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def _real_array(name: str, value, keep_float32: bool = False) -> np.ndarray:
    """``value`` as a float64 array (float32 kept when asked: Δ is never copied), or a DataError
    naming ``name`` for complex, object, string or other non-real dtypes."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be real numbers: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{name} must hold real numbers (float or int), got dtype {arr.dtype}")
    if arr.dtype == np.float64 or (keep_float32 and arr.dtype == np.float32):
        return arr
    return arr.astype(np.float64)


def _per_pair(name: str, value, n: int, default: float, positive: bool = False, nonneg=False) -> np.ndarray:
    if value is None:
        return np.full(n, default, dtype=np.float64)
    arr = _real_array(name, value)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise DataError(f"{name} must be a scalar or have one entry per pair ({n}), got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if positive:
        bad |= arr <= 0
    if nonneg:
        bad |= arr < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        need = "positive and finite" if positive else ("non-negative and finite" if nonneg else "finite")
        raise DataError(f"{name}[{i}] = {arr[i]} (pair {i}) must be {need}")
    return arr


class _Rows:
    """Shape of a program's difference matrix ``delta``."""

    @property
    def n_pairs(self) -> int:
        return self.delta.shape[0]

    @property
    def dim(self) -> int:
        return self.delta.shape[1]

    @property
    def delta_rows(self) -> RowBlocks:
        """Δ behind :class:`~fairl_opt.programs.blocks.RowBlocks` (a float32 Δ's products by
        float64 blocks, never a whole-array copy)."""
        return as_rows(self.delta)


@dataclass(frozen=True, eq=False)
class MarginProgram(_Rows):
    """Max-margin program over difference rows (``mm-qp`` for ``norm="l2"``, ``mm-lp`` otherwise).

    Parameters
    ----------
    delta : (n, d) array
        Difference rows Δ_i = φ(chosen_i) − φ(rejected_i).
    margins : (n,) array or float, default 1
        Required margin m_i of each pair.
    norm : {"l2", "l1", "linf"}
        Objective: ½‖θ‖₂² (QP) or ‖θ‖₁ / ‖θ‖_∞ (LP).
    C : float, (n,) array or None
        Slack penalty (price of a unit of slack): one value for every pair, or one positive
        finite price C_i per pair (the objective is then ``Σ C_i ξ_i``; the FA loop raises the
        prices of failures, see :class:`fairl_opt.fa.FASettings`). An array is copied. None gives
        the hard-margin program.

    Examples
    --------
    >>> import numpy as np
    >>> prog = MarginProgram(np.array([[2.0, 0.0]]))
    >>> prog.objective(np.array([0.5, 0.0]))
    0.125
    """

    delta: np.ndarray
    margins: np.ndarray | float | None = None
    norm: str = "l2"
    C: float | np.ndarray | None = None

    def __post_init__(self):
        delta = _check_delta(self.delta)
        if self.norm not in NORMS:
            raise DataError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.C is not None and np.ndim(self.C) == 0:
            object.__setattr__(self, "C", real_scalar("C", self.C))
            if not (np.isfinite(self.C) and self.C > 0):
                raise DataError(f"C must be positive and finite (or None for a hard margin), got {self.C}")
        elif self.C is not None:
            # per-pair prices: always a private copy (the caller may keep editing its array)
            prices = _real_array("C", self.C).copy()
            if prices.shape != (delta.shape[0],):
                raise DataError(
                    f"C must be a scalar or have one price per pair ({delta.shape[0]}), got shape {prices.shape}"
                )
            object.__setattr__(self, "C", _per_pair("C", prices, delta.shape[0], 1.0, positive=True))
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "margins", _per_pair("margins", self.margins, delta.shape[0], 1.0))

    @property
    def kind(self) -> str:
        return "mm-qp" if self.norm == "l2" else "mm-lp"

    @property
    def hard(self) -> bool:
        return self.C is None

    @property
    def per_pair_prices(self) -> bool:
        """Whether C is an array of per-pair prices (False for a scalar C and for hard margins)."""
        return isinstance(self.C, np.ndarray)

    @property
    def prices(self) -> np.ndarray | None:
        """C_i for every pair as a new (n,) array (a scalar C repeated); None for a hard margin."""
        if self.hard:
            return None
        if self.per_pair_prices:
            return self.C.copy()
        return np.full(self.n_pairs, float(self.C))

    def with_margins(self, margins) -> "MarginProgram":
        """The same program with new required margins (the FA loop's main edit)."""
        # a copy: callers (the FA loop) keep editing their own array
        return replace(self, margins=np.array(margins, dtype=np.float64, copy=True))

    def with_prices(self, C) -> "MarginProgram":
        """The same program with a new slack price: a scalar, per-pair prices (copied) or None (hard)."""
        return replace(self, C=C)

    def restrict(self, rows) -> "MarginProgram":
        """The program on a subset of pairs (for out-of-fold fits and dual-path corrections)."""
        rows = np.asarray(rows, dtype=np.int64)
        C = self.C[rows] if self.per_pair_prices else self.C
        return MarginProgram(_cut(self.delta, rows), self.margins[rows], self.norm, C)

    def regulariser(self, theta: np.ndarray) -> float:
        if self.norm == "l2":
            return 0.5 * float(theta @ theta)
        return float(np.linalg.norm(theta, 1 if self.norm == "l1" else np.inf))

    def slacks(self, theta: np.ndarray) -> np.ndarray:
        """ξ_i = max(0, m_i − Δ_i θ): how far each pair falls short of its margin."""
        return np.maximum(0.0, self.margins - self.delta_rows @ theta)

    def objective(self, theta: np.ndarray) -> float:
        """Primal objective at θ (for soft margins with the optimal slacks ξ(θ))."""
        value = self.regulariser(theta)
        if self.per_pair_prices:
            value += float(self.C @ self.slacks(theta))
        elif not self.hard:
            value += self.C * float(self.slacks(theta).sum())
        return value

    def max_violation(self, theta: np.ndarray) -> float:
        """Largest constraint violation: max_i ξ_i for hard margins; 0 for soft (ξ(θ) is feasible)."""
        return float(self.slacks(theta).max()) if self.hard else 0.0

    def dual_objective(self, alpha: np.ndarray) -> float:
        """A lower bound on the optimum from any multipliers α (projected to be dual feasible).

        α_i is clipped to [0, C_i] (or [0, ∞) for hard margins). For the QP the dual is
        ``mᵀα − ½‖Δᵀα‖²``; for the LPs it is ``mᵀα`` over the dual-norm ball ‖Δᵀα‖_* ≤ 1, so α is
        scaled down into the ball first (scaling by a factor ≤ 1 keeps α_i ≤ C_i). The prices enter
        the dual only through the box: for per-pair prices the dual is the same function over
        0 ≤ α_i ≤ C_i.
        """
        alpha = self.project_dual(alpha)
        g = self.delta_rows.T @ alpha
        if self.norm == "l2":
            return float(self.margins @ alpha - 0.5 * g @ g)
        return float(self.margins @ alpha)

    def project_dual(self, alpha: np.ndarray) -> np.ndarray:
        """Nearest-by-construction dual-feasible multipliers (see :meth:`dual_objective`)."""
        alpha = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, np.inf if self.hard else self.C)
        if self.norm != "l2":
            dual_norm = float(np.linalg.norm(self.delta_rows.T @ alpha, _DUAL_NORM_ORD[self.norm]))
            if dual_norm > 1.0:
                alpha = alpha / dual_norm
        return alpha


def logistic_loss(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(−z)), stable for large |z|."""
    return np.logaddexp(0.0, -z)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(p < 1, (1 - p) * np.log1p(-p), 0.0))
    return h


@dataclass(frozen=True, eq=False)
class MaxEntProgram(_Rows):
    """Bradley–Terry / MaxEnt reward program (``maxent``).

    ``min Σ_i w_i log(1 + exp(−(Δ_i θ + o_i)/T_i)) + (λ/2)‖θ‖²``.

    Parameters
    ----------
    delta : (n, d) array
    reg : float
        λ > 0. Separable data have no finite optimum without it.
    weights : (n,) array or float, default 1
        w_i > 0 (the FA loop up-weights failures).
    temperatures : (n,) array or float, default 1
        T_i > 0 (the FA loop sharpens failures with T_j < 1).
    offsets : (n,) array or float, default 0
        o_i added to Δ_i θ (the dual-path correction fits θ_c with o = Δ θ_b).

    Examples
    --------
    >>> import numpy as np
    >>> prog = MaxEntProgram(np.array([[1.0]]), reg=1.0)
    >>> round(prog.objective(np.array([0.0])), 6)
    0.693147
    """

    delta: np.ndarray
    reg: float = 1.0
    weights: np.ndarray | float | None = None
    temperatures: np.ndarray | float | None = None
    offsets: np.ndarray | float | None = None

    def __post_init__(self):
        delta = _check_delta(self.delta)
        if self.reg is not None:
            object.__setattr__(self, "reg", real_scalar("reg (λ)", self.reg))
        if self.reg is None or not (np.isfinite(self.reg) and self.reg > 0):
            raise DataError(
                f"reg (λ) must be positive and finite, got {self.reg}: without it separable data "
                "have no finite optimum"
            )
        n = delta.shape[0]
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "reg", float(self.reg))
        object.__setattr__(self, "weights", _per_pair("weights", self.weights, n, 1.0, positive=True))
        object.__setattr__(
            self, "temperatures", _per_pair("temperatures", self.temperatures, n, 1.0, positive=True)
        )
        object.__setattr__(self, "offsets", _per_pair("offsets", self.offsets, n, 0.0))

    kind = "maxent"
    hard = False

    def with_weights(self, weights=None, temperatures=None) -> "MaxEntProgram":
        """The same program with new weights and/or temperatures (the FA loop's only edit)."""
        return replace(
            self,
            weights=self.weights if weights is None else np.array(weights, dtype=np.float64, copy=True),
            temperatures=(
                self.temperatures if temperatures is None else np.array(temperatures, dtype=np.float64, copy=True)
            ),
        )

    def restrict(self, rows) -> "MaxEntProgram":
        """The program on a subset of pairs (for out-of-fold fits and dual-path corrections)."""
        rows = np.asarray(rows, dtype=np.int64)
        return MaxEntProgram(
            _cut(self.delta, rows), self.reg, self.weights[rows], self.temperatures[rows], self.offsets[rows]
        )

    def scores(self, theta: np.ndarray) -> np.ndarray:
        """s_i = (Δ_i θ + o_i) / T_i."""
        return (self.delta_rows @ theta + self.offsets) / self.temperatures

    def objective(self, theta: np.ndarray) -> float:
        s = self.scores(theta)
        return float(self.weights @ logistic_loss(s) + 0.5 * self.reg * theta @ theta)

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        s = self.scores(theta)
        beta = _sigmoid(-s)  # ∂ℓ/∂s = −σ(−s)
        # (not −Δᵀv: the unary minus would copy Δ)
        return self.reg * theta - self.delta_rows.T @ (self.weights * beta / self.temperatures)

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Σ w_i σ(s_i)σ(−s_i)/T_i² Δ_iΔ_iᵀ + λI (d × d)."""
        s = self.scores(theta)
        curv = self.weights * _sigmoid(s) * _sigmoid(-s) / self.temperatures**2
        return as_rows(self.delta).weighted_gram(curv) + self.reg * np.eye(self.dim)

    def dual_variables(self, theta: np.ndarray) -> np.ndarray:
        """β_i = σ(−s_i) ∈ [0, 1]: the dual point that θ maps to (exact at the optimum)."""
        return _sigmoid(-self.scores(theta))

    def dual_objective(self, beta: np.ndarray) -> float:
        """Fenchel dual value at β ∈ [0, 1]ⁿ, a lower bound on the optimum for every such β.

        With a_i = Δ_i/T_i and c_i = o_i/T_i the dual is
        ``Σ w_i (H(β_i) − β_i c_i) − ‖Σ w_i β_i a_i‖²/(2λ)`` where H is the binary entropy; its
        maximiser satisfies θ = Σ w_i β_i a_i / λ.
        """
        beta = np.clip(np.asarray(beta, dtype=np.float64), 0.0, 1.0)
        wb = self.weights * beta
        g = self.delta_rows.T @ (wb / self.temperatures)
        c = self.offsets / self.temperatures
        return float(self.weights @ _binary_entropy(beta) - wb @ c - g @ g / (2.0 * self.reg))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


Program = MarginProgram | MaxEntProgram

__all__ = ["MarginProgram", "MaxEntProgram", "Program", "NORMS", "logistic_loss"]
