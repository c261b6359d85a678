"""One model version's lineage as data and as a page: corpus snapshot -> dataset -> training run ->
adapter -> evaluations -> gate -> approval -> manifests -> deployments -> later drift events.

Everything comes from what the pipeline already records: the version's `llmops.*` tags (set by
`llmops register`, `promote` and the approval task), the evaluation runs tagged with the same Airflow
run, the step summaries of that Airflow run (passed in by the caller: the plugin reads them from
Airflow's metadata database) and the drift reports written after the version was created.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from llmops import storage
from llmops.contracts import DeploySummary, RenderSummary, Summary
from llmops.reports import page
from llmops.settings import Settings

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Summary)

TAG_APPROVAL_DECISION = "llmops.approval.decision"
TAG_APPROVAL_BY = "llmops.approval.by"
TAG_APPROVAL_AT = "llmops.approval.at"
TAG_APPROVAL_REASON = "llmops.approval.reason"

STAGES = (
    "corpus snapshot", "dataset", "training run", "adapter", "evaluations", "gate", "approval", "manifests",
    "deployments", "drift events",
)


@dataclass
class Link:
    text: str
    href: str | None = None


@dataclass
class Stage:
    name: str
    items: list[Link] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass
class Urls:
    """Where the page's links go: the Airflow UI, the MLflow UI and the plugin's report pages."""

    airflow: str
    mlflow: str
    report: Callable[[str, str], str]
    """(kind: gate | drift | loss, uri) -> URL of the plugin's page."""

    def airflow_run(self, dag_id: str, run_id: str, task_id: str | None = None) -> str:
        url = f"{self.airflow.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
        return f"{url}/tasks/{quote(task_id, safe='')}" if task_id else url

    def mlflow_run(self, run_id: str, experiment_id: str | None = None) -> str:
        ui = self.mlflow.rstrip("/")
        return f"{ui}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}" if experiment_id else f"{ui}/#/runs/{quote(run_id)}"

    def model_version(self, name: str, version: str) -> str:
        return f"{self.mlflow.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{quote(str(version))}"


def version_lineage(
    settings: Settings,
    name: str,
    version: str,
    urls: Urls,
    run_summaries: dict[str, dict[str, Any]] | None = None,
) -> list[Stage]:
    """The stages of `models:/name/version`. `run_summaries`: step summaries ({task_id: XCom}) of the
    Airflow run that registered it (render_manifests, deploy, ...)."""
    from mlflow.exceptions import MlflowException

    from llmops.exceptions import RegistryError
    from llmops.registry import (
        TAG_ADAPTER_SOURCE,
        TAG_ADAPTER_URI,
        TAG_GATE_DECISION,
        TAG_GATE_REPORT,
        mlflow_client,
    )

    client = mlflow_client(settings)
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"models:/{name}/{version} not found on {settings.mlflow_tracking} ({exc.message})") from None
    tags = dict(mv.tags or {})
    summaries = run_summaries or {}
    dag_id, run_id = tags.get("llmops.airflow.dag_id"), tags.get("llmops.airflow.run_id")

    def airflow(task_id: str | None = None, text: str | None = None) -> Link | None:
        if not (dag_id and run_id):
            return None
        return Link(text or f"Airflow {dag_id} / {run_id}" + (f" / {task_id}" if task_id else ""),
                    urls.airflow_run(dag_id, run_id, task_id))

    stages = {s: Stage(s) for s in STAGES}

    snapshot = tags.get("llmops.corpus_snapshot_id") or tags.get("llmops.dataset.snapshot_id")
    st = stages["corpus snapshot"]
    if snapshot:
        st.items.append(Link(f"snapshot {snapshot}"))
    if tags.get("llmops.embedding_model"):
        st.details.append(f"embedding model {tags['llmops.embedding_model']}")

    st = stages["dataset"]
    if tags.get("llmops.dataset"):
        st.items.append(Link(tags["llmops.dataset"]))
    for key, label in (("llmops.dataset_hash", "hash"), ("llmops.dataset.generator", "generator"),
                       ("llmops.dataset.parent_hash", "parent"), ("llmops.dataset.steered_by", "steered by")):
        if tags.get(key):
            st.details.append(f"{label} {tags[key]}")

    training_run = tags.get("llmops.training_run_id") or mv.run_id
    experiment_id = None
    st = stages["training run"]
    if training_run:
        try:
            experiment_id = client.get_run(training_run).info.experiment_id
        except MlflowException:
            log.warning("training run %s of %s/%s not found", training_run, name, version)
        st.items.append(Link(f"MLflow run {training_run}", urls.mlflow_run(training_run, experiment_id)))
    if link := airflow("train"):
        st.items.append(link)
    adapter_source = tags.get(TAG_ADAPTER_SOURCE)
    if adapter_source and adapter_source.rstrip("/").endswith("/adapter"):
        st.items.append(Link("loss curve", urls.report("loss", adapter_source.rstrip("/")[: -len("/adapter")])))
    if tags.get("llmops.base_model"):
        st.details.append(f"base model {tags['llmops.base_model']}")

    st = stages["adapter"]
    st.items.append(Link(f"models:/{name}/{version}", urls.model_version(name, str(version))))
    if tags.get(TAG_ADAPTER_URI):
        st.details.append(f"artifact {tags[TAG_ADAPTER_URI]}")
    if adapter_source:
        st.details.append(f"written to {adapter_source}")

    st = stages["evaluations"]
    if experiment_id and run_id:
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`llmops.step` = 'evaluate' and tags.`llmops.airflow.run_id` = '{run_id}'",
            max_results=20,
        )
        for r in runs:
            st.items.append(Link(f"MLflow run {r.info.run_id}: {r.data.tags.get('llmops.evaluated_model', '')}",
                                 urls.mlflow_run(r.info.run_id, experiment_id)))
    for task_id in ("evaluate_candidate", "evaluate_champion"):
        if link := airflow(task_id):
            st.items.append(link)

    st = stages["gate"]
    if tags.get(TAG_GATE_DECISION):
        st.details.append(f"decision {tags[TAG_GATE_DECISION]}")
    if tags.get(TAG_GATE_REPORT):
        st.items.append(Link("gate report", urls.report("gate", tags[TAG_GATE_REPORT])))
    if link := airflow("gate"):
        st.items.append(link)

    st = stages["approval"]
    decision = tags.get(TAG_APPROVAL_DECISION)
    if decision:
        st.details.append(
            f"{decision} by {tags.get(TAG_APPROVAL_BY, '?')} at {tags.get(TAG_APPROVAL_AT, '?')}"
            + (f": {tags[TAG_APPROVAL_REASON]}" if tags.get(TAG_APPROVAL_REASON) else "")
        )
    else:
        st.details.append("no approval recorded (approval: none, or not decided yet)")
    if link := airflow("approve"):
        st.items.append(link)

    st = stages["manifests"]
    rendered = _summary(RenderSummary, summaries.get("render_manifests"))
    if rendered is not None:
        st.items.append(Link(rendered.manifests_uri))
        if link := airflow("render_manifests"):
            st.items.append(link)

    st = stages["deployments"]
    deployed = _summary(DeploySummary, summaries.get("deploy"))
    if deployed is not None:
        shown = deployed.model_dump(mode="json", include={"manifests_uri", "applied", "live", "previous_version"})
        st.details.append(json.dumps(shown, sort_keys=True, default=str))
        if link := airflow("deploy"):
            st.items.append(link)
    if tags.get("llmops.superseded_by"):
        st.details.append(f"superseded by version {tags['llmops.superseded_by']}")

    st = stages["drift events"]
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC) if mv.creation_timestamp else None
    for report in drift_reports_since(settings, created):
        status = report.get("status", "?")
        st.items.append(Link(f"{report.get('created_at')}: {status}", urls.report("drift", str(report["report_uri"]))))
    return [stages[s] for s in STAGES]


