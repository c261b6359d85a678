"""The Spark step and the landing sensor: the right operator per mode, the right SparkApplication."""

from __future__ import annotations

import json
from collections import defaultdict
from types import SimpleNamespace

import pytest

from llmops.k8s.validate import validate_object
from llmops.settings import load_settings

ARGS = ["--input", "{{ params.input_uri }}", "--output", "s3://docs/processed", "--chunk-size", "{{ params.chunk_size }}"]


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
    assert op.namespace == "ml-data" and op.template_ext == ()
    # Durable and deferrable like the step pods; one knob for the driver's label search too.
    assert op.deferrable is True and op.durable is True and op.reattach_on_restart is True
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


def _rendered_operator(tmp_path, **kwargs):
    from airflow.sdk import DAG

    from llmops_operators.spark import spark_operator

    with DAG("t", schedule=None):
        op = spark_operator(task_id="preprocess", arguments=ARGS, settings=k8s_settings(tmp_path), **kwargs)
    context = {
        "params": {"input_uri": "s3://docs/landing", "chunk_size": 120},
        "dag": SimpleNamespace(dag_id="llmops_preprocess"),
        "run_id": "scheduled__2026-01-02T03:04:05+00:00",
        "ti": SimpleNamespace(task_id="preprocess", try_number=1, xcom_push=lambda **kw: None),
        "outlet_events": defaultdict(SimpleNamespace),
    }
    op.template_spec = op.render_template(op.template_spec, context)
    op.summary_uri = op.render_template(op.summary_uri, context)
    return op, context


def test_durable_false_turns_off_the_drivers_label_search_too(tmp_path):
    from llmops_operators.spark import spark_operator

    op = spark_operator(task_id="preprocess", arguments=ARGS, settings=k8s_settings(tmp_path), durable=False)
    assert op.durable is False and op.reattach_on_restart is False


def test_execute_defers_to_the_pod_trigger_watching_the_driver(tmp_path, monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
    from airflow.sdk.exceptions import TaskDeferred
    from kubernetes.client import models as k8s

    op, context = _rendered_operator(tmp_path)
    driver = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="llmops-preprocess-abc-driver", namespace="ml-data"),
        status=k8s.V1PodStatus(phase="Running", container_statuses=[k8s.V1ContainerStatus(
            name="spark-kubernetes-driver", image="x", image_id="", ready=True, restart_count=0,
            state=k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()))]),
    )

    def submitted(self, ctx):  # the cluster boundary: the SparkApplication is created, its driver runs
        self.pod, self.pod_request_obj = driver, driver

    monkeypatch.setattr(SparkKubernetesOperator, "_setup_spark_configuration", submitted)
    monkeypatch.delenv("KUBECONFIG", raising=False)  # the trigger gets the connection, not a file
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, KubernetesPodTrigger) and deferred.value.method_name == "trigger_reentry"
    assert trigger.pod_name == "llmops-preprocess-abc-driver" and trigger.base_container_name == "spark-kubernetes-driver"
    assert op.do_xcom_push is True  # restored after the parent ran without its sidecar


def test_deferred_completion_returns_the_summary_and_puts_it_on_the_asset_event(tmp_path, monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

    from llmops import storage
    from llmops_operators.assets import CORPUS

    op, context = _rendered_operator(tmp_path, outlets=[CORPUS])
    summary = {"snapshot_id": "s-1", "snapshot_changed": True, "chunks_total": 12, "stages": {"a": 1}}
    seen = {}

    def driver_succeeded(self, ctx, event):  # the cluster boundary: logs read, the application cleaned up
        seen["xcom_push"], seen["event"] = self.do_xcom_push, event
        storage.write_text(self.summary_uri, json.dumps(summary))

    monkeypatch.setattr(SparkKubernetesOperator, "trigger_reentry", driver_succeeded)
    event = {"status": "success", "name": "llmops-preprocess-abc-driver", "namespace": "ml-data"}
    assert op.trigger_reentry(context, event) == summary
    assert seen == {"xcom_push": False, "event": event} and op.do_xcom_push is True
    # Only the small values travel on the event.
    assert context["outlet_events"][CORPUS].extra == {"snapshot_id": "s-1", "snapshot_changed": True, "chunks_total": 12}


def test_not_deferred_completion_puts_the_summary_on_the_asset_event_too(tmp_path, monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

    from llmops import storage
    from llmops_operators.assets import CORPUS

    op, context = _rendered_operator(tmp_path, outlets=[CORPUS], deferrable=False)
    monkeypatch.setattr(
        SparkKubernetesOperator, "execute",
        lambda self, ctx: storage.write_text(self.summary_uri, json.dumps({"snapshot_id": "s-2"})),
    )
    assert op.execute(context) == {"snapshot_id": "s-2"}
    assert context["outlet_events"][CORPUS].extra == {"snapshot_id": "s-2"}
