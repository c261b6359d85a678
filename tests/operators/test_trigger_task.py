"""The trigger-check task in a DAG run: a cooldown short-circuits the whole run and says why."""

from __future__ import annotations

import json

import pendulum
import pytest

from llmops.rag.snapshot import SCHEMA_VERSION
from llmops.settings import load_settings
from tests.conftest import task_states

pytestmark = pytest.mark.slow


def _dag(settings, dag_id: str, tmp_path):
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from llmops_operators.triggers import retrain_trigger

    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
        check = retrain_trigger(settings=settings, cooldown_hours=24)
        train = EmptyOperator(task_id="train")
        register = EmptyOperator(task_id="register")
        check >> train >> register
    # dag.test() runs only serialized DAGs; this one lives in a test, not in the dags folder.
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    empty = tmp_path / "no-dags"
    empty.mkdir()
    bag = DagBag(dag_folder=str(empty))
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag


def test_cooldown_short_circuits_the_run_and_records_why(airflow_db, tmp_path):
    settings = load_settings(state_uri=str(tmp_path / "state"), processed_uri=str(tmp_path / "processed"))
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "snapshot_id": "snap-42"}))
    dag = _dag(settings, "test_llmops_trigger_check", tmp_path)

    drift = {"trigger": "drift", "time": "2026-11-23T08:00:00Z", "report_uri": "/r/a.html", "p_values": {"p_value": 0.002}}
    dr = dag.test(run_conf=drift)
    assert task_states(dr) == {"check_trigger": "success", "train": "success", "register": "success"}
    ti = next(t for t in dr.get_task_instances() if t.task_id == "check_trigger")
    summary = ti.xcom_pull(task_ids="check_trigger")
    assert (summary["trigger"], summary["decision"], summary["snapshot_id"]) == ("drift", "run", "snap-42")

    dr = dag.test(run_conf={**drift, "time": "2026-11-23T10:00:00Z"})
    assert task_states(dr) == {"check_trigger": "success", "train": "skipped", "register": "skipped"}

    dr = dag.test(run_conf={"trigger": "corpus", "time": "2026-11-23T11:00:00Z"})
    assert task_states(dr) == {"check_trigger": "success", "train": "success", "register": "success"}

    rows = [json.loads(x) for x in (tmp_path / "state" / "triggers.jsonl").read_text().splitlines()]
    assert [(r["trigger"], r["decision"]) for r in rows] == [("drift", "run"), ("drift", "skipped"), ("corpus", "run")]
    assert "cooldown" in rows[1]["reason"]


def _event(asset, minutes: int, extra: dict):
    from datetime import UTC, datetime, timedelta

    from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    return AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name=asset.name, uri=asset.uri, extra={}),
        extra=extra,
        source_task_id="emit_retrain",
        source_dag_id="llmops_drift",
        source_run_id=f"scheduled__{minutes}",
        source_map_index=-1,
        source_aliases=[],
        timestamp=datetime(2026, 11, 23, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes),
    )


