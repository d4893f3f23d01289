"""The scripts in examples/ run end to end on small data (what a newcomer copies must work)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fairl_opt.cli import main as fairl

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_standard_fa_reports_paired_differences(tmp_path, capsys):
    from fairl_opt.estimators import make_estimator
    from fairl_opt.pairs import PreferencePairs, group_split

    assert fairl(["simulate", "--n", "150", "--d", "5", "--seed", "2", "--out", str(tmp_path / "s.npz")]) == 0
    capsys.readouterr()
    results = load("compare_standard_fa").main([str(tmp_path / "s.npz"), "--pairs-of", "maxent:fa-maxent",
                                                "--splits", "2"])
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed == results
    pairs = PreferencePairs.load(tmp_path / "s.npz")
    diffs = []
    for s in range(2):  # the same splits and fits, by hand
        train, test = group_split(pairs.prompt_ids, 0.2, seed=s)
        a = make_estimator("maxent").fit(pairs.subset(train)).score(pairs.subset(test))
        b = make_estimator("fa-maxent").fit(pairs.subset(train)).score(pairs.subset(test))
        diffs.append(b - a)
    assert results[0]["fa_minus_standard"] == pytest.approx([np.mean(diffs), np.std(diffs, ddof=1)])


@pytest.mark.llm
def test_fit_preference_file_on_the_shipped_file_with_minilm(tmp_path, capsys):
    pytest.importorskip("torch")
    result = load("fit_preference_file").main(["--out", str(tmp_path / "run"), "--quiet"])
    assert result["status"] == "optimal" and result["pairs"] == result["train"] + result["test"]
    # the shipped file prefers courteous over curt completions: a reward that learned anything
    # ranks most held-out pairs right and scores the courteous sentence higher
    assert result["test_pair_accuracy"] > 0.7
    polite, rude = result["scores"].values()
    assert polite > rude
    assert (tmp_path / "run" / "audit" / "report.md").is_file()
    assert (tmp_path / "run" / "reward" / "reward.json").is_file()
