"""Airflow adapters of the RAG pipeline's data side: the landing sensor, change detection, the corpus event.

    sensor DAG:      wait_for_documents (S3KeySensor, deferrable | LandingFolderSensor)
                       -> detect_changes (LandingChangesOperator, outlet LANDING; skipped when nothing changed)
    preprocess DAG:  preprocess (spark_operator) -> publish_corpus (CorpusEventOperator, outlet CORPUS)

The decisions live in the core (`llmops.rag.plan.pending_changes`); these classes only call it and turn
its answer into Airflow outcomes (success with an asset event, or a skip).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from llmops.settings import Settings
from llmops_operators.base import airflow_settings, upstream_summary
from llmops_operators.s3 import uses_aws_connection

CORPUS_EVENT_KEYS = ("snapshot_id", "output_uri", "chunks_total", "chunks_written", "documents_indexed", "embedding_model")
"""The preprocessing summary's fields copied into the corpus event's `extra`."""

LIST_LIMIT = 50
"""At most this many document URIs per list in the XCom summary (the counts are always complete)."""


class LandingFolderSensor(BaseSensorOperator):
    """Wait until a local landing folder holds at least one document.

    Local mode's sensor: it needs no Airflow connection (the standard FileSensor wants `fs_default`).
    """

    template_fields: Sequence[str] = ("landing_uri",)
    ui_color = "#e8f7e4"

    def __init__(self, *, landing_uri: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.landing_uri = landing_uri

    def poke(self, context: Any) -> bool:
        from llmops.rag.plan import list_documents

        files = list_documents(self.landing_uri)
        self.log.info("%d document(s) under %s", len(files), self.landing_uri)
        return bool(files)


def landing_sensor(*, task_id: str, settings: Settings | None = None, **kwargs: Any) -> BaseOperator:
    """The sensor for the settings' landing location: S3KeySensor (deferrable) for `s3://`, else a folder sensor.

    Either way it gives up after `landing_timeout_s` with a skip (soft fail): the next scheduled run looks again.
    """
    settings = settings or airflow_settings()
    landing = settings.landing
    defaults: dict[str, Any] = {
        "poke_interval": settings.rag.landing_poke_interval_s,
        "timeout": settings.rag.landing_timeout_s,
        "soft_fail": True,
    }
    defaults.update(kwargs)
    if landing.startswith("s3://"):
        from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

        # A wildcard under the prefix: fnmatch's `*` also matches `/`, so any object below it counts.
        return S3KeySensor(
            task_id=task_id,
            bucket_key=f"{landing.rstrip('/')}/*",
            wildcard_match=True,
            deferrable=True,
            aws_conn_id=settings.storage.aws_conn_id,
            **defaults,
        )
    defaults.setdefault("mode", "reschedule")
    return LandingFolderSensor(task_id=task_id, landing_uri=landing.removeprefix("file://"), **defaults)


class LandingChangesOperator(BaseOperator):
    """Compare the landing location with the last manifest; skip when nothing is new, changed or deleted.

    Otherwise every outlet asset gets an event with `extra` {documents, deleted, new, changed,
    landing_uri}, which schedules the preprocessing DAG. Returns the same facts (URI lists capped).
    """

    template_fields: Sequence[str] = ("landing_uri", "output_uri")
    ui_color = "#e8f7e4"

    def __init__(self, *, landing_uri: str, output_uri: str, max_document_mb: float = 50.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.landing_uri = landing_uri
        self.output_uri = output_uri
        self.max_document_mb = max_document_mb

    @uses_aws_connection
    def execute(self, context: Any) -> dict[str, Any]:
        from llmops.rag.plan import pending_changes

        changes = pending_changes(self.landing_uri, self.output_uri, self.max_document_mb)
        self.log.info(
            "%s: %d new, %d changed, %d deleted of %d documents",
            self.landing_uri, len(changes["new"]), len(changes["changed"]), len(changes["deleted"]), changes["seen"],
        )
        if not (changes["documents"] or changes["deleted"]):
            raise AirflowSkipException(f"no new, changed or deleted documents under {self.landing_uri}")
        extra = {
            "documents": changes["documents"],
            "new": len(changes["new"]),
            "changed": len(changes["changed"]),
            "deleted": len(changes["deleted"]),
            "landing_uri": self.landing_uri,
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        # The XCom lists (capped) which documents; the counts stay in `extra`.
        return {**extra, "uris": {k: changes[k][:LIST_LIMIT] for k in ("new", "changed", "deleted")}}


class CorpusEventOperator(BaseOperator):
    """Publish a preprocessing run's snapshot as an asset event (its outlets, e.g. CORPUS).

    Reads the step's summary (the XCom of the preprocessing task). A run that produced no new snapshot
    is skipped, so consumers (fine-tuning) are not triggered for an unchanged corpus.
    """

    template_fields: Sequence[str] = ("summary",)
    ui_color = "#f4e8fd"

    def __init__(self, *, summary: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary = summary

    def execute(self, context: Any) -> dict[str, Any]:
        from llmops.contracts import PreprocessSummary

        summary = upstream_summary(PreprocessSummary, self.summary, "preprocessing")
        if not summary.snapshot_changed:
            raise AirflowSkipException(f"snapshot {summary.snapshot_id} is unchanged: no corpus event")
        # The summary's own names: consumers read the event with the same keys as the XCom.
        extra = summary.model_dump(mode="json", include=set(CORPUS_EVENT_KEYS))
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        return extra
