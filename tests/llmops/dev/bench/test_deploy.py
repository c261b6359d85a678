"""`llmops bench render` and `llmops bench smoke` (llmops.dev.bench.deploy)."""

from __future__ import annotations

import json

from llmops.cli import main
from llmops.exceptions import ModelLoadError


def test_bench_render_times_a_version(data_root, tmp_path, capsys):
    # An adapter folder on the model cache PVC's mirror (the data root): what the GPU example renders.
    folder = data_root / "bench-render-test" / "llmops-assistant" / "adapter"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "/models/base/llama", "r": 16, "peft_type": "LORA"})
    )
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    assert main(["bench", "render", "--model-uri", str(folder), "--repeat", "2"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["benchmark"] == "render" and got["model_uri"] == str(folder)
    assert got["config"] == "examples/gpu/deploy.yaml" and got["repeat"] == 2
    assert got["files"] > 0 and got["objects"] > 0 and got["all_valid"] and got["deterministic"]
    assert got["render_validate_cold_s"] > 0 and got["render_validate_warm_median_s"] > 0


def test_bench_smoke_without_a_base_model_says_how_to_build_one(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no-model"
    monkeypatch.setenv("LLMOPS_BASE_MODEL_URI", str(missing))
    assert main(["bench", "smoke"]) == ModelLoadError.exit_code
    err = capsys.readouterr().err
    assert f"no local base model at {missing}" in err and "llmops base-model build" in err
