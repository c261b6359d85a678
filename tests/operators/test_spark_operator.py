"""The Spark step and the landing sensor: the right operator per mode, the right SparkApplication."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmops.k8s.validate import validate_object
from llmops.settings import load_settings
from tests.rag_helpers import CRDS

ARGS = ["--input", "{{ params.input_uri }}", "--output", "s3://docs/processed", "--chunk-size", "{{ params.chunk_size }}"]


@pytest.fixture(autouse=True)
def _crds(monkeypatch):
    monkeypatch.setenv("LLMOPS_CRD_DIR", str(CRDS))


def k8s_settings(tmp_path):
    return load_settings(
        environ={}, mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000", namespace="ml-data", image="registry.example/worker:7",
        state_uri=str(tmp_path / "state"), s3_credentials_secret="s3-creds", spark_executor_instances=3,
    )


def test_local_mode_runs_llmops_preprocess_as_a_subprocess_step():
    from llmops_operators.local import LocalStepOperator
    from llmops_operators.spark import spark_operator

    op = spark_operator(task_id="preprocess", arguments=ARGS, settings=load_settings(environ={}, mode="local"))
    assert isinstance(op, LocalStepOperator)
    assert op.step == ["preprocess"] and op.arguments == ARGS and op.summary


def test_kubernetes_mode_builds_the_spark_application(tmp_path):
    from airflow.providers.cncf.kubernetes.operators.custom_object_launcher import CustomObjectLauncher
    from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

    from llmops_operators.spark import spark_operator

    op = spark_operator(task_id="preprocess", arguments=ARGS, settings=k8s_settings(tmp_path))
    assert isinstance(op, SparkKubernetesOperator)
    assert op.namespace == "ml-data" and op.deferrable is False and op.template_ext == ()
    app = op.template_spec
    assert validate_object(app) == []
    args = app["spec"]["arguments"]
    assert args[: len(ARGS)] == ARGS
    assert args[-2] == "--summary-json" and args[-1] == op.summary_uri
    assert op.summary_uri.startswith(str(tmp_path / "state" / "spark-summaries"))
    assert app["spec"]["executor"]["instances"] == 3 and app["spec"]["image"] == "registry.example/worker:7"
    # What the provider will submit (no cluster needed to build it).
    launcher = CustomObjectLauncher(name="llmops-preprocess-x1", namespace="ml-data", kube_client=None,
                                    custom_obj_api=None, template_body=op.template_body)
    assert launcher.body["kind"] == "SparkApplication" and launcher.body["metadata"]["name"] == "llmops-preprocess-x1"
    assert launcher.body["spec"]["mainApplicationFile"] == "local:///opt/llmops/spark_jobs/preprocess.py"


def test_kubernetes_operator_renders_params_and_returns_the_jobs_summary(tmp_path, monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
    from airflow.sdk import DAG

    from llmops import storage
    from llmops_operators.spark import spark_operator

    with DAG("t", schedule=None):
        op = spark_operator(task_id="preprocess", arguments=ARGS, settings=k8s_settings(tmp_path))
    context = {
        "params": {"input_uri": "s3://docs/landing", "chunk_size": 120},
        "dag": SimpleNamespace(dag_id="llmops_preprocess"),
        "run_id": "manual__2026-01-02T03:04:05+00:00",
        "ti": SimpleNamespace(task_id="preprocess", try_number=2),
    }
    op.template_spec = op.render_template(op.template_spec, context)
    op.summary_uri = op.render_template(op.summary_uri, context)
    args = op.template_spec["spec"]["arguments"]
    assert args[:6] == ["--input", "s3://docs/landing", "--output", "s3://docs/processed", "--chunk-size", "120"]
    assert op.summary_uri.endswith("spark-summaries/llmops_preprocess/manual__2026-01-02T0304050000/preprocess-2.json")
    assert args[-1] == op.summary_uri

    submitted = {}

    def fake_execute(self, ctx):  # the cluster boundary: the job writes its summary, the driver succeeds
        submitted["xcom_push"] = self.do_xcom_push
        submitted["spec"] = self.template_spec
        storage.write_text(self.summary_uri, json.dumps({"snapshot_id": "abc", "snapshot_changed": True}))

    monkeypatch.setattr(SparkKubernetesOperator, "execute", fake_execute)
    assert op.execute(context) == {"snapshot_id": "abc", "snapshot_changed": True}
    assert submitted["xcom_push"] is False and op.do_xcom_push is True
    assert submitted["spec"]["spec"]["arguments"][5] == "120"
