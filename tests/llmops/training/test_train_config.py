"""Training config: YAML + --set overrides, typed, and errors that name the key, the value and the fix."""

from __future__ import annotations

import pytest

from llmops.exceptions import ConfigError
from llmops.training.config import TrainConfig, field_docs, load_config, parse_overrides

REPO_EXAMPLE = "examples/local/finetune.yaml"


def test_overrides_are_typed():
    values = parse_overrides(
        ["lora_r=8", "learning_rate=2e-4", "target_modules=[q_proj, v_proj]", "dataset=s3://b/rows.jsonl", "epochs=1.5"]
    )
    cfg = TrainConfig(**values)
    assert cfg.lora_r == 8
    assert cfg.learning_rate == pytest.approx(2e-4)
    assert cfg.target_modules == ["q_proj", "v_proj"]
    assert cfg.dataset == "s3://b/rows.jsonl"
    assert cfg.epochs == 1.5
    assert TrainConfig(**parse_overrides(["target_modules=q_proj,o_proj"])).target_modules == ["q_proj", "o_proj"]


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lora_r: 4\nmax_steps: 50\nseed: 7\n")
    cfg = load_config(str(path), ["max_steps=5"], defaults={"lora_alpha": 8})
    assert (cfg.lora_r, cfg.max_steps, cfg.seed, cfg.lora_alpha) == (4, 5, 7, 8)


def test_bad_value_names_key_value_and_fix(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["lora_r=0"])
    msg = str(err.value)
    assert "lora_r = 0" in msg and "greater than or equal to 1" in msg and "--set lora_r=" in msg

    path = tmp_path / "c.yaml"
    path.write_text("lora_dropout: 1.5\n")
    with pytest.raises(ConfigError, match=r"lora_dropout = 1.5: .*fix it in .*c.yaml"):
        load_config(str(path))


def test_unknown_key_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        load_config(None, ["learning_rat=0.1"])
    path = tmp_path / "c.yaml"
    path.write_text("lora_rank: 8\n")
    with pytest.raises(ConfigError, match="'lora_rank' is not a training config key.*lora_r"):
        load_config(str(path))


def test_malformed_inputs(tmp_path):
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        load_config(None, ["max_steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="quantization = '8bit'"):
        load_config(None, ["quantization=8bit"])


def test_every_field_is_documented():
    docs = field_docs()
    assert all(docs.values()), [k for k, v in docs.items() if not v]


def test_example_config_is_valid():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    # The example spells out the built-in defaults (which the fine-tune DAG's Params start from).
    assert load_config(str(repo / REPO_EXAMPLE)) == TrainConfig()
