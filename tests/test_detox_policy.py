"""Added aligned policies of a detox dataset (fairl_opt.detox.policy): files, checks, pairs, and the
experiment on two policies. The policy here is planted (no language model); the end-to-end path with
a real adapter's samples and implicit reward is in tests/test_train.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairl_opt.detox.dataset import DetoxDataset, synthetic_dataset
from fairl_opt.detox.policy import POLICY_DIR, write_policy
from fairl_opt.exceptions import DataError


def plant_policy(d, name="dpo", implicit=True, seed=1):
    """A planted trained policy: for each prompt, a copy of its best candidate by r* (features,
    labels), and an implicit reward that is a noisy 0.5·r* on base, SIR-aligned and own samples."""
    ds = DetoxDataset.load(d)
    rng = np.random.default_rng(seed)
    rows = np.arange(ds.n_prompts)
    best = 1 + ds.r_star[:, 1:].argmax(1)
    feats = ds.features[rows, best][:, None] + 0.01 * rng.normal(size=(ds.n_prompts, 1, ds.dim))
    with np.load(d / "arrays.npz") as z:
        p_off = z["p_offensive"][rows, best][:, None]
    r_star, toxic = ds.r_star[rows, best][:, None], ds.toxic[rows, best][:, None]
    texts = [[f"policy completion {i}"] for i in rows]
    imp = imp_data = None
    if implicit:
        imp = 0.5 * r_star + 0.1 * rng.normal(size=r_star.shape)
        imp_data = np.full(ds.r_star.shape, np.nan)
        imp_data[rows, 0] = 0.5 * ds.r_star[rows, 0] + 0.1 * rng.normal(size=ds.n_prompts)
        imp_data[rows, ds.aligned_index] = 0.5 * ds.r_star[rows, ds.aligned_index] + 0.1 * rng.normal(size=ds.n_prompts)
    meta = {"name": name, "model": {"name": "planted", "path": "none", "gguf_file": None}, "fingerprint": "planted",
            "samples": 1, "seed": 0, "sampling": {}, "template": "raw continuation",
            "implicit_reward": {"beta": 0.1, "computed_on": "planted"} if implicit else None,
            "rates": {"toxic": float(toxic.mean()), "toxic_by_family": {}, "base_toxic_same_prompts": 0.0},
            "cost": {"generate_seconds": 0.0, "embed_seconds": 0.0, "implicit_seconds": 0.0, "workers": 1},
            "versions": {}}
    write_policy(d, meta, texts, feats, r_star, p_off, toxic, imp, imp_data)
    return ds, best


@pytest.fixture()
def two_policies(tmp_path):
    d = tmp_path / "ds"
    synthetic_dataset(d, n_prompts=160, dim=8, seed=3)
    _, best = plant_policy(d)
    return d, best


def test_a_policy_round_trips_and_gives_its_own_pairs(two_policies):
    d, best = two_policies
    ds = DetoxDataset.load(d)
    assert ds.policy_names == ["sir", "dpo"]
    pol = ds.policies["dpo"]
    assert pol.features.shape == (160, 1, 8) and pol.implicit.shape == (160, 1)
    assert np.isnan(pol.implicit_data).sum() == 160 * (ds.K + 1 - 2)  # base and SIR-aligned scored only
    rows = np.arange(160)
    mean, scale = ds.standardiser(rows)
    sir, _ = ds.pairs(rows, mean, scale)
    dpo, dropped = ds.pairs(rows, mean, scale, policy="dpo")
    assert dropped == 0 and dpo.n_pairs == 160
    # chosen = the policy's sample, rejected = the same base completions as the SIR pairs
    np.testing.assert_allclose(dpo.rejected[:sir.n_pairs], ((ds.features[sir.prompt_ids, 0] - mean) / scale))
    np.testing.assert_allclose(dpo.chosen, (pol.features[:, 0] - mean) / scale)
    assert not np.allclose(dpo.chosen[:sir.n_pairs], sir.chosen)
    with pytest.raises(DataError, match="no aligned policy 'ppo'"):
        ds.pairs(rows, mean, scale, policy="ppo")
    sub = ds.subset(np.arange(40))
    assert sub.policies["dpo"].features.shape == (40, 1, 8) and len(sub.policies["dpo"].texts) == 40


def test_altered_policy_files_are_refused_naming_the_file(two_policies):
    d, _ = two_policies
    pol = d / POLICY_DIR / "dpo"
    raw = (pol / "completions.jsonl").read_bytes()
    (pol / "completions.jsonl").write_bytes(raw.replace(b"policy completion 3", b"policy completion X"))
    with pytest.raises(DataError, match="completions.jsonl does not match the sha256"):
        DetoxDataset.load(d)
    (pol / "completions.jsonl").write_bytes(raw)
    DetoxDataset.load(d)
    meta = json.loads((pol / "policy.json").read_text())
    meta["samples"] = 2
    (pol / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="policy.json does not match the sha256 in manifest.json"):
        DetoxDataset.load(d)
    with pytest.raises(DataError, match="features has shape"):  # unverified: the arrays' own check
        DetoxDataset.load(d, verify=False)
    (pol / "policy.json").unlink()
    with pytest.raises(DataError, match="policy.json is missing"):
        DetoxDataset.load(d)


def test_policy_names_are_checked():
    from fairl_opt.detox.policy import check_name

    for bad in ("sir", "", "Has Space", "../x", "a" * 40):
        with pytest.raises(DataError, match="policy name"):
            check_name(bad)
    assert check_name("dpo-2") == "dpo-2"


def test_the_experiment_runs_every_policy_and_compares_with_the_implicit_reward(two_policies, tmp_path):
    from fairl_opt.detox.experiment import run_experiment

    d, _ = two_policies
    summary = run_experiment(d, tmp_path / "r", quick=True, progress=False, geometry=False)
    assert list(summary["by_policy"]) == ["sir", "dpo"]
    for policy, part in summary["by_policy"].items():
        assert {r["policy"] for r in part["rows"]} == {policy}
        assert part["table"]["maxent"]["starc_implicit"]["n"] == 2  # every split has a value
        assert 0 <= part["table"]["maxent"]["starc_implicit"]["mean"] <= 2
        assert part["implicit_reference"]["policy"] == "dpo"
        assert "aligned (dpo, trained)" in part["references"]
        assert part["ablation"]["fractions"][-1] == 0.5
        assert "fa-maxent" in part["ablation"]["fa_minus_standard"]
    # the implicit reward here is 0.5·r* + small noise: r* and it are close, so STARC(r*, implicit) is small
    imp = summary["by_policy"]["dpo"]["implicit_reference"]["starc_r_star_vs_implicit"]["mean"]
    assert imp < 0.3
    # same splits, same held-out completions: the two policies' rows differ only through their training pairs
    sir = {(r["split"], r["method"]): r for r in summary["by_policy"]["sir"]["rows"]}
    dpo = {(r["split"], r["method"]): r for r in summary["by_policy"]["dpo"]["rows"]}
    assert sir.keys() == dpo.keys() and any(sir[k]["roc_auc"] != dpo[k]["roc_auc"] for k in sir)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Aligned policy `dpo`" in report and "## Where FA helps and where it hurts" in report
    assert (tmp_path / "r" / "ablation_tnt_fraction_dpo.png").exists()
    assert set(summary["planted"]["table"]) == {"linear", "gaussian", "two-kinds", "label-noise", "filtered"}
    import re

    section = report[report.index("## Where FA helps"):report.index("Of these")]
    cells = [c for line in section.splitlines() if line.startswith("| sir |") or line.startswith("| dpo |")
             for c in line.split("|")[3:-1]]
    n = int(re.search(r"Of these (\d+) comparisons FA is better in (\d+), worse in (\d+) and not clearly different "
                      r"in (\d+)", report).group(1))
    assert n == sum(c.strip() != "—" for c in cells) > 0
    assert "Planted regimes" in report and "| two-kinds (misspecified" in report


def test_the_planted_study_of_the_report_is_the_study_itself():
    """study_summary's Δ are the paired means and standard errors of study's own arrays."""
    from fairl_opt.misspecified import study, study_summary

    args = dict(seeds=2, n_pairs=300, dim=6, reg=1.0, regimes=("gaussian", "label-noise"))
    table = study(**args)
    summary = study_summary(**args, methods=("fa", "fa-band"))
    for regime in ("gaussian", "label-noise"):
        for name in ("fa", "fa-band"):
            diff = table[regime][name]["roc_auc"] - table[regime]["maxent"]["roc_auc"]
            got = summary["table"][regime][name]["roc_auc"]
            assert got["mean"] == pytest.approx(diff.mean()) and got["se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(2))
    assert summary["settings"]["seeds"] == 2 and summary["methods"] == ["fa", "fa-band"]


def test_the_report_shows_a_re_rlhf_file_and_refuses_a_bad_one(two_policies, tmp_path, capsys):
    from tests.clirun import run

    d, _ = two_policies
    good = {"what": "planted", "models": {"base": "b", "fa": "f"},
            "results": {"base": {"toxic": 0.25, "wilson95": [0.2, 0.3], "mean_r_star": 1.0, "n": 600},
                        "fa": {"toxic": 0.002, "wilson95": [0.0, 0.009], "mean_r_star": 4.5, "n": 600}}}
    (tmp_path / "e.json").write_text(json.dumps(good))
    code, _, err = run(capsys, "detox", "run", "--data", d, "--out", tmp_path / "r", "--quick", "--no-geometry",
                       "--quiet", "--rerlhf", tmp_path / "e.json")
    assert code == 0, err
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Re-RLHF" in report and "| fa | — | 600 | 0.002 | 0.002 | 4.50 | — |" in report
    (tmp_path / "bad.json").write_text(json.dumps({"results": {"fa": {"toxic": 0.1}}}))
    code, _, err = run(capsys, "detox", "run", "--data", d, "--out", tmp_path / "s", "--quick", "--quiet",
                       "--rerlhf", tmp_path / "bad.json")
    assert code == 2 and "--rerlhf" in err and "results['fa']" in err


def _run(toxic, r, kl=None):
    e = {"toxic": toxic, "wilson95": [0.0, 1.0], "mean_r_star": float(np.mean(r)), "n": len(r), "r_star": list(r)}
    if kl is not None:
        e["kl"] = {"mean": kl, "se": 1.0, "step": 158}
    return e


def test_re_rlhf_runs_of_several_seeds_give_mean_sd_and_paired_differences(tmp_path):
    from fairl_opt.detox.rerlhf import read_rerlhf, rerlhf_lines

    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 1.0, 50)
    shift = {0: 0.5, 1: 0.3, 2: 0.1}
    results = {"base": _run(0.25, base)}
    for seed in (0, 1, 2):
        std = base + 3.0 + rng.normal(0, 0.1, 50)
        results[f"standard@{seed}"] = _run(0.01 * seed, std, kl=20.0 + seed)
        results[f"fa@{seed}"] = _run(0.02 * seed, std + shift[seed], kl=18.0)
    doc = {"what": "planted", "models": {}, "comparisons": [["fa", "standard"]], "results": results}
    (tmp_path / "e.json").write_text(json.dumps(doc))
    read = read_rerlhf(tmp_path / "e.json")
    assert all("r_star" not in e for e in read["results"].values())  # kept only through the summary
    s = read["summary"]
    g = s["groups"]["standard"]
    assert g["seeds"] == [0, 1, 2] and g["toxic"] == [0.0, 0.01, 0.02]
    assert g["toxic_mean"] == pytest.approx(0.01) and g["toxic_sd"] == pytest.approx(0.01)
    assert s["groups"]["base"]["toxic_sd"] is None and s["groups"]["base"]["seeds"] == [None]
    c = s["comparisons"][0]
    assert [r["seed"] for r in c["per_seed"]] == [0, 1, 2]
    assert [r["d_r"] for r in c["per_seed"]] == pytest.approx([0.5, 0.3, 0.1])
    assert c["d_r_mean"] == pytest.approx(0.3) and c["d_r_sd"] == pytest.approx(0.2)
    assert c["d_toxic_mean"] == pytest.approx(0.01)
    for r in c["per_seed"]:  # a constant shift: the paired interval over prompts is a point
        assert r["d_r_ci"] == pytest.approx([shift[r["seed"]]] * 2, abs=1e-9)
    text = "\n".join(rerlhf_lines(read_rerlhf(tmp_path / "e.json")))
    assert "| standard | 0, 1, 2 | 50 | 0.000, 0.010, 0.020 | 0.010 ± 0.010 |" in text
    assert "| fa − standard | mean ± sd over 3 seeds | +0.0100 ± 0.0100 | +0.300 ± 0.200 | |" in text
    assert "21.0 ± 1.0" in text  # the standard runs' KL over seeds


@pytest.mark.parametrize("change, message", [
    (lambda d: d["results"].update({"fa@x": d["results"]["base"]}), "NAME@SEED"),
    (lambda d: d.update(comparisons=[["fa", "nobody"]]), "comparison"),
    (lambda d: d["results"]["base"].update(r_star=[1.0]), "'r_star'"),
    (lambda d: d["results"]["base"].update(r_star=[float("nan"), 1.0]), "'r_star'"),
])
def test_a_bad_re_rlhf_file_is_refused_by_name(tmp_path, change, message):
    from fairl_opt.detox.rerlhf import read_rerlhf
    from fairl_opt.exceptions import DataError

    doc = {"results": {"base": _run(0.2, [1.0, 2.0]), "fa@0": _run(0.0, [3.0, 4.0])}, "comparisons": []}
    change(doc)
    (tmp_path / "e.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message):
        read_rerlhf(tmp_path / "e.json")


def test_evaluate_update_adds_models_and_keeps_the_saved_ones(tmp_path, monkeypatch, capsys):
    import benchmarks.rerlhf as bench
    from fairl_opt.detox.rerlhf import read_rerlhf

    saved = {"what": "planted", "split": 0, "models": {"base": "smollm2", "fa@0": "a", "standard@0": "b"},
             "comparisons": [["fa", "standard"]],
             "results": {"base": _run(0.2, [1.0, 2.0]), "fa@0": _run(0.0, [3.0, 4.0]),
                         "standard@0": _run(0.0, [3.5, 4.0])}}
    path = tmp_path / "e.json"
    path.write_text(json.dumps(saved))
    calls = []

    def fake_evaluate(data, models, split=0, samples=1, workers=1, cache_dir=None):
        calls.append(dict(models))
        return {label: _run(0.5, [0.0, 1.0]) for label in models}

    monkeypatch.setattr(bench, "evaluate", fake_evaluate)
    bench.main(["--evaluate", "audit-fa@0=c", "audit-standard@0=d", "fa@0=a2", "--compare", "audit-fa:audit-standard",
                "--update", "--save", str(path)])
    assert calls == [{"audit-fa@0": "c", "audit-standard@0": "d", "fa@0": "a2"}]  # only the named models ran
    doc = json.loads(path.read_text())
    assert doc["models"] == {"base": "smollm2", "standard@0": "b", "audit-fa@0": "c", "audit-standard@0": "d",
                             "fa@0": "a2"}
    assert doc["results"]["base"] == saved["results"]["base"]  # kept as saved
    assert doc["results"]["fa@0"]["r_star"] == [0.0, 1.0]  # replaced
    assert doc["comparisons"] == [["fa", "standard"], ["audit-fa", "audit-standard"]]
    assert {c["a"] for c in read_rerlhf(path)["summary"]["comparisons"]} >= {"fa", "audit-fa"}
    path.write_text(json.dumps(dict(saved, split=1)))  # another split: refused, naming --update
    with pytest.raises(SystemExit):
        bench.main(["--evaluate", "x=y", "--update", "--save", str(path)])
    assert "--update" in capsys.readouterr().err
