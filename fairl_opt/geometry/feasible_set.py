"""Feasible sets of reward directions: F = {θ : ‖θ‖₂ ≤ 1, Aθ ≥ b} — the one convention of the geometry.

The unit ball makes every F bounded, so "unbounded" never arises; F can be **empty** (then an
:class:`~fairl_opt.exceptions.InfeasibleError` carries a certificate) or **flat** (non-empty without
interior, volume 0).

Sets built from a max-margin program
------------------------------------
The hard-margin constraints ``Δθ ≥ m`` describe an unbounded polyhedron P(m), and the cone of
directions it generates, {Δθ ≥ 0}, does not change when margins are tightened: any direction with
Δu > 0 meets any margin after scaling. So the geometry fixes a *norm budget*. For one scale ρ > 0 ::

    F(m; ρ) = {θ : ‖θ‖₂ ≤ 1, Δθ ≥ ρ·m}  =  ρ · (P(m) ∩ {‖θ‖₂ ≤ 1/ρ}),

the rewards that meet every margin with norm at most 1/ρ, rescaled into the unit ball. Then

* ``F_std = F(m_std; ρ)`` and ``F_FA = F(m_FA; ρ)`` with the SAME ρ. The FA loop only raises
  margins (m_FA ≥ m_std entrywise), so F_FA ⊆ F_std, and the rounds give nested sets
  F_0 ⊇ F_1 ⊇ … (round 0 = the standard program; each round's margins are read from
  :meth:`fairl_opt.fa.FAResult.round_margins`).
* ρ is chosen so the smallest set still has interior: with n*(m) = min{‖θ‖₂ : Δθ ≥ m} (the
  hard-margin program's norm), ``ρ = 1 / (budget · n*(m_final))`` with ``budget > 1`` (default 2:
  rewards up to twice the norm of the smallest reward meeting the final FA margins). At budget → 1
  the FA set shrinks to a point; as budget → ∞ both sets tend to the same cone and the ratio to 1,
  so a volume ratio is always reported together with its budget.
* ``b = 0`` (:meth:`FeasibleSet.cone`) gives the cone of consistent directions itself; its volume
  fraction is the probability that a random direction orders every pair correctly.

Code that speaks of a norm budget R instead (the claims of :mod:`fairl_opt.geometry.claims`, the
exact checks of :mod:`fairl_opt.geometry.exact`, ``proofs/``) uses ρ = 1/R and multiplies points and
radii by R at its boundary.

Soft-margin programs contribute their hard constraints ``Δθ ≥ m`` (when those are infeasible the
set is empty, with the Farkas certificate of :func:`fairl_opt.solvers.find_conflict`).
MaxEnt programs have no constraints to take a set from (the FA loop re-weights them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fairl_opt.exceptions import DataError, InfeasibleError, SolverError
from fairl_opt.geometry import conic
from fairl_opt.programs import MarginProgram

#: Chebyshev radius at or below which F counts as flat (no interior, volume 0).
FLAT_RADIUS = 1e-7
#: An emptiness certificate must separate bᵀy from ‖Aᵀy‖ by more than this (rows normalised).
CERTIFICATE_TOL = 1e-9


def empty_set_error(message, rows, farkas, bound, reach) -> InfeasibleError:
    """The error for an empty F: ``rows`` with multipliers ``farkas`` = y ≥ 0 and ``bound`` = bᵀy >
    ``reach`` = ‖Aᵀy‖₂. Any θ with Aθ ≥ b on those rows has bᵀy ≤ yᵀAθ ≤ ‖Aᵀy‖₂‖θ‖₂, so none has
    ‖θ‖ < bound/reach (the error's ``radius``, > 1: the unit ball holds no point of F)."""
    radius = float("inf") if reach == 0 else float(bound) / float(reach)
    return InfeasibleError(message, rows=[int(i) for i in rows], farkas=farkas, radius=radius,
                           bound=float(bound), reach=float(reach))


@dataclass(frozen=True)
class ChebyshevBall:
    """The largest ball inside F: ``centre`` (d,) and ``radius`` (0 for a flat F)."""

    centre: np.ndarray
    radius: float


@dataclass(frozen=True, eq=False)
class FeasibleSet:
    """F = {θ ∈ R^d : ‖θ‖₂ ≤ 1, Aθ ≥ b}.

    Parameters
    ----------
    A : (m, d) array
        Constraint rows (m may be 0: F is then the unit ball). No row may be zero.
    b : (m,) array
        Right-hand sides.
    duplicates : {"error", "merge"}
        Identical rows of A are an error naming both rows, or are merged keeping the largest b
        (the only one that binds).

    Examples
    --------
    >>> import numpy as np
    >>> F = FeasibleSet(np.array([[1.0, 0.0]]), np.array([0.0]))
    >>> F.contains(np.array([0.5, 0.5])), F.contains(np.array([-0.5, 0.0]))
    (True, False)
    >>> round(F.chebyshev_ball().radius, 6)
    0.5
    """

    A: np.ndarray
    b: np.ndarray
    duplicates: str = "error"
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        """Validate A and b (shapes, finite values, no zero row) and handle duplicate rows."""
        A = np.asarray(self.A)
        if A.dtype.kind not in "fiub":
            raise DataError(f"A must be a numeric array, got dtype {A.dtype}")
        A = np.array(A, dtype=np.float64, order="C")
        if A.ndim != 2 or A.shape[1] == 0:
            raise DataError(f"A must be a 2-D array (rows x d) with d >= 1, got shape {A.shape}")
        try:
            b = np.array(np.asarray(self.b, dtype=np.float64), order="C")
        except (TypeError, ValueError) as exc:
            raise DataError(f"b must be numeric ({exc})") from exc
        if b.ndim == 0:
            b = np.full(A.shape[0], float(b))
        if b.shape != (A.shape[0],):
            raise DataError(f"b must have one entry per row of A ({A.shape[0]}), got shape {b.shape}")
        bad = ~np.isfinite(A).all(axis=1)
        if bad.any():
            raise DataError(f"row {int(np.flatnonzero(bad)[0])} of A has NaN/inf")
        bad = ~np.isfinite(b)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"b[{i}] = {b[i]} (row {i}) must be finite")
        norms = np.linalg.norm(A, axis=1)
        zero = norms == 0
        if zero.any():
            i = int(np.flatnonzero(zero)[0])
            raise DataError(
                f"row {i} of A is zero: 0 >= b[{i}] = {b[i]:g} "
                + ("excludes every θ" if b[i] > 0 else "holds for every θ (drop the row)")
            )
        if self.duplicates not in ("error", "merge"):
            raise DataError(f"duplicates must be 'error' or 'merge', got {self.duplicates!r}")
        A, b = _handle_duplicates(A, b, self.duplicates)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def cone(cls, A, duplicates: str = "error") -> "FeasibleSet":
        """The cone {Aθ ≥ 0} within the unit ball (for Δ: the consistent reward directions)."""
        A = np.asarray(A, dtype=np.float64)
        return cls(A, np.zeros(A.shape[0] if A.ndim == 2 else 0), duplicates)

    @classmethod
    def from_program(cls, program: MarginProgram, *, scale: float | None = None,
                     budget: float = 2.0) -> "FeasibleSet":
        """F(m; ρ) = {‖θ‖ ≤ 1, Δθ ≥ ρ·m} of a max-margin program (module docstring).

        Parameters
        ----------
        program : MarginProgram
        scale : float, optional
            ρ > 0. Default :func:`margin_scale` of this program's margins with ``budget``.
        budget : float
            Norm budget (> 1) as a multiple of the smallest norm meeting the margins.
        """
        program = _check_margin_program(program)
        if scale is None:
            scale = margin_scale(program.delta, program.margins, budget)
        scale = _check_scale(scale)
        return cls(program.delta, scale * program.margins, duplicates="merge")

    @classmethod
    def from_fa_result(cls, result, round: int | None = None, *, scale: float | None = None,
                       budget: float = 2.0):
        """The sets of an FA run: all rounds (a list, round 0 = F_std) or one round.

        Every round uses the same ρ (default: :func:`margin_scale` of the FINAL margins with
        ``budget``), so the list is nested: F_0 ⊇ F_1 ⊇ … ⊇ F_FA.

        Parameters
        ----------
        result : fairl_opt.fa.FAResult
            From a max-margin program; its rounds' margins are read from
            :meth:`~fairl_opt.fa.FAResult.round_margins` (DataError for a MaxEnt run).
        round : int, optional
            Return only this round's set (negative counts from the end).
        scale, budget : float
            As in :meth:`from_program`.
        """
        delta, margins = result.standard_program.delta, result.round_margins()
        if scale is None:
            scale = margin_scale(delta, margins[-1], budget)
        scale = _check_scale(scale)
        if round is not None:
            if not isinstance(round, (int, np.integer)) or not -len(margins) <= round < len(margins):
                raise DataError(f"round must be an integer in [0, {len(margins) - 1}], got {round!r}")
            return cls(delta, scale * margins[round], duplicates="merge")
        return [cls(delta, scale * m, duplicates="merge") for m in margins]

    # -- basic properties --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """d, the dimension of θ."""
        return self.A.shape[1]

    @property
    def n_rows(self) -> int:
        """m, the number of constraint rows (after merging duplicates)."""
        return self.A.shape[0]

    @property
    def is_cone(self) -> bool:
        """True when b = 0: F is a cone cut by the ball, and its fraction is P(Ag ≥ 0)."""
        return bool(np.all(self.b == 0.0))

    @cached_property
    def row_norms(self) -> np.ndarray:
        """‖A_i‖₂ of every row."""
        return np.linalg.norm(self.A, axis=1)

    @cached_property
    def unit_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(U, c) with unit rows U_i = A_i/‖A_i‖ and c_i = b_i/‖A_i‖: the same set, better scaled."""
        return self.A / self.row_norms[:, None], self.b / self.row_norms

    def check_dim(self, theta, name: str = "theta") -> np.ndarray:
        """θ (d,) or a batch (k, d) as float64, or a DataError naming the dimension mismatch."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.ndim not in (1, 2) or theta.shape[-1] != self.dim:
            raise DataError(f"{name} must have {self.dim} columns (the set's d), got shape {theta.shape}")
        if not np.isfinite(theta).all():
            raise DataError(f"{name} has NaN/inf")
        return theta

    def contains(self, theta, tol: float = 1e-12):
        """Whether θ (or each row of a batch) lies in F, up to ``tol`` on every constraint."""
        theta = self.check_dim(theta)
        U, c = self.unit_rows
        inside = np.linalg.norm(theta, axis=-1) <= 1.0 + tol
        if self.n_rows:
            inside &= np.all(theta @ U.T >= c - tol, axis=-1)
        return bool(inside) if theta.ndim == 1 else inside

    def subset_of(self, other: "FeasibleSet") -> bool:
        """A sufficient, syntactic test of self ⊆ other: every row of ``other`` is a row of ``self``
        with an equal or larger b."""
        if other.dim != self.dim:
            raise DataError(f"the sets have different dimensions ({self.dim} and {other.dim})")
        if other.n_rows == 0:
            return True
        index = {row.tobytes(): i for i, row in enumerate(self.A)}
        for j, row in enumerate(other.A):
            i = index.get(row.tobytes())
            if i is None or self.b[i] < other.b[j]:
                return False
        return True

    # -- convex programs ---------------------------------------------------------------------------
    def emptiness_certificate(self):
        """An :class:`~fairl_opt.exceptions.InfeasibleError` proving F empty (see
        :func:`empty_set_error`), or None when F is not empty.

        A single row with ``b_i > ‖A_i‖`` (the half-space misses the ball) is reported as such.
        Otherwise, when the Chebyshev SOCP is infeasible on some set of rows, the SOCP
        ``max cᵀy − ‖Uᵀy‖₂ s.t. y ≥ 0, Σy = 1`` over those unit rows gives the certificate,
        re-checked here in numpy.
        """
        if "emptiness" not in self._cache:
            self._cache["emptiness"] = self._find_emptiness_certificate()
        return self._cache["emptiness"]

    def _find_emptiness_certificate(self):
        """The work of :meth:`emptiness_certificate` (uncached); also caches the Chebyshev ball it finds."""
        if self.n_rows == 0:
            return None
        U, c = self.unit_rows
        i = int(np.argmax(c))
        if c[i] > 1.0 + CERTIFICATE_TOL:
            y = np.zeros(self.n_rows)
            y[i] = 1.0 / self.row_norms[i]
            return empty_set_error(
                f"F is empty: row {i} asks A_iθ >= {self.b[i]:g} but |A_iθ| <= ‖A_i‖ = "
                f"{self.row_norms[i]:g} on the unit ball (b excludes the whole ball)",
                [i], y[[i]], bound=float(self.b[i] * y[i]), reach=1.0,
            )
        status, payload = conic.chebyshev(U, c)
        if status == "solved":
            self._cache["chebyshev"] = ChebyshevBall(np.asarray(payload[0], dtype=np.float64), payload[1])
            return None
        rows = payload
        y_rows = conic.emptiness_certificate(U[rows], c[rows])
        y_unit = np.zeros(self.n_rows)
        y_unit[rows] = y_rows
        y_unit[y_unit < 1e-9 * y_unit.max()] = 0.0
        bound = float(c @ y_unit)
        reach = float(np.linalg.norm(U.T @ y_unit))
        if bound - reach <= CERTIFICATE_TOL:
            # no certificate, so F is not empty: it is flat up to the solver's accuracy
            self._cache["chebyshev"] = ChebyshevBall(np.zeros(self.dim), 0.0)
            return None
        support = np.flatnonzero(y_unit)
        multipliers = y_unit[support] / self.row_norms[support]
        shown = ", ".join(str(int(k)) for k in support[:10]) + (" ..." if support.size > 10 else "")
        return empty_set_error(
            f"F is empty: rows {shown} conflict inside the unit ball (multipliers y >= 0 give "
            f"bᵀy = {bound:.6g} > ‖Aᵀy‖ = {reach:.6g}, while every θ in F would have "
            "bᵀy <= ‖Aᵀy‖)",
            support.tolist(), multipliers, bound, reach,
        )

    def chebyshev_ball(self) -> ChebyshevBall:
        """The largest ball inside F (an SOCP, Clarabel with constraint generation), cached.

        ``max r  s.t.  U_iθ − r ≥ c_i,  ‖θ‖₂ + r ≤ 1,  r ≥ 0`` over the unit rows (U, c).

        Raises
        ------
        InfeasibleError
            When F is empty (with the certificate of :meth:`emptiness_certificate`).
        """
        if self.n_rows == 0:
            return ChebyshevBall(np.zeros(self.dim), 1.0)
        certificate = self.emptiness_certificate()
        if certificate is not None:
            raise certificate
        return self._cache["chebyshev"]

    def chebyshev_radius(self) -> float:
        """Radius of :meth:`chebyshev_ball` (an ambiguity measure: 0 for a flat F)."""
        return self.chebyshev_ball().radius

    def interior_point(self) -> np.ndarray:
        """The Chebyshev centre, after checking that F has interior.

        Raises
        ------
        InfeasibleError
            F is empty.
        DataError
            F is flat (Chebyshev radius ≤ :data:`FLAT_RADIUS`): its volume is 0.
        """
        ball = self.chebyshev_ball()
        if ball.radius <= FLAT_RADIUS:
            raise DataError(
                f"F has no interior (Chebyshev radius {ball.radius:.3g} <= {FLAT_RADIUS:g}): its "
                "volume is 0 — e.g. margins at the largest admissible scale, or a row and its "
                "negation with b = 0"
            )
        return ball.centre


