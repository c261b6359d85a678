"""Fixtures of the training tests: one tiny base model per session (random weights: the mechanics of
training, checkpoints and resume do not need a pretrained one)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from llmops.dev.base_model import build_base_model

    return build_base_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama", pretrain_steps=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)
