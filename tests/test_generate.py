"""``fairl generate`` (fairl_opt.data.generate) end to end on a tiny random Llama (base) and the same
Llama with a random LoRA adapter (aligned), and the detox generator on the same model layer.

The expected pairs are sampled here with transformers and peft directly (one ``generate`` call per
chunk, the documented seeds), and the output is read back with ``datasets``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
peft = pytest.importorskip("peft")

import fairl_opt.lm as lm  # noqa: E402
from fairl_opt.cli import main  # noqa: E402
from fairl_opt.data.generate import pair_rows, read_prompts  # noqa: E402
from fairl_opt.exceptions import DataError  # noqa: E402
from tests.tiny_models import build_llama, build_lora_adapter  # noqa: E402

pytestmark = pytest.mark.llm

PROMPTS = ["the cat", "a dog", "w1 w2", "big red", "on the", "small home"]  # two tokens each: no padding


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    base = build_llama(root / "base", chat_template=True)
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return {"root": root, "base": base, "lora": build_lora_adapter(base, root / "lora", seed=0),
            "plain": build_llama(root / "plain", seed=3), "prompts": prompts}


def _run(capsys, *argv):
    code = main(["generate", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _direct_samples(model, tok, prompts, n, seed, max_new_tokens, chunk):
    """Chunk c of ``chunk`` prompts, each row repeated n times, sampled with seed·1000003 + c."""
    result = []
    for c in range(0, (len(prompts) + chunk - 1) // chunk):
        rows = [p for p in prompts[c * chunk:(c + 1) * chunk] for _ in range(n)]
        ids = torch.tensor([tok(r)["input_ids"] for r in rows])
        torch.manual_seed(seed * 1_000_003 + c)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                                 top_p=1.0, temperature=1.0, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        result.extend(texts[i * n:(i + 1) * n] for i in range(len(rows) // n))
    return result


# -- prompts and pairing -------------------------------------------------------------------------
def test_read_prompts_formats_and_errors(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("the cat\r\n  a dog \n", encoding="utf-8")
    assert read_prompts(txt) == (["the cat", "  a dog "], "txt")
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "x y"}\n\n{"text": "z"}\n{"prompt": {"text": "rtp"}, "challenging": true}\n')
    assert read_prompts(jl) == (["x y", "z", "rtp"], "jsonl")
    cases = {
        "blank.txt": ("a\n\nb\n", r"blank.txt:2: empty prompt"),
        "spaces.txt": ("a\n   \n", r"spaces.txt:2: empty prompt"),
        "dup.txt": ("a\nb\na\n", r"dup.txt:3: repeats the prompt of line 1"),
        "nofield.jsonl": ('{"prompt": "a"}\n{"label": 1}\n', r"nofield.jsonl:2: no string field 'prompt' or 'text'"),
        "empty.jsonl": ('{"prompt": ""}\n', r"empty.jsonl:1: empty prompt"),
        "bad.jsonl": ('{"prompt": "a"}\n{oops\n', r"bad.jsonl:2: not valid JSON"),
        "none.txt": ("", r"none.txt holds no prompts"),
        "p.csv": ("a\n", r"p.csv: expected a .txt"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(DataError, match=message):
            read_prompts(tmp_path / name)
    (tmp_path / "latin.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin.txt:2: not valid UTF-8"):
        read_prompts(tmp_path / "latin.txt")
    with pytest.raises(DataError, match="absent.txt does not exist"):
        read_prompts(tmp_path / "absent.txt")


def test_pair_rows_pairs_sample_k_with_sample_k():
    rows, dropped, empty = pair_rows(["p", "q", "r"], [["a", "b"], ["c", "d"], [" ", "e"]],
                                     [["x", "b"], ["y", "z"], ["f", ""]])
    assert (dropped, empty) == (1, 2)
    assert rows == [{"prompt": "p", "chosen": "a", "rejected": "x", "prompt_id": 0, "sample": 0},
                    {"prompt": "q", "chosen": "c", "rejected": "y", "prompt_id": 1, "sample": 0},
                    {"prompt": "q", "chosen": "d", "rejected": "z", "prompt_id": 1, "sample": 1}]


# -- end to end ----------------------------------------------------------------------------------
def test_generate_end_to_end(tiny, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "pairs.jsonl"
    n, seed, tokens = 3, 4, 2
    code, stdout, err = _run(capsys, "--base", tiny["base"], "--aligned", tiny["lora"], "--prompts", tiny["prompts"],
                             "--out", out, "--n-samples", n, "--seed", seed, "--max-new-tokens", tokens, "--quiet")
    assert code == 0, err
    summary = json.loads(stdout)

    tok = AutoTokenizer.from_pretrained(tiny["base"])
    base = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
    aligned = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32),
                                             tiny["lora"]).eval()
    chunk = 64 // n
    ref_base = _direct_samples(base, tok, PROMPTS, n, seed, tokens, chunk)
    ref_aligned = _direct_samples(aligned, tok, PROMPTS, n, seed, tokens, chunk)
    expected = [{"prompt": p, "chosen": ref_aligned[i][k], "rejected": ref_base[i][k], "prompt_id": i, "sample": k}
                for i, p in enumerate(PROMPTS) for k in range(n) if ref_aligned[i][k] != ref_base[i][k]
                and ref_aligned[i][k].strip() and ref_base[i][k].strip()]
    n_same = sum(ref_aligned[i][k] == ref_base[i][k] for i in range(len(PROMPTS)) for k in range(n))
    n_empty = len(PROMPTS) * n - len(expected) - n_same
    assert 0 < n_same < len(PROMPTS) * n  # both kinds occur: the drop is exercised
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == expected

    import datasets

    ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == ["prompt", "chosen", "rejected", "prompt_id", "sample"]
    assert ds.to_list() == expected
    from fairl_opt.data.preferences import read_preferences  # what `fairl pairs` reads

    texts = read_preferences(out)
    assert texts.layout == "standard" and not texts.bad
    assert (list(texts.prompts), list(texts.chosen), list(texts.rejected)) == (
        [r["prompt"] for r in expected], [r["chosen"] for r in expected], [r["rejected"] for r in expected])

    meta_path = Path(summary["meta"])
    assert meta_path == tmp_path / "pairs.jsonl.meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["format"] == "fairl generate v1" and meta["fairl_version"]
    assert meta["pairs_file"] == {"path": str(out), "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
                                  "bytes": out.stat().st_size}
    assert meta["prompts"] == {"file": str(tiny["prompts"]), "format": "txt", "n_prompts": len(PROMPTS),
                               "sha256": hashlib.sha256(tiny["prompts"].read_bytes()).hexdigest()}
    assert meta["layout"] == {"chosen": "aligned", "rejected": "base", "fields": list(expected[0])}
    assert meta["counts"] == {"n_prompts": 6, "n_samples": n, "n_candidates": 6 * n, "n_pairs": len(expected),
                              "n_identical_dropped": n_same, "n_empty_dropped": n_empty}
    s = meta["sampling"]
    assert (s["n_samples"], s["seed"], s["max_new_tokens"], s["temperature"], s["top_p"], s["top_k"],
            s["chat_template"], s["chunk_prompts"]) == (n, seed, tokens, 1.0, 1.0, 0, False, chunk)
    m = meta["models"]
    assert m["base"]["path"] == str(tiny["base"]) and m["aligned"]["base"]["path"] == str(tiny["base"])
    assert m["aligned"]["peft_type"] == "LORA" and m["aligned"]["given"] == str(tiny["lora"])
    assert m["aligned"]["fingerprint"].startswith(m["base"]["fingerprint"] + "+adapter:")
    assert "chat_template_sha256" not in m["base"]
    assert meta["run"]["command"] == "generate" and meta["run"]["parameters"]["n_samples"] == n
    import datetime

    assert datetime.datetime.strptime(meta["created"], "%Y-%m-%dT%H:%M:%SZ")
    assert (summary["n_prompts"], summary["n_pairs"], summary["n_identical_dropped"], summary["n_empty_dropped"]) == (
        6, len(expected), n_same, n_empty)
    assert summary["out"] == str(out) and summary["models"] == m and summary["run"] == meta["run"]
    assert Path(summary["cache"]) == tmp_path / "pairs.jsonl.cache"


def test_generate_chat_template(tiny, tmp_path, capsys):
    common = ["--aligned", tiny["lora"], "--prompts", tiny["prompts"], "--n-samples", 2, "--max-new-tokens", 3,
              "--quiet"]
    code, stdout, err = _run(capsys, "--base", tiny["base"], "--out", tmp_path / "chat.jsonl", "--chat-template",
                             *common)
    assert code == 0, err
    meta = json.loads(Path(json.loads(stdout)["meta"]).read_text())
    assert meta["sampling"]["chat_template"] is True
    from transformers import AutoTokenizer

    want = hashlib.sha256(AutoTokenizer.from_pretrained(tiny["base"]).chat_template.encode()).hexdigest()
    assert meta["models"]["base"]["chat_template_sha256"] == want == meta["models"]["aligned"]["chat_template_sha256"]
    code, _, err = _run(capsys, "--base", tiny["base"], "--out", tmp_path / "raw.jsonl", *common)
    assert code == 0, err
    assert (tmp_path / "raw.jsonl").read_text() != (tmp_path / "chat.jsonl").read_text()
    code, _, err = _run(capsys, "--base", tiny["plain"], "--out", tmp_path / "x.jsonl", "--chat-template", *common)
    assert code == 2 and f"--base: --chat-template: the tokenizer of model plain ({tiny['plain']}) has no chat" in err


def test_generate_interrupt_and_resume(tiny, tmp_path, capsys, monkeypatch):
    # 32 samples -> 2 prompts a chunk -> 3 chunks for each model
    args = ["--base", tiny["base"], "--aligned", tiny["lora"], "--prompts", tiny["prompts"], "--n-samples", 32,
            "--max-new-tokens", 1, "--quiet"]
    code, _, err = _run(capsys, *args, "--out", tmp_path / "fresh.jsonl")
    assert code == 0, err
    real, calls = lm.sample_completions, []

    def dying(model, tok, prompts, n_samples, seed, config):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(list(prompts))
        return real(model, tok, prompts, n_samples, seed, config)

    monkeypatch.setattr(lm, "sample_completions", dying)
    out = tmp_path / "run" / "pairs.jsonl"
    out.parent.mkdir()
    code, _, err = _run(capsys, *args, "--out", out)
    assert code == 130 and not out.exists() and not Path(f"{out}.meta.json").exists()
    assert calls == [PROMPTS[0:2], PROMPTS[2:4], PROMPTS[4:6], PROMPTS[0:2]]  # base done, aligned chunk 0 done
    calls.clear()
    calls.append(None)  # no more interrupts: len(calls) != 4 from here on
    code, _, err = _run(capsys, *args, "--out", out)
    assert code == 0, err
    assert calls[1:] == [PROMPTS[2:4], PROMPTS[4:6]]  # only the missing aligned chunks
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()


def test_generate_errors_exit_2_before_any_model_loads(tiny, tmp_path, capsys, monkeypatch):
    import fairl_opt.models as models

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(lm, "load_model", no_loading)
    monkeypatch.setattr(models, "load_model", no_loading)
    ok = {"--base": tiny["base"], "--aligned": tiny["lora"], "--prompts": tiny["prompts"],
          "--out": tmp_path / "p.jsonl"}
    blank = tmp_path / "blank.txt"
    blank.write_text("the cat\n\na dog\n")
    (tmp_path / "file").write_text("x")

    def run(expect, **changes):
        argv = [x for k, v in {**ok, **changes}.items() for x in (k, v)]
        code, stdout, err = _run(capsys, *argv, "--quiet")
        assert code == 2 and stdout == "", err
        assert err.startswith("fairl: error: ") and expect in err, err
        assert len(err.strip().splitlines()) == 1  # one line, no traceback

    run(f"--prompts {tmp_path / 'absent.txt'} does not exist", **{"--prompts": tmp_path / "absent.txt"})
    run(f"{blank}:2: empty prompt", **{"--prompts": blank})
    run("--aligned no-such-model: model 'no-such-model' is neither", **{"--aligned": "no-such-model"})
    run(f"--base {tmp_path / 'nope'}", **{"--base": tmp_path / "nope"})
    run(f"--out {tmp_path / 'missing' / 'p.jsonl'}: folder {tmp_path / 'missing'} does not exist",
        **{"--out": tmp_path / "missing" / "p.jsonl"})
    run(f"--out {tmp_path / 'file' / 'p.jsonl'}: {tmp_path / 'file'} is not a folder",
        **{"--out": tmp_path / "file" / "p.jsonl"})
    run("--cache-dir", **{"--cache-dir": tmp_path / "file"})
    run("are the same model", **{"--aligned": tiny["base"]})
    run("does not fit its base", **{"--aligned": f"{build_llama(tmp_path / 'wide', hidden_size=48)}+{tiny['lora']}"})
    import fairl_opt._io as io

    monkeypatch.setattr(io.os, "access", lambda path, mode: False)
    run(f"--out {tmp_path / 'p.jsonl'}: folder {tmp_path} is not writable")
    monkeypatch.undo()
    with pytest.raises(SystemExit) as info:  # argparse: a usage error
        _run(capsys, *[x for k, v in ok.items() for x in (k, v)], "--top-p", "0")
    assert info.value.code == 2 and "--top-p: must be a number in (0, 1]" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.jsonl"))


def test_all_identical_pairs_is_an_error(tiny, tmp_path, capsys, monkeypatch):
    import fairl_opt.data.generate as gen

    monkeypatch.setattr(gen, "generate_completions", lambda prompts, n, **kw: [["same"] * n for _ in prompts])
    code, _, err = _run(capsys, "--base", tiny["base"], "--aligned", tiny["lora"], "--prompts", tiny["prompts"],
                        "--out", tmp_path / "p.jsonl", "--quiet")
    assert code == 2 and "all 6 pairs have two equal sides" in err and not (tmp_path / "p.jsonl").exists()


# -- the detox generator on the same model layer -------------------------------------------------
def test_detox_generate_with_an_adapter_and_a_chat_template(tiny, tmp_path, capsys):
    pytest.importorskip("profanity_check")
    from fairl_opt.detox.dataset import DetoxDataset, generate_dataset

    rtp = tmp_path / "rtp.jsonl"
    rtp.write_text("\n".join(json.dumps({"prompt": {"text": t}}) for t in PROMPTS[:3]))
    kw = dict(n_prompts=3, K=2, seed=1, model=str(tiny["lora"]), feature_model=str(tiny["base"]), prompts_file=rtp,
              max_new_tokens=3, n_splits=1, progress=False, log=lambda m: None)
    man = generate_dataset(tmp_path / "chat", chat_template=True, **kw)
    assert man["generator"]["template"].startswith("chat template") and man["generator"]["base"]["name"] == "base"
    chat = DetoxDataset.load(tmp_path / "chat")
    expected = lm.generate_completions(PROMPTS[:3], 3, model=str(tiny["lora"]), seed=1,
                                       config=lm.SamplingConfig(max_new_tokens=3), chunk_prompts=64 // 3,
                                       progress=False, chat_template=True)
    assert chat.texts == expected
    raw = generate_dataset(tmp_path / "raw", **kw)
    assert raw["generator"]["template"] == "raw continuation"
    assert DetoxDataset.load(tmp_path / "raw").texts != chat.texts
    code = main(["detox", "generate", "--out", str(tmp_path / "x"), "--model", str(tiny["plain"]), "--chat-template",
                 "--prompts", str(rtp), "--n-prompts", "3", "--quiet"])
    assert code == 2 and "--model" in capsys.readouterr().err
