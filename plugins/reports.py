"""The plugin's report pages: a FastAPI app the API server mounts at `/llmops` (`fastapi_apps`).

Every route requires an authenticated Airflow user (`requires_authenticated`: the UI's JWT cookie or an
`Authorization: Bearer` token, the same as `/api/v2`); an unauthenticated request gets 401. Pages are
rendered by `llmops.reports` from files read through `llmops.storage`; a location outside the configured
storage roots answers 403, a missing one 404.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

log = logging.getLogger(__name__)

LINEAGE_TASKS = ("render_manifests", "deploy", "approve")
"""Step summaries of the registering Airflow run shown on the lineage page."""


def _settings():
    from llmops_operators.base import airflow_settings

    return airflow_settings()


def _auth() -> Any:
    from airflow.api_fastapi.core_api.security import requires_authenticated

    return requires_authenticated()


def _errors(fn):
    """Map the core's errors to HTTP answers."""
    from llmops.exceptions import LlmopsError, PathNotAllowed

    try:
        return fn()
    except PathNotAllowed as exc:
        raise HTTPException(status_code=403, detail=str(exc)) from None
    except FileNotFoundError as exc:
        raise HTTPException(status_code=404, detail=f"not found: {exc}") from None
    except LlmopsError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def create_app(auth: Any = None) -> FastAPI:
    """The report app. `auth`: the dependency every route requires (default: an authenticated Airflow
    user)."""
    app = FastAPI(title="airflow-llmops reports", dependencies=[Depends(auth or _auth())])

    @app.get("/gate", response_class=HTMLResponse)
    def gate(uri: str = Query(..., description="gate.json location")) -> str:
        from llmops.reports import gate_page, read_allowed

        def render() -> str:
            settings = _settings()
            try:
                report = json.loads(read_allowed(uri, settings))
            except ValueError:
                from llmops.exceptions import StorageError

                raise StorageError(f"{uri} is not JSON: pass the gate report's gate.json") from None
            return gate_page(report, links=_gate_links(report), source=uri)

        return _errors(render)

    @app.get("/drift", response_class=HTMLResponse)
    def drift(uri: str = Query(..., description="drift report folder (or its report.json/report.html)")) -> str:
        from llmops.reports import drift_page

        return _errors(lambda: drift_page(uri, _settings()))

    @app.get("/loss", response_class=HTMLResponse)
    def loss(uri: str = Query(..., description="training output folder (or its steps.jsonl)")) -> str:
        from llmops.reports import loss_page

        return _errors(lambda: loss_page(uri, _settings()))

    @app.get("/lineage/{name}/{version}", response_class=HTMLResponse)
    def lineage(name: str, version: str) -> str:
        from llmops.reports.lineage import lineage_page, version_lineage

        def render() -> str:
            started = time.perf_counter()
            settings = _settings()
            stages = version_lineage(settings, name, version, _urls(settings), run_summaries=_run_summaries(settings, name, version))
            out = lineage_page(name, version, stages)
            log.info("lineage page of %s/%s rendered in %.3fs", name, version, time.perf_counter() - started)
            return out

        return _errors(render)

    return app


def _gate_links(report: dict[str, Any]) -> dict[str, str]:
    from urllib.parse import quote

    from llmops_airflow_plugin import mlflow_ui_url

    links = {}
    for side in ("candidate", "baseline"):
        model_uri = ((report.get(side) or {}).get("model_uri") or "")
        if model_uri.startswith("models:/"):
            name, _, version = model_uri[len("models:/"):].partition("/")
            if version.isdigit():
                links[f"{side} in MLflow"] = (
                    f"{mlflow_ui_url().rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"
                )
    return links


def _urls(settings):
    from llmops.reports.lineage import Urls
    from llmops_airflow_plugin import PREFIX, api_base_url, report_url

    api = api_base_url()
    return Urls(airflow=api, mlflow=settings.mlflow.mlflow_ui_url, report=lambda kind, uri: report_url(uri, kind, api + PREFIX))


def _run_summaries(settings, name: str, version: str) -> dict[str, dict[str, Any]]:
    """The step summaries of the Airflow run that registered the version (metadata database)."""
    from llmops.registry import mlflow_client
    from llmops_airflow_plugin import xcom_value

    try:
        tags = mlflow_client(settings).get_model_version(name, version).tags or {}
    except Exception:  # the lineage itself reports a missing version
        return {}
    dag_id, run_id = tags.get("llmops.airflow.dag_id"), tags.get("llmops.airflow.run_id")
    if not (dag_id and run_id):
        return {}
    out = {}
    for task_id in LINEAGE_TASKS:
        value = xcom_value(dag_id, run_id, task_id)
        if value is not None:
            out[task_id] = value
    return out
