"""Fixtures of the deployment tests: a tiny real base model + LoRA adapter, and served-model references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.deploy.model import ServedModel

GOLDEN = Path(__file__).parent / "golden"


def build_tiny_base(out: Path) -> Path:
    """A 2-layer Llama with the packaged MiniLM WordPiece tokenizer (about 1M parameters), saved with
    save_pretrained like `llmops base-model build` does."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmops.embedding import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_base, tmp_path_factory) -> Path:
    """A rank-8 LoRA adapter on the tiny base (untrained, random B so it changes the outputs)."""
    from llmops.deploy.smoke import make_lora_adapter

    out = tiny_base.parent / "runs" / "run-1" / "adapter"
    make_lora_adapter(str(tiny_base), out, rank=8)
    return out


@pytest.fixture
def adapter_folder(tmp_path) -> Path:
    """An adapter folder as the registry stores it, with its base on the model cache PVC layout."""
    folder = tmp_path / "artifacts" / "llmops-assistant" / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "models" / "llama"), "r": 16, "peft_type": "LORA"})
    )
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return folder


# Versions as the registry resolves them (goldens must not depend on temporary paths or the resolver).
CHAMPION = ServedModel(
    name="llmops-assistant",
    version="3",
    uri="models:/llmops-assistant@champion",
    base="/models/base/llama-3.1-8b-instruct",
    adapter="/models/adapters/llmops-assistant/3",
    lora_rank=16,
    run_id="0f3c2a9e5b7d4e1f8a6b2c4d9e0f1a2b",
    aliases=("champion",),
)
CHALLENGER = ServedModel(
    name="llmops-assistant",
    version="4",
    uri="models:/llmops-assistant@challenger",
    base="/models/base/llama-3.1-8b-instruct",
    adapter="/models/adapters/llmops-assistant/4",
    lora_rank=16,
    run_id="7d1e4b2a9c3f5e6d8b0a1c2e3f4a5b6c",
    aliases=("challenger",),
)
MERGED = ServedModel(
    name="llmops-assistant-merged",
    version="7",
    uri="models:/llmops-assistant-merged/7",
    model="s3://llmops-models/merged/llmops-assistant/7",
    run_id="5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
)
S3_CHAMPION = ServedModel(
    name="llmops-assistant",
    version="3",
    uri="models:/llmops-assistant@champion",
    base="meta-llama/Llama-3.1-8B-Instruct",
    adapter="s3://llmops-mlflow/artifacts/1/0f3c2a9e/artifacts/adapter",
    lora_rank=16,
    run_id="0f3c2a9e5b7d4e1f8a6b2c4d9e0f1a2b",
)
S3_CHALLENGER = ServedModel(
    name="llmops-assistant",
    version="4",
    uri="models:/llmops-assistant@challenger",
    base="meta-llama/Llama-3.1-8B-Instruct",
    adapter="s3://llmops-mlflow/artifacts/1/7d1e4b2a/artifacts/adapter",
    lora_rank=16,
    run_id="7d1e4b2a9c3f5e6d8b0a1c2e3f4a5b6c",
)
