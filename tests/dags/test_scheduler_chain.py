"""The real Airflow scheduler (not dag.test()): a landed document starts the sensor on its schedule, the
sensor's asset starts preprocessing, the corpus asset starts the dataset build, and the dataset asset starts
fine-tuning.

`airflow standalone` runs in a temporary home with its own data root; the landing sensor is scheduled every
minute so the scheduler itself starts it. The test stops once the fine-tune run has recorded its corpus
trigger (through the dataset event) and the dataset version: no base model is built here, so the run stops at `resolve_inputs` instead of training (training is
covered by the DAG tests)."""

from __future__ import annotations

import pytest

from llmops.airflow_local import LocalAirflow
from tests.conftest import _free_port
from tests.waiting import wait_for


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_landed_document_chains_sensor_preprocessing_dataset_and_finetuning(tmp_path):
    from llmops.dev.sample_data import write_sample_data

    data = tmp_path / "data"
    landing = data / "landing"
    write_sample_data(tmp_path / "sample")
    # One landed document is enough to start the chain.
    first = sorted(p for p in (tmp_path / "sample" / "corpus").rglob("*") if p.is_file())[0]
    landing.mkdir(parents=True)
    (landing / first.name).write_bytes(first.read_bytes())

    env = {
        "LLMOPS_DATA_ROOT": str(data),
        "LLMOPS_LANDING_SCHEDULE": "* * * * *",
        "LLMOPS_LANDING_POKE_INTERVAL_S": "5",
        "LLMOPS_DRIFT_SCHEDULE": "none",
        "LLMOPS_RETRAIN_SCHEDULE": "none",
        "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "120",
    }
    airflow = LocalAirflow(home=tmp_path / "airflow", port=_free_port(), extra_env=env)
    with airflow:
        airflow.wait_for_dags(["llmops_data_sensor", "llmops_preprocess", "llmops_dataset", "llmops_finetune"])

        # Nobody triggers anything: the scheduler starts the sensor on its cron.
        sensor = airflow.wait_for_run("llmops_data_sensor", after=0, timeout=200)
        assert sensor["run_type"] == "scheduled", sensor
        assert sensor["state"] == "success", airflow.task_states("llmops_data_sensor", sensor["dag_run_id"])
        assert airflow.task_states("llmops_data_sensor", sensor["dag_run_id"])["detect_changes"] == "success"
        assert airflow.asset_events("llmops_landing"), "the sensor emitted no llmops_landing event"

        # Its asset event starts preprocessing (Spark local[*], Milvus Lite)...
        pre = airflow.wait_for_run("llmops_preprocess", after=0, timeout=400)
        assert pre["run_type"] == "asset_triggered", pre
        assert pre["state"] == "success", airflow.task_states("llmops_preprocess", pre["dag_run_id"])
        summary = airflow.xcom("llmops_preprocess", pre["dag_run_id"], "preprocess")
        assert summary["documents_indexed"] == 1 and summary["chunks_total"] > 0, summary
        events = airflow.asset_events("llmops_corpus")
        assert events and events[-1]["extra"].get("snapshot_id") == summary["snapshot_id"], events

        # ... its corpus event starts the dataset build ...
        ds_run = airflow.wait_for_run("llmops_dataset", after=0, timeout=300)
        assert ds_run["run_type"] == "asset_triggered", ds_run
        assert ds_run["state"] == "success", airflow.task_states("llmops_dataset", ds_run["dag_run_id"])
        built = airflow.xcom("llmops_dataset", ds_run["dag_run_id"], "build")
        assert built["snapshot_id"] == summary["snapshot_id"] and built["rows_eval"] > 0, built
        events = airflow.asset_events("llmops_dataset")
        assert events and events[-1]["extra"]["dataset_hash"] == built["dataset_hash"], events
        assert events[-1]["extra"]["trigger"] == "corpus", events

        # ... and the dataset event starts fine-tuning, which records what started it.
        def finetune_trigger():
            runs = airflow.runs("llmops_finetune")
            if not runs:
                return None
            return runs[0], airflow.xcom("llmops_finetune", runs[0]["dag_run_id"], "check_trigger")

        run, trigger = wait_for("the fine-tune run's trigger check",
                             lambda: (r := finetune_trigger()) and r[1] and r, timeout=200)
        assert run["run_type"] == "asset_triggered", run
        assert trigger["trigger"] == "corpus" and trigger["decision"] == "run", trigger
        assert trigger["snapshot_id"] == summary["snapshot_id"], trigger
        assert (trigger["dataset_hash"], trigger["dataset_uri"]) == (built["dataset_hash"], built["dataset_uri"]), trigger
