"""Backends behind one interface: a settings object in (:mod:`fairl_opt.solvers.settings`), a
:class:`Solution` with a :class:`Certificate` (status :class:`Status`) and ``diagnostics`` out;
infeasibility proofs in :mod:`fairl_opt.solvers.infeasibility`."""

from fairl_opt.exceptions import DataError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers.base import Backend, Solution
from fairl_opt.solvers.certificate import Certificate, Status, certify
from fairl_opt.solvers.highs_lp import HighsLP
from fairl_opt.solvers.infeasibility import (
    farkas_radius,
    find_conflict,
    float_radius,
    max_admissible_tightening,
    raise_infeasible,
    relative_margin,
)
from fairl_opt.solvers.lbfgs import LbfgsMaxEnt
from fairl_opt.solvers.lp_ipm import DenseLP
from fairl_opt.solvers.newton import NewtonMaxEnt
from fairl_opt.solvers.reference import CvxpyBackend
from fairl_opt.solvers.settings import (
    CvxpySettings,
    DenseLPSettings,
    HighsSettings,
    LBFGSSettings,
    NewtonSettings,
    WorkingSetSettings,
)
from fairl_opt.solvers.working_set import WorkingSetQP

BACKENDS = {
    "cvxpy": CvxpyBackend,
    "newton": NewtonMaxEnt,
    "lbfgs": LbfgsMaxEnt,
    "working-set": WorkingSetQP,
    "highs": HighsLP,
    "lp-ipm": DenseLP,
}

#: MaxEnt with at most this many features uses Newton (a d×d Hessian is cheap and certifies to
#: 1e-12); above it, certified L-BFGS (gap ≤ 1e-8 in about the time of plain L-BFGS).
NEWTON_MAX_DIM = 64


#: ``mm-lp`` with more features than this and fewer than 1/:data:`HIGHS_PAIRS_PER_FEATURE` pairs
#: per feature goes to HiGHS under ``auto``.
HIGHS_MIN_DIM = 256
HIGHS_PAIRS_PER_FEATURE = 5


def prefers_highs(program: MarginProgram) -> bool:
    """Whether ``auto`` solves this ``mm-lp`` by HiGHS rather than ``lp-ipm``: d > 256 and
    n < d/5. The interior point factors a d×d matrix every iteration, O(d³) however few the
    pairs; the simplex works in the pairs' own dimension. Measured (one thread, one run):
    lp-ipm faster at every n ≥ d/3 tried — n = 3000, d = 576: 0.5 s vs 4.9 s; n = 200, d = 576:
    0.07 s vs 0.19 s; n = 10000 and 30000, d = 64: 6–15× — and slower for n ≪ d: n = 100,
    d = 2048: 1.4–2.1 s vs 0.3–1.4 s (at n = 500, d = 2048: 2.1 s vs 2.7 s)."""
    return program.dim > HIGHS_MIN_DIM and HIGHS_PAIRS_PER_FEATURE * program.n_pairs < program.dim


def get_backend(name: str, program, settings=None) -> Backend:
    """A backend instance by name, built with ``settings`` (its settings class, e.g.
    :class:`WorkingSetSettings`; None: the defaults); ``"auto"`` picks the best one for the program.

    ``auto``: damped Newton for MaxEnt with d ≤ :data:`NEWTON_MAX_DIM`, certified L-BFGS above
    (both far faster than the exponential cone); working-set interior point for ``mm-qp``;
    for ``mm-lp`` the dense interior point ``lp-ipm`` unless the pairs are far fewer than the
    features (:func:`prefers_highs`), where HiGHS's simplex is faster. Settings of another
    backend's type are a DataError naming the backend and the type it takes.
    """
    if name == "auto":
        if isinstance(program, MaxEntProgram):
            name = "newton" if program.dim <= NEWTON_MAX_DIM else "lbfgs"
        elif isinstance(program, MarginProgram) and program.norm == "l2":
            name = "working-set"
        else:
            name = "highs" if prefers_highs(program) else "lp-ipm"
    if name not in BACKENDS:
        raise DataError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {name!r}")
    backend = BACKENDS[name](settings)
    if not backend.supports(program):
        raise DataError(f"backend {name!r} cannot solve {type(program).__name__}")
    return backend


def solve(program, backend: str | Backend = "auto", warm_start: Solution | None = None, settings=None) -> Solution:
    """Solve ``program`` with ``backend`` (a name, built with ``settings``, or an instance) and
    return the certified solution."""
    if isinstance(backend, str):
        backend = get_backend(backend, program, settings)
    elif settings is not None:
        raise DataError("settings go with a backend name; an instance already has its own")
    return backend.solve(program, warm_start=warm_start)


__all__ = [
    "BACKENDS",
    "Backend",
    "Certificate",
    "CvxpyBackend",
    "CvxpySettings",
    "DenseLP",
    "DenseLPSettings",
    "HighsLP",
    "HighsSettings",
    "LBFGSSettings",
    "LbfgsMaxEnt",
    "MarginProgram",
    "MaxEntProgram",
    "NEWTON_MAX_DIM",
    "NewtonMaxEnt",
    "NewtonSettings",
    "Solution",
    "Status",
    "WorkingSetQP",
    "WorkingSetSettings",
    "certify",
    "farkas_radius",
    "find_conflict",
    "float_radius",
    "get_backend",
    "prefers_highs",
    "max_admissible_tightening",
    "raise_infeasible",
    "relative_margin",
    "solve",
]
