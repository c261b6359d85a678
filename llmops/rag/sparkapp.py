"""The SparkApplication that runs `spark_jobs/preprocess.py` on Kubernetes (Spark Operator).

Rendered from `k8s_templates/spark/sparkapplication.yaml` with the defaults of `spark/values.yaml` and
the settings (image, namespace, service account, executor sizing), validated against the
SparkApplication CRD. The job's arguments are those of `llmops preprocess`; the settings travel as
`LLMOPS_*` variables and credentials only as `secretKeyRef`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmops.k8s.secrets import secret_key_ref_env, secret_refs
from llmops.k8s.security import restricted_container
from llmops.k8s.templates import load_values, render
from llmops.settings import Settings

TEMPLATE = "spark/sparkapplication.yaml"
VALUES = "spark/values.yaml"


def secret_env(settings: Settings) -> list[dict[str, Any]]:
    """Environment variables taken from Kubernetes Secrets by reference (never their values); the job
    does not log to MLflow, so its credentials are left out."""
    return secret_key_ref_env(secret_refs(settings, mlflow=False))


def spark_application_context(
    settings: Settings, arguments: Sequence[str], name: str = "llmops-preprocess"
) -> dict[str, Any]:
    values = load_values(VALUES)
    python = values["pysparkPython"]
    plain = {
        **settings.to_env(),
        **{k: str(v) for k, v in values.get("env", {}).items()},
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
    }
    env = [{"name": k, "value": v} for k, v in sorted(plain.items())] + secret_env(settings)
    return {
        "name": name,
        "namespace": settings.kubernetes.namespace,
        "labels": dict(values.get("labels", {})),
        "image": settings.spark_image,
        "image_pull_policy": settings.kubernetes.image_pull_policy,
        "spark_version": str(values["sparkVersion"]),
        "main_application_file": values["mainApplicationFile"],
        "arguments": [str(a) for a in arguments],
        "spark_conf": {k: str(v) for k, v in values.get("sparkConf", {}).items()},
        "ttl_seconds": int(values["timeToLiveSeconds"]),
        "driver_cores": int(values["driverCores"]),
        "driver_memory": settings.kubernetes.spark_driver_memory,
        "service_account": settings.kubernetes.service_account,
        "executor_instances": settings.kubernetes.spark_executor_instances,
        "executor_cores": settings.kubernetes.spark_executor_cores,
        "executor_memory": settings.kubernetes.spark_executor_memory,
        "env": env,
        "security_context": restricted_container(),
    }


def render_spark_application(
    settings: Settings, arguments: Sequence[str], name: str = "llmops-preprocess", validate: bool = True
) -> dict[str, Any]:
    """The SparkApplication object (a dict); `validate` checks it against the CRD (`ManifestInvalid`)."""
    docs = render(TEMPLATE, spark_application_context(settings, arguments, name))
    if validate:
        from llmops.k8s.validate import require_valid

        require_valid(docs, TEMPLATE, settings)
    (app,) = docs
    return app
