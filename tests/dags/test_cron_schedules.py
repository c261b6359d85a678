"""The real Airflow (scheduler + DAG processor): a DAG unpaused at creation starts no past cron time.

What `make airflow` does after `make demo`: the DAGs are registered unpaused with their default cron
schedules. Airflow's own cron timetable would start the weekly retrain for last Sunday 03:00 at once;
the project's timetable (registered by its plugin, read back by the scheduler) waits for the next one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from llmops.airflow_local import LocalAirflow
from tests.conftest import _free_port


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_unpaused_cron_dags_wait_for_their_next_time(tmp_path):
    env = {
        "LLMOPS_DATA_ROOT": str(tmp_path / "data"),
        "LLMOPS_RETRAIN_SCHEDULE": "0 3 * * 0",
        "LLMOPS_DRIFT_SCHEDULE": "@hourly",
        "LLMOPS_LANDING_SCHEDULE": "none",
    }
    started = datetime.now(UTC)
    with LocalAirflow(home=tmp_path / "airflow", port=_free_port(), extra_env=env) as airflow:
        dags = ["llmops_finetune", "llmops_drift"]
        airflow.wait_for_dags(dags)
        for dag_id in dags:
            dag = airflow.get(f"/api/v2/dags/{dag_id}")
            assert dag["is_paused"] is False, dag
            next_run = datetime.fromisoformat(dag["next_dagrun_run_after"])
            # The next cron time to come (a past one would be at most a week/an hour before `started`).
            assert next_run > started - timedelta(minutes=5), (dag_id, next_run)
        weekly = datetime.fromisoformat(airflow.get("/api/v2/dags/llmops_finetune")["next_dagrun_run_after"])
        assert weekly.weekday() == 6 and (weekly.hour, weekly.minute) == (3, 0)
        assert weekly - started <= timedelta(days=7)
        time.sleep(15)  # give the scheduler the chance to (wrongly) start a run
        assert [r for r in airflow.runs("llmops_finetune") if r["run_type"] == "scheduled"] == []
