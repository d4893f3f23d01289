"""fairl detox train: DPO with TRL through a LoRA adapter, on the tiny random Llama of tests/tiny_models.py
(a few steps, CPU), and the trained model's implicit reward checked against a hand computation."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from fairl_opt.exceptions import DataError  # noqa: E402
from tests.clirun import run  # noqa: E402
from tests.tiny_models import build_llama  # noqa: E402

pytestmark = pytest.mark.llm
torch.set_num_threads(1)

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "red", "blue", "big", "small", "ran", "away", "home"]
#: chosen completions speak of cats and mats, rejected ones of w-words: a preference the tiny model can learn
PAIRS = [{"prompt": f"the w{i} sat", "chosen": " on the mat home", "rejected": f" w{i + 1} w{i + 2} ran away"}
         for i in range(8)]
FAST = dict(learning_rate=5e-3, epochs=3, batch_size=4, log_every=1, save_every=2, kl_prompts=["the cat", "a dog"],
            kl_max_new_tokens=4)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_llama(tmp_path_factory.mktemp("train") / "base")


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    from fairl_opt.detox.train import train_dpo

    out = tmp_path_factory.mktemp("train") / "adapter"
    prov = train_dpo(str(base), PAIRS, out, eval_pairs=PAIRS[:4], progress=False, **FAST)
    return out, prov


def _log(out):
    return json.loads((out / "training_log.json").read_text(encoding="utf-8"))


def test_dpo_starts_at_log2_and_the_loss_falls(trained):
    """LoRA B = 0 at the start: the adapter is the base, every log-ratio is 0, the DPO loss is log 2."""
    out, prov = trained
    records = _log(out)["records"]
    assert [r["step"] for r in records] == list(range(1, 7)) and prov["cost"]["steps"] == 6
    first = records[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/chosen"] == first["rewards/rejected"] == first["rewards/margins"] == 0.0
    assert records[-1]["loss"] < first["loss"] - 0.05
    assert records[-1]["rewards/margins"] > 0 and records[-1]["accuracy"] == 1.0
    assert records[-1]["eval_loss"] < records[0]["eval_loss"]


def test_output_files_and_their_documented_fields(trained):
    from fairl_opt.detox.train import ADAPTER_FILES, LOG_FIELDS

    out, prov = trained
    assert sorted(p.name for p in out.iterdir()) == sorted(
        list(ADAPTER_FILES) + ["provenance.json", "training.png", "training_log.json"])  # checkpoints removed
    log = _log(out)
    assert set(log) == {"fields", "kl_estimator", "records", "summary"} and log["fields"] == LOG_FIELDS
    for r in log["records"]:
        assert set(r) <= set(LOG_FIELDS)
        assert {"step", "loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "accuracy", "kl",
                "kl_se", "eval_loss", "eval_margin", "eval_accuracy"} <= set(r)
        assert all(np.isfinite(v) for v in r.values())
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(prov))
    assert {"base", "data", "hyperparameters", "tokenization", "kl_estimator", "cost", "versions",
            "files"} <= set(saved)
    assert saved["base"]["fingerprint"].startswith("dir:")
    assert saved["data"]["n_pairs"] == 8 and len(saved["data"]["pairs_sha256"]) == 64
    hp = saved["hyperparameters"]
    assert (hp["beta"], hp["lora_r"], hp["lora_alpha"], hp["target_modules"]) == (0.1, 8, 16, ["q_proj", "v_proj"])
    assert {"learning_rate", "epochs", "batch_size", "max_length", "seed", "warmup_steps"} <= set(hp)
    assert all(saved["versions"][k] for k in ("trl", "peft", "torch", "transformers"))
    assert saved["cost"]["seconds"] > 0 and saved["cost"]["steps"] == 6
    from fairl_opt._io import sha256_file

    assert all(sha256_file(out / name) == digest for name, digest in saved["files"].items())
    assert not (out / "adapter_model.bin").exists() and not (out / "README.md").exists()


def test_the_adapter_loads_through_resolve_model_and_changes_outputs(trained, base):
    from fairl_opt.models import load_model, load_tokenizer, resolve_model

    out, _ = trained
    spec = resolve_model(str(out))
    assert spec.is_adapter and spec.base.path.resolve() == base.resolve()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base.resolve())
    tok = load_tokenizer(spec)
    ids = torch.tensor([tok("the w1 sat on the mat")["input_ids"]])
    with torch.no_grad():
        tuned, plain = (load_model(s, causal=True)(input_ids=ids).logits for s in (spec, resolve_model(str(base))))
    assert (tuned - plain).abs().max() > 1e-3


def _hand_logp(model, tok, prompt, completion):
    p, full = tok(prompt)["input_ids"], tok(prompt + completion)["input_ids"]
    assert full[:len(p)] == p
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].double(), dim=-1)
    return sum(float(logp[t - 1, full[t]]) for t in range(len(p), len(full)))


def test_implicit_reward_equals_a_hand_computation(trained, base):
    """β·(log π_θ − log π_ref) summed over completion tokens, by transformers + peft directly."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fairl_opt.detox.policy import implicit_reward

    out, _ = trained
    prompts = [p["prompt"] for p in PAIRS] + ["a dog"]
    completions = [p["chosen"] for p in PAIRS[:4]] + [p["rejected"] for p in PAIRS[4:]] + [" ran home w3 w4 w5"]
    got = implicit_reward(str(out), prompts, completions, beta=0.25, batch_size=3)
    tok = AutoTokenizer.from_pretrained(base)
    ref = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    with warnings.catch_warnings():  # peft reads a transformers attribute deprecated in 5.x
        warnings.simplefilter("ignore", FutureWarning)
        pol = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), out).eval()
    want = [0.25 * (_hand_logp(pol, tok, p, c) - _hand_logp(ref, tok, p, c)) for p, c in zip(prompts, completions)]
    assert got.shape == (9,) and np.abs(want).max() > 0.05
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # the trained preference shows: chosen-style completions earn more than rejected-style ones
    assert got[:4].mean() > got[4:8].mean()
    with pytest.raises(DataError, match="not an adapter"):
        implicit_reward(str(base), prompts, completions, beta=0.1)
    with pytest.raises(DataError, match="one length"):
        implicit_reward(str(out), prompts, completions[:-1], beta=0.1)


