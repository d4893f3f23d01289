"""Errors fairl_opt raises. Every message names the argument, pair or row at fault.

The ``fairl`` command maps them to exit codes (see :data:`EXIT_CODES` and the README):
2 bad input or usage (:class:`DataError`, argparse), 3 infeasible (hard margin or empty set) with a verified Farkas
certificate (:class:`InfeasibleError`), 4 no certified answer (:class:`SolverError`, including
:class:`NumericalRangeError`), 5 the Dask cluster (:class:`ClusterError`: ``--scheduler`` unreachable or
malformed, no workers), 130 interrupted (Ctrl-C; caches keep finished chunks).
"""


class FairlError(Exception):
    """Base class of all fairl_opt errors."""


class DataError(FairlError, ValueError):
    """Invalid input data (shapes, NaN/inf, empty, duplicates, wrong types or ranges); the message
    names the argument, file, row or pair."""


class InfeasibleError(FairlError):
    """No θ meets the constraints, proved by a Farkas certificate that verifies on the original rows:
    a hard-margin program (the solvers) or an empty feasible set (the geometry). The one error type
    for infeasibility.

    Attributes
    ----------
    rows : list of int
        A conflicting set: the support of a Farkas certificate y ≥ 0 with Σ y_i Δ_i = 0 (or small
        enough, see ``radius``) and Σ y_i m_i > 0, so no θ satisfies all of them. For a program
        these are pair indices.
    farkas : ndarray or None
        The certificate y over those rows.
    radius : float or None
        What the certificate proves in floating point: no θ with ‖θ‖₂ < radius satisfies the
        conflicting rows (∞ when Σ y_i Δ_i is exactly 0).
    bound, reach : float
        For a feasible set inside a ball (the geometry): the certificate's bound Σ y_i b_i and the
        most the ball can reach, ‖Σ y_i a_i‖·radius; bound > reach proves emptiness. NaN otherwise.
    """

    def __init__(self, message, rows=(), farkas=None, radius=None, *, bound=float("nan"),
                 reach=float("nan")):
        super().__init__(message)
        self.rows = [int(i) for i in rows]
        self.farkas = farkas
        self.radius = radius
        self.bound = bound
        self.reach = reach

    @property
    def conflicting_pairs(self) -> list:
        """The conflicting rows, named as pairs (the same list as :attr:`rows`)."""
        return self.rows


class SolverError(FairlError):
    """A backend could not produce a certified answer; the message says which status and what to try."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class NumericalRangeError(SolverError):
    """The data are neither provably infeasible nor solvable in float64: e.g. separable only by a
    margin far below the rows' own size (the message gives the number), so no Farkas certificate
    verifies and no solver can certify a θ.

    Attributes
    ----------
    relative_margin : float or None
        The best margin found, relative to the row norms (max t with Δ_iθ/‖Δ_i‖ ≥ t·m_i/max|m|,
        ‖θ‖ ≤ 1), when it was measured.
    """

    def __init__(self, message, status=None, relative_margin=None):
        super().__init__(message, status=status)
        self.relative_margin = relative_margin


class ClusterError(FairlError):
    """The Dask cluster could not do the work: the scheduler address is malformed or does not answer,
    it has no workers, or a chunk's worker died and the scheduler gave up on it. The message names
    ``--scheduler`` (or the chunk); finished chunks stay cached, so a rerun resumes."""


#: Exit status of the ``fairl`` command for each outcome.
EXIT_CODES = {
    "ok": 0,
    "bad input or usage": 2,
    "infeasible": 3,
    "could not certify": 4,
    "cluster": 5,
    "interrupted": 130,
}
