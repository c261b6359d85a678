"""The small classic operators the DAG files use instead of `@task` (cheaper to parse): emit_retrain
and resolve_inputs, built as the DAGs build them, with a fake TaskInstance and outlet-events mapping at
the XCom/asset boundary. The branch task (choose_rollout) is tested in tests/dags/test_llmops_finetune.py."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pendulum
import pytest

from llmops.contracts import DriftSummary


def _drift_summary(status: str) -> dict:
    summary = {name: None for name in DriftSummary.model_fields}
    summary.update(status=status, drift=status == "drift", reference_uri="/ref", current_uri="/traffic", groups=[],
                   p_value=0.001, excess=0.2, report_uri="/reports/r1", drift_event="ev-1", steer_uri="/reports/r1/steer.json")
    return summary


class _Events(dict):
    def __missing__(self, key):
        self[key] = SimpleNamespace(extra=None)
        return self[key]


def test_emit_retrain_emits_the_event_on_drift_and_skips_otherwise():
    from airflow.sdk import DAG, BaseOperator
    from airflow.sdk.exceptions import AirflowSkipException

    from llmops_operators.assets import RETRAIN
    from llmops_operators.drift import emit_retrain

    with DAG("emit_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        detect = BaseOperator(task_id="detect_drift")
        emit = emit_retrain(detect.output)
    assert emit.task_id == "emit_retrain" and emit.upstream_task_ids == {"detect_drift"}
    assert emit.outlets == [RETRAIN] and emit.doc_md.startswith("Emit RETRAIN")

    task = copy.copy(emit)
    task.summary = _drift_summary("drift")
    events = _Events()
    extra = task.execute({"outlet_events": events})
    assert events[RETRAIN].extra == extra
    assert extra["report_uri"] == "/reports/r1" and extra["steer_uri"] == "/reports/r1/steer.json"
    assert extra["drift_event"] == "ev-1" and "groups" not in extra

    for summary, status in ((_drift_summary("no_drift"), "no_drift"), (None, "no summary")):
        task.summary = summary
        with pytest.raises(AirflowSkipException, match=f"drift check status is {status}"):
            task.execute({"outlet_events": _Events()})


@pytest.mark.parametrize("decided", [None, {"dataset_uri": "/datasets/v3"}])
def test_resolve_inputs_renders_params_and_the_triggering_dataset(dagbag, decided):
    """The DAG's templates: the Params, and the trigger check's dataset (none when it pushed nothing)."""
    task = copy.copy(dagbag.get_dag("llmops_finetune").get_task("resolve_inputs"))
    ti = SimpleNamespace(xcom_pull=lambda task_ids: decided if task_ids == "check_trigger" else pytest.fail(task_ids))
    task.render_template_fields({"params": {"base_model": "org/base", "dataset": "latest"}, "ti": ti})
    assert (task.base_model, task.dataset) == ("org/base", "latest")
    assert task.triggered_dataset == (decided["dataset_uri"] if decided else "")
    assert task.doc_md.startswith("Check the base model")
