"""The training pod: GPU count from a Param resolved at run time, scheduling, volumes, secrets; the
built pod validates against the Kubernetes schema."""

from __future__ import annotations

import pytest

from llmops.exceptions import ConfigError
from llmops.k8s.validate import validate_object
from llmops.settings import load_settings

TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 600}


def k8s_settings(**extra):
    return load_settings(
        environ={},
        mode="kubernetes",
        data_root="s3://llmops-data",
        mlflow_tracking_uri="http://mlflow:5000",
        namespace="ml-train",
        tolerations=[TOLERATION],
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        kueue_queue="gpu-queue",
        priority_class="training-low",
        checkpoint_pvc="llmops-checkpoints",
        model_cache_pvc="llmops-models",
        s3_credentials_secret="s3-creds",
        hf_token_secret="hf-token",
        milvus_token_secret="milvus-auth",
        **extra,
    )


def _pod(op, gpus):
    from kubernetes.client import ApiClient

    op.render_template_fields({"params": {"gpus": gpus}})
    pod = op.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def _train_op(settings, **kwargs):
    from llmops_operators import step_operator

    return step_operator(
        task_id="train",
        step="train",
        arguments=["--output-dir", "s3://llmops-data/runs/x/train", "--resume", "auto"],
        gpus="{{ params.gpus }}",
        settings=settings,
        **kwargs,
    )


def test_gpu_pod_from_param_validates():
    from llmops_operators.kubernetes import KubernetesStepOperator

    op = _train_op(k8s_settings())
    assert isinstance(op, KubernetesStepOperator) and "gpus" in op.template_fields
    pod = _pod(op, 2)
    assert validate_object(pod) == []

    spec = pod["spec"]
    main = next(c for c in spec["containers"] if c["name"] == "base")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert main["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert spec["tolerations"] == [TOLERATION]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert spec["priorityClassName"] == "training-low"
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert spec["terminationGracePeriodSeconds"] >= 60

    env = {e["name"]: e for e in main["env"]}
    assert env["LLMOPS_GPUS"]["value"] == "2"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert env["MILVUS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "milvus-auth", "key": "MILVUS_TOKEN"}
    assert env["HF_HOME"]["value"].startswith("/models")
    assert not any("value" in e and e["name"].startswith("AWS_SECRET") for e in main["env"])

    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"] == "llmops-checkpoints"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "llmops-models"
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts == {"dshm": "/dev/shm", "checkpoints": "/checkpoints", "model-cache": "/models", "xcom": "/airflow/xcom"}

    assert main["command"] == ["llmops"]
    assert main["args"][:2] == ["train", "--output-dir"] and main["args"][-2:] == ["--summary-json", "/airflow/xcom/return.json"]
    assert op.startup_timeout_seconds >= 1800 and op.deferrable and op.reattach_on_restart


def test_step_container_runs_restricted():
    from llmops.k8s.security import restricted_container

    main = next(c for c in _pod(_train_op(k8s_settings()), 0)["spec"]["containers"] if c["name"] == "base")
    assert main["securityContext"] == restricted_container()


def test_cpu_pod_has_no_gpu_scheduling():
    op = _train_op(k8s_settings())
    pod = _pod(op, 0)
    assert validate_object(pod) == []
    main = pod["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in main["resources"].get("limits", {})
    assert not pod["spec"].get("tolerations") and not pod["spec"].get("nodeSelector")
    assert "kueue.x-k8s.io/queue-name" not in pod["metadata"]["labels"]
    assert {e["name"]: e.get("value") for e in main["env"]}["LLMOPS_GPUS"] == "0"


def test_gpu_resource_name_is_configurable():
    op = _train_op(k8s_settings(gpu_resource_name="amd.com/gpu"))
    pod = _pod(op, 1)
    assert pod["spec"]["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "1"


def test_bad_gpu_count_is_named():
    op = _train_op(k8s_settings())
    with pytest.raises(ConfigError, match="gpus 'two' is not a whole number"):
        _pod(op, "two")
    with pytest.raises(ConfigError, match="negative"):
        _train_op(k8s_settings()).__class__(task_id="t", step="train", gpus=-1, settings=k8s_settings())
