"""The infeasibility module and its one error type: where the proofs live, what the error carries."""

import numpy as np
import pytest

import fairl_opt.solvers as solvers
from fairl_opt.exceptions import FairlError, InfeasibleError
from fairl_opt.programs import MarginProgram
from fairl_opt.solvers import infeasibility
from tests.oracles import random_delta


def test_the_proofs_have_one_home_and_are_re_exported():
    for name in ("farkas_radius", "float_radius", "find_conflict", "relative_margin", "raise_infeasible",
                 "max_admissible_tightening"):
        assert getattr(solvers, name) is getattr(infeasibility, name)
    from fairl_opt.solvers import base

    assert not hasattr(base, "find_conflict") and not hasattr(base, "max_admissible_tightening")


def test_error_carries_rows_and_farkas_with_the_old_name_as_alias():
    exc = InfeasibleError("no θ", rows=np.array([3, 1]), farkas=np.array([1.0, 2.0]), radius=np.inf)
    assert exc.rows == [3, 1] and all(type(i) is int for i in exc.rows)
    assert exc.conflicting_pairs is exc.rows
    with pytest.raises(AttributeError):
        exc.conflicting_pairs = [0]
    assert np.isnan(exc.bound) and np.isnan(exc.reach) and isinstance(exc, FairlError)
    geometric = InfeasibleError("empty", rows=[0, 2], farkas=np.ones(2), bound=2.0, reach=1.5)
    assert (geometric.bound, geometric.reach, geometric.radius) == (2.0, 1.5, None)
    assert str(geometric) == "empty" and InfeasibleError("bare").rows == []


def test_a_backend_raises_it_with_a_farkas_vector_that_verifies():
    delta = random_delta(7, n=20, d=4, shift=3.0)
    delta[11] = -delta[4]
    with pytest.raises(InfeasibleError) as info:
        solvers.solve(MarginProgram(delta), "working-set")
    rows, y = info.value.rows, info.value.farkas
    assert sorted(rows) == [4, 11] and (y > 0).all()
    assert infeasibility.farkas_radius(delta, np.ones(20), rows, y) > infeasibility.float_radius(delta, np.ones(20), rows)
