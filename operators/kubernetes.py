"""Mode `kubernetes`: run a step command as a KubernetesPodOperator pod.

The pod runs the same `llmops <step>` command as local mode, in the worker image, with the settings
passed as `LLMOPS_*` variables and credentials only by `secretKeyRef`. GPU pods get the GPU limit,
tolerations, node selector, Kueue queue label and priority class from the settings, an in-memory
`/dev/shm`, and a long start-up budget for node scale-up. Pods are durable (a restarted worker
reattaches instead of starting a second pod) and deferrable (no worker slot held while waiting).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

from llmops.settings import Settings
from llmops_operators.base import (
    SUMMARY_IN_POD,
    airflow_settings,
    normalize_exit_codes,
    step_command,
    step_words,
)

CHECKPOINT_MOUNT = "/checkpoints"
MODEL_CACHE_MOUNT = "/models"
SHM_SIZE_GPU = "16Gi"
SHM_SIZE_CPU = "1Gi"
TERMINATION_GRACE_S = 180
"""Time between SIGTERM (preemption, eviction) and SIGKILL: training finishes its step and checkpoints."""


def step_secrets(settings: Settings) -> list[Secret]:
    """Credentials as references to Kubernetes Secrets, never literal values."""
    secrets: list[Secret] = []
    if settings.s3_credentials_secret:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            secrets.append(Secret("env", key, settings.s3_credentials_secret, key))
    if settings.hf_token_secret:
        secrets.append(Secret("env", "HF_TOKEN", settings.hf_token_secret, "HF_TOKEN"))
    if settings.mlflow_credentials_secret:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            secrets.append(Secret("env", key, settings.mlflow_credentials_secret, key))
    return secrets


def step_volumes(settings: Settings, gpus: int) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    volumes = [
        k8s.V1Volume(
            name="dshm",
            empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=SHM_SIZE_GPU if gpus else SHM_SIZE_CPU),
        )
    ]
    mounts = [k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
    if settings.checkpoint_pvc:
        volumes.append(
            k8s.V1Volume(
                name="checkpoints",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=settings.checkpoint_pvc),
            )
        )
        mounts.append(k8s.V1VolumeMount(name="checkpoints", mount_path=CHECKPOINT_MOUNT))
    if settings.model_cache_pvc:
        volumes.append(
            k8s.V1Volume(
                name="model-cache",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=settings.model_cache_pvc),
            )
        )
        mounts.append(k8s.V1VolumeMount(name="model-cache", mount_path=MODEL_CACHE_MOUNT))
    return volumes, mounts


def step_resources(settings: Settings, gpus: int) -> k8s.V1ResourceRequirements:
    requests = {"cpu": settings.step_cpu, "memory": settings.step_memory}
    limits = {"memory": settings.step_memory}
    if gpus:
        requests[settings.gpu_resource_name] = str(gpus)
        limits[settings.gpu_resource_name] = str(gpus)
    return k8s.V1ResourceRequirements(requests=requests, limits=limits)


class KubernetesStepOperator(KubernetesPodOperator):
    """Run `llmops <step> ...` as a pod; the pod's summary JSON becomes the task's XCom."""

    def __init__(
        self,
        *,
        step: str | Sequence[str],
        arguments: Sequence[str] = (),
        gpus: int = 0,
        summary: bool = True,
        skip_on_exit_code: int | Container[int] | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings or airflow_settings()
        words = step_words(step)
        cmd = step_command(words, arguments, SUMMARY_IN_POD if summary else None)
        volumes, mounts = step_volumes(settings, gpus)
        labels = {"app.kubernetes.io/part-of": "airflow-llmops", "llmops.dev/step": words[0]}
        if gpus and settings.kueue_queue:
            labels["kueue.x-k8s.io/queue-name"] = settings.kueue_queue
        # LLMOPS_GPUS tells the step how many GPUs its pod has (training starts torchrun for more than one).
        env_vars = {**settings.to_env(), "LLMOPS_GPUS": str(gpus), **kwargs.pop("env_vars", {})}
        defaults: dict[str, Any] = {
            "name": f"llmops-{words[0]}",
            "namespace": settings.namespace,
            "image": settings.image,
            "image_pull_policy": settings.image_pull_policy,
            "service_account_name": settings.service_account,
            "kubernetes_conn_id": settings.kubernetes_conn_id,
            "labels": labels,
            "container_resources": step_resources(settings, gpus),
            "volumes": volumes,
            "volume_mounts": mounts,
            "secrets": step_secrets(settings),
            "startup_timeout_seconds": settings.startup_timeout_s,
            "schedule_timeout_seconds": settings.startup_timeout_s,
            "termination_grace_period": TERMINATION_GRACE_S,
            "durable": True,
            "deferrable": True,
            "do_xcom_push": summary,
            "get_logs": True,
            "log_events_on_failure": True,
            "on_finish_action": "delete_succeeded_pod",
            "container_security_context": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
        if gpus:
            defaults["tolerations"] = [k8s.V1Toleration(**_snake(t)) for t in settings.tolerations]
            defaults["node_selector"] = dict(settings.node_selector)
            if settings.priority_class:
                defaults["priority_class_name"] = settings.priority_class
        defaults.update(kwargs)
        super().__init__(
            cmds=cmd[:1],
            arguments=cmd[1:],
            env_vars=env_vars,
            skip_on_exit_code=list(normalize_exit_codes(skip_on_exit_code)) or None,
            **defaults,
        )
        self.step = words
        self.gpus = gpus


def _snake(obj: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes JSON keys (tolerationSeconds) to the Python client's names (toleration_seconds)."""
    import re

    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in obj.items()}
