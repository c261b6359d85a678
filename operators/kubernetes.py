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

from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import convert_env_vars
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

from llmops.exceptions import ConfigError
from llmops.k8s.secrets import secret_refs
from llmops.k8s.security import restricted_container
from llmops.settings import Settings
from llmops_operators.base import (
    SUMMARY_IN_POD,
    airflow_settings,
    attach_summary_to_outlets,
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
    """Credentials as references to Kubernetes Secrets, never literal values (`llmops.k8s.secrets`)."""
    return [Secret("env", name, secret, key) for name, secret, key in secret_refs(settings)]


def step_volumes(settings: Settings, gpus: int) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    volumes = [
        k8s.V1Volume(
            name="dshm",
            empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=SHM_SIZE_GPU if gpus else SHM_SIZE_CPU),
        )
    ]
    mounts = [k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
    if settings.kubernetes.checkpoint_pvc:
        volumes.append(
            k8s.V1Volume(
                name="checkpoints",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=settings.kubernetes.checkpoint_pvc),
            )
        )
        mounts.append(k8s.V1VolumeMount(name="checkpoints", mount_path=CHECKPOINT_MOUNT))
    if settings.kubernetes.model_cache_pvc:
        volumes.append(
            k8s.V1Volume(
                name="model-cache",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=settings.kubernetes.model_cache_pvc),
            )
        )
        mounts.append(k8s.V1VolumeMount(name="model-cache", mount_path=MODEL_CACHE_MOUNT))
    return volumes, mounts


def step_resources(settings: Settings, gpus: int) -> k8s.V1ResourceRequirements:
    requests = {"cpu": settings.kubernetes.step_cpu, "memory": settings.kubernetes.step_memory}
    limits = {"memory": settings.kubernetes.step_memory}
    if gpus:
        requests[settings.kubernetes.gpu_resource_name] = str(gpus)
        limits[settings.kubernetes.gpu_resource_name] = str(gpus)
    return k8s.V1ResourceRequirements(requests=requests, limits=limits)


def gpu_count(value: int | str | None) -> int:
    """The GPU count of a step, from an int or a rendered template such as `"{{ params.gpus }}"` -> `"2"`."""
    if value is None or value == "":
        return 0
    try:
        count = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"gpus {value!r} is not a whole number: give 0, 1, 2, ... (e.g. the Param gpus)") from None
    if count < 0:
        raise ConfigError(f"gpus {count} is negative: give 0 for a CPU pod or the GPU count")
    return count


class KubernetesStepOperator(KubernetesPodOperator):
    """Run `llmops <step> ...` as a pod; the pod's summary JSON becomes the task's XCom.

    `gpus` may be a template (`"{{ params.gpus }}"`): everything that depends on it (the GPU limit,
    tolerations, node selector, Kueue queue label, priority class, `/dev/shm` size, `LLMOPS_GPUS`) is
    built when the pod is built, after rendering, so a trigger form's value reaches the pod.
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "gpus")

    def __init__(
        self,
        *,
        step: str | Sequence[str],
        arguments: Sequence[str] = (),
        gpus: int | str = 0,
        summary: bool = True,
        skip_on_exit_code: int | Container[int] | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings or airflow_settings()
        words = step_words(step)
        cmd = step_command(words, arguments, SUMMARY_IN_POD if summary else None)
        env_vars = {**settings.to_env(), **kwargs.pop("env_vars", {})}
        if settings.kubernetes.model_cache_pvc:
            # Hub downloads land on the model cache volume, shared by every training and evaluation pod.
            env_vars.setdefault("HF_HOME", f"{MODEL_CACHE_MOUNT}/huggingface")
        # What depends on the GPU count is set in build_pod_request_obj unless the caller fixed it here.
        self._gpu_managed = {
            f for f in ("container_resources", "tolerations", "node_selector", "priority_class_name", "volumes")
            if f not in kwargs
        }
        volumes, mounts = step_volumes(settings, 0)
        defaults: dict[str, Any] = {
            "name": f"llmops-{words[0]}",
            "namespace": settings.kubernetes.namespace,
            "image": settings.kubernetes.image,
            "image_pull_policy": settings.kubernetes.image_pull_policy,
            "service_account_name": settings.kubernetes.service_account,
            "kubernetes_conn_id": settings.kubernetes.kubernetes_conn_id,
            "labels": {"app.kubernetes.io/part-of": "airflow-llmops", "llmops.dev/step": words[0]},
            "container_resources": step_resources(settings, 0),
            "volumes": volumes,
            "volume_mounts": mounts,
            "secrets": step_secrets(settings),
            "startup_timeout_seconds": settings.kubernetes.startup_timeout_s,
            "schedule_timeout_seconds": settings.kubernetes.startup_timeout_s,
            "termination_grace_period": TERMINATION_GRACE_S,
            "durable": True,
            "deferrable": True,
            "do_xcom_push": summary,
            "get_logs": True,
            "log_events_on_failure": True,
            "on_finish_action": "delete_succeeded_pod",
            "container_security_context": restricted_container(),
        }
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
        self.settings = settings
        if not isinstance(gpus, str) or "{{" not in gpus:
            gpu_count(gpus)  # a literal bad value fails at parse time, not at run time

    def apply_gpus(self) -> int:
        """Set the GPU-dependent parts of the pod from the (rendered) `gpus`; return the count."""
        gpus = gpu_count(self.gpus)
        s = self.settings
        if "container_resources" in self._gpu_managed:
            self.container_resources = step_resources(s, gpus)
        if "volumes" in self._gpu_managed:
            self.volumes, _ = step_volumes(s, gpus)
        if "tolerations" in self._gpu_managed:
            self.tolerations = [k8s.V1Toleration(**_snake(t)) for t in s.kubernetes.tolerations] if gpus else []
        if "node_selector" in self._gpu_managed:
            self.node_selector = dict(s.kubernetes.node_selector) if gpus else {}
        if "priority_class_name" in self._gpu_managed:
            self.priority_class_name = s.kubernetes.priority_class if gpus else None
        labels = dict(self.labels or {})
        if gpus and s.kubernetes.kueue_queue:
            labels["kueue.x-k8s.io/queue-name"] = s.kubernetes.kueue_queue
        else:
            labels.pop("kueue.x-k8s.io/queue-name", None)
        self.labels = labels
        # LLMOPS_GPUS tells the step how many GPUs its pod has (training starts torchrun for more than one).
        env = convert_env_vars(self.env_vars) if isinstance(self.env_vars, dict) else list(self.env_vars or [])
        self.env_vars = [e for e in env if e.name != "LLMOPS_GPUS"] + [k8s.V1EnvVar(name="LLMOPS_GPUS", value=str(gpus))]
        return gpus

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        self.apply_gpus()
        return super().build_pod_request_obj(context, dry_run=dry_run)

    # The summary (the pod's XCom) also goes on the task's asset events; a deferred pod ends in
    # trigger_reentry instead of execute, so both paths attach it.
    def execute(self, context: Any) -> Any:
        result = super().execute(context)
        attach_summary_to_outlets(self, context, result)
        return result

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        result = super().trigger_reentry(context, event)
        attach_summary_to_outlets(self, context, result)
        return result


def _snake(obj: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes JSON keys (tolerationSeconds) to the Python client's names (toleration_seconds)."""
    import re

    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in obj.items()}
