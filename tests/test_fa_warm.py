"""Out-of-fold FA with warm-started fold fits gives the cold path's answer.

The warm path (each fold's backend kept across rounds, fold rows cut once so that the working-set
QP recognises a re-solve, folds whose requirements did not change not re-solved, MaxEnt folds
starting from the standard θ, the QP holding pairs at their price out of its box QP) must find the
same failures every round as backends that solve every program from scratch, and θ within the
certified tolerance; on N(0,1), badly scaled, near-duplicate and thin-margin data, and against the
cvxpy reference where it is fast enough.
"""

import numpy as np
import pytest

from fairl_opt.fa import FASettings, run_fa
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import CvxpyBackend, WorkingSetQP, WorkingSetSettings
from fairl_opt.solvers.lbfgs import LbfgsMaxEnt
from tests.oracles import random_delta

#: n above full_set_below: screening, held pairs and warm working sets are all exercised.
SCREENED = WorkingSetSettings(full_set_below=100, fallback=False)


class ColdQP(WorkingSetQP):
    """The working-set QP with every warm start thrown away: each solve starts from scratch."""

    def _solve(self, program, warm_start=None):
        """Solve ``program`` cold (no previous solution, no given warm start)."""
        self._last = None
        return super()._solve(program, None)


class ColdLbfgs(LbfgsMaxEnt):
    """L-BFGS MaxEnt from θ = 0 on every solve."""

    def _solve(self, program, warm_start=None):
        """Solve ``program`` from θ = 0."""
        return super()._solve(program, None)


def _data(kind):
    """(Δ, scale) for one of the data kinds of this file."""
    if kind == "normal":
        return random_delta(21, n=400, d=8, shift=0.6), 1.0
    if kind == "badly-scaled":
        return random_delta(22, n=400, d=8, shift=0.6) * 1e4, 1e4
    if kind == "near-duplicate":
        base = random_delta(23, n=200, d=8, shift=0.6)
        noise = 1e-9 * np.random.default_rng(0).normal(size=base.shape)
        return np.vstack([base, base + noise]), 1.0
    # thin margin: nearly every pair just on the right side of one direction
    rng = np.random.default_rng(24)
    delta = rng.normal(size=(400, 8))
    delta[:, 0] = np.abs(delta[:, 0]) * 1e-3 + 1e-4
    return delta, 1.0


def _assert_same(warm, cold, strong_convexity):
    """Identical failures and kept pairs every round, the same tightened set, and θ as close as the
    two final certificates allow: P is μ-strongly convex, so ‖θ − θ*‖ ≤ √(2 gap / μ) for each."""
    assert len(warm.history) == len(cold.history)
    for a, b in zip(warm.history, cold.history):
        # (as sets: pairs whose margins tie to rounding may be listed in either order)
        assert set(a.failures) == set(b.failures) and set(a.kept) == set(b.kept), a.round
        assert a.certificate.optimal and b.certificate.optimal
    assert np.array_equal(warm.tightened, cold.tightened)
    bound = sum(np.sqrt(2 * max(result.solution.certificate.gap, 0.0) / strong_convexity)
                for result in (warm, cold))
    assert np.linalg.norm(warm.theta - cold.theta) <= 1.01 * bound + 1e-9 * np.linalg.norm(cold.theta)


@pytest.mark.parametrize("kind", ["normal", "badly-scaled", "near-duplicate", "thin-margin"])
def test_oof_fa_margin_warm_equals_cold(kind):
    delta, scale = _data(kind)
    # C/s²: the same program in scale-free terms at every scale
    program = MarginProgram(delta, C=1.0 / scale**2)
    settings = FASettings(oof_folds=4, max_rounds=4)
    groups = np.arange(delta.shape[0]) // 2
    warm = run_fa(program, WorkingSetQP(SCREENED), settings, groups=groups)
    cold = run_fa(program, ColdQP(SCREENED), settings, groups=groups)
    _assert_same(warm, cold, 1.0)


@pytest.mark.parametrize("kind", ["normal", "badly-scaled", "near-duplicate", "thin-margin"])
def test_oof_fa_maxent_warm_equals_cold(kind):
    delta, scale = _data(kind)
    program = MaxEntProgram(delta, reg=1.0)
    settings = FASettings(oof_folds=4, max_rounds=4)
    warm = run_fa(program, LbfgsMaxEnt(), settings)
    cold = run_fa(program, ColdLbfgs(), settings)
    _assert_same(warm, cold, program.reg)


def test_oof_fa_margin_warm_matches_cvxpy_reference():
    """The independent reference (cvxpy + Clarabel on every fold program) finds the same failures."""
    delta = random_delta(25, n=240, d=6, shift=0.8)
    program = MarginProgram(delta, C=1.0)
    settings = FASettings(oof_folds=3, max_rounds=3)
    warm = run_fa(program, WorkingSetQP(WorkingSetSettings(full_set_below=60, fallback=False)), settings)
    reference = run_fa(program, CvxpyBackend(), settings)
    _assert_same(warm, reference, 1.0)


def test_unchanged_fold_is_not_solved_again():
    """A fold whose training pairs' requirements did not change keeps its certified optimum."""
    delta = random_delta(26, n=300, d=6, shift=0.8)
    program = MarginProgram(delta, C=1.0)
    solves = []

    class Counting(WorkingSetQP):
        """Counts the programs it is asked to solve."""

        def _solve(self, program, warm_start=None):
            """Record the call and solve."""
            solves.append(program.n_pairs)
            return super()._solve(program, warm_start)

    result = run_fa(program, Counting(SCREENED), FASettings(oof_folds=3, max_rounds=3))
    changed_rounds = len(result.history)
    # every fold is solved in round 0; later, only folds with a changed training pair
    assert len(solves) <= changed_rounds * 4
    assert result.history[-1].certificate.optimal