def _handle_duplicates(A, b, mode):
    """Identical rows of A: a DataError naming two of them (``"error"``), or one row each with the largest b (``"merge"``)."""
    if A.shape[0] < 2:
        return A, b
    _, first, inverse = np.unique(A, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if first.size == A.shape[0]:
        return A, b
    if mode == "error":
        dup = np.flatnonzero(first[inverse] != np.arange(A.shape[0]))
        j = int(dup[0])
        i = int(first[inverse[j]])
        same_b = " and b" if b[i] == b[j] else f" (b {b[i]:g} and {b[j]:g})"
        raise DataError(
            f"rows {i} and {j} of A are identical{same_b}; drop one, or pass duplicates='merge' to "
            "keep the tighter"
        )
    keep = np.sort(first)
    merged_b = np.full(first.size, -np.inf)
    np.maximum.at(merged_b, inverse, b)
    order = np.argsort(first)
    return A[keep], merged_b[order]


def _check_margin_program(program) -> MarginProgram:
    """The program, or a DataError when it has no margin constraints to take a set from."""
    if not isinstance(program, MarginProgram):
        raise DataError(
            f"a feasible set needs margin constraints Δθ >= m; {type(program).__name__} has none "
            "(MaxEnt re-weights pairs): use FeasibleSet.cone(delta) for the consistent directions"
        )
    return program


def _check_scale(scale) -> float:
    """ρ as a float, or a DataError when it is not positive and finite."""
    scale = float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise DataError(f"scale ρ must be positive and finite, got {scale}")
    return scale


def smallest_norm(delta, margins) -> float:
    """n*(m) = min{‖θ‖₂ : Δθ ≥ m} (an SOCP); :class:`~fairl_opt.exceptions.InfeasibleError` with a Farkas certificate
    when ``Δθ ≥ m`` has no solution."""
    from fairl_opt.solvers import find_conflict

    delta = np.asarray(delta, dtype=np.float64)
    margins = np.asarray(margins, dtype=np.float64)
    if margins.shape != (delta.shape[0],):
        raise DataError(f"margins must have one entry per row of delta ({delta.shape[0]}), got {margins.shape}")
    norms = np.linalg.norm(delta, axis=1)
    if np.any(norms == 0):
        i = int(np.flatnonzero(norms == 0)[0])
        raise DataError(f"row {i} of delta is zero")
    status, theta = conic.smallest_norm(delta / norms[:, None], margins / norms)
    if status != "solved":
        found = find_conflict(delta, margins)
        if found is None:
            raise SolverError("the smallest-norm SOCP reported Δθ >= m infeasible, but the Farkas LP "
                              "finds it feasible: the rows are badly scaled", status=status)
        pairs, y = found
        raise empty_set_error(
            f"the margin constraints Δθ >= m have no solution at any norm: pairs {pairs[:10]} conflict "
            "(a non-negative combination of their rows is 0 while their margins are positive)",
            pairs, y, bound=float(y @ margins[pairs]), reach=float(np.linalg.norm(delta[pairs].T @ y)),
        )
    return float(np.linalg.norm(theta))


def margin_scale(delta, margins, budget: float = 2.0) -> float:
    """ρ = 1 / (budget · n*(m)): the scale at which F(m; ρ) has norm budget ``budget``·n*(m).

    Parameters
    ----------
    delta : (n, d) array
    margins : (n,) array
        The tightest margins that will be compared (the final FA round's).
    budget : float
        > 1; F(m; ρ) is a single point at budget 1.
    """
    budget = float(budget)
    if not (np.isfinite(budget) and budget > 1):
        raise DataError(f"budget must be finite and > 1 (at 1 the set is a single point), got {budget}")
    norm = smallest_norm(delta, margins)
    if norm <= 1e-12:
        raise DataError(
            "θ = 0 meets every margin (no margin is positive), so the norm budget is undefined: "
            "pass scale= explicitly or use FeasibleSet.cone"
        )
    return 1.0 / (budget * norm)
