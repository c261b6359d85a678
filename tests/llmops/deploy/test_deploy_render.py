"""Rendering: golden files per config, byte-identical re-renders, every file valid, atomic writes.

Golden files live in tests/llmops/deploy/golden/<case>/. After an intended change to the templates or
the renderer, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/llmops/deploy -k golden
    git diff tests/llmops/deploy/golden
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from llmops.deploy.config import build_config, load_config
from llmops.deploy.model import ServedModel
from llmops.deploy.render import Rendered, render, write
from llmops.exceptions import ConfigError, ManifestInvalid
from llmops.k8s.validate import validate_dir
from llmops.settings import Settings

from .conftest import CHALLENGER, CHAMPION, GOLDEN, MERGED, S3_CHALLENGER, S3_CHAMPION

REPO = Path(__file__).resolve().parents[3]
# Not LLMOPS_*: tests/conftest.py clears those variables for isolation.
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
# Fixed settings: goldens must not depend on the machine's data root or environment.
SETTINGS = Settings(data_root="/srv/llmops", namespace="llmops", model_cache_pvc="llmops-model-cache")

LOCAL_ADAPTER = ServedModel(
    name="llmops-assistant",
    version="1",
    uri="models:/llmops-assistant@champion",
    base="/srv/llmops/models/tiny-llama",
    adapter="/srv/llmops/mlflow/artifacts/1/models/m-5f2a/artifacts/adapter",
    lora_rank=8,
    run_id="c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8",
)


def _case(name: str) -> Rendered:
    if name == "adapter-on-base":
        # The documented GPU example itself: it must stay renderable and valid.
        return render(CHAMPION, load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS))
    if name == "canary":
        config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS, **{"canary.enabled": True})
        return render(CHALLENGER, config, stable=CHAMPION)
    if name == "merged-s3-hpa":
        config = build_config(
            {
                "gpus": 4,
                "tensor_parallel_size": 4,
                "dtype": "bfloat16",
                "source": {
                    "kind": "s3",
                    "credentials_secret": "llmops-s3",
                    "endpoint_url": "http://minio.minio:9000",
                    "region": "us-east-1",
                },
                "autoscaling": {"engine": "hpa", "min_replicas": 2, "max_replicas": 8, "waiting_requests_target": 2.5},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "priority_class": "inference-high",
            },
            SETTINGS,
        )
        return render(MERGED, config)
    if name == "kserve":
        config = build_config(
            {
                "source": {"kind": "s3", "credentials_secret": "llmops-s3"},
                "hf_token_secret": "hf-token",
                "kserve": {"enabled": True},
                "route": {"gateway": "inference-gateway", "gateway_namespace": "gateway"},
                "canary": {"enabled": True, "weight": 25},
            },
            SETTINGS,
        )
        return render(S3_CHALLENGER, config, stable=S3_CHAMPION)
    if name == "local-cpu":
        return render(LOCAL_ADAPTER, load_config(str(REPO / "examples/local/deploy.yaml"), SETTINGS))
    raise AssertionError(name)


CASES = ["adapter-on-base", "canary", "merged-s3-hpa", "kserve", "local-cpu"]


@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    rendered = _case(case)
    folder = GOLDEN / case
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for fname, text in rendered.files.items():
            (folder / fname).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file()}
    assert list(rendered.files) == list(expected), (
        f"files differ from {folder}; if intended: UPDATE_GOLDEN=1 pytest tests/llmops/deploy -k golden"
    )
    for fname, text in rendered.files.items():
        assert text == expected[fname], (
            f"{case}/{fname} differs from the golden file; if intended: "
            "UPDATE_GOLDEN=1 pytest tests/llmops/deploy -k golden, then review git diff"
        )


@pytest.mark.parametrize("case", CASES)
def test_golden_files_are_valid(case):
    results = validate_dir(GOLDEN / case)
    assert results, f"no golden files for {case}"
    assert {f: [str(p) for p in ps] for f, ps in results.items() if ps} == {}


def test_rerender_is_byte_identical():
    for case in ("canary", "kserve"):
        assert _case(case).files == _case(case).files


def _objects(rendered: Rendered) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in rendered.all_objects()}


def test_adapter_on_base_serves_the_lora_module_with_tp_equal_to_gpus():
    objs = _objects(_case("adapter-on-base"))
    dep = objs["Deployment/llmops-assistant"]
    pod = dep["spec"]["template"]["spec"]
    (vllm,) = pod["containers"]
    args = vllm["args"]
    assert vllm["command"] == ["vllm", "serve"]
    assert args[0] == "/models/base/llama-3.1-8b-instruct"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--lora-modules") + 1] == "llmops-assistant=/models/adapters/llmops-assistant/3"
    assert args[args.index("--max-lora-rank") + 1] == "16"
    assert "--enable-lora" in args and "--enable-prefix-caching" in args
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {m["mountPath"] for m in vllm["volumeMounts"]} >= {"/dev/shm", "/models"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert vllm["startupProbe"]["httpGet"]["path"] == "/health"
    assert vllm["startupProbe"]["failureThreshold"] * vllm["startupProbe"]["periodSeconds"] >= 1800
    assert vllm["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert vllm["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    labels = dep["metadata"]["labels"]
    assert labels["llmops.dev/version"] == "3"
    assert labels["llmops.dev/run-id"] == CHAMPION.run_id
    assert labels["llmops.dev/model"] == "llmops-assistant"
    assert "replicas" not in dep["spec"], "KEDA owns the replica count"
    trigger = objs["ScaledObject/llmops-assistant"]["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and "vllm:num_requests_waiting" in trigger["metadata"]["query"]
    assert objs["ServiceMonitor/llmops-assistant"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "NetworkPolicy/llmops-assistant" in objs and "PodDisruptionBudget/llmops-assistant" in objs


def test_canary_splits_traffic_between_champion_and_challenger():
    objs = _objects(_case("canary"))
    stable, canary = objs["Deployment/llmops-assistant"], objs["Deployment/llmops-assistant-canary"]
    assert stable["metadata"]["labels"]["llmops.dev/version"] == "3"
    assert canary["metadata"]["labels"]["llmops.dev/version"] == "4"
    assert canary["spec"]["replicas"] == 1
    assert stable["spec"]["selector"] != canary["spec"]["selector"]
    # The canary takes no traffic until `llmops canary verify` passes: it then swaps in the planned route.
    backends = objs["HTTPRoute/llmops-assistant"]["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("llmops-assistant", 100),
        ("llmops-assistant-canary", 0),
    ]
    plan = json.loads(_case("canary").files["canary-plan.json"])
    assert plan["weight"] == 10
    verified = yaml.safe_load(plan["verified"]["httproute.yaml"])
    assert [(b["name"], b["weight"]) for b in verified["spec"]["rules"][0]["backendRefs"]] == [
        ("llmops-assistant", 90),
        ("llmops-assistant-canary", 10),
    ]
    assert "ScaledObject/llmops-assistant-canary" not in objs


def test_s3_source_copies_with_secret_refs_and_merged_model_has_no_lora():
    objs = _objects(_case("merged-s3-hpa"))
    pod = objs["Deployment/llmops-assistant-merged"]["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["args"][:3] == ["s3", "cp", "--recursive"]
    assert "s3://llmops-models/merged/llmops-assistant/7/" in fetch["args"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in fetch["env"] if "valueFrom" in e]
    assert refs == [
        {"key": "AWS_ACCESS_KEY_ID", "name": "llmops-s3"},
        {"key": "AWS_SECRET_ACCESS_KEY", "name": "llmops-s3"},
    ]
    assert not any("value" in e and "SECRET" in e["name"] for e in fetch["env"])
    args = pod["containers"][0]["args"]
    assert "--enable-lora" not in args and args[0] == "/models/model"
    hpa = objs["HorizontalPodAutoscaler/llmops-assistant-merged"]
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "2500m"


def test_kserve_renders_runtime_and_inference_services():
    objs = _objects(_case("kserve"))
    assert set(objs) == {
        "ServingRuntime/llmops-assistant-vllm",
        "InferenceService/llmops-assistant",
        "InferenceService/llmops-assistant-canary",
        "PodMonitor/llmops-assistant",
        "NetworkPolicy/llmops-assistant",
        "HTTPRoute/llmops-assistant",
    }
    isvc = objs["InferenceService/llmops-assistant-canary"]
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "llmops-assistant-vllm"
    assert "--enable-lora" in isvc["spec"]["predictor"]["model"]["args"]
    env = {e["name"]: e for e in isvc["spec"]["predictor"]["model"]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"key": "HF_TOKEN", "name": "hf-token"}


def test_local_example_maps_the_data_root_onto_the_pvc():
    objs = _objects(_case("local-cpu"))
    args = objs["Deployment/llmops-assistant"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "/models/models/tiny-llama"
    assert "llmops-assistant=/models/mlflow/artifacts/1/models/m-5f2a/artifacts/adapter" in args
    assert "--gpu-memory-utilization" not in args
    assert "nvidia.com/gpu" not in str(objs["Deployment/llmops-assistant"]["spec"]["template"]["spec"]["containers"])


# --- refusals: the field is named, nothing is rendered -------------------------------------------


@pytest.mark.parametrize(
    ("user", "model", "field"),
    [
        ({"gpus": 2, "tensor_parallel_size": 4}, CHAMPION, "tensor_parallel_size (4) is larger than the GPUs"),
        ({"source": {"claim_name": None}}, CHAMPION, "source.claim_name: no model source"),
        ({"name": "LLMOps_Assistant"}, CHAMPION, "name = 'LLMOps_Assistant'"),
        ({"max_lora_rank": 8}, CHAMPION, "max_lora_rank (8) is below the LoRA rank of the adapter (16"),
        ({"max_lora_rank": 24}, CHAMPION, "max_lora_rank = 24"),
        ({"source": {"kind": "s3"}}, CHAMPION, "source.kind: s3, but the base model is at /models/base"),
        ({"source": {"mirrors": "/elsewhere", "claim_name": "cache"}}, LOCAL_ADAPTER, "source.mirrors"),
        ({"canary": {"enabled": True}}, CHALLENGER, "canary.enabled needs route.gateway"),
        ({"namespace": "Serving"}, CHAMPION, "namespace = 'Serving'"),
    ],
)
def test_bad_config_is_refused_naming_the_field(user, model, field):
    settings = Settings(data_root="/srv/llmops", namespace="llmops")
    user = {"source": {"claim_name": "cache"}, **user} if "source" not in user else user
    with pytest.raises(ConfigError) as err:
        render(model, build_config(user, settings))
    assert field in str(err.value)


def test_no_model_source_from_settings_either():
    with pytest.raises(ConfigError, match="source.claim_name: no model source"):
        render(CHAMPION, build_config({}, Settings(data_root="/srv/llmops")))


def test_invalid_manifest_is_never_written(tmp_path, monkeypatch):
    """A template that renders a field Kubernetes does not know: validation refuses before writing."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "k8s_templates", templates)
    service = templates / "vllm" / "service.yaml.j2"
    service.write_text(service.read_text().replace("  type: ClusterIP", "  type: ClusterIP\n  bogusField: 1"))
    monkeypatch.setenv("LLMOPS_TEMPLATES_DIR", str(templates))
    with pytest.raises(ManifestInvalid, match="bogusField"):
        _case("adapter-on-base")


