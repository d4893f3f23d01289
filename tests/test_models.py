"""fairl_opt.models on tiny random models built offline: PEFT/LoRA adapters, BASE+ADAPTER, content
fingerprints, chat templates.

Every value is compared with transformers / peft called directly here (``PeftModel.from_pretrained``
on a base loaded in the test, ``apply_chat_template`` on a tokenizer loaded in the test), never with
the code under test itself.
"""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
peft = pytest.importorskip("peft")

import fairl_opt.lm as lm  # noqa: E402
import fairl_opt.models as models  # noqa: E402
from fairl_opt import jobs  # noqa: E402
from fairl_opt.exceptions import DataError  # noqa: E402
from fairl_opt.lm import SamplingConfig  # noqa: E402
from tests.tiny_models import VOCAB, build_bert, build_llama, build_lora_adapter  # noqa: E402

pytestmark = pytest.mark.llm

IDS = torch.tensor([[VOCAB["the"], VOCAB["cat"], VOCAB["sat"], VOCAB["on"], VOCAB["mat"]]])
PROMPTS = ["the cat", "a dog", "w1 w2", "big red"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    base = build_llama(root / "base", chat_template=True)
    return {"root": root, "base": base, "plain": build_llama(root / "plain"),
            "lora": build_lora_adapter(base, root / "lora", seed=0),
            "lora1": build_lora_adapter(base, root / "lora1", seed=1)}


def _direct_peft(base_dir, adapter_dir):
    """The adapter applied by peft itself, unmerged."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    return peft.PeftModel.from_pretrained(base, adapter_dir).eval()


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


# -- resolution ----------------------------------------------------------------------------------
def test_adapter_directory_resolves_to_its_base(tiny):
    spec = models.resolve_model(str(tiny["lora"]))
    assert spec.is_adapter and spec.path == tiny["lora"] and spec.name == "lora" and spec.peft_type == "LORA"
    assert spec.base == models.resolve_model(str(tiny["base"]))
    assert spec.describe() == {"name": "lora", "path": str(tiny["lora"]), "gguf_file": None, "peft_type": "LORA",
                               "base": {"name": "base", "path": str(tiny["base"]), "gguf_file": None}}
    explicit = models.resolve_model(f"{tiny['base']}+{tiny['lora']}")
    assert explicit.name == "base+lora" and explicit.base == spec.base and explicit.path == spec.path
    assert explicit.fingerprint() == spec.fingerprint()
    assert spec.fingerprint().startswith(spec.base.fingerprint() + "+adapter:")
    assert not models.resolve_model(str(tiny["base"])).is_adapter


def test_explicit_base_wins_over_the_recorded_one(tiny):
    """BASE+ADAPTER applies the adapter to BASE even when its config names another base."""
    spec = models.resolve_model(f"{tiny['plain']}+{tiny['lora']}")
    assert spec.base.path == tiny["plain"]
    assert spec.fingerprint() != models.resolve_model(str(tiny["lora"])).fingerprint()


# -- loading -------------------------------------------------------------------------------------
def test_loaded_adapter_equals_peft_directly(tiny):
    from transformers import AutoModelForCausalLM

    direct = _logits(_direct_peft(tiny["base"], tiny["lora"]))
    plain = _logits(AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval())
    assert (direct - plain).abs().max() > 0.5  # the adapter visibly changes the model
    spec = models.resolve_model(str(tiny["lora"]))
    merged = models.load_model(spec, causal=True)
    assert not isinstance(merged, peft.PeftModel) and not merged.training  # merged into the weights
    torch.testing.assert_close(_logits(merged), direct, rtol=1e-5, atol=1e-4)  # merging is exact to rounding
    unmerged = models.load_model(spec, causal=True, merge=False)
    assert isinstance(unmerged, peft.PeftModel)
    torch.testing.assert_close(_logits(unmerged), direct, rtol=0, atol=0)
    both = models.load_model(models.resolve_model(f"{tiny['base']}+{tiny['lora']}"), causal=True)
    torch.testing.assert_close(_logits(both), _logits(merged), rtol=0, atol=0)
    tok = models.load_tokenizer(spec)  # the adapter has no tokenizer: its base's
    assert tok("the cat")["input_ids"] == [VOCAB["the"], VOCAB["cat"]] and tok.chat_template


def test_adapter_as_feature_model_gives_the_adapted_hidden_states(tiny):
    direct = _direct_peft(tiny["base"], tiny["lora"])
    with torch.no_grad():
        ref = direct.base_model.model.model(input_ids=IDS).last_hidden_state
    spec = models.resolve_model(str(tiny["lora"]))
    for merge in (True, False):
        body = models.load_model(spec, causal=False, merge=merge)
        with torch.no_grad():
            got = body(input_ids=IDS).last_hidden_state
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    assert lm._expected_width(spec) == 32


# -- fingerprints --------------------------------------------------------------------------------
def test_fingerprints_follow_content_not_place(tiny, tmp_path):
    base_fp = models.resolve_model(str(tiny["base"])).fingerprint()
    lora_fp = models.resolve_model(str(tiny["lora"])).fingerprint()
    # move both folders: the adapter's recorded base is gone, BASE+ADAPTER names the new place
    moved_base = shutil.move(shutil.copytree(tiny["base"], tmp_path / "a" / "base"), tmp_path / "elsewhere")
    moved_lora = shutil.move(shutil.copytree(tiny["lora"], tmp_path / "b" / "lora"), tmp_path / "my-adapter")
    assert models.resolve_model(moved_base).fingerprint() == base_fp
    assert models.resolve_model(f"{moved_base}+{moved_lora}").fingerprint() == lora_fp
    # the recorded base path and a model card are not part of the adapter
    cfg = json.loads((tiny["lora"] / "adapter_config.json").read_text())
    (moved_lora / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": str(moved_base)}))
    (moved_lora / "README.md").write_text("edited card")
    assert models.resolve_model(moved_lora).fingerprint() == lora_fp
    # other adapter weights, another base, another config: another fingerprint
    assert models.resolve_model(str(tiny["lora1"])).fingerprint() != lora_fp
    assert models.resolve_model(str(tiny["plain"])).fingerprint() != base_fp  # same names and sizes, other weights
    (moved_lora / "adapter_config.json").write_text(json.dumps({**cfg, "lora_alpha": 1}))
    assert models.resolve_model(f"{moved_base}+{moved_lora}").fingerprint() != lora_fp


def test_large_file_fingerprint_samples_content(tmp_path, monkeypatch):
    """Above the whole-file limit a file is read in spread blocks: a change in any block is seen."""
    monkeypatch.setattr(models, "_WHOLE_FILE", 1 << 16)
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    data = bytearray(range(256)) * (1 << 12)  # 1 MiB
    (d / "w.bin").write_bytes(bytes(data))
    before = models.resolve_model(str(d)).fingerprint()
    data[len(data) // 2] ^= 1
    (d / "w.bin").write_bytes(bytes(data))
    assert models.resolve_model(str(d)).fingerprint() != before


# -- errors --------------------------------------------------------------------------------------
def _adapter_copy(src, dst, **config_changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "adapter_config.json").read_text())
    cfg.update(config_changes)
    for k in [k for k, v in config_changes.items() if v is None]:
        del cfg[k]
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


def test_adapter_errors_name_the_path(tiny, tmp_path):
    nobase = _adapter_copy(tiny["lora"], tmp_path / "nobase", base_model_name_or_path=None)
    with pytest.raises(DataError, match=rf"adapter {nobase}: .*names no base model.*BASE\+{nobase}"):
        models.resolve_model(str(nobase))
    lost = _adapter_copy(tiny["lora"], tmp_path / "lost", base_model_name_or_path=str(tmp_path / "gone"))
    with pytest.raises(DataError, match=rf"adapter {lost}: its base model '{tmp_path / 'gone'}'.*BASE\+{lost}"):
        models.resolve_model(str(lost))
    relative = _adapter_copy(tiny["lora"], tmp_path / "rel", base_model_name_or_path="../rel-base")
    shutil.copytree(tiny["base"], tmp_path / "rel-base")  # relative to the adapter's folder
    assert models.resolve_model(str(relative)).base.path == relative / "../rel-base"
    broken = tmp_path / "broken"
    shutil.copytree(tiny["lora"], broken)
    (broken / "adapter_config.json").write_text("{not json")
    with pytest.raises(DataError, match=f"adapter {broken}: adapter_config.json is not readable JSON"):
        models.resolve_model(str(broken))
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny["lora"], pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(DataError, match=f"adapter {pickled} has no adapter_model.safetensors.*pickle"):
        models.resolve_model(str(pickled))
    with pytest.raises(DataError, match="BASE\\+ADAPTER_DIR"):
        models.resolve_model(f"{tmp_path / 'nope'}+{tiny['lora']}")
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} is not a PEFT adapter|adapter directory .*nope"):
        models.resolve_model(f"{tiny['base']}+{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="not a PEFT adapter directory"):
        models.resolve_model(f"{tiny['base']}+{tiny['plain']}")
    with pytest.raises(DataError, match="itself an adapter"):
        models.resolve_model(f"{tiny['lora']}+{tiny['lora1']}")


def test_adapter_for_another_architecture(tiny, tmp_path):
    bert = build_bert(tmp_path / "bert")
    spec = models.resolve_model(f"{bert}+{tiny['lora']}")
    with pytest.raises(DataError, match=rf"adapter {tiny['lora']} does not fit its base bert \(bert\): tensor "
                                        r".*q_proj.lora_A.weight targets module .*which the base does not have"):
        models.check_adapter(spec)
    wide = build_llama(tmp_path / "wide", hidden_size=48)
    spec = models.resolve_model(f"{wide}+{tiny['lora']}")
    with pytest.raises(DataError, match=r"tensor .*lora_A.weight has shape \(4, 32\), but module .* has input size 48"):
        models.check_adapter(spec)
    with pytest.raises(DataError, match=f"adapter {tiny['lora']} does not fit its base wide"):
        models.load_model(spec, causal=True)  # peft's own error, when the check is skipped
    models.check_adapter(models.resolve_model(str(tiny["lora"])))  # the right base passes


# -- chat templates ------------------------------------------------------------------------------
def test_render_chat_equals_apply_chat_template(tiny):
    from transformers import AutoTokenizer

    direct = AutoTokenizer.from_pretrained(tiny["base"])
    want = [direct.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in PROMPTS]
    assert want[0] == "blue the cat home"
    spec = models.resolve_model(str(tiny["lora"]))
    tok = models.load_tokenizer(spec)
    assert models.render_chat(tok, PROMPTS) == want
    assert models.chat_template_of(tok, spec) == direct.chat_template
    plain = models.resolve_model(str(tiny["plain"]))
    with pytest.raises(DataError, match=f"the tokenizer of model plain \\({tiny['plain']}\\) has no chat template"):
        models.chat_template_of(models.load_tokenizer(plain), plain)


def test_generate_with_chat_template_matches_direct_sampling(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, seed, n = SamplingConfig(max_new_tokens=4), 2, 2
    got = lm.generate_completions(PROMPTS, n, model=str(tiny["base"]), cache_dir=tmp_path / "c", seed=seed,
                                  config=cfg, chunk_prompts=len(PROMPTS), progress=False, chat_template=True)
    model = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    rows = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in PROMPTS for _ in range(n)]
    ids = torch.tensor([tok(r, add_special_tokens=False)["input_ids"] for r in rows])  # all 4 tokens long
    torch.manual_seed(seed * 1_000_003)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=4,
                             top_k=0, top_p=1.0, temperature=1.0, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    assert got == [texts[i * n:(i + 1) * n] for i in range(len(PROMPTS))]
    raw = lm.generate_completions(PROMPTS, n, model=str(tiny["base"]), cache_dir=tmp_path / "c", seed=seed,
                                  config=cfg, chunk_prompts=len(PROMPTS), progress=False)
    assert raw != got
    with pytest.raises(DataError, match="has no chat template"):
        lm.generate_completions(PROMPTS, n, model=str(tiny["plain"]), cache_dir=tmp_path / "d", progress=False,
                                chat_template=True)
    assert not (tmp_path / "d").exists()  # refused before the cache (or a model) was touched


def test_cache_keys_without_chat_template_are_unchanged(tiny, tmp_path):
    """Off, a chunk's file name is the key of earlier versions (the formula written out here)."""
    cfg, seed, n = SamplingConfig(max_new_tokens=2), 5, 2
    spec = models.resolve_model(str(tiny["base"]))
    lm.generate_completions(PROMPTS, n, model=str(tiny["base"]), cache_dir=tmp_path / "off", seed=seed, config=cfg,
                            chunk_prompts=2, progress=False)
    want = sorted(f"gen-{jobs.chunk_key('gen-v2', spec.fingerprint(), cfg.as_dict(), seed, c, n, PROMPTS[2 * c:2 * c + 2])}.json"
                  for c in range(2))
    assert sorted(p.name for p in (tmp_path / "off").glob("gen-*.json")) == want
    lm.generate_completions(PROMPTS, n, model=str(tiny["base"]), cache_dir=tmp_path / "on", seed=seed, config=cfg,
                            chunk_prompts=2, progress=False, chat_template=True)
    assert not set(p.name for p in (tmp_path / "on").glob("gen-*.json")) & set(want)


@pytest.mark.parametrize("field, value", [("max_new_tokens", 0), ("temperature", 0.0), ("temperature", float("inf")),
                                          ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1), ("top_k", 2.5)])
def test_sampling_config_refuses_bad_values(field, value):
    with pytest.raises(DataError, match=f"sampling: {field} must be"):
        SamplingConfig(**{field: value})


def test_the_gguf_loaders_own_bar_is_silenced():
    """transformers' GGUF loader calls tqdm directly (not through its logging switches)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    from fairl_opt.models import _quiet_transformers

    _quiet_transformers()
    _quiet_transformers()  # idempotent
    bar = gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")
    assert bar.disable and list(bar) == [0, 1, 2]
