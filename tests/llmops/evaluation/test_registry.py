"""Registration, alias movement, loading a registered version back with MLflow, and `resolve()`."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from llmops import registry
from llmops.cli import main
from llmops.contracts import TrainSummary
from llmops.exceptions import GateRejected, ModelLoadError, ModelNotFound
from llmops.rag.snapshot import SCHEMA_VERSION
from tests.llmops.evaluation.conftest import eval_rows, write_dataset


def training_run(settings, **params) -> str:
    """A finished MLflow run standing in for `llmops train`'s run."""
    mlflow.set_tracking_uri(settings.mlflow_tracking)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(settings), run_name="train") as run:
        mlflow.log_params(params or {"lr": 0.001})
    return run.info.run_id


def gate_report(tmp_path, name: str, passed: bool) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"passed": passed, "decision": "promote" if passed else "reject", "reasons": ["because"]}))
    (tmp_path / f"{name}.md").write_text("## Gate\n")
    return str(path)


@pytest.mark.slow
def test_register_promote_resolve_and_load_back(tiny_base, tiny_adapter, tmp_path, mlflow_settings, capsys):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_settings.mlflow_tracking, registry_uri=mlflow_settings.mlflow_tracking)
    name = "assistant-a"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "snapshot_id": "snap-42", "embedding_model": "all-MiniLM-L6-v2",
                                    "chunking": {"chunk_size": 200, "chunk_overlap": 32, "tokenizer": "minilm"}}))
    config = tmp_path / "train.yaml"
    config.write_text("lr: 0.001\n")
    run1 = training_run(mlflow_settings)
    summary1 = TrainSummary(
        mlflow_run_id=run1, steps=2, total_steps=2, steps_this_attempt=2, tokens=64, tokens_per_s=32.0,
        train_seconds=2.0, checkpoint_seconds=0.0, lease_verify_seconds=None, train_loss=1.5, eval_loss=None,
        checkpoints_written=[], checkpoint_dir=str(tmp_path / "ckpt"), resumed_from=None,
        adapter_dir=str(tiny_adapter), output_dir=str(tmp_path), base_model=str(tiny_base),
        dataset="finetune.jsonl", dataset_hash="h1", rows=4, bad_rows=0, bad_reasons={},
    ).to_json()
    passed = gate_report(tmp_path, "gate1", True)
    # The registry must use the settings' tracking URI, never whatever the process set globally.
    elsewhere = tmp_path / "elsewhere.db"
    mlflow.set_tracking_uri(f"sqlite:///{elsewhere}")
    args = ["register", "--name", name, "--training-summary", json.dumps(summary1), "--manifest", str(manifest),
            "--training-config", str(config), "--gate-report", passed, "--dag-id", "llmops_finetune",
            "--airflow-run-id", "manual__1", "--summary-json", str(tmp_path / "reg.json")]
    assert main(args) == 0
    reg = json.loads((tmp_path / "reg.json").read_text())
    assert reg["version"] == "1" and reg["created"] is True and reg["aliases"] == ["challenger"]

    assert mlflow.get_tracking_uri() == f"sqlite:///{elsewhere}" and not elsewhere.exists()

    # A retried task registers nothing new.
    assert main(args) == 0
    again = json.loads((tmp_path / "reg.json").read_text())
    assert again["version"] == "1" and again["created"] is False
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    # Lineage tags on the version and on the training run; the report and config are run artifacts.
    mv = client.get_model_version(name, "1")
    run = client.get_run(run1)
    for tags in (mv.tags, run.data.tags):
        assert tags["llmops.corpus_snapshot_id"] == "snap-42"
        assert tags["llmops.embedding_model"] == "all-MiniLM-L6-v2"
        assert json.loads(tags["llmops.chunking"])["chunk_size"] == 200
        assert tags["llmops.dataset_hash"] == "h1"
        assert tags["llmops.base_model"] == str(tiny_base)
        assert tags["llmops.training_config"] == str(config)
        assert tags["llmops.airflow.dag_id"] == "llmops_finetune"
        assert tags["llmops.airflow.run_id"] == "manual__1"
        assert tags["llmops.gate.decision"] == "promote"
    assert mv.tags["llmops.training_run_id"] == run1
    artifacts = {f.path for f in client.list_artifacts(run1, "gate")} | {f.path for f in client.list_artifacts(run1, "config")}
    assert artifacts == {"gate/gate1.json", "gate/gate1.md", "config/train.yaml"}
    lineage = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/lineage/lineage.json")
    assert lineage["training_summary"]["dataset_hash"] == "h1"
    assert lineage["lineage"]["llmops.corpus_snapshot_id"] == "snap-42"
    # No base weights copied into the registry: only the adapter's files.
    adapter_files = {p.name for p in Path(registry.resolve(f"models:/{name}/1", settings=mlflow_settings).adapter_path).iterdir()}
    assert "adapter_config.json" in adapter_files and "model.safetensors" not in adapter_files

    # Promotion: champion moves to v1.
    assert registry.current_champion(name, settings=mlflow_settings) is None
    assert main(["promote", "--name", name, "--version", "1", "--gate-report", passed]) == 0
    champ = registry.current_champion(name, settings=mlflow_settings)
    assert champ.version == "1" and set(champ.aliases) == {"champion", "challenger"}

    # A second training run: challenger moves, champion stays until its gate passes ...
    run2 = training_run(mlflow_settings)
    rejected = gate_report(tmp_path, "gate2", False)
    assert main(["register", "--name", name, "--training-run-id", run2, "--adapter", str(tiny_adapter),
                 "--gate-report", rejected]) == 0
    assert client.get_model_version_by_alias(name, "challenger").version == 2
    assert main(["promote", "--name", name, "--version", "2", "--gate-report", rejected]) == 3
    assert "the gate rejected it: because" in capsys.readouterr().err
    assert client.get_model_version_by_alias(name, "champion").version == 1
    # ... then it moves, and the previous champion keeps its version, tagged as such.
    assert main(["promote", "--name", name, "--version", "2", "--gate-report", passed]) == 0
    assert main(["promote", "--name", name, "--version", "2", "--gate-report", passed]) == 0  # retry: no-op
    assert client.get_model_version_by_alias(name, "champion").version == 2
    v1 = client.get_model_version(name, "1")
    assert v1.tags["llmops.previous_champion"] == "true"
    assert v1.tags["llmops.superseded_by"] == "2"
    assert client.get_model_version(name, "2").tags["llmops.promoted_from"] == "1"
    assert "llmops.previous_champion" not in client.get_model_version(name, "2").tags

    # resolve() for registry URIs.
    by_alias = registry.resolve(f"models:/{name}@champion", settings=mlflow_settings)
    by_version = registry.resolve(f"models:/{name}/2", settings=mlflow_settings)
    latest = registry.resolve(f"models:/{name}/latest", settings=mlflow_settings)
    assert by_alias.version == by_version.version == latest.version == "2"
    assert by_alias.alias == "champion" and by_alias.run_id == run2 and by_alias.kind == "registry"
    assert by_alias.base_model == str(tiny_base) and by_alias.model_path is None
    assert by_alias.tags["llmops.training_run_id"] == run2
    with pytest.raises(ModelNotFound):
        registry.resolve(f"models:/{name}@nobody", settings=mlflow_settings)
    with pytest.raises(ModelNotFound):
        registry.resolve(f"models:/{name}/99", settings=mlflow_settings)

    # Loading the registered version back with MLflow generates text.
    mlflow.set_tracking_uri(mlflow_settings.mlflow_tracking)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    out = model.predict(["Question: Which team maintains Larkspur Beacon?\nAnswer:", "Question: x\nAnswer:"],
                        params={"max_new_tokens": 5})
    assert len(out) == 2 and all(isinstance(x, str) for x in out)
    assert any(out), "the tiny model generated nothing at all"

    # And `llmops evaluate` accepts the registry URI.
    dataset = write_dataset(tmp_path / "datasets", eval_rows(2, 1))
    assert main(["evaluate", "--model", f"models:/{name}@champion", "--tasks", "corpus_mc", "--limit", "2",
                 "--dataset", dataset, "--output", str(tmp_path / "ev"), "--no-mlflow"]) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert results["model"]["version"] == "2" and results["model"]["name"] == name


