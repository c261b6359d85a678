"""The fine-tune DAG's first task: which trigger started this run, and does the drift cooldown hold?

A thin adapter around `llmops.triggers`: it reads the run's `triggering_asset_events` (CORPUS, RETRAIN),
its run type and conf, decides with the ledger under the `state_uri` setting, and when the decision is
"skipped" short-circuits the run (every downstream task is skipped). Its XCom is the decision summary:
`trigger`, `decision`, `reason`, `snapshot_id` (the newest corpus snapshot), `report_uri`, `p_values`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from airflow.sdk import BaseOperator, SkipMixin

from llmops.settings import Settings
from llmops.triggers import (
    TriggerEvent,
    TriggerLedger,
    classify_trigger,
    evaluate_trigger,
    latest_snapshot_id,
    ledger_uri,
    summary_of,
)
from llmops_operators.assets import CORPUS, RETRAIN
from llmops_operators.base import airflow_settings
from llmops_operators.s3 import uses_aws_connection


def _events(triggering: Any, asset) -> list[TriggerEvent]:
    if not triggering:
        return []
    try:
        events = triggering[asset]
    except KeyError:
        return []
    return [TriggerEvent(timestamp=e.timestamp, extra=dict(e.extra or {})) for e in events]


def run_time(dag_run: Any) -> datetime:
    """The run's own time: when it was due (`run_after`), else its logical date, else when it was queued."""
    for name in ("run_after", "logical_date", "queued_at", "start_date"):
        value = getattr(dag_run, name, None)
        if value is not None:
            return value
    raise ValueError(f"dag run {getattr(dag_run, 'run_id', '?')} has no time to decide with")


class RetrainTriggerOperator(BaseOperator, SkipMixin):
    """Record why this fine-tune run started; skip the whole run when the drift cooldown holds."""

    template_fields: Sequence[str] = ("cooldown_hours",)
    ui_color = "#fff4d6"

    def __init__(self, *, cooldown_hours: float | None = None, settings: Settings | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.cooldown_hours = cooldown_hours
        self.settings = settings

    @uses_aws_connection
    def execute(self, context: Any) -> dict[str, Any]:
        settings = self.settings or airflow_settings()
        dag_run = context["dag_run"]
        triggering = context.get("triggering_asset_events")
        trigger = classify_trigger(
            run_time=run_time(dag_run),
            run_type=str(getattr(dag_run, "run_type", "") or ""),
            conf=dict(getattr(dag_run, "conf", None) or {}),
            corpus_events=_events(triggering, CORPUS),
            drift_events=_events(triggering, RETRAIN),
        )
        cooldown = float(self.cooldown_hours if self.cooldown_hours not in (None, "") else settings.retrain_cooldown_hours)
        ledger = TriggerLedger(ledger_uri(settings))
        record = evaluate_trigger(
            ledger,
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            trigger=trigger,
            cooldown_hours=cooldown,
            snapshot_id=latest_snapshot_id(settings.processed),
        )
        summary = summary_of(record, ledger, cooldown)
        self.log.info("Trigger %s: %s (%s)", record.trigger, record.decision, record.reason)
        if record.decision == "skipped":
            # skip() ends execute with an exception, so push the summary explicitly for the UI.
            context["ti"].xcom_push(key="return_value", value=summary)
            self.skip(ti=context["ti"], tasks=list(context["task"].get_flat_relatives(upstream=False)))
        return summary


def retrain_trigger(*, task_id: str = "check_trigger", cooldown_hours: float | None = None, **kwargs: Any):
    """The trigger check task (default cooldown: the `retrain_cooldown_hours` setting)."""
    return RetrainTriggerOperator(task_id=task_id, cooldown_hours=cooldown_hours, **kwargs)
