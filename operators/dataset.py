"""Airflow adapters of the dataset DAG: what started the build, and the `llmops_dataset` event.

    dataset DAG:  dataset_inputs (DatasetInputsOperator: trigger kind, steer file of a drift event)
                    -> build (step_operator `llmops dataset build`)
                    -> publish_dataset (DatasetEventOperator, outlet DATASET)

The build itself is the core's (`llmops dataset build`, run as a subprocess or a pod like every step);
these classes only read the triggering asset events and turn the build summary into an asset event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from llmops_operators.assets import CORPUS, RETRAIN
from llmops_operators.base import upstream_summary

DRIFT_KEYS = ("report_uri", "report_json_uri", "p_value", "p_value_mmd", "p_value_classifier", "alpha", "created_at")
"""Fields of a drift event passed on to the dataset event (the fine-tune DAG's trigger ledger records them)."""

STEER_KEYS = ("steer_uri", "steer_json_uri")
"""Keys of a drift event's extra that may name its steer file (the drift report's `steer.json`)."""


def _events(triggering: Any, asset) -> list[Any]:
    if not triggering:
        return []
    try:
        return list(triggering[asset])
    except KeyError:
        return []


def build_inputs(corpus_events: list[Any], drift_events: list[Any], steer_param: str = "") -> dict[str, Any]:
    """What the build needs from its triggering events: `trigger` (`corpus` when a corpus event is among
    them, else `drift`, else `manual`), `steer` (the form's, else the newest drift event's steer file, else
    ""), and the newest drift event's report fields."""
    last_drift = max(drift_events, key=lambda e: e.timestamp, default=None)
    drift_extra = dict(last_drift.extra or {}) if last_drift is not None else {}
    steer = steer_param or next((drift_extra[k] for k in STEER_KEYS if drift_extra.get(k)), "")
    from llmops.contracts import DatasetInputs

    trigger = "corpus" if corpus_events else "drift" if last_drift is not None else "manual"
    drift = {k: drift_extra.get(k) for k in DRIFT_KEYS if k in drift_extra} if last_drift is not None else None
    return DatasetInputs(trigger=trigger, steer=str(steer or ""), drift=drift).to_json()


class DatasetInputsOperator(BaseOperator):
    """Read the run's triggering events (CORPUS, RETRAIN): the trigger kind and the steer file."""

    template_fields: Sequence[str] = ("steer",)
    ui_color = "#e6f0ff"

    def __init__(self, *, steer: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steer = steer

    def execute(self, context: Any) -> dict[str, Any]:
        triggering = context.get("triggering_asset_events")
        out = build_inputs(_events(triggering, CORPUS), _events(triggering, RETRAIN), str(self.steer or ""))
        self.log.info("Dataset build for a %s trigger; steer file: %s", out["trigger"], out["steer"] or "none")
        return out


class DatasetEventOperator(BaseOperator):
    """Publish a dataset build as an asset event (its outlets, e.g. DATASET): the build summary plus the
    trigger that started it, so the fine-tune DAG knows a drift-started build from a corpus one.

    Emitted also when the build wrote nothing new (same dataset hash): the fine-tune DAG then records
    "no new data since vN" in the trigger ledger instead of training."""

    template_fields: Sequence[str] = ("summary", "inputs")
    ui_color = "#e6f0ff"

    def __init__(self, *, summary: Any, inputs: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary = summary
        self.inputs = inputs

    def execute(self, context: Any) -> dict[str, Any]:
        from llmops.contracts import DatasetBuildSummary, DatasetInputs

        summary = upstream_summary(DatasetBuildSummary, self.summary, "dataset build")
        inputs = DatasetInputs.model_validate(self.inputs) if self.inputs else None
        extra = {
            **{k: v for k, v in summary.to_json().items() if isinstance(v, str | int | float | bool) or v is None},
            "trigger": inputs.trigger if inputs else "manual",
            **dict((inputs.drift if inputs else None) or {}),
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        return extra
