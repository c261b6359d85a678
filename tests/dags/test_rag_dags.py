"""dag.test() of the landing sensor and the preprocessing DAG in local mode, asset events included."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.dev.sample_data import corpus_documents
from tests.conftest import task_states

pytestmark = pytest.mark.slow


def asset_events(run_id: str, task_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).where(AssetEvent.source_run_id == run_id, AssetEvent.source_task_id == task_id)
        ).all()
        return [dict(r.extra) for r in rows]


def test_sensor_then_preprocess_then_nothing_new(run_dag):
    from llmops.rag.snapshot import read_manifest
    from llmops.settings import load_settings

    settings = load_settings()
    landing = Path(settings.landing)
    for rel, data in corpus_documents().items():
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_bytes(data)

    sensed = run_dag("llmops_data_sensor")
    assert task_states(sensed) == {"wait_for_documents": "success", "detect_changes": "success"}
    (landing_event,) = asset_events(sensed.run_id, "detect_changes")
    assert landing_event["documents"] == len(corpus_documents()) and landing_event["landing_uri"] == str(landing)

    run = run_dag("llmops_preprocess")
    assert task_states(run) == {"preprocess": "success", "publish_corpus": "success"}, task_states(run)
    manifest = read_manifest(settings.processed)
    (corpus_event,) = asset_events(run.run_id, "publish_corpus")
    assert corpus_event["snapshot_id"] == manifest["snapshot_id"]
    assert corpus_event["output_uri"] == settings.processed
    assert corpus_event["chunks_total"] == manifest["chunks_total"] > 0
    assert corpus_event["documents_indexed"] == len(corpus_documents())

    again = run_dag("llmops_data_sensor")
    assert task_states(again) == {"wait_for_documents": "success", "detect_changes": "skipped"}
    assert asset_events(again.run_id, "detect_changes") == []


def test_preprocess_form_overrides_settings_for_one_run(dagbag):
    dag = dagbag.get_dag("llmops_preprocess")
    params = {name: dag.params.get_param(name) for name in dag.params}
    assert set(params) == {"input_uri", "chunk_size", "chunk_overlap", "embedding_model", "embedding_backend"}
    from llmops.settings import load_settings

    s = load_settings()
    assert params["input_uri"].value == s.landing and params["chunk_size"].value == s.rag.chunk_size
    task = dag.get_task("preprocess")
    assert "{{ params.chunk_size }}" in task.arguments and "{{ params.input_uri }}" in task.arguments
    assert params["embedding_backend"].value == s.rag.embedding_backend
    from llmops.embedding import BACKENDS

    assert params["embedding_backend"].schema["enum"] == list(BACKENDS)  # the DAG file cannot import it
    assert "{{ params.embedding_backend }}" in task.arguments
    assert dag.get_task("publish_corpus").outlets[0].name == "llmops_corpus"
