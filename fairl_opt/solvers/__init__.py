"""Backends behind one interface, each returning a :class:`Solution` with a :class:`Certificate`."""

from fairl_opt.exceptions import DataError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers.base import Backend, Solution, find_conflict, max_admissible_tightening
from fairl_opt.solvers.certificate import Certificate, certify
from fairl_opt.solvers.newton import NewtonMaxEnt
from fairl_opt.solvers.reference import CvxpyBackend
from fairl_opt.solvers.working_set import WorkingSetQP

BACKENDS = {"cvxpy": CvxpyBackend, "newton": NewtonMaxEnt, "working-set": WorkingSetQP}


def get_backend(name: str, program) -> Backend:
    """A backend instance by name; ``"auto"`` picks the best one for the program.

    ``auto``: damped Newton for MaxEnt (certified to a 1e-12 relative gap, far faster than the
    exponential cone); working-set interior point for ``mm-qp``; cvxpy + HiGHS for ``mm-lp``.
    """
    if name == "auto":
        if isinstance(program, MaxEntProgram):
            name = "newton"
        elif isinstance(program, MarginProgram) and program.norm == "l2":
            name = "working-set"
        else:
            name = "cvxpy"
    if name not in BACKENDS:
        raise DataError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {name!r}")
    backend = BACKENDS[name]()
    if not backend.supports(program):
        raise DataError(f"backend {name!r} cannot solve {type(program).__name__}")
    return backend


def solve(program, backend: str | Backend = "auto", warm_start: Solution | None = None) -> Solution:
    """Solve ``program`` with ``backend`` (a name or an instance) and return the certified solution."""
    if isinstance(backend, str):
        backend = get_backend(backend, program)
    return backend.solve(program, warm_start=warm_start)


__all__ = [
    "Backend",
    "Certificate",
    "CvxpyBackend",
    "MarginProgram",
    "MaxEntProgram",
    "NewtonMaxEnt",
    "Solution",
    "certify",
    "find_conflict",
    "get_backend",
    "max_admissible_tightening",
    "solve",
    "WorkingSetQP",
]
