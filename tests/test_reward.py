"""Saved rewards: ``fit_reward``, the reward folder (save/load verified), ``fairl fit`` and
``fairl score`` (a tiny random model as the feature model, checked against embedding by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairl_opt.cli import main
from fairl_opt.data import FeatureSpec, PairsData, RewardModel, fit_standardisation
from fairl_opt.data.fitting import fit_reward
from fairl_opt.data.pairs_file import pack_texts, unpack_texts
from fairl_opt.estimators import METHODS, make_estimator
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings
from fairl_opt.pairs import PreferencePairs, group_split
from fairl_opt.simulate import simulate
from tests.clirun import run


@pytest.fixture(scope="module")
def data():
    """Planted pairs, badly scaled columns, 25 % of prompts held out, a made-up feature recipe."""
    pairs = simulate(n_pairs=160, dim=6, seed=3).pairs
    scale = np.array([1e-3, 1.0, 1e3, 1.0, 10.0, 0.1])
    pairs = PreferencePairs(pairs.chosen * scale, pairs.rejected * scale, pairs.kinds, pairs.prompt_ids)
    _, test = group_split(pairs.prompt_ids, 0.25, seed=0)
    mask = np.zeros(pairs.n_pairs, bool)
    mask[test] = True
    spec = FeatureSpec("made-up", "fp:1", mean=np.zeros(6), scale=np.ones(6))
    return PairsData(pairs, chosen_text=[f"c{i}" for i in range(160)], rejected_text=[f"r{i}" for i in range(160)],
                     prompt_text=[f"p{k}" for k in pairs.prompt_ids], test_mask=mask, features=spec)


@pytest.mark.parametrize("method", list(METHODS))
def test_fit_reward_fits_training_pairs_only_and_round_trips(data, method, tmp_path):
    settings = FASettings(max_rounds=2, oof_folds=0) if METHODS[method].failure_aware else None
    reward, model = fit_reward(data, method, settings=settings, reg=0.5)
    train = data.pairs.subset(data.train_index)
    direct = make_estimator(method, reg=0.5, settings=settings).fit(train)  # independent of fit_reward
    np.testing.assert_array_equal(reward.theta, direct.theta_)
    test = data.pairs.subset(data.test_index)
    assert reward.training["n_train"] == train.n_pairs and reward.training["n_test"] == test.n_pairs
    assert reward.training["test_pair_accuracy"] == np.mean(test.delta @ direct.theta_ > 0)
    assert reward.training["train_pair_accuracy"] == np.mean(train.delta @ direct.theta_ > 0)
    folder = reward.save(tmp_path / "r")
    back = RewardModel.load(folder)
    np.testing.assert_array_equal(back.theta, reward.theta)
    assert back.method == method and back.status == "optimal" and back.hyper_parameters == json.loads(
        json.dumps(reward.hyper_parameters))
    assert back.features.fingerprint == "fp:1" and back.dim == 6
    np.testing.assert_allclose(back.score_features(data.pairs.delta), data.pairs.delta @ direct.theta_,
                               rtol=1e-12, atol=0)
    if METHODS[method].failure_aware:
        rounds = back.fa["rounds"]
        assert [r["round"] for r in rounds] == [h["round"] for h in direct.history_]
        assert [len(r["failures"]) for r in rounds] == [h["n_failures"] for h in direct.history_]
        key = "required_margins.npy" if METHODS[method].kind == "margin" else "weights.npy"
        expected = direct.required_margins_ if key == "required_margins.npy" else direct.weights_
        np.testing.assert_array_equal(back.arrays[key], expected)
    else:
        assert back.fa is None and back.arrays == {}


def test_reward_folder_refuses_damage(data, tmp_path):
    reward, _ = fit_reward(data, "maxent")
    folder = reward.save(tmp_path / "r")
    theta = folder / "theta.npy"
    raw = bytearray(theta.read_bytes())
    raw[-1] ^= 1
    theta.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="theta.npy: checksum differs"):
        RewardModel.load(folder)
    reward.save(folder)
    (folder / "feature_scale.npy").unlink()
    with pytest.raises(DataError, match="feature_scale.npy: listed in reward.json but missing"):
        RewardModel.load(folder)
    reward.save(folder)
    manifest = json.loads((folder / "reward.json").read_text())
    for edit, message in ((dict(format="other/9"), "format 'other/9'"), (dict(method="nope"), "unknown method")):
        (folder / "reward.json").write_text(json.dumps({**manifest, **edit}))
        with pytest.raises(DataError, match=message):
            RewardModel.load(folder)
    (folder / "reward.json").write_text("{not json")
    with pytest.raises(DataError, match="reward.json:1: not valid JSON"):
        RewardModel.load(folder)
    with pytest.raises(DataError, match="does not exist"):
        RewardModel.load(tmp_path / "absent")


def test_pairs_file_round_trip(data, tmp_path):
    path = data.save(tmp_path / "p.npz")
    back = PairsData.load(path)
    np.testing.assert_array_equal(back.pairs.delta, data.pairs.delta)
    np.testing.assert_array_equal(back.test_mask, data.test_mask)
    assert list(back.chosen_text) == list(data.chosen_text) and back.features.model == "made-up"
    assert back.meta["format"] == "fairl-pairs/1"
    with np.load(path, allow_pickle=False) as z:  # loads without pickle; texts cost their length
        assert z["chosen_text_utf8"].dtype == np.uint8
        assert z["chosen_text_utf8"].size == sum(len(t.encode()) for t in data.chosen_text)
    texts = ["", "é ü", "a\nb", "x" * 1000]
    np.testing.assert_array_equal(unpack_texts(*pack_texts(texts), "t"), texts)
    with pytest.raises(DataError, match="offsets do not cut"):
        unpack_texts(*pack_texts(texts)[:1], np.array([0, 5]), "t")


def test_fit_standardisation_is_mean_std_with_a_floor():
    x = np.array([[1.0, 5.0, 1e-12], [3.0, 5.0, 2e-12], [5.0, 5.0, 3e-12]])
    mean, scale = fit_standardisation(x)
    np.testing.assert_allclose(mean, [3.0, 5.0, 2e-12])
    # a constant column and one whose spread is 1e-12 of the others' are not divided by ~0
    np.testing.assert_allclose(scale, [np.sqrt(8 / 3), 1.0, 1.0])
    with pytest.raises(DataError, match="NaN/inf"):
        fit_standardisation([[np.nan]])


# -- the command line ------------------------------------------------------------------------------
def test_fairl_fit_writes_a_folder_and_json(data, tmp_path, capsys):
    pairs = data.save(tmp_path / "p.npz")
    code, out, err = run(capsys, "fit", pairs, "--method", "fa-maxent", "--max-rounds", "2", "--out", tmp_path / "r")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["out"] == str(tmp_path / "r") and payload["status"] == "optimal"
    assert payload["n_train"] + payload["n_test"] == 160 and payload["n_test"] == int(data.test_mask.sum())
    assert payload["hyper_parameters"]["fa_settings"]["max_rounds"] == 2
    assert payload["run"]["command"] == "fit" and payload["run"]["inputs"]["pairs"] == str(pairs)
    assert payload["features"]["model"] == "made-up" and payload["fa"]["rounds"][0]["round"] == 0
    reward = RewardModel.load(tmp_path / "r")
    assert reward.training["input_sha256"] and reward.method == "fa-maxent"


def test_fairl_fit_refuses_before_work(data, tmp_path, capsys):
    pairs = data.save(tmp_path / "p.npz")
    for argv, message in (
        (["fit", pairs, "--method", "maxent", "--C", "2", "--out", tmp_path / "r"], "--C applies to"),
        (["fit", tmp_path / "none.npz", "--out", tmp_path / "r"], "no such file"),
        (["fit", pairs, "--out", tmp_path / "file.txt" / "r"], "--out"),
    ):
        (tmp_path / "file.txt").write_text("x")
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and message in err, err
        assert not (tmp_path / "r").exists()


def test_fairl_score_refuses_a_reward_without_text_features(tmp_path, capsys):
    main(["simulate", "--n", "40", "--d", "3", "--out", str(tmp_path / "s.npz")])
    capsys.readouterr()
    assert run(capsys, "fit", tmp_path / "s.npz", "--out", tmp_path / "r")[0] == 0
    (tmp_path / "t.txt").write_text("hello\n")
    code, _, err = run(capsys, "score", tmp_path / "r", tmp_path / "t.txt")
    assert code == 2 and "cannot score texts" in err


def test_version(capsys):
    from fairl_opt import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"fairl_opt {__version__}"


# -- fairl score with a real (tiny, random) feature model -------------------------------------------
@pytest.mark.llm
def test_fairl_score_equals_embedding_by_hand(tmp_path, capsys):
    pytest.importorskip("torch")
    import fairl_opt.lm as lm
    from fairl_opt.models import resolve_model
    from tests.tiny_models import build_llama

    model_dir = build_llama(tmp_path / "tiny")
    words = ["the cat sat", "a big dog", "red mat", "the dog ran away", "blue cat home", "small red dog",
             "w1 w2 w3", "cat", "dog sat on the mat", "w4 w5"]
    chosen, rejected = words[:5] * 2, words[5:] * 2
    raw = lm.embed_texts(chosen + rejected, model=str(model_dir), progress=False).astype(np.float64)
    mean, scale = fit_standardisation(raw)
    spec = FeatureSpec(str(model_dir), resolve_model(str(model_dir)).fingerprint(), mean=mean, scale=scale)
    std = (raw - mean) / scale
    pairs = PreferencePairs(std[:10], std[10:], prompt_ids=np.arange(10) // 2, duplicates="allow")
    PairsData(pairs, chosen_text=chosen, rejected_text=rejected, features=spec).save(tmp_path / "p.npz")
    assert run(capsys, "fit", tmp_path / "p.npz", "--method", "maxent", "--allow-duplicates",
               "--out", tmp_path / "r")[0] == 0
    texts = ["the cat sat on a red mat", "dog", "w9 zebra"]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    code, out, err = run(capsys, "score", tmp_path / "r", tmp_path / "t.txt", "--quiet")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    reward = RewardModel.load(tmp_path / "r")
    by_hand = (lm.embed_texts(texts, model=str(model_dir), progress=False).astype(np.float64) - mean) / scale
    np.testing.assert_allclose([r["reward"] for r in rows], by_hand @ reward.theta, rtol=1e-10, atol=1e-12)
    assert [r["text"] for r in rows] == texts and [r["index"] for r in rows] == [0, 1, 2]
    # JSONL input and --out with its run record
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert run(capsys, "score", tmp_path / "r", tmp_path / "t.jsonl", "--out", tmp_path / "s.jsonl")[0] == 0
    assert (tmp_path / "s.jsonl").read_text() == out
    meta = json.loads((tmp_path / "s.jsonl.meta.json").read_text())
    assert meta["run"]["parameters"]["method"] == "maxent" and meta["n_texts"] == 3
    # another model under the same recorded name: refused, naming both fingerprints
    manifest = json.loads((tmp_path / "r" / "reward.json").read_text())
    manifest["features"]["fingerprint"] = "dir:0000:None"
    (tmp_path / "r" / "reward.json").write_text(json.dumps(manifest))
    code, out, err = run(capsys, "score", tmp_path / "r", tmp_path / "t.txt")
    assert code == 2 and out == "" and "dir:0000:None" in err and "refit" in err
