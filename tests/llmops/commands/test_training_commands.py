"""The training commands' benchmark setup: which training config `llmops bench train` uses by default."""

from __future__ import annotations

import sys

from llmops.commands.training import _example_config


def test_bench_config_defaults_to_the_packaged_example():
    config = _example_config()
    assert config is not None and config.endswith("finetune.yaml")


def test_bench_config_without_installed_examples_is_none(monkeypatch):
    """A source checkout put on PYTHONPATH (as on a GPU machine with the device's own torch) has no
    installed `llmops_examples`: the bench runs on the trainer's defaults instead of failing."""
    monkeypatch.setitem(sys.modules, "llmops_examples", None)  # `import llmops_examples` now fails
    assert _example_config() is None
