"""The command line contract: `llmops render`, `llmops validate`, `llmops deploy`, from folders, s3://
and models:/ URIs; refusals name the field and write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from llmops.cli import main

REPO = Path(__file__).resolve().parents[3]
LOCAL_EXAMPLE = str(REPO / "examples" / "local" / "deploy.yaml")
GPU_EXAMPLE = str(REPO / "examples" / "gpu" / "deploy.yaml")


def _render(*args: str) -> int:
    return main(["render", *args])


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_render_then_validate_an_adapter_folder(adapter_folder, tmp_path, capsys):
    out = tmp_path / "gitops"
    summary_file = tmp_path / "summary.json"
    code = _render(
        "--model-uri", str(adapter_folder),
        "--config", LOCAL_EXAMPLE,
        "--out", str(out),
        "--set", f"source.mirrors={tmp_path}",
        "--summary-json", str(summary_file),
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(summary_file.read_text())
    folder = Path(summary["manifests_uri"])
    assert folder.parent.parent == out and folder.parent.name == "llmops-assistant"
    assert summary["version"].startswith("sha-") and folder.name == summary["version"]
    assert _files(folder) == sorted(summary["files"])
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "/models/models/llama"
    assert "llmops-assistant=/models/artifacts/llmops-assistant/adapter" in args
    # Same inputs, same bytes: a second render changes nothing.
    before = {p: (folder / p).read_bytes() for p in _files(folder)}
    assert _render("--model-uri", str(adapter_folder), "--config", LOCAL_EXAMPLE, "--out", str(out),
                   "--set", f"source.mirrors={tmp_path}", "--summary-json", str(summary_file)) == 0
    assert json.loads(summary_file.read_text())["changed"] is False
    assert {p: (folder / p).read_bytes() for p in _files(folder)} == before

    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    assert "ok      " in capsys.readouterr().err


def test_validate_names_the_file_and_field(adapter_folder, tmp_path, capsys):
    out = tmp_path / "gitops"
    _render("--model-uri", str(adapter_folder), "--config", LOCAL_EXAMPLE, "--out", str(out),
            "--set", f"source.mirrors={tmp_path}")
    (deployment,) = out.rglob("deployment.yaml")
    deployment.write_text(deployment.read_text().replace("revisionHistoryLimit: 5", "revisionHistoryLimit: five"))
    (deployment.parent / "extra.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {portz: []}\n")
    capsys.readouterr()
    assert main(["validate", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"INVALID {deployment}" in err and "spec.revisionHistoryLimit" in err
    assert f"INVALID {deployment.parent / 'extra.yaml'}" in err and "portz" in err
    assert f"ok      {deployment.parent / 'service.yaml'}" in err


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"gpus": 1, "tensor_parallel_size": 2}, "tensor_parallel_size (2) is larger than the GPUs asked for (gpus: 1)"),
        ({"source": {"kind": "pvc", "claim_name": None}}, "source.claim_name: no model source"),
        ({"name": "My_Model"}, "name = 'My_Model'"),
        ({"max_lora_rank": 8}, "max_lora_rank (8) is below the LoRA rank of the adapter (16"),
        ({"max_lora_rank": 100}, "max_lora_rank = 100"),
        ({"network_policy": {"allow_namespaces": ["Monitoring"]}}, "network_policy.allow_namespaces"),
        ({"replica": 2}, "replica: is not a known field"),
    ],
)
def test_bad_config_fails_naming_the_field_and_writes_nothing(adapter_folder, tmp_path, capsys, config, field):
    cfg = tmp_path / "deploy.yaml"
    base = {"source": {"kind": "pvc", "claim_name": "cache", "mirrors": str(tmp_path)}}
    merged = {**base, **config}
    cfg.write_text(yaml.safe_dump(merged))
    out = tmp_path / "out"
    assert _render("--model-uri", str(adapter_folder), "--config", str(cfg), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert field in err, err
    assert _files(out) == []


def test_missing_config_file_and_model_are_named(tmp_path, capsys, adapter_folder):
    assert _render("--model-uri", str(adapter_folder), "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)) == 2
    assert "nope.yaml: file not found" in capsys.readouterr().err
    assert _render("--model-uri", str(tmp_path / "no-model"), "--config", LOCAL_EXAMPLE, "--out", str(tmp_path)) == 2
    assert "does not exist" in capsys.readouterr().err


def test_dry_run_prints_and_writes_nothing(adapter_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _render("--model-uri", str(adapter_folder), "--config", LOCAL_EXAMPLE, "--out", str(out),
                   "--set", f"source.mirrors={tmp_path}", "--dry-run") == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["kind"] for d in printed} >= {"Deployment", "Service", "Kustomization"}
    assert _files(out) == []


def test_explain_lists_every_field():
    from llmops.deploy.config import explain_markdown

    table = explain_markdown()
    for field in ("`tensor_parallel_size`", "`source.kind`", "`canary.weight`", "`autoscaling.engine`"):
        assert field in table


@pytest.mark.s3
def test_render_an_s3_adapter_with_an_init_container(s3_bucket, tmp_path, capsys):
    from llmops import storage

    adapter = f"s3://{s3_bucket}/mlflow/1/abc/artifacts/adapter"
    storage.write_text(
        f"{adapter}/adapter_config.json",
        json.dumps({"base_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct", "r": 8}),
    )
    storage.write_bytes(f"{adapter}/adapter_model.safetensors", b"\0" * 32)
    out = f"s3://{s3_bucket}/gitops"
    code = _render("--model-uri", adapter, "--config", GPU_EXAMPLE, "--out", out,
                   "--set", "source.kind=s3", "--set", "source.credentials_secret=llmops-s3")
    assert code == 0, capsys.readouterr().err
    (deployment_uri,) = [f.uri for f in storage.list_files(out) if f.uri.endswith("/deployment.yaml")]
    pod = yaml.safe_load(storage.read_text(deployment_uri))["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["args"][4:6] == [f"{adapter}/", "/models/adapter"]
    args = pod["containers"][0]["args"]
    assert args[0] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "llmops-assistant=/models/adapter" in args
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"key": "HF_TOKEN", "name": "hf-token"}}} in (
        pod["containers"][0]["env"]
    )


# --- models:/ URIs -------------------------------------------------------------------------------


def _fake_registry(adapters: dict[str, tuple[str, Path, str]]):
    """A registry with the shape of `llmops.registry`: alias -> (version, adapter folder, run id)."""

    def resolve(uri: str, *, settings=None, download: bool = True, cache_dir=None):
        assert download is False, "rendering must not download weights"
        name, alias = uri.removeprefix("models:/").split("@")
        version, adapter, run_id = adapters[alias]
        return SimpleNamespace(
            uri=uri, kind="registry", name=name, version=version, alias=alias, aliases=(alias,),
            run_id=run_id, tags={}, base_model=json.loads((adapter / "adapter_config.json").read_text())[
                "base_model_name_or_path"
            ],
            adapter_path=str(adapter), adapter_uri=adapter.as_uri(), model_path=None,
            model_uri=f"models:/{name}/{version}",
        )

    return resolve


def test_models_uri_canary_renders_the_champion_beside_the_challenger(adapter_folder, tmp_path, monkeypatch, capsys):
    import shutil

    from llmops import registry as real_registry

    challenger = adapter_folder.parent.parent / "v4" / "adapter"
    shutil.copytree(adapter_folder, challenger)
    resolve = _fake_registry({"champion": ("3", adapter_folder, "a" * 32), "challenger": ("4", challenger, "b" * 32)})
    monkeypatch.setattr(real_registry, "resolve", resolve)
    out = tmp_path / "gitops"
    code = _render("--model-uri", "models:/llmops-assistant@challenger", "--config", GPU_EXAMPLE, "--out", str(out),
                   "--set", "canary.enabled=true", "--set", f"source.mirrors={tmp_path}")
    assert code == 0, capsys.readouterr().err
    folder = out / "llmops-assistant" / "4"
    stable = yaml.safe_load((folder / "deployment.yaml").read_text())
    canary = yaml.safe_load((folder / "deployment-canary.yaml").read_text())
    assert stable["metadata"]["labels"]["llmops.dev/version"] == "3"
    assert stable["metadata"]["labels"]["llmops.dev/run-id"] == "a" * 32
    assert canary["metadata"]["labels"]["llmops.dev/version"] == "4"
    assert "llmops-assistant=/models/artifacts/v4/adapter" in canary["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    # --rbac prints the canary check's Role and RoleBinding for the step service account, and writes nothing.
    capsys.readouterr()
    assert _render("--model-uri", "models:/llmops-assistant@challenger", "--config", GPU_EXAMPLE, "--out",
                   str(tmp_path / "none"), "--set", "canary.enabled=true", "--set", f"source.mirrors={tmp_path}",
                   "--rbac") == 0
    role, binding = yaml.safe_load_all(capsys.readouterr().out)
    assert role["kind"] == "Role" and binding["subjects"][0]["name"] == "llmops-runner"
    assert "llmops-assistant-canary" in role["rules"][0]["resourceNames"] and not (tmp_path / "none").exists()
    # The champion alone is refused as its own canary.
    assert _render("--model-uri", "models:/llmops-assistant@champion", "--config", GPU_EXAMPLE, "--out", str(out),
                   "--set", "canary.enabled=true", "--set", f"source.mirrors={tmp_path}") == 2
    assert "is the stable version itself" in capsys.readouterr().err


def test_models_uri_of_an_unknown_model_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LLMOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    out = tmp_path / "out"
    assert _render("--model-uri", "models:/no-such-model@champion", "--config", LOCAL_EXAMPLE, "--out", str(out)) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not out.exists()


# --- the deploy command --------------------------------------------------------------------------


def test_deploy_command_moves_the_live_pointer(adapter_folder, tmp_path, capsys):
    out = tmp_path / "gitops"
    _render("--model-uri", str(adapter_folder), "--config", LOCAL_EXAMPLE, "--out", str(out),
            "--set", f"source.mirrors={tmp_path}")
    (folder,) = [p for p in (out / "llmops-assistant").iterdir() if p.is_dir()]
    capsys.readouterr()
    assert main(["deploy", "--manifests", str(folder)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["live"] == folder.name and summary["applied"] is False
    live = yaml.safe_load((out / "llmops-assistant" / "kustomization.yaml").read_text())
    assert live["resources"] == [folder.name]
