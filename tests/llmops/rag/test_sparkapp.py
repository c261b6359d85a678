"""The preprocessing SparkApplication: rendered from k8s_templates/spark/, valid against the CRD."""

from __future__ import annotations

import pytest

from llmops.k8s.templates import to_yaml
from llmops.k8s.validate import validate_object
from llmops.settings import load_settings

ARGS = ["--input", "s3://docs/landing", "--output", "s3://docs/processed", "--vector-store", "http://milvus:19530"]


def settings(**kw):
    base = {
        "mode": "kubernetes",
        "data_root": "s3://b/llmops",
        "mlflow_tracking_uri": "http://mlflow:5000",
        "namespace": "ml-data",
        "service_account": "spark-runner",
        "image": "registry.example/llmops/worker:1.2.3",
        "spark_executor_instances": 4,
        "spark_executor_cores": 3,
        "spark_executor_memory": "6g",
        "spark_driver_memory": "3g",
        "s3_credentials_secret": "s3-credentials",
        "milvus_token_secret": "milvus-auth",
    }
    base.update(kw)
    return load_settings(environ={}, **base)


def test_rendered_application_validates_against_the_crd():
    from llmops.rag.sparkapp import render_spark_application

    app = render_spark_application(settings(), ARGS)
    assert validate_object(app) == []
    spec = app["spec"]
    assert app["kind"] == "SparkApplication" and app["metadata"]["namespace"] == "ml-data"
    assert spec["type"] == "Python" and spec["mode"] == "cluster"
    assert spec["mainApplicationFile"] == "local:///opt/llmops/spark_jobs/preprocess.py"
    assert spec["arguments"] == ARGS
    assert spec["image"] == "registry.example/llmops/worker:1.2.3"
    assert {k: spec["executor"][k] for k in ("instances", "cores", "memory", "serviceAccount")} == {
        "instances": 4, "cores": 3, "memory": "6g", "serviceAccount": "spark-runner"}
    assert spec["driver"]["memory"] == "3g" and spec["driver"]["serviceAccount"] == "spark-runner"
    for role in ("driver", "executor"):
        env = {e["name"]: e for e in spec[role]["env"]}
        assert env["PYSPARK_PYTHON"]["value"] == "/usr/local/bin/python"
        assert env["LLMOPS_MODE"]["value"] == "kubernetes"
        # Credentials by reference only.
        assert env["AWS_SECRET_ACCESS_KEY"] == {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}},
        }
        assert "value" not in env["AWS_ACCESS_KEY_ID"]
        assert env["MILVUS_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "milvus-auth", "key": "MILVUS_TOKEN"}}


def test_spark_image_overrides_the_step_image_and_yaml_is_deterministic():
    from llmops.rag.sparkapp import render_spark_application

    app = render_spark_application(settings(spark_image_uri="registry.example/spark:9"), ARGS)
    assert app["spec"]["image"] == "registry.example/spark:9"
    assert to_yaml(app) == to_yaml(render_spark_application(settings(spark_image_uri="registry.example/spark:9"), ARGS))


def test_an_invalid_application_is_rejected(monkeypatch):
    from llmops.exceptions import ManifestInvalid
    from llmops.rag import sparkapp

    real = sparkapp.spark_application_context

    def broken(*a, **kw):
        ctx = real(*a, **kw)
        ctx["executor_instances"] = "many"
        return ctx

    monkeypatch.setattr(sparkapp, "spark_application_context", broken)
    with pytest.raises(ManifestInvalid, match="executor.instances"):
        sparkapp.render_spark_application(settings(), ARGS)


def test_cli_prints_the_application(capsys):
    from llmops.cli import main

    assert main(["preprocess", *ARGS, "--chunk-size", "120", "--render-spark-application"]) == 0
    out = capsys.readouterr().out
    assert "kind: SparkApplication" in out and "- '120'" in out
