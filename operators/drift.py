"""The drift DAG's event task: turn a drift verdict into a RETRAIN asset event (or none).

A classic operator, not `@task`: `airflow.sdk.task` imports the standard provider's PythonOperator
module (and `packaging.requirements` with it), about 15 ms of every parse of the drift DAG file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from llmops_operators.assets import RETRAIN

EMIT_RETRAIN_DOC = """Emit RETRAIN with the report URI, effect size, p-values, `drift_event` and `steer_uri` (the
steer file the dataset build reads) when the drift step found drift; skip otherwise (a skipped task emits
no asset event, so the dataset and fine-tune DAGs are not scheduled)."""


class EmitRetrainOperator(BaseOperator):
    """Emit the RETRAIN asset event from the drift step's `summary` (templated: the drift task's
    `.output`, which also makes that task upstream); skip when the summary found no drift."""

    template_fields: Sequence[str] = ("summary",)

    def __init__(self, *, summary: Any, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [RETRAIN])
        kwargs.setdefault("doc_md", EMIT_RETRAIN_DOC)
        super().__init__(**kwargs)
        self.summary = summary

    def execute(self, context: Any) -> dict[str, Any]:
        # Imported here, not at the top: the DAG file imports this module at parse time (tests/dags/test_dag_files.py).
        from llmops.drift.monitor import retrain_event_extra

        summary = self.summary
        extra = retrain_event_extra(summary)
        if extra is None:
            status = (summary or {}).get("status", "no summary")
            raise AirflowSkipException(f"no retrain event: drift check status is {status}")
        context["outlet_events"][RETRAIN].extra = extra
        return extra


def emit_retrain(summary: Any, *, task_id: str = "emit_retrain", **kwargs: Any) -> EmitRetrainOperator:
    """The `emit_retrain` task, downstream of the task whose XCom `summary` is (e.g. `detect.output`)."""
    return EmitRetrainOperator(task_id=task_id, summary=summary, **kwargs)
