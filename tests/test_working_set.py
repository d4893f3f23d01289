"""The working-set QP backend against the cvxpy/Clarabel reference on many random problems."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairl_opt.exceptions import InfeasibleError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.programs import MarginProgram
from fairl_opt.solvers import CvxpyBackend, WorkingSetQP, WorkingSetSettings, get_backend
from fairl_opt.solvers.box_qp import solve_box_qp
from tests.oracles import random_delta


def agree(program, atol=1e-6):
    fast = WorkingSetQP(WorkingSetSettings(fallback=False)).solve(program)
    reference = CvxpyBackend().solve(program)
    assert fast.certificate.optimal, fast.certificate
    assert reference.certificate.optimal
    scale = max(1.0, abs(reference.objective))
    assert fast.objective == pytest.approx(reference.objective, rel=1e-7, abs=1e-9 * scale)
    theta_scale = max(1.0, np.abs(reference.theta).max())
    assert np.allclose(fast.theta, reference.theta, atol=atol * theta_scale)
    return fast


@given(
    seed=st.integers(0, 10**6),
    n=st.integers(2, 60),
    d=st.integers(1, 30),
    shift=st.floats(0.0, 3.0),
    C=st.sampled_from([0.01, 1.0, 100.0]),
)
def test_soft_margin_matches_reference(seed, n, d, shift, C):
    rng = np.random.default_rng(seed)
    delta = rng.normal(size=(n, d)) + shift
    agree(MarginProgram(delta, rng.uniform(0.5, 2.0, n), C=C))


@given(seed=st.integers(0, 10**6), n=st.integers(1, 40), d=st.integers(1, 30))
def test_hard_margin_matches_reference(seed, n, d):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    delta = rng.normal(size=(n, d))
    delta *= np.sign(delta @ direction)[:, None]  # separable through the origin
    delta = delta[np.abs(delta @ direction) > 1e-3 * np.linalg.norm(direction)]
    if delta.shape[0] == 0:
        return
    agree(MarginProgram(delta))


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3])
def test_badly_scaled_embeddings(scale):
    delta = random_delta(3, n=80, d=12, shift=0.8) * scale
    agree(MarginProgram(delta, C=1.0), atol=1e-5)
    # hard margins scale exactly: θ(sΔ) = θ(Δ)/s, an oracle that needs no reference at bad scales
    separable = random_delta(3, n=30, d=12, shift=4.0)
    unscaled = CvxpyBackend().solve(MarginProgram(separable)).theta
    fast = WorkingSetQP(WorkingSetSettings(fallback=False)).solve(MarginProgram(separable * scale))
    assert fast.certificate.optimal
    assert np.allclose(fast.theta * scale, unscaled, atol=1e-6)


def test_uncertified_answer_falls_back_to_reference_and_says_so():
    """One cutting-plane round on 400 pairs from a screened working set cannot certify: the backend
    hands the problem to the reference, and both the diagnostics and the status say so."""
    program = MarginProgram(random_delta(5, n=400, d=8, shift=0.5), C=1.0)
    # (one epoch of coordinate descent: the smoothed-primal screening would certify in one round)
    budget = WorkingSetSettings(max_rounds=1, full_set_below=10, screening_epochs=1, batch=1, screening_levels=())
    alone = WorkingSetQP(replace(budget, fallback=False)).solve(program)
    assert not alone.certificate.optimal and not alone.diagnostics["fallback"]  # the fallback is needed
    fast = WorkingSetQP(budget).solve(program)
    reference = CvxpyBackend().solve(program)
    assert fast.diagnostics["fallback"] and fast.diagnostics["rounds"] == 1
    assert fast.certificate.solver_status.startswith("fallback-cvxpy(max_rounds):")
    assert fast.certificate.backend == "working-set" and fast.certificate.optimal
    assert fast.objective == pytest.approx(reference.objective, rel=1e-7)
    assert np.allclose(fast.theta, reference.theta, rtol=1e-9, atol=1e-12)


def test_extreme_scale_is_certified_and_says_how():
    """Norms 1e6 with C = 1 make the dual box [0, r²C] ~ [0, 1e13]: whichever path certifies it,
    the status and the diagnostics agree on whether the reference answered."""
    program = MarginProgram(random_delta(3, n=80, d=12, shift=0.8) * 1e6, C=1.0)
    fast = WorkingSetQP().solve(program)
    reference = CvxpyBackend().solve(program)
    assert fast.certificate.optimal
    assert fast.objective == pytest.approx(reference.objective, rel=1e-7)
    status = fast.certificate.solver_status
    assert fast.diagnostics["fallback"] == status.startswith("fallback-cvxpy(")
    assert status.startswith("fallback-cvxpy(") or status.startswith(("working-set:", "active-set polish"))


def test_duplicate_rows_and_d_much_larger_than_n():
    delta = random_delta(4, n=10, d=200, shift=0.5)
    delta = np.vstack([delta, delta[:4]])  # duplicates: non-unique duals, unique θ
    agree(MarginProgram(delta, C=1.0))
    agree(MarginProgram(delta))


def test_cutting_planes_on_large_n():
    """n above the full-set threshold: the working set starts small and grows by violated pairs."""
    delta = random_delta(5, n=3000, d=8, shift=2.5)
    backend = WorkingSetQP(WorkingSetSettings(full_set_below=500, fallback=False))
    fast = backend.solve(MarginProgram(delta, C=1.0))
    reference = CvxpyBackend().solve(MarginProgram(delta, C=1.0))
    assert fast.diagnostics["working_set_size"] < 3000
    assert fast.certificate.optimal
    assert fast.objective == pytest.approx(reference.objective, rel=1e-7)
    assert np.allclose(fast.theta, reference.theta, atol=1e-6)


def test_warm_resolve_after_margin_edit_equals_cold():
    delta = random_delta(6, n=400, d=10, shift=1.0)
    program = MarginProgram(delta, C=1.0)
    backend = WorkingSetQP(WorkingSetSettings(fallback=False))
    first = backend.solve(program)
    margins = program.margins.copy()
    margins[np.argsort(delta @ first.theta)[:30]] += 0.5
    warm = backend.solve(program.with_margins(margins))
    assert warm.diagnostics["working_set_size"] < 400  # started from the previous support
    cold = CvxpyBackend().solve(program.with_margins(margins))
    assert warm.certificate.optimal
    assert np.allclose(warm.theta, cold.theta, atol=2e-5)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-8)


def test_infeasible_hard_margin_is_named():
    delta = random_delta(7, n=20, d=4, shift=3.0)
    delta[11] = -delta[4]
    with pytest.raises(InfeasibleError) as info:
        WorkingSetQP().solve(MarginProgram(delta))
    assert set(info.value.rows) == {4, 11}


def test_fa_rounds_match_reference_backend():
    delta = random_delta(8, n=150, d=6, shift=0.8)
    options = dict(settings=FASettings(oof_folds=3, max_rounds=3))
    fast = run_fa(MarginProgram(delta, C=1.0), WorkingSetQP(WorkingSetSettings(fallback=False)), **options)
    reference = run_fa(MarginProgram(delta, C=1.0), CvxpyBackend(), **options)
    assert [h.changed for h in fast.history] == [h.changed for h in reference.history]
    for a, b in zip(fast.history, reference.history):
        assert a.objective == pytest.approx(b.objective, rel=1e-7)
    assert np.allclose(fast.theta, reference.theta, atol=1e-6)


def test_auto_picks_working_set_for_qp():
    assert get_backend("auto", MarginProgram(np.eye(2))).name == "working-set"


def test_box_qp_reports_unbounded_dual():
    delta = np.array([[1.0, 0.0], [-1.0, 0.0]])
    result = solve_box_qp(delta, np.ones(2), np.inf)
    assert result.status in ("unbounded", "max_iter", "numerical")
    assert result.status != "solved"


@pytest.mark.parametrize("scale", [1.0, 1e-4, 1e5])
@pytest.mark.parametrize("per_pair", [False, True])
def test_screened_solve_holding_pairs_at_their_price_matches_reference(scale, per_pair):
    """Noisy pairs (most of them short of their margin) above the full-set threshold: the
    smoothed-primal screening holds the pairs it finds at their price out of the box QP; the rounds
    release any it held wrongly, and the answer is the reference's at every scale, with per-pair
    prices too."""
    delta = random_delta(11, n=1500, d=12, shift=0.3) * scale
    prices = np.random.default_rng(2).uniform(0.5, 2.0, 1500) if per_pair else 1.0
    # (C/s² keeps the program the same one in scale-free terms: Δ → sΔ, θ → θ/s)
    program = MarginProgram(delta, C=prices / scale**2)
    fast = WorkingSetQP(WorkingSetSettings(full_set_below=200, fallback=False)).solve(program)
    reference = CvxpyBackend().solve(program)
    assert fast.certificate.optimal, fast.certificate
    assert fast.diagnostics["working_set_size"] < 750  # the held pairs are not in the box QP
    assert fast.objective == pytest.approx(reference.objective, rel=1e-7)
    assert np.allclose(fast.theta, reference.theta, atol=1e-6 * np.abs(reference.theta).max())


def test_screened_solve_with_near_duplicate_rows_matches_reference():
    """Pairs repeated with tiny perturbations (a held pair's twin may sit on the margin)."""
    rng = np.random.default_rng(3)
    base = random_delta(12, n=400, d=10, shift=0.4)
    delta = np.vstack([base, base + 1e-9 * rng.normal(size=base.shape), base[:200]])
    program = MarginProgram(delta, C=1.0)
    fast = WorkingSetQP(WorkingSetSettings(full_set_below=100, fallback=False)).solve(program)
    reference = CvxpyBackend().solve(program)
    assert fast.certificate.optimal, fast.certificate
    assert fast.objective == pytest.approx(reference.objective, rel=1e-7)
    assert np.allclose(fast.theta, reference.theta, atol=1e-6 * np.abs(reference.theta).max())
