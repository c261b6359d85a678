"""Credentials reach pods as references to Kubernetes Secrets, never as values: one list of which
Secret key feeds which variable, for the step pods, the SparkApplication and the serving manifests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmops.settings import Settings

S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""Keys of an S3 credentials Secret, each exposed as the variable of the same name."""
MLFLOW_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
"""Keys of an MLflow credentials Secret."""

TEACHER_KEY = "LLMOPS_TEACHER_API_KEY"
"""Key of the teacher endpoint's API-key Secret, exposed as the variable of the same name (the variable
`llmops dataset build --generator teacher` reads by default)."""

SecretRef = tuple[str, str, str]
"""`(variable, Secret name, key)`."""


def s3_refs(secret: str | None) -> list[SecretRef]:
    return [(key, secret, key) for key in S3_KEYS] if secret else []


def hf_token_refs(secret: str | None) -> list[SecretRef]:
    return [("HF_TOKEN", secret, "HF_TOKEN")] if secret else []


def secret_refs(settings: Settings, *, mlflow: bool = True) -> list[SecretRef]:
    """Every credential the settings name a Secret for: S3, the hub token, Milvus, the dataset teacher's
    API key and (with `mlflow`, for steps that log to MLflow) the tracking server's."""
    refs = s3_refs(settings.kubernetes.s3_credentials_secret) + hf_token_refs(settings.kubernetes.hf_token_secret)
    if settings.kubernetes.milvus_token_secret:
        refs.append(("MILVUS_TOKEN", settings.kubernetes.milvus_token_secret, "MILVUS_TOKEN"))
    if settings.training.teacher_api_key_secret:
        refs.append((TEACHER_KEY, settings.training.teacher_api_key_secret, TEACHER_KEY))
    if mlflow and settings.kubernetes.mlflow_credentials_secret:
        refs += [(key, settings.kubernetes.mlflow_credentials_secret, key) for key in MLFLOW_KEYS]
    return refs


def secret_key_ref_env(refs: Iterable[SecretRef]) -> list[dict[str, Any]]:
    """Container `env` entries reading each variable from its Secret key (`valueFrom.secretKeyRef`)."""
    return [{"name": n, "valueFrom": {"secretKeyRef": {"name": s, "key": k}}} for n, s, k in refs]
