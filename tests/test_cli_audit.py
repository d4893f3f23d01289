"""``fairl audit``: one JSON object on stdout naming the files it wrote, and bad input as exit 2 with one
line on stderr (a missing reward folder, another dimension, another feature model), checked before any
work is done."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fairl_opt.data.features import FeatureSpec
from fairl_opt.data.pairs_file import PairsData
from fairl_opt.data.reward import RewardModel
from fairl_opt.estimators import make_estimator
from fairl_opt.pairs import PreferencePairs
from tests.test_audit import word_data
from tests.clirun import run


def save_reward(data, folder, features=None):
    est = make_estimator("maxent", reg=1.0).fit(data.train())
    return RewardModel.from_estimator(est, "maxent", {"reg": 1.0}, features=features).save(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_audit")
    spec = FeatureSpec("tiny-model", "fp-a", 128, False)
    data = word_data(n=200, seed=7, spec=spec)
    pairs = data.save(root / "pairs.npz")
    reward = save_reward(data, root / "reward", spec)
    other = save_reward(data, root / "other-model", FeatureSpec("tiny-model", "fp-b", 128, False))
    rng = np.random.default_rng(0)
    narrow = PairsData(PreferencePairs(rng.normal(size=(30, 4)), rng.normal(size=(30, 4))))
    narrow_reward = save_reward(narrow, root / "narrow")
    return {"root": root, "pairs": pairs, "reward": reward, "other": other, "narrow": narrow_reward}


def test_audit_writes_the_report_and_prints_one_json_object(capsys, files):
    out = files["root"] / "report"
    code, stdout, err = run(capsys, "audit", files["pairs"], "--reward", files["reward"], "--out", out, "--top", "3",
                            "--quiet")
    assert code == 0, err
    payload = json.loads(stdout)
    assert payload["run"]["command"] == "audit" and payload["run"]["parameters"]["top"] == 3
    assert payload["run"]["inputs"] == {"pairs": str(files["pairs"]), "reward": str(files["reward"])}
    for path in payload["files"]:
        assert Path(path).is_file()
    assert {Path(p).name for p in payload["files"]} >= {"report.md", "audit.json", "pairs.csv", "phrases.csv",
                                                        "margins.png", "rewards.png", "phrases.png"}
    saved = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert payload["headline"]["train_accuracy"] == saved["margins"]["train"]["accuracy"]
    assert payload["headline"]["top_positive"][0] == "excellent"
    assert saved["inputs"]["features"]["checked"] and len(saved["failures"]["train"]["listed"]) == 3
    assert saved["run"] == payload["run"]
    assert payload["warning_codes"] == [w["code"] for w in saved["warnings"]]


@pytest.mark.parametrize("case, match", [
    ("missing", "no such folder"),
    ("other", "embedded differently.*fingerprint 'fp-a'.*'fp-b'"),
    ("narrow", "dimension d=12 but reward .* reads d=4"),
])
def test_bad_inputs_exit_2_with_one_line(capsys, files, case, match):
    import re

    reward = files["root"] / "nowhere" if case == "missing" else files[case]
    out = files["root"] / f"never-{case}"
    code, stdout, err = run(capsys, "audit", files["pairs"], "--reward", reward, "--out", out)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("fairl: error: ") and re.search(match, err), err
    assert not out.exists()


def test_a_missing_pairs_file_and_an_unusable_out_exit_2(capsys, files, tmp_path):
    code, _, err = run(capsys, "audit", tmp_path / "none.npz", "--reward", files["reward"], "--out", tmp_path / "o")
    assert code == 2 and "none.npz" in err and err.count("\n") == 1
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "audit", files["pairs"], "--reward", files["reward"], "--out", blocker)
    assert code == 2 and "exists and is not a folder" in err
    code, _, err = run(capsys, "audit", files["pairs"], "--reward", files["reward"], "--out", tmp_path / "o",
                       "--min-count", "1")
    assert code == 2 and "--min-count" in err


def test_help_shows_every_default(capsys):
    code, stdout, _ = run(capsys, "audit", "--help")
    assert code == 0
    for text in ("(default: 10)", "(default: 5)", "(default: 2)", "(default: 0.05)", "(default: 500000)"):
        assert text in " ".join(stdout.split())


def test_a_reward_from_fairl_fit_is_audited_with_its_own_failure_rule(capsys, files, tmp_path):
    reward = tmp_path / "fa-reward"
    code, _, err = run(capsys, "fit", files["pairs"], "--method", "fa-maxent", "--near-tie-quantile", "0.3",
                       "--max-rounds", "1", "--oof-folds", "0", "--out", reward, "--quiet")
    assert code == 0, err
    code, stdout, err = run(capsys, "audit", files["pairs"], "--reward", reward, "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    saved = json.loads((tmp_path / "r" / "audit.json").read_text(encoding="utf-8"))
    assert saved["failure_rule"]["near_tie_quantile"] == 0.3 and "own" in saved["failure_rule"]["source"]
    assert saved["inputs"]["same_file_as_training"] is True and saved["reward"]["fitted_pairs"] == 160
    data = PairsData.load(files["pairs"])
    theta = np.load(reward / "theta.npy")
    norm = data.pairs.delta[~data.test_mask] @ theta / np.linalg.norm(theta)
    assert saved["failure_rule"]["threshold"] == json.loads((reward / "reward.json").read_text())["fa"]["threshold"]
    tau = saved["failure_rule"]["threshold"]
    assert saved["failures"]["train"]["n_near_ties"] == int(((norm > 0) & (norm <= tau)).sum())
    # the same reward on another file: said so
    other = word_data(n=200, seed=8, spec=FeatureSpec("tiny-model", "fp-a", 128, False)).save(tmp_path / "other.npz")
    code, stdout, err = run(capsys, "audit", other, "--reward", reward, "--out", tmp_path / "r2", "--quiet")
    assert code == 0 and "other_file" in json.loads(stdout)["warning_codes"]


def test_a_damaged_fa_record_exits_2_naming_the_folder(capsys, files, tmp_path):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(files["reward"], folder)
    manifest = json.loads((folder / "reward.json").read_text(encoding="utf-8"))
    manifest["fa"] = {"stop_reason": "x", "rounds": [1]}
    (folder / "reward.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, stdout, err = run(capsys, "audit", files["pairs"], "--reward", folder, "--out", tmp_path / "o")
    assert code == 2 and stdout == "" and str(folder) in err and "fa.rounds[0]" in err
    assert not (tmp_path / "o").exists()
