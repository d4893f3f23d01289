"""fairl_opt.audit on synthetic pairs whose truth is known: completions are bags of words, features are
word indicators plus noise, the reward pays for a planted word. Every number is checked against an
independent computation (numpy, scipy.stats, a hand count), never against the audit itself."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linprog

from fairl_opt.audit import AuditOptions, analyse, audit, check_inputs
from fairl_opt.audit.inputs import fa_settings
from fairl_opt.data.features import FeatureSpec
from fairl_opt.data.pairs_file import PairsData
from fairl_opt.data.reward import RewardModel
from fairl_opt.estimators import make_estimator
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings
from fairl_opt.pairs import PreferencePairs

WORDS = ["excellent", "awful", "cat", "dog", "tree", "river", "stone", "cloud", "green", "blue", "happy", "quick"]


def word_data(n=400, seed=0, weights=None, prompts_per=4, test_every=5, noise=0.05, kinds=False, spec=None):
    """Pairs of word-bag completions; the planted reward is +2 for 'excellent', -2 for 'awful'."""
    rng = np.random.default_rng(seed)
    v = len(WORDS)
    w = np.zeros(v) if weights is None else np.asarray(weights, dtype=float)
    if weights is None:
        w[0], w[1] = 2.0, -2.0

    def completion():
        idx = rng.choice(v, size=rng.integers(3, 7), replace=False)
        x = np.zeros(v)
        x[idx] = 1.0
        return " ".join(WORDS[i] for i in idx), x

    chosen_t, rejected_t, chosen, rejected = [], [], [], []
    for _ in range(n):
        (a, xa), (b, xb) = completion(), completion()
        if rng.random() >= 1 / (1 + np.exp(-(w @ xa - w @ xb))):  # Bradley-Terry on the planted reward
            a, xa, b, xb = b, xb, a, xa
        chosen_t.append(a), rejected_t.append(b), chosen.append(xa), rejected.append(xb)
    chosen = np.array(chosen) + noise * rng.normal(size=(n, v))
    rejected = np.array(rejected) + noise * rng.normal(size=(n, v))
    pid = np.arange(n) // prompts_per
    kind = rng.choice(["T->NT", "NT->NT", "T->T"], size=n) if kinds else None
    pairs = PreferencePairs(chosen, rejected, kind, pid)
    test = (pid % test_every == 0) if test_every else None
    return PairsData(pairs, [f"prompt {p}" for p in pid], chosen_t, rejected_t, test_mask=test,
                     source_rows=np.arange(n) + 100, features=spec)


def fit_reward(data, method="maxent", settings=None, **kwargs):
    est = make_estimator(method, settings=settings, **kwargs).fit(data.train())
    hp = dict(kwargs)
    if settings is not None:
        hp.update(settings.to_dict())
    return RewardModel.from_estimator(est, method, hp, features=data.features)


def bare_reward(theta, status="optimal"):
    return RewardModel(theta=np.asarray(theta, float), method="maxent", hyper_parameters={}, certificate={},
                       status=status)


def tokens(text):
    return re.findall(r"\w[\w']*", text.lower())


def has(text, ngram):
    t, g = tokens(text), ngram.split()
    return any(t[i:i + len(g)] == g for i in range(len(t) - len(g) + 1))


def codes(result):
    return {w["code"] for w in result["warnings"]}


@pytest.fixture(scope="module")
def planted():
    data = word_data()
    reward = fit_reward(data)
    result, scores = analyse(check_inputs(data, reward))
    return data, reward, result, scores


def test_the_planted_word_tops_the_positive_list(planted):
    data, reward, result, _ = planted
    p = result["phrases"]
    assert p["positive"][0]["ngram"] == "excellent" and p["negative"][0]["ngram"] == "awful"
    # held within prompts (the two sides of a pair) the planted words lead too
    assert p["within_positive"][0]["ngram"] == "excellent" and p["within_negative"][0]["ngram"] == "awful"
    assert p["within_positive"][0]["paired_q_value"] < 1e-6
    # independent: distinct completions, presence by a regex tokenizer, Welch's test from scipy
    r_c, r_r = data.pairs.chosen @ reward.theta, data.pairs.rejected @ reward.theta
    units = dict.fromkeys(zip(list(data.chosen_text) + list(data.rejected_text), np.r_[r_c, r_r].tolist()))
    texts, rewards = [u[0] for u in units], np.array([u[1] for u in units])
    assert p["n_completions"] == len(texts)
    for row in (p["positive"][0], p["negative"][0], p["positive"][-1]):
        mask = np.array([has(t, row["ngram"]) for t in texts])
        a, b = rewards[mask], rewards[~mask]
        ref = stats.ttest_ind(a, b, equal_var=False)
        pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
        assert row["n_with"] == mask.sum()
        assert row["difference"] == pytest.approx(a.mean() - b.mean(), rel=1e-9)
        assert row["effect_size"] == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-9)
        assert row["t"] == pytest.approx(ref.statistic, rel=1e-9)
        assert row["df"] == pytest.approx(ref.df, rel=1e-9)
        assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)
    assert p["positive"][0]["q_value"] < 1e-20 and p["positive"][0]["effect_size"] > 1
    assert p["negative"][0]["q_value"] < 1e-20 and p["negative"][0]["effect_size"] < -1
    # neutral words are not listed on either side with a large effect
    assert not any(r["ngram"] in ("cat", "dog", "tree") and abs(r["effect_size"]) > 0.5
                   for r in p["positive"] + p["negative"])


def test_q_values_are_benjamini_hochberg_over_every_tested_ngram(planted):
    data, reward, _, _ = planted
    result, _ = analyse(check_inputs(data, reward))
    table = result["_phrase_table"]
    p = np.array([row["p_value"] for row in table])
    m = p.size
    order = np.argsort(p)
    q = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):  # hand BH: q_(k) = min_{j>=k} p_(j) m / j
        running = min(running, p[order[rank - 1]] * m / rank)
        q[order[rank - 1]] = running
    assert np.allclose([row["q_value"] for row in table], q, rtol=1e-12, atol=0)
    assert result["phrases"]["n_tested"] == m
    listed = result["phrases"]["positive"] + result["phrases"]["negative"]
    assert all(row["q_value"] <= 0.05 for row in listed)
    assert result["phrases"]["n_significant_positive"] == sum(r["q_value"] <= 0.05 and r["effect_size"] > 0
                                                              for r in table)


def test_paired_view_matches_a_hand_count():
    texts = [("foo bar", "baz"), ("baz qux", "foo"), ("foo", "foo baz"), ("bar", "qux"), ("foo qux", "bar"),
             ("bar baz", "qux bar"), ("qux", "baz foo"), ("baz", "bar qux")]
    rng = np.random.default_rng(3)
    n = len(texts)
    chosen, rejected = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    data = PairsData(PreferencePairs(chosen, rejected), None, [c for c, _ in texts], [r for _, r in texts])
    theta = np.array([1.0, -0.5, 0.25])
    result, _ = analyse(check_inputs(data, bare_reward(theta)), AuditOptions(min_count=2, max_ngram=1, fdr=0.999999))
    rows = {r["ngram"]: r for r in result["_phrase_table"]}
    # 'foo' in exactly one side: pairs 0 (chosen), 1 (rejected), 4 (chosen), 6 (rejected); pair 2 has it twice
    foo = rows["foo"]
    assert (foo["pairs_one_side"], foo["chosen_side"]) == (4, 2)
    margins = (chosen - rejected) @ theta
    assert foo["mean_margin"] == pytest.approx(margins[[0, 1, 4, 6]].mean())
    assert foo["paired_difference"] == pytest.approx((margins[0] - margins[1] + margins[4] - margins[6]) / 4)
    # the within-prompt test: a one-sample t-test of r(side with foo) - r(side without), by scipy
    from scipy import stats

    diffs = np.array([margins[0], -margins[1], margins[4], -margins[6]])
    expected = stats.ttest_1samp(diffs, 0.0)
    assert foo["paired_t"] == pytest.approx(expected.statistic, rel=1e-9)
    assert foo["paired_p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    tested = [r for r in rows.values() if r["pairs_one_side"] >= 2]
    q = stats.false_discovery_control([r["paired_p_value"] for r in tested], method="bh")
    assert [r["paired_q_value"] for r in tested] == pytest.approx(list(q), rel=1e-12)
    # 'bar': chosen-only in pairs 0, 3; rejected-only in 4, 7; both sides in 5
    assert (rows["bar"]["pairs_one_side"], rows["bar"]["chosen_side"]) == (4, 2)
    # distinct (text, reward) completions holding 'foo': foo bar, foo (pair 1), foo (pair 2: other features,
    # another reward), foo baz, foo qux, baz foo
    assert foo["n_with"] == 6
    listed = result["phrases"]["positive"] + result["phrases"]["negative"]
    for row in listed:
        assert row["label_p_value"] == pytest.approx(stats.binomtest(row["chosen_side"], row["pairs_one_side"]).pvalue)


def test_margins_and_failures_equal_numpy(planted):
    data, reward, result, scores = planted
    theta = reward.theta
    delta = data.pairs.chosen - data.pairs.rejected
    margin = delta @ theta
    norm = margin / np.linalg.norm(theta)
    train, test = ~data.test_mask, data.test_mask
    positive = norm[train][norm[train] > 0]
    tau = np.quantile(positive, 0.1)  # FASettings' default near_tie_quantile (a standard reward)
    assert result["failure_rule"]["threshold"] == pytest.approx(tau, rel=1e-12)
    assert "FASettings defaults" in result["failure_rule"]["source"]
    for name, mask in (("train", train), ("test", test)):
        idx = np.flatnonzero(mask)
        mis = idx[norm[idx] <= 0]
        tie = idx[(norm[idx] > 0) & (norm[idx] <= tau)]
        f = result["failures"][name]
        assert set(f["indices"]) == set(mis) | set(tie)
        assert (f["n_misclassified"], f["n_near_ties"]) == (mis.size, tie.size)
        worst = f["listed"][0]
        assert worst["pair"] == idx[np.argmin(norm[idx])] and worst["source_row"] == worst["pair"] + 100
        assert worst["chosen"] == data.chosen_text[worst["pair"]]
        s = result["margins"][name]
        k, n = int((margin[mask] > 0).sum()), int(mask.sum())
        assert s["accuracy"] == k / n
        z, ph = 1.959963984540054, k / n  # Wilson by its formula
        centre, half = (ph + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert s["accuracy_ci95"] == pytest.approx([centre - half, centre + half], rel=1e-9)
        assert s["quantiles"]["0.25"] == pytest.approx(np.quantile(margin[mask], 0.25))
    assert np.allclose(scores.margin, margin) and np.allclose(scores.reward_chosen, data.pairs.chosen @ theta)
    top = result["completions"]["highest"][0]
    assert top["reward"] == pytest.approx(max((data.pairs.chosen @ theta).max(), (data.pairs.rejected @ theta).max()))
    low = result["completions"]["lowest"][0]
    side = data.chosen_text if low["side"] == "chosen" else data.rejected_text
    assert low["text"] == side[low["pair"]]


def test_an_fa_reward_uses_its_own_failure_rule():
    data = word_data(n=160, seed=1)
    settings = FASettings(near_tie_quantile=0.3, max_rounds=2, oof_folds=0)
    reward = fit_reward(data, "fa-maxent", settings)
    got, source = fa_settings(reward)
    assert got.near_tie_quantile == 0.3 and "own" in source
    result, _ = analyse(check_inputs(data, reward))
    norm = (data.pairs.delta @ reward.theta) / np.linalg.norm(reward.theta)
    train = norm[~data.test_mask]
    # τ is the loop's own: the 0.3 quantile of the positive margins of the round-0 (standard) fit
    from fairl_opt.estimators import make_estimator

    theta0 = make_estimator("maxent").fit(data.train()).theta_
    m0 = data.train().delta @ theta0 / np.linalg.norm(theta0)
    assert result["failure_rule"]["threshold"] == pytest.approx(np.quantile(m0[m0 > 0], 0.3), rel=1e-9)
    assert result["failure_rule"]["threshold"] == reward.fa["threshold"]
    assert result["failure_rule"]["threshold_from_fa_loop"] is True
    tau = reward.fa["threshold"]
    assert result["failures"]["train"]["n_near_ties"] == int(((train > 0) & (train <= tau)).sum())
    assert [r["round"] for r in result["fa"]["rounds"]] == [h["round"] for h in reward.fa["rounds"]]
    assert result["fa"]["rounds"][0]["n_failures"] == reward.fa["rounds"][0]["n_failures"]
    fixed = RewardModel(**{**reward.__dict__, "hyper_parameters": {"fa": {"near_tie_threshold": 0.05}}})
    result, _ = analyse(check_inputs(data, fixed))
    assert result["failure_rule"]["threshold"] == 0.05
    assert result["failures"]["train"]["n_near_ties"] == int(((train > 0) & (train <= 0.05)).sum())
    bad = RewardModel(**{**reward.__dict__, "hyper_parameters": {"near_tie_quantile": 2.0}})
    with pytest.raises(DataError, match="near_tie_quantile"):
        analyse(check_inputs(data, bad))


def test_stats_by_kind_equal_numpy():
    data = word_data(n=200, seed=2, kinds=True)
    reward = fit_reward(data)
    result, _ = analyse(check_inputs(data, reward))
    margin = data.pairs.delta @ reward.theta
    assert set(result["kinds"]) == {"T->NT", "NT->NT", "T->T"}
    for kind, s in result["kinds"].items():
        mask = data.pairs.kinds == kind
        assert s["n_pairs"] == mask.sum() and s["accuracy"] == pytest.approx((margin[mask] > 0).mean())
        assert s["median_margin"] == pytest.approx(np.median(margin[mask]))
        assert s["mean_reward_rejected"] == pytest.approx((data.pairs.rejected[mask] @ reward.theta).mean())


def test_warnings_fire_where_the_data_cannot_support_the_reward(planted):
    rng = np.random.default_rng(4)
    # n < d: not identified, and separable (rank n < d)
    small = PairsData(PreferencePairs(rng.normal(size=(10, 30)), rng.normal(size=(10, 30)), prompt_ids=np.arange(10)))
    result, _ = analyse(check_inputs(small, bare_reward(rng.normal(size=30))))
    assert {"not_identified", "separable", "no_heldout", "few_prompts"} <= codes(result)
    assert result["limits"]["identification"]["rank"] == 10
    # separable, d = 6, n = 40 (< 10 d), labelled by a planted direction; a random reward is no witness -> solve
    delta = rng.normal(size=(40, 6))
    delta *= np.sign(delta @ np.ones(6))[:, None]
    sep = PairsData(PreferencePairs(delta, np.zeros_like(delta), prompt_ids=np.zeros(40, int)))
    result, _ = analyse(check_inputs(sep, bare_reward(rng.normal(size=6))))
    s = result["limits"]["separability"]
    assert s["status"] == "separable" and "hard-margin" in s["how"] and s["min_margin"] >= 1 - 1e-7
    assert {"separable", "single_prompt", "weakly_determined"} <= codes(result)
    # the same reward as its own witness
    result, _ = analyse(check_inputs(sep, bare_reward(np.ones(6))))
    assert "itself" in result["limits"]["separability"]["how"]
    # skipped above the size limit
    result, _ = analyse(check_inputs(sep, bare_reward(-np.ones(6))), AuditOptions(separability_limit=10))
    assert result["limits"]["separability"]["status"] == "skipped" and "separability_unchecked" in codes(result)
    # an uncertified reward that pays for a neutral word only: no better than chance on held-out pairs
    cat = np.zeros(len(WORDS))
    cat[WORDS.index("cat")] = 1.0
    result, _ = analyse(check_inputs(planted[0], bare_reward(cat, status="inaccurate")))
    assert {"uncertified", "inaccurate"} <= codes(result)


def test_a_healthy_case_has_no_warnings_and_a_farkas_certificate(planted):
    data, _, result, _ = planted
    assert result["warnings"] == []
    s = result["limits"]["separability"]
    assert s["status"] == "not separable"
    # independent check: the LP Δ_S θ >= 1 on the conflicting pairs has no solution
    rows = np.asarray(s["conflicting_pairs"])
    assert not data.test_mask[rows].any()
    lp = linprog(np.zeros(data.pairs.dim), A_ub=-data.pairs.delta[rows], b_ub=-np.ones(rows.size),
                 bounds=[(None, None)] * data.pairs.dim, method="highs")
    assert lp.status == 2  # infeasible


def spec(fingerprint="fp-a", max_length=128, with_prompt=False, mean=None, scale=None):
    return FeatureSpec("tiny-model", fingerprint, max_length, with_prompt, mean, scale)


def test_the_feature_recipe_is_checked_and_standardisations_are_mapped():
    d = len(WORDS)
    rng = np.random.default_rng(5)
    mean_p, scale_p = rng.normal(size=d), rng.uniform(0.5, 2, size=d)
    mean_r, scale_r = rng.normal(size=d), rng.uniform(0.5, 2, size=d)
    data = word_data(n=120, seed=6, spec=spec(mean=mean_p, scale=scale_p))
    theta = rng.normal(size=d)
    for bad, match in ((spec("fp-b"), "fingerprint"), (spec(max_length=64), "max_length"),
                       (spec(with_prompt=True), "with_prompt")):
        with pytest.raises(DataError, match=f"embedded differently.*{match}"):
            check_inputs(data, RewardModel(theta=theta, method="maxent", hyper_parameters={}, certificate={},
                                           status="optimal", features=bad), "P", "R")
    with pytest.raises(DataError, match="d=12 but R reads d=5"):
        check_inputs(data, bare_reward(np.ones(5)), "P", "R")
    reward = RewardModel(theta=theta, method="maxent", hyper_parameters={}, certificate={}, status="optimal",
                         features=spec(mean=mean_r, scale=scale_r))
    inputs = check_inputs(data, reward)
    assert inputs.features["checked"] and inputs.features["restandardised"]
    raw_c = data.pairs.chosen * scale_p + mean_p
    raw_r = data.pairs.rejected * scale_p + mean_p
    expected = ((raw_c - mean_r) / scale_r - (raw_r - mean_r) / scale_r) @ theta
    result, scores = analyse(inputs)
    assert np.allclose(scores.margin, expected, rtol=1e-10, atol=1e-10)
    same = check_inputs(data, RewardModel(theta=theta, method="maxent", hyper_parameters={}, certificate={},
                                          status="optimal", features=spec(mean=mean_p, scale=scale_p)))
    assert same.features["checked"] and not same.features["restandardised"]
    one_sided = check_inputs(data, bare_reward(theta))
    assert not one_sided.features["checked"]
    assert "feature_recipe_unchecked" in codes(analyse(one_sided)[0])


@pytest.fixture(scope="module")
def written(tmp_path_factory, planted):
    data, reward, _, _ = planted
    fa_reward = fit_reward(data, "fa-mm-qp", FASettings(max_rounds=2, oof_folds=0), margin="soft", C=1.0)
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp("audit") / name
        audit(check_inputs(data, fa_reward), out)
        outs.append(out)
    return outs


def test_files_are_pngs_the_report_names_each_and_runs_repeat_byte_for_byte(written):
    a, b = written
    result = json.loads((a / "audit.json").read_text(encoding="utf-8"))
    report = (a / "report.md").read_text(encoding="utf-8")
    assert set(result["files"]["figures"]) == {"margins", "rewards", "fa_rounds", "phrases"}
    for name in result["files"]["figures"].values():
        assert (a / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name})" in report
        assert (a / name).read_bytes() == (b / name).read_bytes()
    for name in ("audit.json", "report.md", "pairs.csv", "phrases.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    for heading in ("What the data cannot support", "Margins and accuracy", "Failures", "Completion rewards",
                    "By pair kind", "What the reward pays for", "Failure-aware rounds", "not causes"):
        assert heading in report
    assert result["run"]["command"] == "audit" and result["reward"]["method"] == "fa-mm-qp"
    assert "No feasible-set geometry recorded" in report and "fairl fit --geometry" in report
    lines = (a / "pairs.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 401 and lines[0].startswith("pair,split,source_row")
    assert not list(a.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_geometry_is_reported_when_the_reward_has_it(tmp_path):
    from fairl_opt.geometry.figures import planted_fa_run
    from fairl_opt.geometry import geometry_summary

    _, run = planted_fa_run(2, seed=0, n_pairs=10)
    geometry = geometry_summary(run, samples=300, seed=0)
    delta = run.standard_program.delta
    data = PairsData(PreferencePairs(delta, np.zeros_like(delta)))
    reward = RewardModel(theta=run.theta, method="fa-mm-qp", hyper_parameters={}, certificate={}, status="optimal",
                         fa={"stop_reason": run.stop_reason, "tightened": run.tightened.tolist(),
                             "rounds": [h.to_dict() for h in run.history]}, geometry=geometry)
    result = audit(check_inputs(data, reward), tmp_path / "g")
    g = result["fa"]["geometry"]
    assert g["volume_ratio"] == geometry["volume_ratio"]["ratio"] and 0 < g["volume_ratio"] <= 1
    assert g["chebyshev_radius_fa"] == geometry["chebyshev_radius"]["fa"]
    report = (tmp_path / "g" / "report.md").read_text(encoding="utf-8")
    assert "volume ratio F_FA/F_std" in report


def test_a_simulated_file_audits_without_the_phrase_section(tmp_path):
    from fairl_opt.simulate import simulate

    path = simulate(n_pairs=120, dim=5, seed=0).save(tmp_path / "sim.npz")
    data = PairsData.load(path)
    reward = fit_reward(data)
    result = audit(check_inputs(data, reward), tmp_path / "out")
    assert result["phrases"] is None and "phrases" not in result["files"]["figures"]
    assert "phrases_csv" not in result["files"] and not (tmp_path / "out" / "phrases.csv").exists()
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "Skipped: this pairs file carries no texts" in report
    assert result["kinds"] is not None and sum(s["n_pairs"] for s in result["kinds"].values()) == 120
    assert "no_heldout" in codes(result)


def test_a_dead_feature_is_not_identified_however_many_pairs():
    from fairl_opt.audit.limits import identification, numerical_rank

    rng = np.random.default_rng(8)
    delta = rng.normal(size=(300, 8))
    delta[:, 3] = 0.0  # a feature no pair moves
    delta[:, 5] = 2 * delta[:, 1]  # and one that only moves with another
    assert np.linalg.matrix_rank(delta) == 6
    assert numerical_rank(delta) == (6, "svd") and numerical_rank(delta, svd_work=0) == (6, "gram eigenvalues")
    record, warnings = identification(300, 8, delta, svd_work=0)
    assert record["status"] == "not identified" and [w["code"] for w in warnings] == ["not_identified"]
    assert "2 direction(s)" in warnings[0]["message"]
