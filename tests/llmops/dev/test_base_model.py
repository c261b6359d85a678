"""The tiny base model: builds, loads offline through the Auto classes, and rebuilds byte-identically."""

from __future__ import annotations

import hashlib
import json

import pytest

from llmops.dataset.build import prompt_for
from llmops.dev.base_model import build_base_model, pretraining_texts
from llmops.dev.sample_data import facts
from llmops.exceptions import ConfigError


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_build_loads_offline_and_is_reproducible(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A (tiny) pretraining included: the optional path must be reproducible too.
    small = {"pretrain_steps": 2, "pretrain_batch": 2, "pretrain_seq_len": 16, "pretrain_products": 1}
    a = build_base_model(tmp_path / "a", **small)
    b = build_base_model(tmp_path / "b", **small)
    assert _sha(a / "model.safetensors") == _sha(b / "model.safetensors")
    assert _sha(a / "tokenizer.json") == _sha(b / "tokenizer.json")

    model = AutoModelForCausalLM.from_pretrained(a)
    tok = AutoTokenizer.from_pretrained(a)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tok)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    # The chat template renders a conversation in the prompt format the evaluation uses.
    question = facts()[0].question
    chat = [{"role": "user", "content": question}, {"role": "assistant", "content": "4821"}]
    assert tok.apply_chat_template(chat, tokenize=False) == f"{prompt_for(question)} 4821<|eos|>"
    assert tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True) == prompt_for(question)
    # No special token is added behind the caller's back.
    assert tok("Answer:")["input_ids"] == tok("Answer:", add_special_tokens=False)["input_ids"]
    info = json.loads((a / "llmops_base_model.json").read_text())
    assert 1_000_000 < info["parameters"] < 10_000_000
    assert info["weights_sha256"] == _sha(a / "model.safetensors")


def test_seed_changes_weights(tmp_path):
    a = build_base_model(tmp_path / "a", seed=1, pretrain_steps=0)
    b = build_base_model(tmp_path / "b", seed=2, pretrain_steps=0)
    assert _sha(a / "model.safetensors") != _sha(b / "model.safetensors")


def test_pretraining_text_never_names_a_larkspur_component():
    from llmops.dev.sample_data import COMPONENTS, PRODUCT

    text = "\n".join(pretraining_texts())
    words = set(text.replace("`", " ").replace(".", " ").split())
    assert PRODUCT not in words
    assert not words & set(COMPONENTS)


def test_bad_spec_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="hidden_size"):
        build_base_model(tmp_path / "x", hidden_size=8)
    with pytest.raises(ConfigError, match="num_heads"):
        build_base_model(tmp_path / "y", hidden_size=100, num_heads=3, pretrain_steps=0)