def test_a_run_interrupted_after_a_checkpoint_resumes_there(base, tmp_path):
    """Interrupted right after checkpoint-4, the rerun resumes at step 4 and ends where an
    uninterrupted run ends (same log, same adapter)."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from fairl_opt.detox.train import train_dpo

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 4:
                raise KeyboardInterrupt

    out, straight = tmp_path / "resumed", tmp_path / "straight"
    with pytest.raises(KeyboardInterrupt):
        train_dpo(str(base), PAIRS, out, progress=False, callbacks=[Interrupt()], **FAST)
    assert (out / "checkpoints" / "checkpoint-4").is_dir() and not (out / "provenance.json").exists()
    with pytest.raises(DataError, match="checkpoints of a run with other settings"):
        train_dpo(str(base), PAIRS, out, progress=False, **{**FAST, "learning_rate": 1e-3})
    prov = train_dpo(str(base), PAIRS, out, progress=False, **FAST)
    assert prov["cost"]["resumed_from"] == "checkpoint-4" and prov["cost"]["steps"] == 6
    train_dpo(str(base), PAIRS, straight, progress=False, **FAST)
    a, b = _log(out)["records"], _log(straight)["records"]
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
    np.testing.assert_allclose([r["kl"] for r in a], [r["kl"] for r in b], rtol=1e-4, atol=1e-6)
    wa, wb = (load_file(str(d / "adapter_model.safetensors")) for d in (out, straight))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-7)
    # --force discards another run's checkpoints and starts over
    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        train_dpo(str(base), PAIRS, other, progress=False, callbacks=[Interrupt()], **FAST)
    prov = train_dpo(str(base), PAIRS, other, progress=False, force=True, **{**FAST, "learning_rate": 1e-3})
    assert prov["cost"]["resumed_from"] is None and prov["cost"]["steps"] == 6


def test_bad_input_is_a_data_error_before_training(base, tmp_path):
    from fairl_opt.detox.train import train_dpo

    for bad, match in (([], "pairs is empty"), ([{"prompt": "a", "chosen": "b"}], r"pairs\[0\]"),
                       ([{"prompt": "a", "chosen": " b", "rejected": " b"}], "same text")):
        with pytest.raises(DataError, match=match):
            train_dpo(str(base), bad, tmp_path / "x")
    with pytest.raises(DataError, match="beta must be"):
        train_dpo(str(base), PAIRS, tmp_path / "x", beta=0.0)
    with pytest.raises(DataError, match="max-length"):
        train_dpo(str(base), PAIRS, tmp_path / "x", max_length=3)
    assert not (tmp_path / "x" / "provenance.json").exists()


# ----------------------------------------------------------------------------------------------
# the detox side: best ≻ worst pairs of a dataset, and the command


def _dataset(path, ties=False, n=30, K=3):
    """A detox dataset in the shipped format whose texts the tiny tokenizer knows."""
    from fairl_opt.detox.dataset import prompt_splits, write_dataset
    from fairl_opt.detox.toxicity import TOXIC_THRESHOLD, reward_from_probability

    rng = np.random.default_rng(0)
    samples = [[" " + " ".join(rng.choice(WORDS, 4)) for _ in range(K + 1)] for _ in range(n)]
    p_off = np.full((n, K + 1), 0.3) if ties else rng.uniform(0.02, 0.98, size=(n, K + 1))
    manifest = {
        "dataset": "tiny", "n_prompts": n, "K": K, "beta": 1.0, "seed": 0, "n_splits": 2, "test_fraction": 0.3,
        "generator": {"name": "tiny", "template": "raw continuation"}, "feature_model": {"name": "none", "dim": 4},
        "ground_truth": {"scorer": "uniform", "toxic_threshold": TOXIC_THRESHOLD},
        "cost": {"generate_seconds": 0.0, "embed_seconds": 0.0, "workers": 1, "machine": "none"},
    }
    write_dataset(path, [f"the w{i} sat" for i in range(n)], ["neutral"] * n, samples, rng.normal(size=(n, K + 1, 4)),
                  reward_from_probability(p_off), p_off, p_off > TOXIC_THRESHOLD, rng.integers(1, K + 1, size=n),
                  prompt_splits(n, 2, 0.3, 0), manifest)
    return path


def test_best_worst_pairs_and_the_prompt_rule(tmp_path):
    from fairl_opt.detox.dataset import DetoxDataset
    from fairl_opt.detox.train_cli import best_worst_pairs, detox_pairs

    d = DetoxDataset.load(_dataset(tmp_path / "d"))
    pairs = best_worst_pairs(d, range(d.n_prompts))
    assert len(pairs) == d.n_prompts
    for p in pairs:
        i = p["prompt_id"]
        assert p["r_chosen"] == d.r_star[i].max() > p["r_rejected"] == d.r_star[i].min()
        assert (p["chosen"], p["rejected"], p["prompt"]) == (d.texts[i][p["chosen_sample"]],
                                                             d.texts[i][p["rejected_sample"]], d.prompts[i])
    train, val, train_ids, val_ids = detox_pairs(d, 0, 0.2, 0, None)
    test = set(np.flatnonzero(d.test_masks[0]).tolist())
    assert not test & (set(train_ids) | set(val_ids)) and not set(train_ids) & set(val_ids)
    assert len(train_ids) + len(val_ids) == d.n_prompts - len(test) and len(val_ids) == round(0.2 * (30 - 9))
    assert len(detox_pairs(d, 0, 0.2, 0, 5)[0]) == 5
    tied = DetoxDataset.load(_dataset(tmp_path / "t", ties=True))
    assert best_worst_pairs(tied, range(tied.n_prompts)) == []
    # any reward array ranks the same completions (re-RLHF with a recovered reward): -r* flips every pair
    flipped = best_worst_pairs(d, range(d.n_prompts), reward=-d.r_star)
    assert [(p["chosen"], p["rejected"]) for p in flipped] == [(p["rejected"], p["chosen"]) for p in pairs]
    with pytest.raises(DataError, match="reward must be a finite array of shape"):
        best_worst_pairs(d, range(d.n_prompts), reward=d.r_star[:, :2])


def test_cli_trains_and_refuses_to_overwrite(base, tmp_path, capsys):
    data, out = _dataset(tmp_path / "d"), tmp_path / "aligned"
    argv = ["detox", "train", "--data", data, "--out", out, "--base", base, "--batch-size", "4", "--log-every", "2",
            "--eval-every", "2", "--eval-pairs", "2", "--kl-prompts", "2", "--kl-max-new-tokens", "3",
            "--learning-rate", "5e-3", "--warmup-steps", "0", "--quiet"]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["n_pairs"] == 19 and summary["cost"]["steps"] == 5 and summary["run"]["command"] == "detox train"
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["data"]["split"] == 0 and prov["data"]["manifest_sha256"] and len(prov["data"]["val_prompt_ids"]) == 2
    records = _log(out)["records"]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 4, 5]  # the first and the last step too
    assert [r["step"] for r in records if "eval_loss" in r] == [2, 4, 5]
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("fairl: error: --out") and "--force" in err and err.count("\n") == 1
    assert run(capsys, *argv, "--force", "--max-steps", "2")[0] == 0
    assert _log(out)["records"][-1]["step"] == 2


def test_cli_bad_input_exits_2_with_one_line(base, tmp_path, capsys):
    tied = _dataset(tmp_path / "tied", ties=True)
    cases = [(["--data", tmp_path / "missing"], "--data"),
             (["--data", tied], "no best ≻ worst pair"),
             (["--data", tied, "--beta", "0"], "--beta"),
             (["--data", tied, "--split", "7"], "--split"),
             (["--data", tied, "--base", tmp_path / "nowhere"], "--base"),
             (["--data", tied, "--target-modules", "q_proj,nope"], "nope is not a linear module"),
             (["--data", tied, "--target-modules", "lm_head"], "lm_head is not a linear module")]
    for extra, needle in cases:
        code, _, err = run(capsys, "detox", "train", "--out", tmp_path / "o", "--base", base, *extra)
        assert code == 2 and err.startswith("fairl: error:") and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_chat_template_prompts_train_and_score_as_rendered(tmp_path):
    """With chat_template the prompt is one user turn through the tokenizer's template, in training and
    in implicit_reward, which reads the setting from provenance.json."""
    from transformers import AutoTokenizer

    from fairl_opt.detox.policy import implicit_reward
    from fairl_opt.detox.train import encode, train_dpo

    chat_base = build_llama(tmp_path / "chat", chat_template=True)
    tok = AutoTokenizer.from_pretrained(chat_base)
    p_ids, c_ids = encode(tok, "the cat", " sat on the mat", True, None)
    assert p_ids == tok("blue the cat home", add_special_tokens=False)["input_ids"] and len(c_ids) == 4
    out = tmp_path / "adapter"
    prov = train_dpo(str(chat_base), PAIRS, out, chat_template=True, progress=False, **{**FAST, "epochs": 1})
    assert prov["tokenization"]["chat_template"] is True and prov["cost"]["steps"] == 2
    prompts, completions = [p["prompt"] for p in PAIRS[:3]], [p["chosen"] for p in PAIRS[:3]]
    default = implicit_reward(str(out), prompts, completions, beta=0.1)
    np.testing.assert_array_equal(default, implicit_reward(str(out), prompts, completions, beta=0.1,
                                                           chat_template=True))
    assert not np.allclose(default, implicit_reward(str(out), prompts, completions, beta=0.1, chat_template=False))


def test_the_chunked_implicit_reward_job_matches_and_resumes(trained, tmp_path):
    """fairl_opt.detox.policy.implicit_rewards (chunks, cache) = implicit_reward to float32 rounding; a
    rerun is served from the cache, and a corrupted chunk is recomputed."""
    from fairl_opt.detox.policy import implicit_reward, implicit_rewards

    out, _ = trained
    prompts = [p["prompt"] for p in PAIRS]
    completions = [p["chosen"] for p in PAIRS[:4]] + [p["rejected"] for p in PAIRS[4:]]
    want = implicit_reward(str(out), prompts, completions, beta=0.25)
    got = implicit_rewards(str(out), prompts, completions, beta=0.25, cache_dir=tmp_path, chunk_size=3, progress=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    chunks = sorted(tmp_path.glob("imp-*.npy"))
    assert len(chunks) == 3
    stamp = [c.stat().st_mtime_ns for c in chunks]
    np.testing.assert_array_equal(implicit_rewards(str(out), prompts, completions, beta=0.25, cache_dir=tmp_path,
                                                   chunk_size=3, progress=False), got)
    assert [c.stat().st_mtime_ns for c in chunks] == stamp  # nothing recomputed
    np.save(chunks[0], np.zeros((3, 1), dtype=np.float32))  # its record no longer matches
    np.testing.assert_array_equal(implicit_rewards(str(out), prompts, completions, beta=0.25, cache_dir=tmp_path,
                                                   chunk_size=3, progress=False), got)


def test_add_policy_end_to_end_with_a_tiny_adapter(trained, base, tmp_path):
    """`fairl detox add-policy` on a dataset generated by the tiny base: the adapter's samples (same
    sampling seeds as the base completions), their r*, the base's features, and the implicit reward on
    the policy's, base and SIR-aligned completions, equal to implicit_reward computed directly."""
    pytest.importorskip("profanity_check")
    from fairl_opt.cli import main
    from fairl_opt.detox.dataset import DetoxDataset, generate_dataset
    from fairl_opt.detox.policy import implicit_reward
    from fairl_opt.lm import embed_texts

    out, _ = trained
    d = tmp_path / "ds"
    generate_dataset(d, n_prompts=6, K=2, model=str(base), max_new_tokens=4, n_splits=2, progress=False,
                     log=lambda *a: None)
    assert DetoxDataset.load(d).policy_names == ["sir"]
    assert main(["detox", "add-policy", "--data", str(d), "--name", "dpo", "--model", str(out), "--quiet"]) == 0
    ds = DetoxDataset.load(d)
    pol = ds.policies["dpo"]
    assert pol.meta["implicit_reward"]["beta"] == 0.1 and pol.features.shape == (6, 1, 32)
    texts = [t[0] for t in pol.texts]
    np.testing.assert_allclose(pol.features[:, 0], embed_texts(texts, model=str(base), progress=False), atol=2e-3)
    rows = np.arange(6)
    want = implicit_reward(str(out), ds.prompts * 3, texts + [ds.texts[i][0] for i in rows]
                           + [ds.texts[i][ds.aligned_index[i]] for i in rows], beta=0.1)
    np.testing.assert_allclose(np.concatenate([pol.implicit[:, 0], pol.implicit_data[rows, 0],
                                               pol.implicit_data[rows, ds.aligned_index]]), want, rtol=1e-4, atol=1e-5)
    # a second add under the same name is refused (exit 2), --force replaces it
    assert main(["detox", "add-policy", "--data", str(d), "--name", "dpo", "--model", str(out), "--quiet"]) == 2
    assert main(["detox", "add-policy", "--data", str(d), "--name", "sir", "--model", str(out), "--quiet"]) == 2
    assert main(["detox", "add-policy", "--data", str(d), "--name", "dpo", "--model", str(out), "--quiet",
                 "--force"]) == 0



