"""The drift DAG's event task: turn a drift verdict into a RETRAIN asset event (or none)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException

from llmops_operators.assets import RETRAIN


@task(task_id="emit_retrain", outlets=[RETRAIN], multiple_outputs=False)
def emit_retrain(summary: dict[str, Any] | None, *, outlet_events=None) -> dict[str, Any]:
    """Emit RETRAIN with the report URI, effect size, p-values, `drift_event` and `steer_uri` (the steer
    file the dataset build reads) when the drift step found drift; skip otherwise (a skipped task emits no
    asset event, so the dataset and fine-tune DAGs are not scheduled)."""
    # Imported here, not at the top: the DAG file imports this module at parse time (tests/dags/test_dag_files.py).
    from llmops.drift.monitor import retrain_event_extra

    extra = retrain_event_extra(summary)
    if extra is None:
        status = (summary or {}).get("status", "no summary")
        raise AirflowSkipException(f"no retrain event: drift check status is {status}")
    outlet_events[RETRAIN].extra = extra
    return extra
