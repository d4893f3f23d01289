"""Backends behind one interface, each returning a :class:`Solution` with a :class:`Certificate`."""

from fairl_opt.exceptions import DataError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers.base import Backend, Solution
from fairl_opt.solvers.infeasibility import find_conflict, max_admissible_tightening, relative_margin
from fairl_opt.solvers.certificate import Certificate, certify
from fairl_opt.solvers.highs_lp import HighsLP
from fairl_opt.solvers.lbfgs import LbfgsMaxEnt
from fairl_opt.solvers.newton import NewtonMaxEnt
from fairl_opt.solvers.reference import CvxpyBackend
from fairl_opt.solvers.working_set import WorkingSetQP

BACKENDS = {
    "cvxpy": CvxpyBackend,
    "newton": NewtonMaxEnt,
    "lbfgs": LbfgsMaxEnt,
    "working-set": WorkingSetQP,
    "highs": HighsLP,
}

#: MaxEnt with at most this many features uses Newton (a d×d Hessian is cheap and certifies to
#: 1e-12); above it, certified L-BFGS (gap ≤ 1e-8 in about the time of plain L-BFGS).
NEWTON_MAX_DIM = 64


def get_backend(name: str, program) -> Backend:
    """A backend instance by name; ``"auto"`` picks the best one for the program.

    ``auto``: damped Newton for MaxEnt with d ≤ :data:`NEWTON_MAX_DIM`, certified L-BFGS above
    (both far faster than the exponential cone); working-set interior point for ``mm-qp``;
    HiGHS directly (dual LP, cutting planes, hot starts) for ``mm-lp``.
    """
    if name == "auto":
        if isinstance(program, MaxEntProgram):
            name = "newton" if program.dim <= NEWTON_MAX_DIM else "lbfgs"
        elif isinstance(program, MarginProgram) and program.norm == "l2":
            name = "working-set"
        else:
            name = "highs"
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
    "relative_margin",
    "solve",
    "WorkingSetQP",
    "LbfgsMaxEnt",
    "HighsLP",
]