class _TI:
    map_index = -1

    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_asset_events_decide_the_trigger_without_a_scheduler(tmp_path):
    """The task reads `triggering_asset_events` as Airflow builds them for an asset-triggered run."""
    from types import SimpleNamespace

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import DownstreamTasksSkipped
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    from llmops_operators.assets import CORPUS, RETRAIN
    from llmops_operators.triggers import retrain_trigger

    settings = load_settings(state_uri=str(tmp_path / "state"), processed_uri=str(tmp_path / "none"))
    with DAG(dag_id="t", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        check = retrain_trigger(settings=settings, cooldown_hours=6)
        check >> EmptyOperator(task_id="train")

    def run(run_id, events):
        ti = _TI()
        context = {
            "dag_run": SimpleNamespace(dag_id="llmops_finetune", run_id=run_id, run_type="asset_triggered", conf={},
                                       run_after=pendulum.datetime(2026, 11, 23, 12, tz="UTC")),
            "triggering_asset_events": TriggeringAssetEventsAccessor.build(events),
            "ti": ti,
            "task": check,
        }
        return check.execute(context), ti

    summary, _ = run("a1", [_event(RETRAIN, 0, {"report_uri": "/r/1.html", "p_value": 0.002}),
                           _event(RETRAIN, 60, {"report_uri": "/r/2.html", "p_value": 0.004})])
    assert (summary["trigger"], summary["decision"], summary["report_uri"]) == ("drift", "run", "/r/2.html")
    assert summary["time"] == "2026-11-23T09:00:00+00:00"  # the newest event's time, not the clock

    with pytest.raises(DownstreamTasksSkipped) as skipped:
        run("a2", [_event(RETRAIN, 120, {"report_uri": "/r/3.html", "p_value": 0.001})])
    assert skipped.value.tasks == ["train"]

    summary, _ = run("a3", [_event(CORPUS, 130, {"snapshot_id": "s-7"}), _event(RETRAIN, 125, {"p_value": 0.01})])
    assert (summary["trigger"], summary["decision"], summary["snapshot_id"]) == ("corpus", "run", "s-7")


def test_a_dataset_the_champion_already_learnt_skips_the_run(tmp_path, monkeypatch):
    """A dataset event whose version the champion was trained on (same training Params): skipped and
    recorded as "no new data since vN"; a new version runs. The registry is the boundary replaced here."""
    from types import SimpleNamespace

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import DownstreamTasksSkipped
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    from llmops import triggers as core_triggers
    from llmops.triggers import TAG_DATASET_HASH, TAG_TRAINING_PARAMS, training_params_sha256
    from llmops_operators import triggers as trigger_ops
    from llmops_operators.assets import DATASET
    from tests.llmops.evaluation.conftest import eval_rows, write_dataset

    root = tmp_path / "datasets"
    old = write_dataset(root, eval_rows(2, 0), dataset_hash="ds-1")
    new = write_dataset(root, eval_rows(2, 1), dataset_hash="ds-2")
    params = {"base_model": "/m", "lora_r": 8, "dataset": "latest"}
    recipe = training_params_sha256({"base_model": "/m", "lora_r": 8})
    champion = {"version": "3", "tags": {TAG_DATASET_HASH: "ds-1", TAG_TRAINING_PARAMS: recipe}}
    # The operator imports llmops.triggers inside execute (not at parse): patch the core module.
    monkeypatch.setattr(core_triggers, "champion_lineage", lambda settings: champion)
    settings = load_settings(state_uri=str(tmp_path / "state"), processed_uri=str(tmp_path / "none"),
                             dataset_root_uri=str(root))
    with DAG(dag_id="t2", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        check = trigger_ops.retrain_trigger(settings=settings, training_params=("base_model", "lora_r"))
        check >> EmptyOperator(task_id="train")

    def run(run_id, extra):
        context = {
            "dag_run": SimpleNamespace(dag_id="llmops_finetune", run_id=run_id, run_type="asset_triggered", conf={},
                                       run_after=pendulum.datetime(2026, 11, 23, 12, tz="UTC")),
            "triggering_asset_events": TriggeringAssetEventsAccessor.build([_event(DATASET, 0, extra)]),
            "ti": _TI(),
            "task": check,
            "params": params,
        }
        return check.execute(context), context["ti"]

    drift = {"trigger": "drift", "report_uri": "/r/9.html", "p_value": 0.001}
    with pytest.raises(DownstreamTasksSkipped):
        run("d1", {**drift, "dataset_hash": "ds-1", "dataset_uri": old})
    rows = [json.loads(x) for x in (tmp_path / "state" / "triggers.jsonl").read_text().splitlines()]
    assert (rows[-1]["trigger"], rows[-1]["decision"], rows[-1]["dataset_hash"]) == ("drift", "skipped", "ds-1")
    assert rows[-1]["reason"].startswith("drift trigger: no new data since v3")

    summary, _ = run("c1", {"trigger": "corpus", "snapshot_id": "s-2", "dataset_hash": "ds-2", "dataset_uri": new})
    assert (summary["trigger"], summary["decision"], summary["dataset_uri"]) == ("corpus", "run", new)
    assert summary["dataset_hash"] == "ds-2" and summary["champion_version"] == "3"
    assert summary["training_params_sha256"] == recipe


def test_dataset_dag_inputs_and_event():
    """The dataset DAG's adapters: the trigger kind and steer file from the events, the summary as extra."""
    from datetime import UTC, datetime

    from llmops.contracts import DatasetBuildSummary
    from llmops.triggers import TriggerEvent
    from llmops_operators.dataset import DatasetEventOperator, build_inputs

    drift = [TriggerEvent(datetime(2026, 11, 23, tzinfo=UTC), {"report_uri": "/r.html", "p_value": 0.001,
                                                                "steer_uri": "/reports/1/steer.json"})]
    assert build_inputs([], drift) == {"trigger": "drift", "steer": "/reports/1/steer.json",
                                       "drift": {"report_uri": "/r.html", "p_value": 0.001}}
    assert build_inputs([], drift, "/mine.json")["steer"] == "/mine.json"
    assert build_inputs([TriggerEvent(datetime(2026, 11, 23, tzinfo=UTC), {})], drift)["trigger"] == "corpus"
    assert build_inputs([], []) == {"trigger": "manual", "steer": "", "drift": None}

    from types import SimpleNamespace

    outlet_events = {"ds": SimpleNamespace(extra=None)}
    counts = dict.fromkeys(
        ("rows_train", "rows_eval_new", "rows_eval_retained", "items_train", "items_eval", "items_ambiguous",
         "items_moved_to_train", "items_quarantined", "items_generated", "items_reused", "teacher_calls",
         "chunks_total", "chunks_generated", "chunks_new", "chunks_deleted", "chunks_pending"), 0)
    summary = DatasetBuildSummary(
        dataset_uri="/d", dataset_root="/", dataset_hash="h", written=True, snapshot_id="s", generator="extractive",
        generator_version="1", generator_config_hash="g", rows_eval=3, parent_dataset_hash=None, steered_by=None,
        generation_seconds=0.5, seconds=1.0, **counts,
    ).to_json()
    op = DatasetEventOperator(task_id="publish", summary=summary,
                              inputs={"trigger": "drift", "steer": "", "drift": {"report_uri": "/r.html"}})
    op.outlets = ["ds"]
    extra = op.execute({"outlet_events": outlet_events})
    assert extra == {**summary, "trigger": "drift", "report_uri": "/r.html"}
    assert extra["dataset_hash"] == "h" and extra["rows_eval"] == 3
    assert outlet_events["ds"].extra == extra
    with pytest.raises(ValueError, match="dataset build summary is missing"):
        DatasetEventOperator(task_id="p2", summary=None, inputs={}).execute({"outlet_events": {}})
