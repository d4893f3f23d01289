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


def build_llama(path: Path, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=VOCAB["[PAD]"], eos_token_id=VOCAB["[EOS]"], bos_token_id=None,
    )
    # a larger init than the default 0.02 so that hidden states and logits vary visibly with input
    config.initializer_range = 0.5
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tok = PreTrainedTokenizerFast(tokenizer_object=word_level(), unk_token="[UNK]", pad_token="[PAD]",
                                  eos_token="[EOS]")
    tok.save_pretrained(path)
    return path


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
