"""One rule for Hugging Face hub ids, shared by training, the registry and serving."""

from __future__ import annotations

import pytest

from llmops.hub import is_hub_id


@pytest.mark.parametrize("ref", ["gpt2", "distilgpt2", "Qwen/Qwen2.5-0.5B-Instruct", "org/name.v1", "a_b/c-d"])
def test_hub_ids(ref):
    assert is_hub_id(ref)


@pytest.mark.parametrize(
    "ref",
    ["/abs/model", "./model", "../model", "~/model", "s3://bucket/model", "models:/llm@champion",
     "file:///tmp/m", "org/name/extra", "", "-bad"],
)
def test_not_hub_ids(ref):
    assert not is_hub_id(ref)


def test_training_registry_and_serving_agree_on_a_bare_name():
    """`gpt2` trains (a hub base model), and serving must take it as a hub id too, not as a path."""
    from llmops.deploy.model import is_hub_id as serving_rule
    from llmops.training.inputs import base_model_kind

    assert base_model_kind("gpt2") == "hub"
    assert serving_rule("gpt2")
