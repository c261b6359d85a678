"""Airflow plugin of airflow-llmops: report pages served by the API server, extra links to them and to
MLflow.

Report pages (a FastAPI app mounted at `/llmops` in the API server, behind Airflow's own authentication:
the UI's session cookie or a bearer token; see `llmops_airflow_plugin.reports`):

- `/llmops/gate?uri=...`: the gate report (`gate.json`) as HTML: metrics, CIs, p-values, slices;
- `/llmops/drift?uri=...`: the drift report with its plots;
- `/llmops/loss?uri=...`: the training loss curve of a training output folder;
- `/llmops/lineage/{name}/{version}`: a model version's lineage.

Locations are read through `llmops.storage` (local or `s3://`); one outside the configured storage roots
is refused (403).

Every step task (`LocalStepOperator`, `KubernetesStepOperator`) returns its step's summary JSON as
XCom `return_value`; these links read it:

- "MLflow run": `mlflow_run_id` (and `mlflow_experiment_id` when present) -> the run page;
- "Model version": `registered_model_name` + `version` -> the registered model version page;
- "Lineage": `registered_model_name` + `version` -> the lineage page;
- "Report": the gate report (a summary with `verdicts`), the drift report (`report_uri` of a drift
  summary) or the loss curve (a train summary's `output_dir`) -> its page; an http(s) `report_uri` as is.

A link whose keys are missing from the summary is empty (the UI shows it disabled). The MLflow UI
address is the setting `mlflow_ui_url` (`[llmops] mlflow_ui_url` or `LLMOPS_MLFLOW_UI_URL`); the report
pages' address is Airflow's `[api] base_url`, else `http://<[api] host>:<[api] port>`.

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
LINEAGE = "Lineage"
PREFIX = "/llmops"
"""Where the report pages are mounted in the API server."""


def links_from_summary(summary: dict[str, Any] | None, mlflow_ui_url: str, api_url: str = "") -> dict[str, str]:
    """The links a step summary gives: {link name: URL}, only for the keys it has. `api_url`: the API
    server's address (report pages)."""
    if not isinstance(summary, dict):
        return {}
    ui = mlflow_ui_url.rstrip("/")
    pages = api_url.rstrip("/") + PREFIX
    links: dict[str, str] = {}
    run_id = summary.get("mlflow_run_id")
    if run_id:
        experiment = summary.get("mlflow_experiment_id")
        path = f"experiments/{quote(str(experiment))}/runs/{quote(str(run_id))}" if experiment else f"runs/{quote(str(run_id))}"
        links[MLFLOW_RUN] = f"{ui}/#/{path}"
    name, version = summary.get("registered_model_name"), summary.get("version")
    if name and version:
        links[MODEL_VERSION] = f"{ui}/#/models/{quote(str(name), safe='')}/versions/{quote(str(version))}"
        links[LINEAGE] = f"{pages}/lineage/{quote(str(name), safe='')}/{quote(str(version), safe='')}"
    report = summary.get("report_uri")
    if report:
        kind = "gate" if "verdicts" in summary or "decision" in summary else "drift"
        links[REPORT] = report_url(str(report), kind, pages)
    elif summary.get("output_dir") and summary.get("adapter_dir"):
        links[REPORT] = report_url(str(summary["output_dir"]), "loss", pages)
    return links


def report_url(uri: str, kind: str, pages: str) -> str:
    """A browser URL for a report location: http(s) as is, else the plugin's page of that kind."""
    if uri.startswith(("http://", "https://")):
        return uri
    if storage_scheme(uri) in ("", "file") and not uri.startswith("file://"):
        from pathlib import Path

        uri = str(Path(uri).resolve())
    return f"{pages}/{kind}?uri={quote(uri, safe='')}"


def storage_scheme(uri: str) -> str:
    from llmops import storage

    return storage.scheme(uri)


def api_base_url() -> str:
    """The API server's address as a browser reaches it: `[api] base_url`, else host and port."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback=None)
    if base:
        return base.rstrip("/")
    host = conf.get("api", "host", fallback="127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    return f"http://{host}:{conf.get('api', 'port', fallback='8080')}"


def step_summary(ti_key: TaskInstanceKey) -> dict[str, Any] | None:
    """The task instance's XCom `return_value` (or, for a step that skipped, its `skipped_summary`), read
    from the metadata database (API server side)."""
    for key in ("return_value", "skipped_summary"):
        value = _xcom(ti_key, key)
        if value is not None:
            return value
    return None


def _xcom(ti_key: TaskInstanceKey, key: str) -> dict[str, Any] | None:
    return xcom_value(ti_key.dag_id, ti_key.run_id, ti_key.task_id, key, ti_key.map_index)


def xcom_value(dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> dict[str, Any] | None:
    """One XCom of a task instance, read from the metadata database (a dict, else None)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=key,
                run_id=run_id,
                dag_ids=dag_id,
                task_ids=task_id,
                map_indexes=map_index,
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

    return airflow_settings().mlflow.mlflow_ui_url


def _step_operators() -> list[type]:
    from llmops_operators.approval import PromotionApprovalOperator
    from llmops_operators.local import LocalStepOperator

    operators: list[type] = [LocalStepOperator, PromotionApprovalOperator]
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
            return links_from_summary(summary, mlflow_ui_url(), api_base_url()).get(self.name, "")
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


class LineageLink(_SummaryLink):
    name = LINEAGE


def _fastapi_apps() -> list[dict[str, Any]]:
    from llmops_airflow_plugin.reports import create_app

    return [{"app": create_app(), "url_prefix": PREFIX, "name": "llmops reports"}]


class LlmopsPlugin(AirflowPlugin):
    """Extra links of airflow-llmops step tasks (MLflow run, model version, report, lineage); the report
    pages; the cron timetable."""

    name = "llmops"
    operator_extra_links = [MlflowRunLink(), ModelVersionLink(), ReportLink(), LineageLink()]
    fastapi_apps = _fastapi_apps()
    # The cron timetable of every scheduled DAG (llmops_operators.schedules): a custom timetable must be
    # registered by a plugin so the DAG processor can serialize it and the scheduler read it back.
    timetables = [UpcomingCronTimetable]
