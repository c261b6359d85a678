"""The drift DAG: parses cheaply, and `dag.test()` emits RETRAIN on drift and nothing otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import task_states

pytestmark = pytest.mark.slow


def _traffic(tmp_path: Path, kind: str, n: int = 60) -> Path:
    out = tmp_path / f"traffic-{kind}"
    subprocess.run(
        [sys.executable, "-m", "llmops", "sample-traffic", "--out", str(out), "--kind", kind,
         "--n", str(n), "--seed", "3", "--end", "2026-11-23T12:00:00Z"],
        check=True, capture_output=True,
    )
    return out


def _retrain_events(run_id: str) -> list:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).where(AssetEvent.source_dag_id == "llmops_drift", AssetEvent.source_run_id == run_id)
        ).all()
        return [(e.asset.name, dict(e.extra or {})) for e in rows]


def test_dag_shape(dagbag):
    dag = dagbag.get_dag("llmops_drift")
    assert dag is not None, dagbag.import_errors
    assert set(dag.task_ids) == {"detect_drift", "emit_retrain"}
    assert dag.max_active_runs == 1
    emit = dag.get_task("emit_retrain")
    assert [o.name for o in emit.outlets] == ["llmops_retrain"]
    for name in ("traffic_uri", "reference_uri", "window_hours", "alpha", "min_samples", "min_effect"):
        assert name in dag.params


def test_drift_emits_retrain_and_no_drift_emits_nothing(run_dag, sample_dir, tmp_path):
    # The same reference as the CLI test: its embeddings are cached under the session's data root.
    reference = sample_dir / "finetune.jsonl"
    conf = {
        "reference_uri": str(reference),
        "window_hours": 0,
        "min_samples": 20,
        "permutations": 199,
        "log_mlflow": False,
    }
    dr = run_dag("llmops_drift", conf={**conf, "traffic_uri": str(_traffic(tmp_path, "out-of-domain"))})
    states = task_states(dr)
    assert states == {"detect_drift": "success", "emit_retrain": "success"}, states
    events = _retrain_events(dr.run_id)
    assert len(events) == 1
    name, extra = events[0]
    assert name == "llmops_retrain"
    assert extra["p_value"] <= 0.05
    assert set(extra) >= {"report_uri", "p_value_mmd", "p_value_classifier", "steer_uri", "drift_event", "excess"}
    assert extra["excess"] >= 0.05
    report = json.loads(Path(extra["report_json_uri"]).read_text())
    assert report["drift"] is True
    assert report["until"], "the DAG passes the run's time as the window end"

    dr = run_dag("llmops_drift", conf={**conf, "traffic_uri": str(_traffic(tmp_path, "in-domain"))})
    states = task_states(dr)
    assert states == {"detect_drift": "success", "emit_retrain": "skipped"}, states
    assert _retrain_events(dr.run_id) == []