def test_register_requires_an_existing_training_run(tiny_adapter, mlflow_settings, capsys):
    assert main(["register", "--training-run-id", "0" * 32, "--adapter", str(tiny_adapter)]) == 2
    assert "training run" in capsys.readouterr().err
    assert main(["register", "--adapter", str(tiny_adapter)]) == 2
    assert "--training-run-id is required" in capsys.readouterr().err


def test_resolve_local_folders(tiny_base, tiny_adapter, tmp_path):
    base = registry.resolve(str(tiny_base))
    assert (base.kind, base.model_path, base.adapter_path, base.base_model) == ("model", str(tiny_base), None, str(tiny_base))
    adapter = registry.resolve(str(tiny_adapter))
    assert (adapter.kind, adapter.adapter_path, adapter.model_path) == ("adapter", str(tiny_adapter), None)
    assert adapter.base_model == str(tiny_base)  # from adapter_config.json
    # A training output folder (DIR/adapter/) and a file:// URI resolve the same way.
    train_out = tmp_path / "train-out"
    (train_out / "adapter").mkdir(parents=True)
    for f in tiny_adapter.iterdir():
        (train_out / "adapter" / f.name).write_bytes(f.read_bytes())
    assert registry.resolve(str(train_out)).adapter_path == str(train_out / "adapter")
    assert registry.resolve(tiny_adapter.as_uri()).base_model == str(tiny_base)
    hub = registry.resolve("HuggingFaceTB/SmolLM2-135M")
    assert (hub.kind, hub.model_path, hub.base_model) == ("hub", "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="neither a model folder"):
        registry.resolve(str(tmp_path / "empty"))
    with pytest.raises(ModelNotFound):
        registry.resolve(str(tmp_path / "missing" / "x"))
    with pytest.raises(ModelLoadError, match="not a registry URI"):
        registry.resolve("models:/a/b/c")


@pytest.mark.s3
def test_resolve_s3_folders(tiny_base, tiny_adapter, s3_bucket, tmp_path):
    from llmops import storage

    storage.upload_dir(tiny_adapter, f"s3://{s3_bucket}/adapters/a1")
    storage.upload_dir(tiny_base, f"s3://{s3_bucket}/models/base")
    adapter = registry.resolve(f"s3://{s3_bucket}/adapters/a1", cache_dir=tmp_path / "cache")
    assert adapter.kind == "adapter" and adapter.adapter_uri == f"s3://{s3_bucket}/adapters/a1"
    assert (tmp_path / "cache") in Path(adapter.adapter_path).parents
    assert adapter.base_model == str(tiny_base)
    model = registry.resolve(f"s3://{s3_bucket}/models/base", cache_dir=tmp_path / "cache")
    assert model.kind == "model" and model.base_model == f"s3://{s3_bucket}/models/base"
    assert (Path(model.model_path) / "config.json").exists()
    lazy = registry.resolve(f"s3://{s3_bucket}/adapters/a1", download=False)
    assert lazy.adapter_path is None and lazy.base_model == str(tiny_base)
    # A training output folder: only its adapter/ is fetched, never the checkpoints beside it.
    storage.upload_dir(tiny_adapter, f"s3://{s3_bucket}/runs/r1/adapter")
    storage.write_text(f"s3://{s3_bucket}/runs/r1/checkpoints/step-000010/optimizer.pt", "big")
    run = registry.resolve(f"s3://{s3_bucket}/runs/r1", cache_dir=tmp_path / "cache2")
    assert run.adapter_uri == f"s3://{s3_bucket}/runs/r1/adapter" and run.uri == f"s3://{s3_bucket}/runs/r1"
    assert not list((tmp_path / "cache2").rglob("optimizer.pt"))
    assert registry.resolve(f"s3://{s3_bucket}/runs/r1", download=False).adapter_uri == run.adapter_uri


def test_promote_checks_the_report_first(tmp_path, mlflow_settings):
    with pytest.raises(GateRejected, match="because"):
        registry.promote(name="never-registered", version="1", gate_report=gate_report(tmp_path, "g", False),
                         settings=mlflow_settings)
    with pytest.raises(ModelNotFound):
        registry.promote(name="never-registered", version="1", gate_report=gate_report(tmp_path, "g", True),
                         settings=mlflow_settings)