def _summary(model: type[S], value: Any) -> S | None:
    """A step's XCom read through its model; None when the step pushed none or a summary of another shape
    (a run of an older release): the page shows what it can."""
    from pydantic import ValidationError

    if not value:
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        log.warning("not a %s summary, left out of the lineage page: %s", model.__name__, exc)
        return None


def drift_reports_since(settings: Settings, since: datetime | None, limit: int = 50) -> list[dict[str, Any]]:
    """Drift reports (`report.json`, with their `report_uri`) created after `since`, oldest first."""
    from llmops.drift.monitor import reports_root
    from llmops.drift.report import REPORT_JSON

    root = reports_root(settings)
    try:
        files = [f.uri for f in storage.list_files(root) if f.uri.endswith("/" + REPORT_JSON)]
    except (FileNotFoundError, OSError):
        return []
    out = []
    for uri in files:
        try:
            report = json.loads(storage.read_text(uri))
        except (ValueError, FileNotFoundError):
            continue
        created = report.get("created_at") if isinstance(report, dict) else None
        if not created:
            continue
        when = datetime.fromisoformat(str(created))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if since is None or when >= since:
            report.setdefault("report_uri", uri[: -len(REPORT_JSON) - 1])
            out.append(report)
    out.sort(key=lambda r: str(r["created_at"]))
    return out[-limit:]


def lineage_page(name: str, version: str, stages: list[Stage]) -> str:
    """The stages as an ordered list, each with its links and details."""
    items = []
    for st in stages:
        links = "".join(
            f'<li><a href="{html.escape(link.href, quote=True)}">{html.escape(link.text)}</a></li>' if link.href
            else f"<li>{html.escape(link.text)}</li>"
            for link in st.items
        )
        details = "".join(f'<li class="muted">{html.escape(d)}</li>' for d in st.details)
        empty = '<li class="muted">nothing recorded</li>' if not (links or details) else ""
        items.append(
            f'<li id="{st.name.replace(" ", "-")}"><strong>{html.escape(st.name)}</strong><ul>{links}{details}{empty}</ul></li>'
        )
    return page(
        f"Lineage of {name} version {version}",
        f"<h1>Lineage: {html.escape(name)} version {html.escape(str(version))}</h1>"
        f'<ol class="lineage">{"".join(items)}</ol>',
    )


def record_approval(
    settings: Settings,
    *,
    name: str,
    version: str,
    decision: str,
    by: str | None,
    at: str | None,
    reason: str | None,
) -> dict[str, str]:
    """Record a human decision on `models:/name/version` in its tags and on its training run (tags and
    `lineage/approval.json`); returns the tags set."""
    from llmops.registry import mlflow_client

    client = mlflow_client(settings)
    tags = {
        TAG_APPROVAL_DECISION: decision,
        TAG_APPROVAL_BY: by or "unknown",
        TAG_APPROVAL_AT: at or datetime.now(UTC).isoformat(),
        TAG_APPROVAL_REASON: (reason or "")[:5000],
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    mv = client.get_model_version(name, str(version))
    training_run = (mv.tags or {}).get("llmops.training_run_id") or mv.run_id
    if training_run:
        for key, value in tags.items():
            client.set_tag(training_run, key, value)
        client.log_dict(training_run, {"model_version": f"models:/{name}/{version}", **tags}, "lineage/approval.json")
    return tags
