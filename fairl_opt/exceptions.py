"""Errors fairl_opt raises. Every message names the argument, pair or row at fault."""


class FairlError(Exception):
    """Base class of all fairl_opt errors."""


class DataError(FairlError, ValueError):
    """Invalid input data (shapes, NaN/inf, empty, duplicates); the message names the pair."""


class InfeasibleError(FairlError):
    """A hard-margin program has no feasible θ.

    Attributes
    ----------
    conflicting_pairs : list of int
        Pair indices of a conflicting set: the support of a Farkas certificate y ≥ 0 with
        Σ y_i Δ_i = 0 and Σ y_i m_i > 0, so no θ satisfies all of them.
    farkas : ndarray or None
        The certificate y over those pairs.
    """

    def __init__(self, message, conflicting_pairs=(), farkas=None):
        super().__init__(message)
        self.conflicting_pairs = list(conflicting_pairs)
        self.farkas = farkas


class SolverError(FairlError):
    """A backend could not produce a certified answer; the message says which status and what to try."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