# --- writing -------------------------------------------------------------------------------------


def test_write_is_idempotent_and_replaces_the_folder_whole(tmp_path):
    rendered = _case("canary")
    folder, changed = write(rendered, str(tmp_path))
    assert changed and folder == str(tmp_path / "llmops-assistant" / "4")
    assert sorted(p.name for p in Path(folder).iterdir()) == list(rendered.files)
    mtimes = {p.name: p.stat().st_mtime_ns for p in Path(folder).iterdir()}
    assert write(rendered, str(tmp_path)) == (folder, False)
    assert {p.name: p.stat().st_mtime_ns for p in Path(folder).iterdir()} == mtimes
    # The same version without the canary: the canary files disappear, nothing else is left behind.
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS)
    write(render(CHALLENGER, config), str(tmp_path))
    assert not any("canary" in p.name for p in Path(folder).iterdir())
    assert [p.name for p in (tmp_path / "llmops-assistant").iterdir()] == ["4"]
    assert all(not ps for ps in validate_dir(Path(folder)).values())


def test_failed_write_leaves_the_previous_folder_intact(tmp_path, monkeypatch):
    first = _case("canary")
    folder, _ = write(first, str(tmp_path))
    before = {p.name: p.read_text() for p in Path(folder).iterdir()}
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS, **{"canary.weight": 50})
    second = render(CHALLENGER, config, stable=CHAMPION)
    calls = {"n": 0}
    real = Path.write_text

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", flaky)
    with pytest.raises(OSError, match="disk full"):
        write(second, str(tmp_path))
    monkeypatch.undo()
    assert {p.name: p.read_text() for p in Path(folder).iterdir()} == before
    assert [p.name for p in (tmp_path / "llmops-assistant").iterdir()] == ["4"], "no temporary folder left"


@pytest.mark.s3
def test_write_to_s3_removes_stale_files(s3_bucket):
    from llmops import storage

    out = f"s3://{s3_bucket}/gitops"
    folder, changed = write(_case("canary"), out)
    assert changed and folder == f"{out}/llmops-assistant/4"
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS)
    plain = render(CHALLENGER, config)
    write(plain, out)
    names = [f.uri.rsplit("/", 1)[-1] for f in storage.list_files(folder)]
    assert names == list(plain.files)
    assert yaml.safe_load(storage.read_text(f"{folder}/kustomization.yaml"))["resources"] == [
        n for n in plain.files if n != "kustomization.yaml"
    ]


def test_a_missing_template_value_is_a_hard_error():
    from llmops.k8s.templates import render as render_template

    partial = {"name": "x", "namespace": "y", "labels": {}, "selector": {}}
    with pytest.raises(ConfigError, match="required value is missing: .*'container'"):
        render_template("vllm/service.yaml.j2", {"t": partial})
