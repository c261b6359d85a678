"""The fine-tune DAG's first task: which trigger started this run, and does the drift cooldown hold?

A thin adapter around `llmops.triggers`: it reads the run's `triggering_asset_events` (DATASET, and
CORPUS/RETRAIN for a DAG scheduled on those directly), its run type, conf and Params, decides with the
ledger under the `state_uri` setting (drift cooldown; "no new data since vN" when the champion was trained
on the same dataset version with the same training parameters), and when the decision is "skipped"
short-circuits the run (every downstream task is skipped). Its XCom is the decision summary: `trigger`,
`decision`, `reason`, `snapshot_id` (the newest corpus snapshot), `dataset_hash`, `dataset_uri`,
`training_params_sha256`, `champion_version`, `report_uri`, `p_values`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, SkipMixin

from llmops.settings import Settings
from llmops_operators.assets import CORPUS, DATASET, RETRAIN
from llmops_operators.base import airflow_settings
from llmops_operators.s3 import uses_aws_connection

if TYPE_CHECKING:
    from llmops.triggers import TriggerEvent


def _events(triggering: Any, asset) -> list[TriggerEvent]:
    from llmops.triggers import TriggerEvent

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

    def __init__(
        self,
        *,
        cooldown_hours: float | None = None,
        training_params: Sequence[str] = (),
        settings: Settings | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.cooldown_hours = cooldown_hours
        self.training_params = tuple(training_params)
        self.settings = settings

    @uses_aws_connection
    def execute(self, context: Any) -> dict[str, Any]:
        # Imported here, not at parse: the DAG file only builds the task (STYLE.md, habit 1).
        from llmops.contracts import TriggerSummary
        from llmops.training.inputs import choose_dataset, dataset_version
        from llmops.triggers import (
            TriggerLedger,
            champion_lineage,
            classify_trigger,
            evaluate_trigger,
            latest_snapshot_id,
            ledger_uri,
            summary_of,
            training_params_sha256,
        )

        settings = self.settings or airflow_settings()
        dag_run = context["dag_run"]
        triggering = context.get("triggering_asset_events")
        trigger = classify_trigger(
            run_time=run_time(dag_run),
            run_type=str(getattr(dag_run, "run_type", "") or ""),
            conf=dict(getattr(dag_run, "conf", None) or {}),
            corpus_events=_events(triggering, CORPUS),
            drift_events=_events(triggering, RETRAIN),
            dataset_events=_events(triggering, DATASET),
        )
        cooldown = float(self.cooldown_hours if self.cooldown_hours not in (None, "") else settings.training.retrain_cooldown_hours)
        ledger = TriggerLedger(ledger_uri(settings))
        params = dict(context.get("params") or {})
        conf = dict(getattr(dag_run, "conf", None) or {})
        dataset_uri = choose_dataset(settings, params.get("dataset"), trigger.dataset_uri)
        version = dataset_version(dataset_uri)
        dataset_hash = version.get("dataset_hash") if version else None
        params_sha = training_params_sha256({k: params.get(k) for k in self.training_params})
        # Only a dataset version can be "already learnt"; asking MLflow costs a round trip, so only then.
        champion = champion_lineage(settings) if dataset_hash else None
        record = evaluate_trigger(
            ledger,
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            trigger=trigger,
            cooldown_hours=cooldown,
            snapshot_id=latest_snapshot_id(settings.processed),
            dataset_hash=dataset_hash,
            params_sha256=params_sha,
            champion=champion,
            force=bool(conf.get("force")),
        )
        summary = TriggerSummary(
            **summary_of(record, ledger, cooldown),
            dataset_uri=dataset_uri,
            training_params_sha256=params_sha,
            champion_version=champion.get("version") if champion else None,
        ).to_json()
        self.log.info("Trigger %s: %s (%s)", record.trigger, record.decision, record.reason)
        if record.decision == "skipped":
            # skip() ends execute with an exception, so push the summary explicitly for the UI.
            context["ti"].xcom_push(key="return_value", value=summary)
            self.skip(ti=context["ti"], tasks=list(context["task"].get_flat_relatives(upstream=False)))
        return summary


def retrain_trigger(
    *,
    task_id: str = "check_trigger",
    cooldown_hours: float | None = None,
    training_params: Sequence[str] = (),
    **kwargs: Any,
):
    """The trigger check task (default cooldown: the `retrain_cooldown_hours` setting).

    :param training_params: the DAG Params that make up the training recipe (base model and
        hyperparameters): their hash decides, with the dataset hash, whether the champion already learnt
        this run's data."""
    return RetrainTriggerOperator(
        task_id=task_id, cooldown_hours=cooldown_hours, training_params=training_params, **kwargs
    )
