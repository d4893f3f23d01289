"""Tests of the planted-reward simulator (fairl_opt.simulate)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax

from fairl_opt.exceptions import DataError
from fairl_opt.pairs import KINDS, PreferencePairs
from fairl_opt.simulate import (
    DETOX_THRESHOLD,
    PlantedProblem,
    aligned_log_probs,
    sample_pair_indices,
    simulate,
)

REGIMES = ("detox", "isotropic")


def _arrays(prob: PlantedProblem) -> dict:
    return {
        "chosen": prob.pairs.chosen,
        "rejected": prob.pairs.rejected,
        "kinds": prob.pairs.kinds,
        "prompt_ids": prob.pairs.prompt_ids,
        "theta_true": prob.theta_true,
        "eval_features": prob.eval_features,
        "eval_labels": prob.eval_labels,
        "eval_prompt_ids": prob.eval_prompt_ids,
        "eval_rewards": prob.eval_rewards,
    }


def _labels(r, thr):
    return np.where(r < thr, "T", "NT")


@pytest.fixture(scope="module", params=REGIMES)
def default_problem(request):
    return simulate(regime=request.param, seed=0)


# -- reproducibility -----------------------------------------------------------------------------
@pytest.mark.parametrize("regime", REGIMES)
def test_same_seed_identical_different_seed_different(regime):
    a = simulate(120, 7, regime=regime, seed=11, base_logit_std=1.0)
    b = simulate(120, 7, regime=regime, seed=11, base_logit_std=1.0)
    c = simulate(120, 7, regime=regime, seed=12, base_logit_std=1.0)
    for key, arr in _arrays(a).items():
        np.testing.assert_array_equal(arr, _arrays(b)[key], err_msg=key)
    assert a.meta == b.meta
    assert not np.array_equal(a.theta_true, c.theta_true)
    assert not np.array_equal(a.pairs.chosen, c.pairs.chosen)
    assert not np.array_equal(a.eval_features, c.eval_features)


# -- shapes and basic structure ------------------------------------------------------------------
@pytest.mark.parametrize(
    "n_pairs, dim, ppp, n_eval",
    [(400, 20, 2, 4), (401, 20, 2, 4), (7, 3, 3, 2), (1, 1, 1, 3), (50, 5, 5, 0)],
)
@pytest.mark.parametrize("regime", REGIMES)
def test_shapes_and_exact_n_pairs(regime, n_pairs, dim, ppp, n_eval):
    prob = simulate(
        n_pairs, dim, regime=regime, pairs_per_prompt=ppp, eval_per_prompt=n_eval, seed=3
    )
    n_prompts = -(-n_pairs // ppp)
    assert prob.pairs.n_pairs == n_pairs
    assert prob.pairs.dim == dim
    assert prob.theta_true.shape == (dim,)
    assert np.isclose(np.linalg.norm(prob.theta_true), 1.0)
    np.testing.assert_array_equal(prob.pairs.prompt_ids, np.arange(n_pairs) // ppp)
    assert np.unique(prob.pairs.prompt_ids).size == n_prompts
    m = n_prompts * n_eval
    assert prob.eval_features.shape == (m, dim)
    assert prob.eval_labels.shape == prob.eval_prompt_ids.shape == prob.eval_rewards.shape == (m,)
    assert prob.eval_labels.dtype == bool
    np.testing.assert_array_equal(
        np.bincount(prob.eval_prompt_ids, minlength=n_prompts), np.full(n_prompts, n_eval)
    )
    assert prob.regime == regime and prob.n_candidates == 16 and prob.beta == 0.5 and prob.seed == 3


def test_no_zero_rows_and_no_duplicates(default_problem):
    p = default_problem.pairs
    assert (np.abs(p.delta).sum(axis=1) > 0).all()
    # constructing again with duplicates="error" must succeed
    again = PreferencePairs(p.chosen, p.rejected, p.kinds, p.prompt_ids, duplicates="error")
    assert again.n_pairs == p.n_pairs
    assert p.contradictions() == []


def test_dedupe_when_pairs_exhaust_the_pool():
    # 4 candidates have 6 unordered pairs; asking for all 6 per prompt forces every redraw branch,
    # including redrawing y+ when its partners are used up, with a greedy aligned policy.
    prob = simulate(60, 4, n_candidates=4, pairs_per_prompt=6, beta=0.05, eval_per_prompt=4, seed=5)
    p = prob.pairs
    assert p.n_pairs == 60
    for pid in np.unique(p.prompt_ids):
        m = p.prompt_ids == pid
        rows = {
            tuple(sorted((c.tobytes(), r.tobytes()))) for c, r in zip(p.chosen[m], p.rejected[m])
        }
        assert len(rows) == m.sum() == 6  # every unordered pair exactly once
        # all 4 candidates of the prompt are used, so the eval rows come from the same 4
        cands = {row.tobytes() for row in np.vstack([p.chosen[m], p.rejected[m]])}
        assert len(cands) == 4
        ev = {row.tobytes() for row in prob.eval_features[prob.eval_prompt_ids == pid]}
        assert ev == cands


def test_too_many_pairs_per_prompt_rejected():
    with pytest.raises(DataError, match="pairs_per_prompt"):
        simulate(10, 3, n_candidates=4, pairs_per_prompt=7)


# -- kinds, labels, rewards ----------------------------------------------------------------------
def test_kinds_match_threshold_on_true_reward(default_problem):
    prob = default_problem
    thr = prob.toxicity_threshold
    r_c = prob.pairs.chosen @ prob.theta_true
    r_r = prob.pairs.rejected @ prob.theta_true
    expected = np.char.add(np.char.add(_labels(r_r, thr), "->"), _labels(r_c, thr))
    np.testing.assert_array_equal(prob.pairs.kinds, expected)
    assert set(prob.pairs.kinds.tolist()) <= set(KINDS)
    assert {"T->NT", "NT->NT"} <= set(prob.pairs.kinds.tolist())


def test_eval_set_labels_rewards(default_problem):
    prob = default_problem
    np.testing.assert_allclose(prob.eval_rewards, prob.eval_features @ prob.theta_true, atol=1e-12)
    np.testing.assert_array_equal(prob.eval_labels, prob.eval_rewards >= prob.toxicity_threshold)
    # both classes represented
    assert 0.05 < prob.eval_labels.mean() < 0.95
    # eval rows are distinct completions and held out from the prompt's pairs (plenty unused here)
    assert np.unique(prob.eval_features, axis=0).shape[0] == prob.eval_features.shape[0]
    pair_rows = {r.tobytes() for r in np.vstack([prob.pairs.chosen, prob.pairs.rejected])}
    assert not any(r.tobytes() in pair_rows for r in prob.eval_features)


def test_isotropic_threshold_is_quantile():
    # with a huge beta, pi* ~ pi0 = uniform over the candidates, so y+ is an unconditioned uniform
    # candidate draw: its toxic rate estimates the quantile level of the threshold
    prob = simulate(4000, 10, regime="isotropic", toxic_fraction=0.3, beta=1e6, seed=2)
    rate = (prob.pairs.chosen @ prob.theta_true < prob.toxicity_threshold).mean()
    assert 0.27 < rate < 0.33
    prob2 = simulate(4000, 10, regime="isotropic", toxic_fraction=0.6, beta=1e6, seed=2)
    rate2 = (prob2.pairs.chosen @ prob2.theta_true < prob2.toxicity_threshold).mean()
    assert 0.57 < rate2 < 0.63
    assert prob2.toxicity_threshold > prob.toxicity_threshold


def test_detox_threshold_and_gap():
    prob = simulate(regime="detox", seed=4)
    assert prob.toxicity_threshold == DETOX_THRESHOLD
    r = np.concatenate([prob.pairs.chosen @ prob.theta_true, prob.pairs.rejected @ prob.theta_true])
    # a clear gap around the threshold
    assert np.min(np.abs(r - prob.toxicity_threshold)) > 0.3


@pytest.mark.parametrize("regime", REGIMES)
def test_aligned_beats_base_on_true_reward(regime):
    prob = simulate(400, 20, regime=regime, seed=6)
    r_c = prob.pairs.chosen @ prob.theta_true
    r_r = prob.pairs.rejected @ prob.theta_true
    assert r_c.mean() > r_r.mean() + 0.5
    assert (prob.pairs.delta @ prob.theta_true > 0).mean() > 0.75


def test_smaller_beta_is_greedier():
    greedy = simulate(400, 10, regime="isotropic", beta=0.1, seed=8)
    soft = simulate(400, 10, regime="isotropic", beta=50.0, seed=8)
    m_greedy = (greedy.pairs.delta @ greedy.theta_true).mean()
    m_soft = (soft.pairs.delta @ soft.theta_true).mean()
    assert m_greedy > 1.0
    assert abs(m_soft) < 0.3 < m_greedy


# -- the aligned policy is exactly π* -----------------------------------------------------------
def test_aligned_log_probs_closed_form_and_stable():
    log_pi0 = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    r = np.array([1.0, -2.0, 0.5, 0.0])
    got = np.exp(aligned_log_probs(log_pi0, r, 0.7))
    np.testing.assert_allclose(got, softmax(log_pi0 + r / 0.7), rtol=1e-12)
    # tiny beta: no overflow, all mass on the argmax
    tiny = np.exp(aligned_log_probs(log_pi0, r * 1e3, 1e-6))
    assert np.isfinite(tiny).all() and tiny[0] == pytest.approx(1.0)
    with pytest.raises(DataError, match="beta"):
        aligned_log_probs(log_pi0, r, 0.0)


def test_importance_resampling_matches_exact_pi_star():
    rng = np.random.default_rng(123)
    k = 8
    base_logits = rng.normal(0.0, 1.0, k)
    log_pi0 = base_logits - np.log(np.exp(base_logits).sum())
    r = rng.normal(0.0, 1.0, k)
    beta = 0.5
    exact = softmax(log_pi0 + r / beta)  # closed form, computed independently
    pi0 = np.exp(log_pi0)
    n = 100_000
    tile0 = np.tile(log_pi0, (n, 1))
    tiles = np.tile(aligned_log_probs(log_pi0, r, beta), (n, 1))
    plus, minus, pids = sample_pair_indices(np.random.default_rng(7), tile0, tiles, n, 1)
    np.testing.assert_array_equal(pids, np.arange(n))
    assert (plus != minus).all()
    counts = np.bincount(plus, minlength=k)
    freq = counts / n
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.max(np.abs(freq - exact) / se) < 5.0
    assert stats.chisquare(counts, n * exact).pvalue > 1e-4
    # the test discriminates: ignoring the weights (π₀) would be rejected by a wide margin
    assert np.max(np.abs(pi0 - exact) / se) > 50.0
    # y- given y+ is π₀ conditioned on being a different candidate
    a = int(np.argmax(exact))
    sel = minus[plus == a]
    cond = np.where(np.arange(k) == a, 0.0, pi0)
    cond /= cond.sum()
    f_minus = np.bincount(sel, minlength=k) / sel.size
    se_m = np.sqrt(np.maximum(cond * (1 - cond), 1e-12) / sel.size)
    assert f_minus[a] == 0.0
    assert np.max(np.abs(f_minus - cond) / se_m) < 5.0


# -- detox structure ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detox_kind_mix_and_reward_direction(seed):
    prob = simulate(400, 20, regime="detox", seed=seed)
    kinds = prob.pairs.kinds
    frac = {k: (kinds == k).mean() for k in KINDS}
    assert 0.15 <= frac["T->NT"] <= 0.40
    assert frac["NT->NT"] > 0.5
    assert frac["NT->T"] < 0.05
    d = prob.pairs.delta
    cos = np.abs(d @ prob.theta_true) / np.linalg.norm(d, axis=1)
    c_tnt = cos[kinds == "T->NT"].mean()
    c_ntnt = cos[kinds == "NT->NT"].mean()
    assert c_ntnt < 0.1
    assert c_tnt > 4 * c_ntnt


# -- I/O ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("regime", REGIMES)
def test_save_load_roundtrip(tmp_path, regime):
    prob = simulate(50, 6, regime=regime, seed=9, base_logit_std=0.5)
    path = tmp_path / "planted.npz"
    prob.save(path)
    with np.load(path, allow_pickle=False) as raw:
        assert {"theta_true", "meta_json", "chosen", "kinds"} <= set(raw.files)
        assert all(raw[k].dtype != object for k in raw.files)
        assert json.loads(str(raw["meta_json"]))["regime"] == regime
    back = PlantedProblem.load(path)
    for key, arr in _arrays(prob).items():
        np.testing.assert_array_equal(_arrays(back)[key], arr, err_msg=key)
        assert _arrays(back)[key].dtype == arr.dtype, key
    assert back.meta == prob.meta


def test_load_rejects_plain_pairs_file(tmp_path):
    prob = simulate(10, 3, seed=0)
    path = tmp_path / "pairs_only.npz"
    prob.pairs.save(path)
    with pytest.raises(DataError, match="missing"):
        PlantedProblem.load(path)


# -- argument validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_pairs": 0}, "n_pairs"),
        ({"n_pairs": 2.5}, "n_pairs"),
        ({"n_pairs": True}, "n_pairs"),
        ({"dim": 0}, "dim"),
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"n_candidates": 1}, "n_candidates"),
        ({"regime": "gaussian"}, "regime"),
        ({"toxic_fraction": 0.0}, "toxic_fraction"),
        ({"toxic_fraction": 1.0}, "toxic_fraction"),
        ({"pairs_per_prompt": 0}, "pairs_per_prompt"),
        ({"seed": -1}, "seed"),
        ({"eval_per_prompt": 17}, "eval_per_prompt"),
        ({"base_logit_std": -0.1}, "base_logit_std"),
    ],
)
def test_argument_errors_name_the_argument(kwargs, name):
    with pytest.raises(DataError, match=name):
        simulate(**kwargs)
