"""The dense interior-point LP backend (``lp-ipm``) against the cvxpy reference, HighsLP and closed forms."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairl_opt.exceptions import DataError, FairlError, InfeasibleError, NumericalRangeError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.programs import MarginProgram
from fairl_opt.solvers import (
    CvxpyBackend,
    DenseLP,
    DenseLPSettings,
    HighsLP,
    get_backend,
    prefers_highs,
)
from fairl_opt.solvers.dense_lp import solve_dense_lp
from tests.strategies import SOLVER_SCALES, preference_cases


def planted(seed, n, d, family="gaussian", separable=True):
    """Rows around a planted unit direction w (flipped onto its positive side when ``separable``),
    with margins in [0.5, 2], in one of the families real embeddings produce:

    * ``gaussian``: N(0, 1) rows plus 0.5·w;
    * ``scaled``: the same with a third of the rows ×1e-6 and a third ×1e6 (×1e∓3 when separable:
      a hard margin then needs |θ| ~ 1e6/‖Δ_i‖ on the small rows, so the large rows' Σ_j|Δ_ijθ_j|
      reach 1e13 and the certificate's own rounding bound on Δ_iθ, even in extended precision,
      exceeds 1e-7 of the margins — no backend can be certified there);
    * ``lowrank``: rows in a random subspace of dimension d // 3 (plus 0.5·w);
    * ``duplicate``: a third of the rows near-copies (relative noise 1e-9) of others;
    * ``thin``: separable with the smallest Δ_iw only 1e-6 (the other rows lifted to ≥ 0.1)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    if family == "lowrank":
        delta = rng.normal(size=(n, max(1, d // 3))) @ rng.normal(size=(max(1, d // 3), d)) + 0.5 * w
    else:
        delta = rng.normal(size=(n, d)) + 0.5 * w
    if separable:
        delta *= np.where(delta @ w >= 0, 1.0, -1.0)[:, None]
    if family == "duplicate":
        copies = rng.choice(n, n // 3, replace=False)
        delta[copies] = delta[rng.integers(0, n, n // 3)] * (1 + 1e-9 * rng.normal(size=(n // 3, 1)))
    if family == "thin":
        scores = delta @ w
        delta[scores < 0.1] += (0.1 - scores[scores < 0.1])[:, None] * w
        delta[0] += (1e-6 - delta[0] @ w) * w
    if family == "scaled":
        spread = 1e3 if separable else 1e6
        delta *= rng.choice([1 / spread, 1.0, spread], size=n)[:, None]
    return delta, rng.uniform(0.5, 2.0, size=n)


def assert_agrees(program, against_cvxpy=True):
    """lp-ipm certified without its fallback, and its objective equal to HighsLP's and the cvxpy
    reference's to 1e-7 of the objective's own size (plus the reference's certified gap)."""
    ours = DenseLP(fallback=False).solve(program)
    cert = ours.certificate
    assert cert.optimal and cert.backend == "lp-ipm", cert
    assert not ours.diagnostics["fallback"] and cert.solver_status == "ipm:solved"
    assert cert.relative_gap <= 1e-8
    assert cert.relative_violation <= 1e-8
    assert ours.duals.shape == (program.n_pairs,) and (ours.duals >= 0).all()
    if not program.hard:
        assert (ours.duals <= program.C).all()
    references = [HighsLP().solve(program)]
    if against_cvxpy:
        references.append(CvxpyBackend().solve(program))
    for ref in references:
        assert ref.certificate.optimal, ref.certificate
        size = abs(ref.objective)
        assert abs(ours.objective - ref.objective) <= 1e-7 * size + max(0.0, ref.certificate.gap)
    return ours


FAMILIES = ["gaussian", "scaled", "lowrank", "duplicate", "thin"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("norm", ["l1", "linf"])
@pytest.mark.parametrize("C", [None, 0.7, "per-pair"])
def test_matches_highs_and_cvxpy(family, norm, C):
    delta, margins = planted(FAMILIES.index(family), 70, 9, family, separable=C is None)
    if C == "per-pair":
        C = np.random.default_rng(1).uniform(0.05, 5.0, size=70)
    # cvxpy's HiGHS stops at tolerances of 1e-7 in absolute units: rows of 1e±6 are beyond it
    assert_agrees(MarginProgram(delta, margins, norm, C), against_cvxpy=family != "scaled")


@pytest.mark.parametrize("n,d", [(12, 30), (200, 4)])
@pytest.mark.parametrize("norm", ["l1", "linf"])
@pytest.mark.parametrize("C", [None, 2.0])
def test_wide_and_tall(n, d, norm, C):
    delta, margins = planted(n + d, n, d)
    assert_agrees(MarginProgram(delta, margins, norm, C))


def test_negative_zero_margins_and_float32_rows():
    delta, margins = planted(5, 50, 7)
    margins[:10] = -0.5
    margins[10:15] = 0.0
    for norm in ("l1", "linf"):
        assert_agrees(MarginProgram(delta.astype(np.float32), margins, norm))
        assert_agrees(MarginProgram(delta.astype(np.float32), margins, norm, 0.3))


@pytest.mark.parametrize("C", [None, 10.0])
def test_single_pair_closed_forms(C):
    # l1: all weight on the largest |Δ_k|, θ_k = m/Δ_k, α = 1/‖Δ‖_∞; linf: θ = m·sign(Δ)/‖Δ‖₁
    delta = np.array([[0.5, -3.0, 2.0, 1.0]])
    l1 = DenseLP().solve(MarginProgram(delta, 1.5, "l1", C))
    np.testing.assert_allclose(l1.theta, [0.0, -0.5, 0.0, 0.0], atol=1e-9)
    assert l1.objective == pytest.approx(0.5, rel=1e-9)
    np.testing.assert_allclose(l1.duals, [1.0 / 3.0], rtol=1e-8)
    linf = DenseLP().solve(MarginProgram(delta, 1.3, "linf", C))
    np.testing.assert_allclose(linf.theta, 1.3 * np.sign(delta[0]) / 6.5, atol=1e-9)
    assert linf.objective == pytest.approx(0.2, rel=1e-9)
    assert l1.certificate.optimal and linf.certificate.optimal


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_infeasible_hard_margin_raises_the_farkas_error(norm):
    delta, margins = planted(3, 40, 5)
    delta[17] = -2.0 * delta[4]  # the same comparison both ways
    program = MarginProgram(delta, margins, norm)
    # the interior point itself says that the dual diverges, and claims nothing
    inner = solve_dense_lp(delta, margins, np.inf, norm)
    assert inner.status == "diverged"
    with pytest.raises(InfeasibleError) as info:
        DenseLP().solve(program)
    assert sorted(info.value.rows) == [4, 17]
    # a soft margin is always feasible, and the same backend instance solves it
    assert_agrees(MarginProgram(delta, margins, norm, 1.0))


def test_an_uncertified_interior_point_falls_back_to_highs_and_says_so():
    delta, margins = planted(8, 80, 6, separable=False)
    program = MarginProgram(delta, margins, "l1", 1.0)
    alone = DenseLP(max_iter=2, fallback=False).solve(program)
    assert not alone.certificate.optimal  # returned as it is, never as optimal
    assert alone.certificate.solver_status == "ipm:max_iter"
    rescued = DenseLP(max_iter=2).solve(program)
    assert rescued.certificate.optimal and rescued.diagnostics["fallback"]
    assert rescued.certificate.solver_status.startswith("fallback-highs(ipm:max_iter):")
    assert rescued.objective == pytest.approx(HighsLP().solve(program).objective, rel=1e-9)


@pytest.mark.parametrize("norm", ["l1", "linf"])
@pytest.mark.parametrize("C", [None, 1.0])
def test_cutting_planes_match_one_solve_on_all_pairs(norm, C):
    delta, margins = planted(7, 3000, 5, separable=True)
    program = MarginProgram(delta, margins, norm, C)
    rounds = DenseLP(full_set_below=100, fallback=False).solve(program)
    whole = DenseLP(fallback=False).solve(program)
    assert rounds.certificate.optimal and whole.certificate.optimal
    assert rounds.diagnostics["rounds"] > 1 and rounds.diagnostics["working_set_size"] < 3000 // 2
    assert whole.diagnostics["rounds"] == 1 and whole.diagnostics["working_set_size"] == 3000
    assert rounds.objective == pytest.approx(whole.objective, rel=1e-8)
    if C is None:  # every pair meets its margin, in or out of the working set
        assert (delta @ rounds.theta >= margins * (1 - 1e-7)).all()


def test_a_large_support_sends_the_rounds_to_all_pairs():
    delta, margins = planted(9, 2000, 5, separable=False)
    program = MarginProgram(delta, margins, "l1", 1.0)
    solution = DenseLP(full_set_below=100, fallback=False).solve(program)
    assert solution.certificate.optimal
    assert solution.diagnostics["rounds"] == 2 and solution.diagnostics["working_set_size"] == 2000


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_warm_resolve_after_a_margin_edit_equals_cold(norm):
    delta, margins = planted(11, 400, 6)
    program = MarginProgram(delta, margins, norm, 0.5)
    backend = DenseLP(fallback=False)
    first = backend.solve(program)
    failures = np.argsort(delta @ first.theta - margins)[:20]
    tightened = program.with_margins(np.where(np.isin(np.arange(400), failures), margins + 0.7, margins))
    warm = backend.solve(tightened, warm_start=first)
    cold = DenseLP(fallback=False).solve(tightened)
    assert warm.certificate.optimal and cold.certificate.optimal
    assert warm.diagnostics["working_set_size"] < 400  # started from the support, not all pairs
    assert warm.objective == pytest.approx(cold.objective, rel=1e-8)
    assert warm.objective > first.objective * (1 + 1e-6)  # the edit mattered


def test_fa_loop_with_lp_ipm_matches_highs():
    delta, _ = planted(12, 120, 6, separable=False)
    settings = FASettings(oof_folds=3, max_rounds=3)
    for norm in ("l1", "linf"):
        program = MarginProgram(delta, 1.0, norm, 1.0)
        ours = run_fa(program, DenseLP(), settings)
        theirs = run_fa(program, HighsLP(), settings)
        assert ours.solution.certificate.optimal
        assert np.array_equal(ours.tightened, theirs.tightened)
        assert ours.solution.objective == pytest.approx(theirs.solution.objective, rel=1e-7)


def test_auto_picks_lp_ipm_unless_the_pairs_are_few_next_to_the_features():
    wide = MarginProgram(np.ones((10, 300)), norm="l1")
    assert prefers_highs(wide) and get_backend("auto", wide).name == "highs"
    for shape in [(60, 300), (10, 256), (3000, 576), (3, 2)]:
        program = MarginProgram(np.ones(shape), norm="linf", C=1.0)
        assert not prefers_highs(program) and get_backend("auto", program).name == "lp-ipm"
    assert get_backend("lp-ipm", wide).name == "lp-ipm"
    assert not DenseLP().supports(MarginProgram(np.eye(2)))
    with pytest.raises(DataError, match="l1"):
        DenseLP().solve(MarginProgram(np.eye(2)))


def test_settings_are_checked():
    assert DenseLP(gap_tol=1e-10).settings == DenseLPSettings(gap_tol=1e-10)
    for bad in (dict(gap_tol=0.0), dict(gap_tol=float("nan")), dict(max_iter=0), dict(batch=0)):
        with pytest.raises(DataError):
            DenseLPSettings(**bad)


@given(case=preference_cases(max_n=25, max_d=8, scales=SOLVER_SCALES), norm=st.sampled_from(["l1", "linf"]),
       C=st.sampled_from([None, 0.1, 3.0]))
def test_property_agrees_with_highs_or_refuses_honestly(case, norm, C):
    """On the hard cases of tests/strategies.py: a soft margin is always certified and equals
    HighsLP's objective; a hard margin is either certified (and equal) or raises the error of
    the one infeasibility path (InfeasibleError or NumericalRangeError)."""
    program = MarginProgram(case.delta, 1.0, norm, C)
    try:
        ours = DenseLP().solve(program)
    except (InfeasibleError, NumericalRangeError):
        assert C is None and not case.separable or case.gap < 1e-6
        return
    assert ours.certificate.optimal, ours.certificate
    try:
        theirs = HighsLP().solve(program)
    except FairlError:
        return  # the LP's own solver refused: nothing to compare with
    if theirs.certificate.optimal:
        assert ours.objective == pytest.approx(theirs.objective, rel=1e-6)


@pytest.mark.parametrize("C", [None, 1.0])
def test_no_positive_margin_is_solved_by_zero(C):
    delta, _ = planted(2, 30, 4, separable=False)
    for margins in (0.0, -np.linspace(0.0, 1.0, 30)):
        solution = DenseLP(fallback=False).solve(MarginProgram(delta, margins, "linf", C))
        assert solution.certificate.optimal and solution.objective == 0.0
        assert not solution.theta.any()
