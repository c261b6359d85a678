"""The transformers engine of the smoke test (the fallback when the serving environment is absent): a tiny
real model, base + LoRA adapter loaded with transformers/peft on CPU. vLLM: test_deploy_vllm.py."""

from __future__ import annotations

import json

import pytest

from llmops.cli import main

pytestmark = pytest.mark.slow


def test_smoke_answers_with_the_adapter_applied(tiny_base, tiny_adapter, tmp_path, capsys):
    summary_file = tmp_path / "smoke.json"
    code = main(["smoke", "--model-uri", str(tiny_adapter), "--engine", "transformers", "--max-new-tokens", "8",
                 "--summary-json", str(summary_file)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(summary_file.read_text())
    assert summary["adapter"] is True
    assert summary["lora_modules"] == 4, "q_proj and v_proj of both layers carry LoRA weights"
    assert summary["prompt"].startswith("Question: ") and summary["prompt"].endswith("Answer:")
    assert 1 <= summary["new_tokens"] <= 8
    assert summary["load_s"] > 0 and summary["generate_s"] > 0
    assert summary["tokens_per_s"] == pytest.approx(summary["new_tokens"] / summary["generate_s"], rel=0.02)

    # The adapter changes what the model says: the same prompt on the bare base answers differently.
    from llmops.deploy.smoke import smoke

    base = smoke(str(tiny_base), max_new_tokens=8)
    assert base["adapter"] is False and base["lora_modules"] == 0
    assert base["answer"] != summary["answer"]


def test_smoke_names_a_missing_base_model(tiny_adapter, tmp_path, capsys):
    import shutil

    broken = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, broken)
    cfg = json.loads((broken / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "gone")
    (broken / "adapter_config.json").write_text(json.dumps(cfg))
    assert main(["smoke", "--model-uri", str(broken), "--engine", "transformers"]) == 2
    assert f"base folder {tmp_path / 'gone'} does not exist" in capsys.readouterr().err


def test_registered_version_renders_and_answers(tiny_base, tiny_adapter, data_root, tmp_path, capsys):
    """models:/ end to end through the real registry (skipped until llmops.registry is merged)."""
    registry = pytest.importorskip("llmops.registry")
    import shutil

    from llmops.settings import load_settings

    settings = load_settings()
    # The base under the data root, like `llmops base-model build`: the model cache PVC mirrors it.
    base = data_root / "deploy-tests" / "tiny-llama"
    if not base.exists():
        shutil.copytree(tiny_base, base)
    experiment = registry.ensure_experiment(settings)
    run = registry.mlflow_client(settings).create_run(experiment)
    registered = registry.register(
        adapter=str(tiny_adapter), training_run_id=run.info.run_id, base_model=str(base), settings=settings
    )
    version = registered["version"]
    uri = f"models:/{registered['registered_model_name']}@challenger"

    out = tmp_path / "gitops"
    summary_file = tmp_path / "render.json"
    code = main(["render", "--model-uri", uri, "--config", "examples/local/deploy.yaml", "--out", str(out),
                 "--summary-json", str(summary_file)])
    assert code == 0, capsys.readouterr().err
    rendered = json.loads(summary_file.read_text())
    assert rendered["version"] == version and rendered["run_id"] == run.info.run_id
    assert main(["validate", rendered["manifests_uri"]]) == 0

    smoke_file = tmp_path / "smoke.json"
    assert main(["smoke", "--model-uri", uri, "--engine", "transformers", "--max-new-tokens", "4",
                 "--summary-json", str(smoke_file)]) == 0
    smoke = json.loads(smoke_file.read_text())
    assert smoke["version"] == version and smoke["lora_modules"] == 4 and smoke["new_tokens"] >= 1
