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


@pytest.mark.llm
def test_audit_two_models_with_a_tiny_base_and_its_lora_adapter(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from tests.tiny_models import build_bert, build_llama, build_lora_adapter

    base = build_llama(tmp_path / "base")
    aligned = build_lora_adapter(base, tmp_path / "adapter", seed=1)
    features = build_bert(tmp_path / "bert")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\na dog\nred mat\nbig blue\nthe dog sat\nsmall cat\nw1 w2\nhome\n")
    result = load("audit_two_models").main([
        "--base", str(base), "--aligned", str(aligned), "--prompts", str(prompts), "--feature-model",
        str(features), "--n-samples", "3", "--max-new-tokens", "6", "--out", str(tmp_path / "run"), "--quiet"])
    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert result["generated_pairs"] == len(rows) and 0 < len(rows) <= 24
    assert all(r["chosen"].strip() and r["rejected"].strip() and r["chosen"] != r["rejected"] for r in rows)
    assert result["pairs"] == len({(r["prompt"], r["chosen"], r["rejected"]) for r in rows})
    meta = json.loads((out / "pairs.jsonl.meta.json").read_text())
    assert meta["models"]["aligned"]["peft_type"] == "LORA"
    assert result["status"] == "optimal"
    report = (out / "audit" / "report.md").read_text()
    assert "## Failures" in report and "margins.png" in report
