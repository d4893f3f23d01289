"""Tests for fairl_opt.metrics: hand-checked values, invariances, sklearn parity."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from fairl_opt.exceptions import DataError
from fairl_opt.metrics import classification as metrics_classification
from fairl_opt.metrics import distances as metrics_distances
from fairl_opt.metrics import (
    canonicalise_rewards,
    classification_metrics,
    epic_distance,
    fit_threshold,
    pairwise_accuracy,
    starc_distance,
)

FAST = settings(max_examples=60, deadline=None)

# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

_reward = st.floats(-100, 100, allow_nan=False, allow_subnormal=False)


@st.composite
def reward_sets(draw, k: int = 2, min_n: int = 2, max_n: int = 25):
    """``k`` reward vectors of a common length, plus prompt ids (or None)."""
    n = draw(st.integers(min_n, max_n))
    rewards = [draw(hnp.arrays(np.float64, n, elements=_reward)) for _ in range(k)]
    pids = draw(st.none() | hnp.arrays(np.int64, n, elements=st.integers(0, 3)))
    return (*rewards, pids)


@st.composite
def scored_labels(draw, min_n: int = 2, max_n: int = 40):
    """Rewards on a coarse grid (so there are many ties) and 0/1 labels."""
    n = draw(st.integers(min_n, max_n))
    r = draw(hnp.arrays(np.int64, n, elements=st.integers(-4, 4))) / 2.0
    y = draw(hnp.arrays(np.bool_, n))
    return r, y


def _well_posed(r, pids, rel=1e-3):
    """Canonical part is not swamped by the additive constants."""
    c = canonicalise_rewards(r, pids)
    return np.max(np.abs(c)) >= rel * max(1.0, np.max(np.abs(r)))


def _shift(pids, n, consts):
    if pids is None:
        return np.full(n, consts[0])
    return np.asarray(consts)[pids]


# ---------------------------------------------------------------------------
# docstring examples
# ---------------------------------------------------------------------------


def test_docstring_examples_run():
    attempted = 0
    for module in (metrics_classification, metrics_distances):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0
        attempted += result.attempted
    assert attempted >= 9


@pytest.mark.parametrize("call", [
    lambda: pairwise_accuracy([1.0, 0.0], [[1.0], [1.0, 2.0]]),  # ragged rows
    lambda: pairwise_accuracy(object(), [[1.0]]),
    lambda: classification_metrics([0.1, 0.2], [0, 1], [[0.0], [1.0, 2.0]]),
    lambda: classification_metrics([0.1, 0.2], [1, 1], 0.0),  # one class: ROC-AUC undefined
    lambda: fit_threshold([0.1, 0.2], [0, 1], criterion="auc"),
    lambda: starc_distance([1.0, 2.0], [1.0, 2.0], prompt_ids=[None, 1]),  # ids not comparable
    lambda: epic_distance([1.0, 1.0], [1.0, 2.0]),
])
def test_every_bad_input_is_a_data_error(call):
    """One error type for bad input (a ValueError too, so ``except ValueError`` callers still work):
    the ``fairl`` command turns it into exit status 2 instead of a traceback."""
    with pytest.raises(DataError) as info:
        call()
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------
# pairwise_accuracy
# ---------------------------------------------------------------------------


def test_pairwise_accuracy_hand_case_ties_count_wrong():
    theta = np.array([1.0, -1.0])
    delta = np.array([[2.0, 1.0], [1.0, 2.0], [1.0, 1.0], [0.0, -3.0]])
    # scores 1, -1, 0 (tie -> wrong), 3
    assert pairwise_accuracy(theta, delta) == 0.5
    assert pairwise_accuracy(-theta, delta) == 0.25
    assert pairwise_accuracy(np.zeros(2), delta) == 0.0


def test_pairwise_accuracy_accepts_lists_and_returns_float():
    acc = pairwise_accuracy([1.0], [[1.0], [2.0], [-1.0]])
    assert isinstance(acc, float)
    assert acc == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("theta", "delta", "match"),
    [
        ([1.0, np.nan], [[1.0, 1.0]], r"theta\[1\] is nan"),
        ([], np.zeros((1, 0)), r"theta must be non-empty"),
        ([[1.0, 2.0]], [[1.0, 1.0]], r"theta must be 1-D"),
        (["a", "b"], [[1.0, 1.0]], r"theta must contain real numbers"),
        ([1.0, 2.0], [1.0, 2.0], r"delta must be 2-D"),
        ([1.0, 2.0], np.zeros((0, 2)), r"delta must have at least one row"),
        ([1.0, 2.0], np.zeros((2, 3)), r"delta has 3 columns but theta has length 2"),
        ([1.0, 2.0], [[1.0, 1.0], [np.inf, 0.0]], r"delta\[1, 0\] is inf"),
        ([1.0, 2.0], [[1.0, -np.inf]], r"delta\[0, 1\] is -inf"),
    ],
)
def test_pairwise_accuracy_validation(theta, delta, match):
    with pytest.raises(DataError, match=match):
        pairwise_accuracy(theta, delta)


# ---------------------------------------------------------------------------
# fit_threshold
# ---------------------------------------------------------------------------


def _acc(r, y, t):
    return np.mean((r > t) == y)


def _candidates(r):
    u = np.unique(r)
    m = max(1.0, u[-1] - u[0])
    mids = [(a + b) / 2 for a, b in zip(u[:-1], u[1:])]
    return [u[0] - m, *mids, u[-1] + m]


def test_fit_threshold_hand_case():
    # sorted: 0(neg) 1(pos) 2(neg) 3(pos); t=0.5 and t=2.5 both give 3/4
    t = fit_threshold([0.0, 2.0, 1.0, 3.0], [0, 0, 1, 1])
    assert t == 0.5
    assert fit_threshold([0.0, 1.0, 2.0, 3.0], [False, False, True, True]) == 1.5


def test_fit_threshold_one_class():
    r = np.array([3.0, -1.0, 2.0])
    t_pos = fit_threshold(r, [1, 1, 1])
    t_neg = fit_threshold(r, [0, 0, 0])
    assert t_pos < r.min() and np.all(r > t_pos)
    assert t_neg > r.max() and not np.any(r > t_neg)
    assert fit_threshold([5.0], [True]) < 5.0
    assert fit_threshold([5.0], [False]) > 5.0


@FAST
@given(scored_labels(min_n=1))
def test_fit_threshold_matches_brute_force(data):
    r, y = data
    t = fit_threshold(r, y)
    # best achievable accuracy over every split the rule can make
    best = max(_acc(r, y, s) for s in [-np.inf, *r])
    assert _acc(r, y, t) == best
    # deterministic tie-break: the smallest candidate reaching the best
    cands = _candidates(r)
    accs = [_acc(r, y, c) for c in cands]
    assert t == cands[int(np.argmax(accs))]


@FAST
@given(st.lists(_reward, min_size=1, max_size=30), st.data())
def test_fit_threshold_continuous_rewards(values, data):
    r = np.array(values)
    y = data.draw(hnp.arrays(np.bool_, r.size))
    t = fit_threshold(r, y)
    assert np.isfinite(t)
    assert _acc(r, y, t) == max(_acc(r, y, s) for s in [-np.inf, *r])


def test_fit_threshold_adjacent_floats_keep_split():
    a = 1.0
    b = np.nextafter(a, 2.0)
    t = fit_threshold([a, b], [0, 1])
    assert a <= t < b
    assert _acc(np.array([a, b]), np.array([False, True]), t) == 1.0


@pytest.mark.parametrize(
    ("rewards", "labels", "match"),
    [
        ([1.0, np.nan], [0, 1], r"rewards\[1\] is nan"),
        ([], [], r"rewards must be non-empty"),
        ([[1.0]], [1], r"rewards must be 1-D"),
        ([1.0, 2.0], [0, 1, 1], r"labels has length 3 but rewards has length 2"),
        ([1.0, 2.0], [0, 2], r"labels\[1\] is 2\.0; expected 0/1"),
        ([1.0, 2.0], [np.nan, 1.0], r"labels\[0\] is nan"),
        ([1.0, 2.0], [[0, 1]], r"labels must be 1-D"),
        ([1.0, 2.0], ["no", "yes"], r"labels must contain real numbers"),
    ],
)
def test_fit_threshold_validation(rewards, labels, match):
    with pytest.raises(DataError, match=match):
        fit_threshold(rewards, labels)


# ---------------------------------------------------------------------------
# classification_metrics
# ---------------------------------------------------------------------------


def test_classification_metrics_hand_case():
    r = [0.1, 0.4, 0.35, 0.8]
    y = [0, 0, 1, 1]
    m = classification_metrics(r, y, 0.3)
    # predictions 0 1 1 1: TP=2 FP=1 FN=0 -> F1 = 4/5; AUC: 3 of 4 pairs
    assert set(m) == {"accuracy", "f1", "roc_auc"}
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(0.8)
    assert m["roc_auc"] == 0.75


def test_classification_metrics_auc_extremes_and_ties():
    y = [0, 0, 1, 1]
    assert classification_metrics([1.0, 2.0, 3.0, 4.0], y, 2.5)["roc_auc"] == 1.0
    assert classification_metrics([4.0, 3.0, 2.0, 1.0], y, 2.5)["roc_auc"] == 0.0
    assert classification_metrics([1.0, 1.0, 1.0, 1.0], y, 0.0)["roc_auc"] == 0.5
    m = classification_metrics([1.0, 2.0, 2.0, 3.0], y, 2.5)
    assert m["roc_auc"] == 0.875  # one tied pair counted half
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(2 / 3)


def test_classification_metrics_no_predicted_positives_gives_f1_zero():
    m = classification_metrics([1.0, 2.0, 3.0], [0, 1, 1], 10.0)
    assert m["f1"] == 0.0
    assert m["accuracy"] == pytest.approx(1 / 3)


@FAST
@given(scored_labels(), st.integers(-5, 5))
def test_classification_metrics_match_sklearn(data, t2):
    r, y = data
    assume(0 < y.sum() < y.size)
    t = t2 / 2.0  # on the reward grid, so `>` vs `>=` matters
    m = classification_metrics(r, y, t)
    pred = r > t
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, r), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(y, pred, zero_division=0), abs=1e-12)


@FAST
@given(st.lists(_reward, min_size=2, max_size=40), st.data())
def test_roc_auc_matches_sklearn_continuous(values, data):
    r = np.array(values)
    y = data.draw(hnp.arrays(np.int64, r.size, elements=st.integers(0, 1)))
    assume(0 < y.sum() < y.size)
    auc = classification_metrics(r, y, 0.0)["roc_auc"]
    assert auc == pytest.approx(roc_auc_score(y, r), abs=1e-12)


@pytest.mark.parametrize(
    ("rewards", "labels", "threshold", "match"),
    [
        ([1.0, 2.0], [1, 1], 0.0, r"labels contains only one class \(positive\)"),
        ([1.0, 2.0], [0, 0], 0.0, r"labels contains only one class \(negative\)"),
        ([1.0, 2.0], [0, 1], np.nan, r"threshold is nan"),
        ([1.0, 2.0], [0, 1], -np.inf, r"threshold is -inf"),
        ([1.0, 2.0], [0, 1], [0.0], r"threshold must be a real scalar"),
        ([1.0, 2.0], [0, 1], "0.5", r"threshold must be a real scalar"),
        ([1.0, np.inf], [0, 1], 0.0, r"rewards\[1\] is inf"),
        ([1.0, 2.0], [0, 1, 0], 0.0, r"labels has length 3 but rewards has length 2"),
        ([1.0, 2.0], [0, -1], 0.0, r"labels\[1\] is -1\.0"),
    ],
)
def test_classification_metrics_validation(rewards, labels, threshold, match):
    with pytest.raises(DataError, match=match):
        classification_metrics(rewards, labels, threshold)


# ---------------------------------------------------------------------------
# canonicalise_rewards
# ---------------------------------------------------------------------------


def test_canonicalise_hand_cases():
    np.testing.assert_allclose(canonicalise_rewards([1.0, 2.0, 6.0]), [-2.0, -1.0, 3.0])
    np.testing.assert_allclose(
        canonicalise_rewards([1.0, 3.0, 10.0, 20.0, 7.0], ["a", "a", "b", "b", "c"]),
        [-1.0, 1.0, -5.0, 5.0, 0.0],
    )
    np.testing.assert_array_equal(canonicalise_rewards([0.0, 0.0]), [0.0, 0.0])


@FAST
@given(reward_sets(k=1, min_n=1))
def test_canonicalise_removes_prompt_means_only(data):
    r, pids = data
    c = canonicalise_rewards(r, pids)
    groups = np.zeros(r.size, dtype=int) if pids is None else pids
    for g in np.unique(groups):
        mask = groups == g
        assert abs(c[mask].sum()) <= 1e-10 * mask.sum() * 100
        shift = r[mask] - c[mask]  # a single constant per prompt
        np.testing.assert_allclose(shift, shift[0], atol=1e-10)


def test_canonicalise_overflow_is_reported():
    with pytest.raises(DataError, match=r"canonicalised rewards overflow"):
        canonicalise_rewards([-1.7e308, 1.7e308, 1.7e308])


@pytest.mark.parametrize(
    ("rewards", "prompt_ids", "match"),
    [
        ([1.0, -np.inf], None, r"rewards\[1\] is -inf"),
        ([], None, r"rewards must be non-empty"),
        ([1.0, 2.0], [0], r"prompt_ids has length 1 but rewards has length 2"),
        ([1.0, 2.0], [[0, 1]], r"prompt_ids must be 1-D"),
        ([1.0, 2.0], [0.0, np.nan], r"prompt_ids\[1\] is nan"),
        ([1.0, 2.0], np.array([1, None], dtype=object), r"prompt_ids must be mutually comparable"),
        ([1 + 1j, 2.0], None, r"rewards must contain real numbers"),
    ],
)
def test_canonicalise_validation(rewards, prompt_ids, match):
    with pytest.raises(DataError, match=match):
        canonicalise_rewards(rewards, prompt_ids)


# ---------------------------------------------------------------------------
# STARC / EPIC: hand-checked values
# ---------------------------------------------------------------------------


def test_starc_hand_values():
    r = np.array([0.3, -1.2, 2.5, 0.0])
    assert starc_distance(r, -r) == 2.0
    assert starc_distance(r, r + 7.0) == pytest.approx(0.0, abs=1e-12)
    assert starc_distance(r, 3.0 * r) == pytest.approx(0.0, abs=1e-12)
    # [1,0,-1] and [1,-1,0] are already canonical, both of norm sqrt(2):
    # ||[0,1,-1]|| / sqrt(2) = 1
    assert starc_distance([1.0, 0.0, -1.0], [1.0, -1.0, 0.0]) == pytest.approx(1.0)


def test_epic_hand_values():
    r = np.array([0.3, -1.2, 2.5, 0.0])
    assert epic_distance(r, -r) == 1.0
    assert epic_distance(r, 5.0 * r - 2.0) == pytest.approx(0.0, abs=1e-12)
    # rho = 1/2 -> sqrt((1 - 1/2) / 2) = 1/2
    assert epic_distance([1.0, 0.0, -1.0], [1.0, -1.0, 0.0]) == pytest.approx(0.5)


def test_prompt_ids_change_what_is_identified():
    r = np.array([0.0, 1.0, 0.0, 1.0])
    pids = np.array([0, 0, 1, 1])
    shifted = r + np.array([0.0, 0.0, 10.0, 10.0])
    assert starc_distance(r, shifted, pids) == pytest.approx(0.0, abs=1e-12)
    assert epic_distance(r, shifted, pids) == pytest.approx(0.0, abs=1e-7)
    assert starc_distance(r, shifted) > 0.5
    assert epic_distance(r, shifted) > 0.2


def test_starc_zero_reward_convention():
    nonzero = np.array([1.0, 2.0, 4.0, 3.0])
    const_per_prompt = np.array([5.0, 5.0, -2.0, -2.0])
    pids = [0, 0, 1, 1]
    # constant within every prompt -> canonicalises to exactly zero
    assert starc_distance(const_per_prompt, nonzero, pids) == 1.0
    assert starc_distance(nonzero, np.zeros(4)) == 1.0
    assert starc_distance(np.zeros(4), 7.0 * np.ones(4)) == 0.0
    # canonical part below 1e-12 of the raw scale is rounding noise -> zero
    noisy = np.array([1e6, 1e6 + 1e-7, 1e6])
    assert starc_distance(noisy, [1.0, 2.0, 3.0]) == 1.0
    assert starc_distance(noisy, -noisy) == 0.0
    # ... but a small, genuine canonical part (1e-9 relative) is kept
    small = np.array([1.0, 1.0 + 1e-9, 1.0])
    assert starc_distance(small, -small) == 2.0
    assert starc_distance(small, [0.0, 1.0, 0.0]) == pytest.approx(0.0, abs=1e-6)


def test_epic_zero_variance_raises():
    with pytest.raises(DataError, match=r"rewards_a has zero variance"):
        epic_distance([5.0, 5.0, -2.0, -2.0], [1.0, 2.0, 4.0, 3.0], [0, 0, 1, 1])
    with pytest.raises(DataError, match=r"rewards_b has zero variance"):
        epic_distance([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])
    with pytest.raises(DataError, match=r"rewards_a has zero variance"):
        epic_distance([1e6, 1e6 + 1e-7, 1e6], [1.0, 2.0, 3.0])


def test_distances_survive_huge_rewards():
    r = np.array([-1.7e308, 1.7e308, 1.7e308])
    assert starc_distance(r, r) == 0.0
    assert starc_distance(r, -r) == 2.0
    assert epic_distance(r, [-1.0, 1.0, 1.0]) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("fn", [starc_distance, epic_distance])
@pytest.mark.parametrize(
    ("a", "b", "prompt_ids", "match"),
    [
        ([1.0, 2.0, 3.0, np.nan], [1.0, 2.0, 3.0, 4.0], None, r"rewards_a\[3\] is nan"),
        ([1.0, 2.0, 3.0], [1.0, np.inf, 3.0], None, r"rewards_b\[1\] is inf"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], None, r"rewards_b has length 2 but rewards_a has length 3"),
        ([], [], None, r"rewards_a must be non-empty"),
        ([[1.0, 2.0]], [1.0, 2.0], None, r"rewards_a must be 1-D"),
        ([1.0, 2.0], np.ones((2, 1)), None, r"rewards_b must be 1-D"),
        ([1.0, 2.0], ["x", "y"], None, r"rewards_b must contain real numbers"),
        ([1.0, 2.0], [2.0, 1.0], [0, 0, 1], r"prompt_ids has length 3 but rewards_a has length 2"),
        ([1.0, 2.0], [2.0, 1.0], [0.0, -np.inf], r"prompt_ids\[1\] is -inf"),
    ],
)
def test_distance_validation(fn, a, b, prompt_ids, match):
    with pytest.raises(DataError, match=match):
        fn(a, b, prompt_ids)


# ---------------------------------------------------------------------------
# STARC / EPIC: properties
# ---------------------------------------------------------------------------


@FAST
@given(reward_sets(), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_positive_scaling_invariance(data, ka, kb):
    a, b, pids = data
    assume(_well_posed(a, pids) and _well_posed(b, pids))
    s = starc_distance(a, b, pids)
    e = epic_distance(a, b, pids)
    assert starc_distance(ka * a, b, pids) == pytest.approx(s, abs=1e-9)
    assert starc_distance(a, kb * b, pids) == pytest.approx(s, abs=1e-9)
    assert epic_distance(ka * a, kb * b, pids) == pytest.approx(e, abs=1e-9)


@FAST
@given(
    reward_sets(),
    st.lists(st.floats(-100, 100, allow_subnormal=False), min_size=4, max_size=4),
    st.lists(st.floats(-100, 100, allow_subnormal=False), min_size=4, max_size=4),
)
def test_per_prompt_constant_invariance(data, ca, cb):
    a, b, pids = data
    assume(_well_posed(a, pids) and _well_posed(b, pids))
    a2 = a + _shift(pids, a.size, ca)
    b2 = b + _shift(pids, b.size, cb)
    assert starc_distance(a2, b2, pids) == pytest.approx(
        starc_distance(a, b, pids), abs=1e-8
    )
    assert epic_distance(a2, b2, pids) == pytest.approx(
        epic_distance(a, b, pids), abs=1e-8
    )
    assert starc_distance(a, a2, pids) == pytest.approx(0.0, abs=1e-8)


@FAST
@given(reward_sets(k=3))
def test_starc_is_a_pseudometric(data):
    a, b, c, pids = data
    ab = starc_distance(a, b, pids)
    assert ab == starc_distance(b, a, pids)
    assert 0.0 <= ab <= 2.0
    assert starc_distance(a, a, pids) == pytest.approx(0.0, abs=1e-12)
    assert starc_distance(a, c, pids) <= ab + starc_distance(b, c, pids) + 1e-12


@FAST
@given(reward_sets())
def test_epic_matches_pearson_formula(data):
    a, b, pids = data
    assume(_well_posed(a, pids) and _well_posed(b, pids))
    e = epic_distance(a, b, pids)
    assert 0.0 <= e <= 1.0
    assert e == epic_distance(b, a, pids)
    rho = np.corrcoef(canonicalise_rewards(a, pids), canonicalise_rewards(b, pids))[0, 1]
    assert e == pytest.approx(np.sqrt(max(0.0, (1.0 - rho) / 2.0)), abs=1e-6)
    # both canonicalised vectors are centred, so EPIC is half of STARC
    assert e == pytest.approx(starc_distance(a, b, pids) / 2.0, abs=1e-9)


def test_fit_threshold_f1_matches_brute_force_sklearn():
    from sklearn.metrics import f1_score

    from fairl_opt.metrics import fit_threshold

    rng = np.random.default_rng(3)
    for _ in range(20):
        r = np.round(rng.normal(size=40), 1)
        y = rng.random(40) < 0.15
        y[0] = True
        t = fit_threshold(r, y, criterion="f1")
        cuts = np.concatenate(([r.min() - 1], np.unique(r)))
        best = max(f1_score(y, r > c, zero_division=0) for c in cuts)
        assert f1_score(y, r > t, zero_division=0) == pytest.approx(best)
    with pytest.raises(DataError, match="criterion"):
        fit_threshold(r, y, criterion="auc")
