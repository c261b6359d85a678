"""Mode local: a step's secret comes from an Airflow connection when its task runs (the dataset teacher's
API key), never from the DAG file or a rendered template field."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException

from llmops.settings import load_settings
from llmops_operators import step_operator
from llmops_operators.local import LocalStepOperator


def test_the_connection_password_is_read_when_the_task_runs(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TEACHER_TEST", json.dumps({"conn_type": "http", "password": "s3cret"}))
    op = LocalStepOperator(task_id="build", step=["dataset", "build"],
                           connection_env={"LLMOPS_TEACHER_API_KEY": "teacher_test"})
    assert "s3cret" not in repr(op.env) and op.connection_env == {"LLMOPS_TEACHER_API_KEY": "teacher_test"}
    assert op._environment()["LLMOPS_TEACHER_API_KEY"] == "s3cret"


def test_a_connection_without_password_is_named(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TEACHER_EMPTY", json.dumps({"conn_type": "http", "host": "t"}))
    op = LocalStepOperator(task_id="build", step=["dataset", "build"],
                           connection_env={"LLMOPS_TEACHER_API_KEY": "teacher_empty"})
    with pytest.raises(AirflowException, match="teacher_empty.*LLMOPS_TEACHER_API_KEY.*no password"):
        op._environment()


def test_pods_take_no_connection_values():
    settings = load_settings(environ={}, mode="kubernetes", data_root="s3://b/llmops",
                             mlflow_tracking_uri="http://mlflow:5000", teacher_api_key_secret="teacher")
    op = step_operator(task_id="build", step=["dataset", "build"], settings=settings,
                       connection_env={"LLMOPS_TEACHER_API_KEY": "teacher"})
    assert not hasattr(op, "connection_env")
    names = [s.deploy_target for s in op.secrets]
    assert "LLMOPS_TEACHER_API_KEY" in names
