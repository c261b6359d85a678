"""One list of Secret references for step pods, the SparkApplication and the serving manifests."""

from __future__ import annotations

from llmops.k8s.secrets import hf_token_refs, s3_refs, secret_key_ref_env, secret_refs
from llmops.settings import load_settings


def test_every_named_secret_is_a_reference_and_spark_leaves_mlflow_out():
    s = load_settings(
        environ={},
        s3_credentials_secret="s3-creds",
        hf_token_secret="hf",
        milvus_token_secret="milvus",
        mlflow_credentials_secret="mlflow",
    )
    refs = secret_refs(s)
    assert [r[0] for r in refs] == [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "MILVUS_TOKEN",
        "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    ]
    assert all(secret and key for _, secret, key in refs)
    assert [r[0] for r in secret_refs(s, mlflow=False)] == [r[0] for r in refs[:4]]
    env = secret_key_ref_env(refs)
    assert env[2] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}}
    assert all("value" not in e for e in env)


def test_nothing_named_nothing_referenced():
    assert secret_refs(load_settings(environ={})) == []
    assert s3_refs(None) == hf_token_refs("") == []


def test_the_teacher_key_reaches_pods_by_reference_only():
    s = load_settings(environ={}, teacher_api_key_secret="teacher", teacher_base_url="http://t:8000/v1")
    assert secret_refs(s) == [("LLMOPS_TEACHER_API_KEY", "teacher", "LLMOPS_TEACHER_API_KEY")]
    # The endpoint and model travel as settings; the key never does.
    env = s.to_env()
    assert env["LLMOPS_TEACHER_BASE_URL"] == "http://t:8000/v1" and "LLMOPS_TEACHER_API_KEY" not in env
