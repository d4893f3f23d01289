"""Tiny random transformers models built offline (no download, no hub), shared by the tests.

A two-layer Llama (causal LM + WordLevel tokenizer, optionally with a chat template) and a two-layer
BERT encoder; :func:`build_lora_adapter` writes a PEFT LoRA adapter for the Llama.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = [f"w{i}" for i in range(40)] + [
    "the", "cat", "dog", "sat", "on", "mat", "a", "red", "blue", "big", "small", "ran", "away", "home",
]
SPECIALS = ["[UNK]", "[PAD]", "[EOS]", "[CLS]", "[SEP]"]
VOCAB = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}

def word_level(post_cls_sep: bool = False):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tk = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if post_cls_sep:
        tk.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])]
        )
    return tk


#: A chat template for the tiny tokenizer, in words it knows: each message becomes ``<role word>
#: <content>`` (user → ``blue``, anything else → ``red``), and the generation prompt is ``home``.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ 'blue' if m['role'] == 'user' else 'red' }} {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}home{% endif %}"
)


def build_llama(path: Path, seed: int = 0, chat_template: bool = False, hidden_size: int = 32) -> Path:
    """A two-layer random Llama and its WordLevel tokenizer in ``path``; ``chat_template`` saves
    :data:`CHAT_TEMPLATE` with the tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=VOCAB["[PAD]"], eos_token_id=VOCAB["[EOS]"], bos_token_id=None,
    )
    # a larger init than the default 0.02 so that hidden states and logits vary visibly with input
    config.initializer_range = 0.5
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tok = PreTrainedTokenizerFast(tokenizer_object=word_level(), unk_token="[UNK]", pad_token="[PAD]",
                                  eos_token="[EOS]")
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


def build_lora_adapter(base_dir: Path, out_dir: Path, seed: int = 0, r: int = 4,
                       target_modules=("q_proj", "v_proj")) -> Path:
    """A PEFT LoRA adapter for the causal LM in ``base_dir``, written to ``out_dir``
    (``adapter_config.json`` + ``adapter_model.safetensors``, base_model_name_or_path = ``base_dir``).

    ``init_lora_weights=False`` draws both LoRA factors at random (seeded by ``seed``), so unlike
    PEFT's default (B = 0) the adapter visibly changes the model's outputs.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(target_modules), lora_dropout=0.0,
                        init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


def build_bert(path: Path) -> Path:
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=24, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, pad_token_id=VOCAB["[PAD]"],
    )
    BertModel(config).eval().save_pretrained(path)
    tok = PreTrainedTokenizerFast(tokenizer_object=word_level(post_cls_sep=True), unk_token="[UNK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", eos_token="[EOS]")
    tok.save_pretrained(path)
    return path
