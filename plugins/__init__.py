"""Airflow plugin of airflow-llmops: extra links from step tasks to MLflow and to reports.

Every step task (`LocalStepOperator`, `KubernetesStepOperator`) returns its step's summary JSON as
XCom `return_value`; these links read it:

- "MLflow run": `mlflow_run_id` (and `mlflow_experiment_id` when present) -> the run page;
- "Model version": `registered_model_name` + `version` -> the registered model version page;
- "Report": `report_uri` (gate report, drift report) -> the report (http(s) as is, `s3://` in the
  AWS console, local files as `file://`).

A link whose keys are missing from the summary is empty (the UI shows it disabled). The MLflow UI
address is the setting `mlflow_ui_url` (`[llmops] mlflow_ui_url` or `LLMOPS_MLFLOW_UI_URL`).

Links are computed in the API server, where the Task SDK's `XCom` cannot be used (no supervisor
connection; apache/airflow#59093): the summary is read from the metadata database instead. With a
custom XCom backend that stores references, the links stay empty.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from llmops_operators.schedules import UpcomingCronTimetable

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

MLFLOW_RUN = "MLflow run"
MODEL_VERSION = "Model version"
REPORT = "Report"


def links_from_summary(summary: dict[str, Any] | None, mlflow_ui_url: str) -> dict[str, str]:
    """The links a step summary gives: {link name: URL}, only for the keys it has."""
    if not isinstance(summary, dict):
        return {}
    ui = mlflow_ui_url.rstrip("/")
    links: dict[str, str] = {}
    run_id = summary.get("mlflow_run_id")
    if run_id:
        experiment = summary.get("mlflow_experiment_id")
        path = f"experiments/{quote(str(experiment))}/runs/{quote(str(run_id))}" if experiment else f"runs/{quote(str(run_id))}"
        links[MLFLOW_RUN] = f"{ui}/#/{path}"
    name, version = summary.get("registered_model_name"), summary.get("version")
    if name and version:
        links[MODEL_VERSION] = f"{ui}/#/models/{quote(str(name), safe='')}/versions/{quote(str(version))}"
    report = summary.get("report_uri")
    if report:
        links[REPORT] = report_url(str(report))
    return links


def report_url(uri: str) -> str:
    """A browser URL for a report location."""
    if uri.startswith(("http://", "https://", "file://")):
        return uri
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        return f"https://s3.console.aws.amazon.com/s3/object/{quote(bucket)}?prefix={quote(key)}"
    from pathlib import Path

    return Path(uri).resolve().as_uri()


def step_summary(ti_key: TaskInstanceKey) -> dict[str, Any] | None:
    """The task instance's XCom `return_value` (or, for a step that skipped, its `skipped_summary`), read
    from the metadata database (API server side)."""
    for key in ("return_value", "skipped_summary"):
        value = _xcom(ti_key, key)
        if value is not None:
            return value
    return None


def _xcom(ti_key: TaskInstanceKey, key: str) -> dict[str, Any] | None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=key,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    if row is None:
        return None
    value = row[0]
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def mlflow_ui_url() -> str:
    from llmops_operators.base import airflow_settings

    return airflow_settings().mlflow_ui_url


def _step_operators() -> list[type]:
    from llmops_operators.local import LocalStepOperator

    operators: list[type] = [LocalStepOperator]
    try:
        from llmops_operators.kubernetes import KubernetesStepOperator
    except ImportError:  # the Kubernetes provider is optional in local mode
        log.debug("cncf.kubernetes provider missing: links only for LocalStepOperator")
    else:
        operators.append(KubernetesStepOperator)
    return operators


class _SummaryLink(BaseOperatorLink):
    """A link built from the step summary in the task's `return_value` XCom."""

    name: ClassVar[str]
    operators: ClassVar[list[type]] = _step_operators()

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        try:
            summary = step_summary(ti_key)
            return links_from_summary(summary, mlflow_ui_url()).get(self.name, "")
        except Exception:
            # A broken link must never break the task page.
            log.exception("Cannot build the %r link of %s", self.name, ti_key)
            return ""


class MlflowRunLink(_SummaryLink):
    name = MLFLOW_RUN


class ModelVersionLink(_SummaryLink):
    name = MODEL_VERSION


class ReportLink(_SummaryLink):
    name = REPORT


class LlmopsPlugin(AirflowPlugin):
    """Extra links of airflow-llmops step tasks (MLflow run, model version, report); the cron timetable."""

    name = "llmops"
    operator_extra_links = [MlflowRunLink(), ModelVersionLink(), ReportLink()]
    # The cron timetable of every scheduled DAG (llmops_operators.schedules): a custom timetable must be
    # registered by a plugin so the DAG processor can serialize it and the scheduler read it back.
    timetables = [UpcomingCronTimetable]
