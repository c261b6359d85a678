"""The plugin's extra links: built from a step summary, found for both step operators, read from the
metadata database as the API server does."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from llmops_airflow_plugin import (
    LINEAGE,
    MLFLOW_RUN,
    MODEL_VERSION,
    REPORT,
    LlmopsPlugin,
    links_from_summary,
    report_url,
)

UI = "http://mlflow.example:5000/"
API = "http://airflow.example:8080"


def test_links_from_a_full_summary():
    links = links_from_summary(
        {
            "mlflow_run_id": "abc123",
            "mlflow_experiment_id": "7",
            "registered_model_name": "llmops assistant",
            "version": "3",
            "report_uri": "s3://reports/gate/run 1.json",
            "verdicts": {},
        },
        UI,
        API,
    )
    assert links == {
        MLFLOW_RUN: "http://mlflow.example:5000/#/experiments/7/runs/abc123",
        MODEL_VERSION: "http://mlflow.example:5000/#/models/llmops%20assistant/versions/3",
        LINEAGE: "http://airflow.example:8080/llmops/lineage/llmops%20assistant/3",
        REPORT: "http://airflow.example:8080/llmops/gate?uri=s3%3A%2F%2Freports%2Fgate%2Frun%201.json",
    }


def test_report_link_by_step():
    drift = links_from_summary({"status": "drift", "report_uri": "s3://b/drift/20260101T000000Z"}, UI, API)
    assert drift[REPORT] == f"{API}/llmops/drift?uri=s3%3A%2F%2Fb%2Fdrift%2F20260101T000000Z"
    train = links_from_summary({"mlflow_run_id": "r", "output_dir": "s3://b/runs/x", "adapter_dir": "s3://b/runs/x/adapter"}, UI, API)
    assert train[REPORT] == f"{API}/llmops/loss?uri=s3%3A%2F%2Fb%2Fruns%2Fx"


def test_links_only_for_the_keys_present():
    assert links_from_summary({"mlflow_run_id": "r1"}, UI) == {MLFLOW_RUN: "http://mlflow.example:5000/#/runs/r1"}
    assert links_from_summary({"registered_model_name": "m"}, UI) == {}  # a name without a version
    assert links_from_summary({"output_dir": "/x"}, UI) == {}  # not a train summary
    assert links_from_summary({"drift": True}, UI) == {}
    assert links_from_summary(None, UI) == {}
    assert links_from_summary(["not", "a", "summary"], UI) == {}


def test_report_urls(tmp_path):
    assert report_url("https://reports.example/x.html", "gate", API) == "https://reports.example/x.html"
    # Local paths are made absolute: the page reads them in another process.
    assert report_url("rel/gate.json", "gate", API + "/llmops").endswith(
        "/llmops/gate?uri=" + quote(str(Path.cwd() / "rel" / "gate.json"), safe="")
    )


def test_plugin_registers_the_links_for_both_step_operators():
    from llmops_operators.approval import PromotionApprovalOperator
    from llmops_operators.kubernetes import KubernetesStepOperator
    from llmops_operators.local import LocalStepOperator

    links = LlmopsPlugin.operator_extra_links
    assert [link.name for link in links] == [MLFLOW_RUN, MODEL_VERSION, REPORT, LINEAGE]
    for link in links:
        assert link.operators == [LocalStepOperator, PromotionApprovalOperator, KubernetesStepOperator]


@pytest.mark.slow
def test_links_of_a_real_task_instance(airflow_db, tmp_path, monkeypatch):
    """A step task runs (`llmops gate`, floors only) under dag.test(); the links are then computed as the
    API server does: from the serialized task and the XCom row in the metadata database."""
    import pendulum
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from llmops.settings import load_settings
    from llmops_operators.local import LocalStepOperator
    from tests.llmops.evaluation.conftest import write_evaluation

    monkeypatch.setenv("LLMOPS_MLFLOW_UI_URL", "http://mlflow.test:5000")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.test:8080")
    cand = write_evaluation(tmp_path / "cand", {"qa": {"acc": [1.0, 1.0, 0.0, 1.0]}})
    policy = tmp_path / "policy.yaml"
    policy.write_text("metrics:\n  - {task: qa, metric: acc, floor: 0.5}\n")
    report = tmp_path / "gate.json"
    with DAG("llmops_test_links", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        LocalStepOperator(
            task_id="gate",
            step="gate",
            arguments=["--candidate", str(cand), "--baseline", "none", "--policy", str(policy), "--report", str(report)],
            settings=load_settings(),
        )
    # dag.test() only runs DAGs it finds in a bundle: register this in-memory one first, as the
    # dag-processor would have.
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    DagBundlesManager().sync_bundles_to_db()
    from airflow.utils.session import create_session

    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
    dr = dag.test()
    ti = dr.get_task_instance("gate")
    assert str(ti.state) == "success"

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    task = serialized.get_task("gate")
    assert set(task.extra_links) >= {MLFLOW_RUN, MODEL_VERSION, REPORT, LINEAGE}
    assert task.get_extra_links(ti, REPORT) == "http://airflow.test:8080/llmops/gate?uri=" + quote(str(report), safe="")
    assert task.get_extra_links(ti, MLFLOW_RUN) == ""  # the gate's summary has no MLflow run

    XComModel.set(
        key="return_value",
        value={"mlflow_run_id": "r9", "registered_model_name": "llmops-assistant", "version": "4"},
        dag_id=dr.dag_id,
        task_id="gate",
        run_id=dr.run_id,
    )
    assert task.get_extra_links(ti, MLFLOW_RUN) == "http://mlflow.test:5000/#/runs/r9"
    assert task.get_extra_links(ti, MODEL_VERSION) == "http://mlflow.test:5000/#/models/llmops-assistant/versions/4"
    assert task.get_extra_links(ti, LINEAGE) == "http://airflow.test:8080/llmops/lineage/llmops-assistant/4"
    assert json.loads(report.read_text())["passed"] is True