def test_re_rlhf_with_a_recovered_reward_runs_the_same_loop(base, tmp_path, capsys):
    """fairl detox pairs → fairl fit → fairl detox train --reward: the DPO pairs are best ≻ worst by the
    recovered reward (its own recipe applied to the dataset's raw features), recorded in provenance."""
    from fairl_opt.data.pairs_file import PairsData
    from fairl_opt.detox.dataset import DetoxDataset, generate_dataset
    from fairl_opt.detox.rerlhf import reward_scores
    from fairl_opt.detox.train_cli import detox_pairs

    d = tmp_path / "ds"
    generate_dataset(d, n_prompts=24, K=3, model=str(base), max_new_tokens=4, n_splits=2, progress=False,
                     log=lambda *a: None)
    code, out, err = run(capsys, "detox", "pairs", "--data", d, "--out", tmp_path / "p.npz")
    assert code == 0, err
    data = PairsData.load(tmp_path / "p.npz")
    ds = DetoxDataset.load(d)
    assert data.test_mask.sum() == ds.test_masks[0][data.source_rows].sum() > 0
    mean, scale = ds.standardiser(np.flatnonzero(~ds.test_masks[0]))
    np.testing.assert_allclose(data.features.standardise(ds.features[data.source_rows, 0]), data.pairs.rejected)
    code, _, err = run(capsys, "fit", tmp_path / "p.npz", "--method", "maxent", "--out", tmp_path / "R")
    assert code == 0, err
    scores, info = reward_scores(ds, tmp_path / "R")
    assert scores.shape == ds.r_star.shape and info["method"] == "maxent"
    code, _, err = run(capsys, "detox", "train", "--data", d, "--out", tmp_path / "A", "--base", base, "--reward",
                       tmp_path / "R", "--batch-size", "4", "--max-steps", "1", "--kl-prompts", "0", "--eval-pairs",
                       "0", "--quiet")
    assert code == 0, err
    prov = json.loads((tmp_path / "A" / "provenance.json").read_text(encoding="utf-8"))
    assert prov["data"]["reward"]["method"] == "maxent" and "recovered reward" in prov["data"]["rule"]
    pairs = detox_pairs(ds, 0, 0.1, 0, None, scores)[0]
    assert prov["data"]["train_prompt_ids"] == sorted(p["prompt_id"] for p in pairs)
    assert pairs != detox_pairs(ds, 0, 0.1, 0, None)[0]  # the recovered reward ranks otherwise than r*
    code, _, err = run(capsys, "detox", "train", "--data", d, "--out", tmp_path / "B", "--base", base, "--reward",
                       tmp_path / "nowhere")
    assert code == 2 and "nowhere" in err
