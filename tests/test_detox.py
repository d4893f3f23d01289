"""The detox experiment: prompts, ground truth, SIR policy, dataset files, the experiment and report."""

import json

import cvxpy as cp
import numpy as np
import pytest

from fairl_opt.detox.dataset import DEFAULT_DIR as DATA
from fairl_opt.detox.dataset import DetoxDataset, prompt_splits, sir_pick, synthetic_dataset
from fairl_opt.detox.prompts import build_prompts, load_rtp_jsonl
from fairl_opt.detox.toxicity import reward_from_probability
from fairl_opt.pairs import pair_kinds
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.programs import MarginProgram


# ------------------------------------------------------------------ prompts


def test_build_prompts_deterministic_distinct_and_balanced():
    prompts, families = build_prompts(400, seed=3)
    again, _ = build_prompts(400, seed=3)
    other, _ = build_prompts(400, seed=4)
    assert prompts == again and prompts != other
    assert len(set(prompts)) == 400
    assert families.count("provocative") == 200 and families.count("neutral") == 200
    # interleaved at random, not one block after the other
    assert 50 < sum(f == "provocative" for f in families[:200]) < 150


def test_the_manifest_rule_rebuilds_the_shipped_prompts():
    """The shipped prompts are build_prompts with the manifest's recorded count, seed and mix."""
    rows = [json.loads(line) for line in (DATA / "prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    source = json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))["prompt_source"]
    assert source["builder"] == "fairl_opt.detox.prompts.build_prompts"
    prompts, families = build_prompts(len(rows), seed=source["seed"], mix=source.get("mix"))
    assert prompts == [r["text"] for r in rows] and families == [r["family"] for r in rows]


def test_challenge_family_and_mixes():
    from fairl_opt.detox.prompts import CHALLENGE_WORDS, family_prompts, mix_counts

    challenge = family_prompts("challenge")
    # five templates use a target and two different words, one ("Stop calling me") two words and no
    # target, two a target and one word: 20 targets, 8 words
    assert len(challenge) == len(set(challenge)) == 5 * 20 * 8 * 7 + 8 * 7 + 2 * 20 * 8
    assert all(any(w in p for w in CHALLENGE_WORDS) for p in challenge)
    mix = {"neutral": 0.2, "provocative": 0.2, "challenge": 0.6}
    assert mix_counts(1000, mix) == {"neutral": 200, "provocative": 200, "challenge": 600}
    assert mix_counts(11, mix) == {"neutral": 3, "provocative": 2, "challenge": 6}
    prompts, families = build_prompts(1000, seed=5, mix=mix)
    assert len(set(prompts)) == 1000 and families.count("challenge") == 600
    assert set(p for p, f in zip(prompts, families) if f == "challenge") <= set(challenge)
    assert build_prompts(1000, seed=5, mix=mix) == (prompts, families)
    for bad, message in (({"neutral": 0.5, "rude": 0.5}, "unknown prompt family"),
                         ({"neutral": 0.5, "challenge": 0.4}, "sum to 1"),
                         ({"neutral": 1.5}, "in \\(0, 1\\]"), ({}, "mix must map")):
        with pytest.raises(DataError, match=message):
            build_prompts(10, mix=bad)
    with pytest.raises(DataError, match="asks for 5000 neutral prompts but the templates make 4150"):
        build_prompts(5000, mix={"neutral": 1.0})


@pytest.mark.parametrize("n", [1, 0, 10**6, 2.5])
def test_build_prompts_rejects_bad_n(n):
    with pytest.raises(DataError, match="n"):
        build_prompts(n)


def test_load_rtp_jsonl_formats_duplicates_and_limit(tmp_path):
    path = tmp_path / "rtp.jsonl"
    lines = [
        {"prompt": {"text": "So I said to him"}, "challenging": True},
        {"prompt": "Another opening"},
        {"text": "A third"},
        {"prompt": {"text": "So I said to him"}},
        {"prompt": {"text": "Fourth"}},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    prompts, families = load_rtp_jsonl(path)
    assert prompts == ["So I said to him", "Another opening", "A third", "Fourth"]
    assert families == ["challenging", "rtp", "rtp", "rtp"]
    assert load_rtp_jsonl(path, limit=2)[0] == ["So I said to him", "Another opening"]


@pytest.mark.parametrize("line, message", [
    ("not json", ":2: not valid JSON"),
    ('{"prompt": {"x": 1}}', ":2: no prompt text"),
    ('{"prompt": "   "}', ":2: the prompt is empty"),
])
def test_load_rtp_jsonl_names_the_bad_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        load_rtp_jsonl(path)


def test_load_rtp_jsonl_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_rtp_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no prompts"):
        load_rtp_jsonl(tmp_path / "empty.jsonl")


# ------------------------------------------------------------------ ground truth


def test_reward_is_logit_of_non_offensive_probability():
    p = np.array([1e-9, 0.1, 0.5, 0.9, 1.0])
    r = reward_from_probability(p)
    pc = np.clip(p, 1e-6, 1 - 1e-6)
    assert np.allclose(r, np.log((1 - pc) / pc))
    assert r[2] == pytest.approx(0.0) and np.all(np.diff(r) < 0) and np.all(np.isfinite(r))


def test_real_classifier_orders_profanity_below_clean_text():
    pytest.importorskip("profanity_check")
    from fairl_opt.detox.toxicity import true_reward

    r, toxic, p = true_reward(["you are a fucking stupid idiot, shut the fuck up",
                               "the weather is lovely and the garden is in bloom"])
    assert toxic.tolist() == [True, False]
    assert r[0] < 0 < r[1]
    assert np.allclose(r, reward_from_probability(p))


def test_pair_kinds_read_rejected_to_chosen():
    kinds = pair_kinds([True, False, True, False], [False, False, True, True])
    assert kinds.tolist() == ["T->NT", "NT->NT", "T->T", "NT->T"]


# ------------------------------------------------------------------ aligned policy and splits


def test_sir_pick_draws_the_softmax_distribution():
    rewards = np.array([-1.0, 0.0, 2.0, 0.5])
    beta = 0.7
    rng = np.random.default_rng(0)
    draws = np.bincount([sir_pick(rewards, beta, rng) for _ in range(20000)], minlength=4) / 20000
    target = np.exp(rewards / beta) / np.exp(rewards / beta).sum()
    assert np.abs(draws - target).max() < 0.015
    # stable for large rewards (no overflow)
    assert sir_pick(np.array([1e4, 0.0]), 1e-3, rng) == 0


def test_prompt_splits_are_seeded_prompt_level_masks():
    masks = prompt_splits(100, 5, 0.3, seed=2)
    assert masks.shape == (5, 100) and np.all(masks.sum(1) == 30)
    assert np.array_equal(masks, prompt_splits(100, 5, 0.3, seed=2))
    assert len({m.tobytes() for m in masks}) == 5
    with pytest.raises(DataError, match="test_fraction"):
        prompt_splits(3, 1, 0.01, seed=0)


# ------------------------------------------------------------------ dataset files


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("detox")
    synthetic_dataset(out, n_prompts=240, K=4, dim=12, n_splits=3, seed=1)
    return out


def test_dataset_round_trip_and_pairs(synthetic_dir):
    ds = DetoxDataset.load(synthetic_dir)
    assert ds.features.shape == (240, 5, 12) and ds.K == 4 and ds.dim == 12
    assert ds.test_masks.shape == (3, 240)
    assert set(np.unique(ds.aligned_index)) <= set(range(1, 5))
    assert (ds.r_star < 0).tolist() == ds.toxic.tolist()  # r* < 0 exactly when p > 0.5
    train = np.flatnonzero(~ds.test_masks[0])
    mean, scale = ds.standardiser(train)
    x = ds.features[train].reshape(-1, 12)
    assert np.allclose(mean, x.mean(0)) and np.allclose(scale, x.std(0))
    pairs, dropped = ds.pairs(train, mean, scale)
    assert dropped == 0 and pairs.n_pairs == train.size
    i = 5
    p = pairs.prompt_ids[i]
    assert np.allclose(pairs.chosen[i], (ds.features[p, ds.aligned_index[p]] - mean) / scale)
    assert np.allclose(pairs.rejected[i], (ds.features[p, 0] - mean) / scale)
    expected = ("T" if ds.toxic[p, 0] else "NT") + "->" + ("T" if ds.toxic[p, ds.aligned_index[p]] else "NT")
    assert pairs.kinds[i] == expected


def test_pairs_drop_identical_texts(synthetic_dir):
    ds = DetoxDataset.load(synthetic_dir)
    ds.texts[3][ds.aligned_index[3]] = ds.texts[3][0]
    mean, scale = ds.standardiser(np.arange(240))
    pairs, dropped = ds.pairs(np.arange(10), mean, scale)
    assert dropped == 1 and 3 not in pairs.prompt_ids.tolist()


def test_load_detects_tampering_and_missing_files(synthetic_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_dir, copy)
    with (copy / "completions.jsonl").open("a") as fh:
        fh.write("\n")
    with pytest.raises(DataError, match="completions.jsonl does not match the sha256"):
        DetoxDataset.load(copy)
    (copy / "arrays.npz").unlink()
    with pytest.raises(DataError, match="arrays.npz is missing"):
        DetoxDataset.load(copy)
    with pytest.raises(DataError, match="no manifest.json"):
        DetoxDataset.load(tmp_path)


# ------------------------------------------------------------------ the experiment


@pytest.fixture(scope="module")
def quick_run(synthetic_dir, tmp_path_factory):
    from fairl_opt.detox.experiment import run_experiment

    out = tmp_path_factory.mktemp("report")
    return run_experiment(synthetic_dir, out, quick=True, progress=False), out


def test_experiment_writes_report_summary_and_figures(quick_run):
    summary, out = quick_run
    assert (out / "report.md").exists() and (out / "ablation_tnt_fraction.png").exists()
    assert (out / "realignment_toxicity.png").stat().st_size > 1000
    loaded = json.loads((out / "summary.json").read_text())
    assert loaded["n_splits"] == 2 and loaded["methods"][:2] == ["mm-qp", "fa-mm-qp"]
    text = (out / "report.md").read_text()
    for method in loaded["methods"]:
        assert f"| {method} |" in text
    assert "Ablation" in text and "Headline" in text
    assert all(r["gap"] <= 1e-6 for r in summary["by_policy"]["sir"]["rows"])
    for r in summary["by_policy"]["sir"]["rows"]:
        if r["method"].startswith("fa-mm"):
            assert 0.0 <= r["tightened_at_bound"] <= 1.0
        else:
            assert r["tightened_at_bound"] is None


def test_experiment_metrics_match_independent_references(synthetic_dir, quick_run):
    """Recompute one row's metrics with sklearn / numpy from the raw arrays."""
    from sklearn.metrics import roc_auc_score

    from fairl_opt.detox.split import Split
    from fairl_opt.estimators import MaxEntReward

    summary, _ = quick_run
    ds = DetoxDataset.load(synthetic_dir)
    split = Split(ds, ds.test_masks[1])
    reg = summary["by_policy"]["sir"]["selection"][1]["chosen"]["maxent"]["reg"]
    theta = MaxEntReward(reg=reg).fit(split.train).theta_
    row = next(r for r in summary["by_policy"]["sir"]["rows"] if r["split"] == 1 and r["method"] == "maxent")
    test = split.test_prompts
    x = (ds.features[test].reshape(-1, ds.dim) - split.mean) / split.scale
    assert row["roc_auc"] == pytest.approx(roc_auc_score(ds.toxic[test].ravel(), -(x @ theta)), abs=1e-9)
    d = split.test.delta
    assert row["heldout_pair_accuracy"] == pytest.approx(np.mean(d @ theta > 0))
    cand = (ds.features[test, 1:] - split.mean) / split.scale
    pick = 1 + np.argmax(cand @ theta, axis=1)
    assert row["bok_toxic_rate"] == pytest.approx(ds.toxic[test, pick].mean())
    refs = split.reference_policies()
    assert refs["base"]["bok_toxic_rate"] == pytest.approx(ds.toxic[test, 0].mean())
    assert refs["best-of-K by r*"]["bok_mean_r_star"] >= refs["aligned (SIR, data)"]["bok_mean_r_star"]


def test_recovered_reward_beats_chance_on_planted_data(quick_run):
    summary, _ = quick_run
    for method in ("mm-qp", "maxent"):
        assert summary["by_policy"]["sir"]["table"][method]["roc_auc"]["mean"] > 0.7


def test_paired_differences_by_hand():
    """Two splits, rows in shuffled order and an unpaired row: (0.5 − 0.2) and (0.1 − 0.4) pair by split."""
    from fairl_opt.detox.experiment import METRICS, paired_differences

    def row(split, method, starc):
        return {"split": split, "method": method, **dict.fromkeys(METRICS, 0.0), "starc": starc}

    rows = [row(1, "maxent", 0.4), row(0, "fa-maxent", 0.5), row(2, "fa-maxent", 9.0),
            row(0, "maxent", 0.2), row(1, "fa-maxent", 0.1)]
    starc = paired_differences(rows, "fa-maxent", "maxent")["starc"]
    assert starc["n"] == 2
    assert starc["mean"] == pytest.approx(0.0)  # (0.3 + (−0.3)) / 2
    assert starc["sd"] == pytest.approx(np.sqrt(0.18))  # sample sd of 0.3 and −0.3


def test_fa_minus_standard_is_paired_per_split(quick_run):
    summary, _ = quick_run
    table = {(r["split"], r["method"]): r["starc"] for r in summary["by_policy"]["sir"]["rows"]}
    entry = summary["by_policy"]["sir"]["fa_minus_standard"]["fa-maxent"]
    assert entry["versus"] == "maxent"
    assert entry["difference"]["starc"]["n"] == summary["n_splits"] == 2
    by_hand = (table[0, "fa-maxent"] - table[0, "maxent"] + table[1, "fa-maxent"] - table[1, "maxent"]) / 2
    assert entry["difference"]["starc"]["mean"] == pytest.approx(by_hand)
    assert summary["by_policy"]["sir"]["fa_minus_standard"]["fa-mm-qp (slack ×2)"]["versus"] == "mm-qp"


def test_cli_detox_run(synthetic_dir, tmp_path):
    from fairl_opt.cli import main

    assert main(["detox", "run", "--data", str(synthetic_dir), "--out", str(tmp_path), "--quick",
                 "--no-geometry", "--quiet"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["by_policy"]["sir"]["geometry"] is None
    assert main(["detox", "run", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2


def test_cli_detox_run_without_toxic_completions_fails_in_one_line(synthetic_dir, tmp_path, capsys):
    """A metric that cannot be computed (ROC-AUC with one class) is a DataError: exit 2, no traceback."""
    from fairl_opt.cli import main
    from fairl_opt.detox.dataset import write_dataset
    from fairl_opt.detox.toxicity import reward_from_probability

    ds = DetoxDataset.load(synthetic_dir)
    p_off = np.full(ds.r_star.shape, 1e-3)
    write_dataset(tmp_path / "clean", ds.prompts, ds.families, ds.texts, ds.features, reward_from_probability(p_off),
                  p_off, np.zeros(p_off.shape, dtype=bool), ds.aligned_index, ds.test_masks,
                  {k: v for k, v in ds.manifest.items() if k not in ("files", "rates", "versions", "families")})
    capsys.readouterr()
    code = main(["detox", "run", "--data", str(tmp_path / "clean"), "--out", str(tmp_path / "out"), "--quick",
                 "--no-geometry", "--quiet", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fairl: error: ") and err.count("\n") == 1 and "only one class" in err


# ------------------------------------------------------------------ soft-margin FA: an exact no-op case


def test_soft_margin_tightening_of_bound_pairs_leaves_theta_unchanged():
    """Raising m_i for pairs whose dual sits at its bound C keeps the KKT point: θ does not move.

    (Found on the detox data, where every failure of a soft max-margin fit is such a pair, so FA-MM
    with soft margins returns the standard θ.) Checked against cvxpy + Clarabel.
    """
    rng = np.random.default_rng(0)
    delta = rng.normal(size=(60, 5)) + 0.3  # not separable
    prog = MarginProgram(delta, 1.0, "l2", 1.0)

    def reference(margins):
        theta, xi = cp.Variable(5), cp.Variable(60)
        cons = [delta @ theta >= margins - xi, xi >= 0]
        cp.Problem(cp.Minimize(0.5 * cp.sum_squares(theta) + cp.sum(xi)), cons).solve(solver=cp.CLARABEL)
        return theta.value, cons[0].dual_value

    theta0, alpha = reference(np.ones(60))
    bound = np.flatnonzero(alpha > 1 - 1e-6)
    free = np.flatnonzero((alpha > 1e-6) & (alpha < 1 - 1e-6))
    assert bound.size > 5 and free.size > 0
    margins = np.ones(60)
    margins[bound] += 0.5
    theta1, _ = reference(margins)
    assert np.allclose(theta1, theta0, atol=1e-6)
    margins = np.ones(60)
    margins[free] += 0.5
    theta2, _ = reference(margins)
    assert np.linalg.norm(theta2 - theta0) > 1e-3  # a pair on the margin does move θ
    # and the FA loop (its failures are the misranked / lowest-margin pairs, all at the bound here)
    result = run_fa(prog, "auto", FASettings(oof_folds=0, margin_step=0.5, upweight=2.0, sharpen=1.0, backoff=0.99, max_rounds=3))
    tightened = result.tightened
    assert tightened.size > 0 and set(tightened.tolist()) <= set(bound.tolist())
    assert np.allclose(result.theta, theta0, atol=1e-5)
    assert all("θ unchanged" in h.note and "T10" in h.note for h in result.history[1:])
    moved = run_fa(prog, "auto", FASettings(oof_folds=0, margin_step=0.5, upweight=2.0, sharpen=1.0, backoff=0.99, slack_upweight=2.0, max_rounds=3))
    assert not np.allclose(moved.theta, theta0, atol=1e-3)
    assert not any("θ unchanged" in h.note for h in moved.history[1:])


def test_regularisation_is_selected_on_training_prompts_only(synthetic_dir, quick_run):
    """The chosen value is the argmax of validation scores computed from training prompts: changing
    every test-prompt feature must not change the choice."""
    from fairl_opt.detox.split import REG_GRID, Split

    summary, _ = quick_run
    ds = DetoxDataset.load(synthetic_dir)
    split = Split(ds, ds.test_masks[0])
    chosen, scores = split.select_regularisation(seed=0)
    assert chosen == summary["by_policy"]["sir"]["selection"][0]["chosen"]
    for base, (param, grid) in REG_GRID.items():
        assert chosen[base][param] == grid[int(np.argmax([scores[base][str(v)] for v in grid]))]
    test = ds.test_masks[0]
    ds.features[test] = np.random.default_rng(5).normal(size=ds.features[test].shape)
    assert Split(ds, test).select_regularisation(seed=0)[1] == scores


def test_parallel_splits_give_the_same_results(synthetic_dir, quick_run, tmp_path):
    from fairl_opt.detox.experiment import run_experiment

    summary, _ = quick_run
    parallel = run_experiment(synthetic_dir, tmp_path, quick=True, progress=False, workers=2)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(parallel["by_policy"]["sir"]["rows"]) == strip(summary["by_policy"]["sir"]["rows"])
    assert parallel["by_policy"]["sir"]["ablation"]["rows"] == summary["by_policy"]["sir"]["ablation"]["rows"]
    assert [x["chosen"] for x in parallel["by_policy"]["sir"]["selection"]] == [x["chosen"] for x in summary["by_policy"]["sir"]["selection"]]


def test_challenge_benchmark_wilson_interval_matches_scipy():
    from scipy import stats

    from benchmarks.challenge_prompts import wilson

    for k, n in ((0, 10), (3, 10), (77, 240), (240, 240)):
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
