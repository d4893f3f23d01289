"""HighsLP (HiGHS through highspy, cutting planes) against the cvxpy reference and closed forms."""

import subprocess
import sys

import numpy as np
import pytest

from fairl_opt.exceptions import DataError, InfeasibleError, SolverError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers.highs_lp import HighsLP
from fairl_opt.solvers.settings import HighsSettings
from fairl_opt.solvers.reference import CvxpyBackend


def planted(seed, n, d, shift=1.0, separable=False, scale_rows=False):
    """Random rows plus a planted direction; ``separable`` flips rows onto its positive side;
    ``scale_rows`` multiplies a third of the rows by 1e-3 and a third by 1e3."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    delta = rng.normal(size=(n, d)) + shift * w
    if separable:
        delta *= np.where(delta @ w >= 0, 1.0, -1.0)[:, None]
    if scale_rows:
        delta *= rng.choice([1e-3, 1.0, 1e3], size=n)[:, None]
    margins = rng.uniform(0.5, 2.0, size=n)
    return delta, margins


def assert_matches_reference(program, backend):
    ours = backend.solve(program)
    ref = CvxpyBackend().solve(program)
    assert ours.certificate.optimal, ours.certificate
    assert ref.certificate.optimal, ref.certificate
    assert ours.certificate.backend == "highs"
    scale = max(1.0, abs(ref.objective))
    # 1e-7 relative, plus the reference's own certified gap (cvxpy's HiGHS stops at 1e-7 tolerances)
    assert abs(ours.objective - ref.objective) <= 1e-7 * scale + max(0.0, ref.certificate.gap)
    assert ours.certificate.relative_gap <= 1e-8
    assert ours.certificate.max_violation <= 1e-8 * max(1.0, np.abs(program.margins).max())
    assert ours.duals.shape == (program.n_pairs,) and (ours.duals >= -1e-9).all()
    if not program.hard:
        assert (ours.duals <= program.C * (1 + 1e-9)).all()
    return ours, ref


CASES = [  # (n, d, scale_rows)
    (12, 30, False),  # d > n
    (80, 6, False),  # n > d
    (60, 8, True),  # badly scaled rows (x1e-3 / x1e3)
]


@pytest.mark.parametrize("norm", ["l1", "linf"])
@pytest.mark.parametrize("C", [None, 0.7])
@pytest.mark.parametrize("n,d,scale_rows", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_cvxpy_reference(norm, C, n, d, scale_rows, seed):
    delta, margins = planted(seed, n, d, shift=0.5, separable=C is None, scale_rows=scale_rows)
    program = MarginProgram(delta, margins, norm, C)
    # tiny working sets and batches force many cutting-plane rounds; the default once per case
    backend = HighsLP(HighsSettings(initial_rows=2, batch=3)) if seed % 2 == 0 else HighsLP()
    ours, _ = assert_matches_reference(program, backend)
    if seed % 2 == 0:
        assert ours.diagnostics["rounds"] > 1


def test_negative_and_zero_margins_and_float32():
    delta, margins = planted(5, 50, 7, shift=0.8, separable=True)
    margins[:10] = -0.5
    margins[10:15] = 0.0
    for norm in ("l1", "linf"):
        program = MarginProgram(delta.astype(np.float32), margins, norm)
        assert_matches_reference(program, HighsLP(HighsSettings(initial_rows=5)))


@pytest.mark.parametrize("hard", [True, False])
def test_single_pair_closed_form_l1(hard):
    # min ‖θ‖₁ s.t. Δθ ≥ m: all weight on the largest |Δ_k|, θ_k = m/Δ_k; dual α = 1/‖Δ‖_∞
    delta = np.array([[0.5, -3.0, 2.0, 1.0]])
    program = MarginProgram(delta, 1.5, "l1", None if hard else 10.0)
    sol = HighsLP().solve(program)
    expected = np.array([0.0, -0.5, 0.0, 0.0])
    np.testing.assert_allclose(sol.theta, expected, atol=1e-12)
    assert sol.objective == pytest.approx(0.5, rel=1e-12)
    np.testing.assert_allclose(sol.duals, [1.0 / 3.0], rtol=1e-10)
    assert sol.certificate.optimal and sol.certificate.relative_gap < 1e-12


@pytest.mark.parametrize("hard", [True, False])
def test_single_pair_closed_form_linf(hard):
    # min ‖θ‖_∞ s.t. Δθ ≥ m: θ = m·sign(Δ)/‖Δ‖₁; dual α = 1/‖Δ‖₁
    delta = np.array([[0.5, -3.0, 2.0, 1.0]])
    program = MarginProgram(delta, 1.3, "linf", None if hard else 10.0)
    sol = HighsLP().solve(program)
    np.testing.assert_allclose(sol.theta, 1.3 * np.sign(delta[0]) / 6.5, atol=1e-12)
    assert sol.objective == pytest.approx(0.2, rel=1e-12)
    np.testing.assert_allclose(sol.duals, [1.0 / 6.5], rtol=1e-10)
    assert sol.certificate.optimal


def test_single_pair_soft_margin_small_C_gives_zero():
    # C·‖Δ‖_* < 1: paying the hinge is cheaper than any θ: θ = 0, objective C·m, α = C
    for norm, dual_norm in (("l1", 3.0), ("linf", 6.5)):
        C = 0.9 / dual_norm
        program = MarginProgram(np.array([[0.5, -3.0, 2.0, 1.0]]), 2.0, norm, C)
        sol = HighsLP().solve(program)
        np.testing.assert_allclose(sol.theta, 0.0, atol=1e-12)
        assert sol.objective == pytest.approx(2.0 * C, rel=1e-12)
        np.testing.assert_allclose(sol.duals, [C], rtol=1e-10)
        assert sol.certificate.optimal


@pytest.mark.parametrize("norm", ["l1", "linf"])
@pytest.mark.parametrize("C", [None, 1.0])
def test_cutting_planes_use_fewer_rows_than_n(norm, C):
    n = 3000
    delta, margins = planted(7, n, 5, shift=3.0, separable=True)
    program = MarginProgram(delta, margins, norm, C)
    cut = HighsLP()
    sol = cut.solve(program)
    full = HighsLP(HighsSettings(cutting_planes=False))
    ref = full.solve(program)
    assert sol.certificate.optimal and ref.certificate.optimal
    assert sol.diagnostics["working_set_size"] < n // 2
    assert ref.diagnostics["working_set_size"] == n
    assert sol.objective == pytest.approx(ref.objective, rel=1e-9)
    # the certificate covers all n pairs: zeros outside the working set, and no pair violated
    assert (sol.duals != 0).sum() <= sol.diagnostics["working_set_size"]
    if C is None:
        assert (delta @ sol.theta >= margins - 1e-9).all()


@pytest.mark.parametrize("norm", ["l1", "linf"])
@pytest.mark.parametrize("C", [None, 0.5])
def test_warm_resolve_after_margin_change_equals_cold(norm, C):
    delta, margins = planted(11, 400, 12, shift=1.0, separable=True)
    program = MarginProgram(delta, margins, norm, C)
    backend = HighsLP()
    first = backend.solve(program)
    highs = backend._highs
    assert not first.diagnostics["reused"]
    # FA-style edit: tighten the pairs closest to the boundary (this cuts the previous optimum)
    failures = np.argsort(delta @ first.theta - margins)[:20]
    margins2 = margins.copy()
    margins2[failures] += 0.7
    tightened = program.with_margins(margins2)
    assert tightened.delta is program.delta
    warm = backend.solve(tightened, warm_start=first)
    assert warm.diagnostics["reused"] and backend._highs is highs
    cold = HighsLP().solve(tightened)
    assert warm.certificate.optimal and cold.certificate.optimal
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
    assert warm.objective > first.objective + 1e-6  # the edit mattered
    ref = CvxpyBackend().solve(tightened)
    assert warm.objective == pytest.approx(ref.objective, rel=1e-7)
    # and back again: the kept instance still answers the original program exactly
    again = backend.solve(program, warm_start=warm)
    assert again.diagnostics["reused"]
    assert again.objective == pytest.approx(first.objective, rel=1e-9)


def test_warm_with_new_C_and_new_delta():
    delta, margins = planted(12, 200, 8, shift=0.5)
    backend = HighsLP()
    first = backend.solve(MarginProgram(delta, margins, "l1", 0.3))
    highs = backend._highs
    changed_c = backend.solve(MarginProgram(first.program.delta, margins, "l1", 2.0), warm_start=first)
    assert changed_c.diagnostics["reused"] and backend._highs is highs
    cold = HighsLP().solve(MarginProgram(delta, margins, "l1", 2.0))
    assert changed_c.objective == pytest.approx(cold.objective, rel=1e-9)
    copied = MarginProgram(delta.copy(), margins, "l1", 2.0)  # equal values, another object: rebuild
    rebuilt = backend.solve(copied, warm_start=changed_c)
    assert not rebuilt.diagnostics["reused"] and backend._highs is not highs
    assert rebuilt.objective == pytest.approx(changed_c.objective, rel=1e-9)
    switched = backend.solve(MarginProgram(copied.delta, margins, "linf", 2.0), warm_start=rebuilt)
    assert not switched.diagnostics["reused"]  # another norm: another LP
    assert switched.certificate.optimal


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_infeasible_hard_margin_names_opposite_pairs(norm):
    delta, margins = planted(3, 40, 5, shift=2.0, separable=True)
    delta[17] = -2.0 * delta[4]  # the same comparison both ways
    backend = HighsLP(HighsSettings(initial_rows=3, batch=5))
    with pytest.raises(InfeasibleError) as info:
        backend.solve(MarginProgram(delta, margins, norm))
    assert sorted(info.value.rows) == [4, 17]
    assert "4" in str(info.value) and "17" in str(info.value)
    # the same backend recovers on a feasible program
    ok = backend.solve(MarginProgram(np.delete(delta, 17, axis=0), np.delete(margins, 17), norm))
    assert ok.certificate.optimal


def test_infeasible_cycle_names_all_three_pairs():
    delta, margins = planted(4, 30, 4, shift=2.0, separable=True)
    delta[20] = -(delta[2] + delta[9])  # Δ_2 + Δ_9 + Δ_20 = 0 with positive margins
    with pytest.raises(InfeasibleError) as info:
        HighsLP().solve(MarginProgram(delta, margins, "l1"))
    assert sorted(info.value.rows) == [2, 9, 20]
    # a soft margin is always feasible
    assert HighsLP().solve(MarginProgram(delta, margins, "l1", 1.0)).certificate.optimal


def test_non_optimal_status_raises_solver_error():
    delta, margins = planted(0, 30, 4, separable=True)
    backend = HighsLP(HighsSettings(options=dict(simplex_iteration_limit=0, ipm_iteration_limit=0)))
    with pytest.raises(SolverError, match="Iteration limit") as info:
        backend.solve(MarginProgram(delta, margins, "l1"))
    assert "try" in str(info.value)


def test_rejects_l2_and_maxent():
    backend = HighsLP()
    program = MarginProgram(np.eye(2), 1.0, "l2")
    assert not backend.supports(program)
    assert backend.supports(MarginProgram(np.eye(2), 1.0, "linf"))
    with pytest.raises(DataError, match="l1"):
        backend.solve(program)
    maxent = MaxEntProgram(np.eye(2), reg=1.0)
    assert not backend.supports(maxent)
    with pytest.raises(DataError, match="MaxEntProgram"):
        backend.solve(maxent)


def test_stdout_stays_empty(capfd):
    delta, margins = planted(1, 50, 5, separable=True)
    capfd.readouterr()
    HighsLP().solve(MarginProgram(delta, margins, "l1"))
    HighsLP(HighsSettings(initial_rows=2)).solve(MarginProgram(delta, margins, "linf", 1.0))
    out, _ = capfd.readouterr()
    assert out == ""


def test_fresh_process_stdout_empty_and_thread_scheduler_conflict():
    # (1) HiGHS prints its banner once per process, on the first Highs(): only a fresh process can
    # show it. (2) HiGHS's thread scheduler is process-wide: after another Highs ran with 2 threads,
    # a run with threads=1 fails (model status Notset) unless the backend resets the scheduler.
    code = (
        "import highspy, numpy as np\n"
        "from fairl_opt.programs import MarginProgram\n"
        "from fairl_opt.solvers.highs_lp import HighsLP\n"
        "program = MarginProgram(np.array([[1.0, 2.0], [2.0, 1.0]]), 1.0, 'linf')\n"
        "s = HighsLP().solve(program)\n"
        "assert s.certificate.optimal and abs(s.objective - 1 / 3) < 1e-12, s\n"
        "highspy.Highs.resetThreadScheduler(True)\n"
        "h = highspy.Highs()\n"
        "h.setOptionValue('output_flag', False)\n"
        "h.setOptionValue('threads', 2)\n"
        "h.addVar(0.0, 1.0)\n"
        "h.run()\n"
        "s = HighsLP().solve(program)\n"
        "assert s.certificate.optimal and abs(s.objective - 1 / 3) < 1e-12, s\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    "settings",
    [
        dict(ipm_above=0),  # IPX + crossover cold, then hot simplex rounds
        dict(ipm_above=0, crossover="off"),  # IPX every round, no basis
        dict(ipm_above=0, initial_rows=5, batch=4),  # many violated pairs: cold IPX re-solves
        dict(hot_strategy=1, initial_rows=5, batch=4),
        dict(hot_strategy=4, initial_rows=5, batch=4),
    ],
)
@pytest.mark.parametrize("norm", ["l1", "linf"])
@pytest.mark.parametrize("C", [None, 0.7])
def test_solver_paths_match_reference(settings, norm, C):
    delta, margins = planted(21, 150, 10, shift=0.7, separable=C is None)
    program = MarginProgram(delta, margins, norm, C)
    backend = HighsLP(HighsSettings(**settings))
    first, _ = assert_matches_reference(program, backend)
    margins2 = margins.copy()
    margins2[np.argsort(delta @ first.theta - margins)[:10]] += 0.5
    warm = backend.solve(program.with_margins(margins2), warm_start=first)
    assert warm.diagnostics["reused"]
    cold = CvxpyBackend().solve(program.with_margins(margins2))
    assert warm.certificate.optimal
    assert warm.objective == pytest.approx(cold.objective, rel=1e-7)


def test_rebuild_seeds_the_working_set_from_the_warm_solution():
    delta, margins = planted(8, 2000, 4, shift=3.0, separable=True)
    first = HighsLP().solve(MarginProgram(delta, margins, "l1"))
    support = np.flatnonzero(first.duals > 0)
    backend = HighsLP(HighsSettings(initial_rows=len(support)))  # exactly the support: one round suffices
    again = backend.solve(MarginProgram(delta.copy(), margins, "l1"), warm_start=first)
    assert not again.diagnostics["reused"]
    assert again.diagnostics["rounds"] == 1 and again.diagnostics["working_set_size"] == len(support)
    assert again.objective == pytest.approx(first.objective, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 4, 5, 13, 31, 46])
def test_badly_scaled_hard_margins_are_certified(seed):
    # rows x1e-3 force |θ| ~ 1e3, so rows x1e3 carry terms ~1e7: θ from HiGHS's row duals then
    # misses some margins by 2e-7..1e-6 when recomputed in numpy (on these seeds, with HiGHS 1.16,
    # at least one norm each fails the certificate with max_refinements = 0) unless the backend
    # refines those pairs' margins (HighsLP._refine)
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(20, 120)), int(rng.integers(3, 40))
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    delta = rng.normal(size=(n, d)) + 0.5 * w
    delta *= np.where(delta @ w >= 0, 1.0, -1.0)[:, None]
    delta *= rng.choice([1e-3, 1.0, 1e3], size=n)[:, None]
    margins = rng.uniform(0.5, 2.0, size=n)
    for norm in ("l1", "linf"):
        sol = HighsLP().solve(MarginProgram(delta, margins, norm))
        assert sol.certificate.optimal, sol.certificate
        assert sol.certificate.max_violation <= 1e-7 * margins.max()
