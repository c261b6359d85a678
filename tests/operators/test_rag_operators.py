"""The RAG data-side adapters: landing sensor per location, change detection and corpus events."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from llmops.contracts import PreprocessSummary
from llmops.settings import load_settings


def test_landing_sensor_per_location(tmp_path):
    from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

    from llmops_operators.rag import LandingFolderSensor, landing_sensor

    s3 = landing_sensor(task_id="wait", settings=load_settings(environ={}, landing_uri="s3://docs/landing/",
                                                             aws_conn_id="aws_docs"))
    assert isinstance(s3, S3KeySensor)
    assert s3.deferrable is True and s3.wildcard_match is True and s3.soft_fail is True
    assert s3.bucket_key == "s3://docs/landing/*" and s3.aws_conn_id == "aws_docs"

    folder = landing_sensor(task_id="wait", settings=load_settings(environ={}, landing_uri=str(tmp_path)))
    assert isinstance(folder, LandingFolderSensor) and folder.mode == "reschedule"
    assert folder.poke({}) is False
    (tmp_path / ".DS_Store").write_bytes(b"x")
    assert folder.poke({}) is False, "hidden files are not documents"
    (tmp_path / "a.md").write_text("# A\n\ntext\n")
    assert folder.poke({}) is True


class _Events(dict):
    def __missing__(self, key):
        self[key] = type("Event", (), {"extra": None})()
        return self[key]


def test_landing_changes_skip_when_nothing_is_new_and_emit_counts_otherwise(tmp_path):
    from llmops_operators.assets import LANDING
    from llmops_operators.rag import LandingChangesOperator

    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()
    op = LandingChangesOperator(task_id="detect", landing_uri=str(landing), output_uri=str(out), outlets=[LANDING])
    with pytest.raises(AirflowSkipException):
        op.execute({"outlet_events": _Events()})
    (landing / "a.md").write_text("# A\n\nalpha\n")
    (landing / "b.txt").write_text("beta\n")
    events = _Events()
    result = op.execute({"outlet_events": events})
    assert events[LANDING].extra == {"documents": 2, "new": 2, "changed": 0, "deleted": 0,
                                     "landing_uri": str(landing)}
    assert sorted(result["uris"]["new"]) == [str(landing / "a.md"), str(landing / "b.txt")]


def test_corpus_event_carries_the_snapshot_and_skips_an_unchanged_one():
    from llmops_operators.assets import CORPUS
    from llmops_operators.rag import CorpusEventOperator

    summary = PreprocessSummary(
        snapshot_id="abc", snapshot_uri="/o/snapshots/abc", snapshot_changed=True, previous_snapshot_id=None,
        output_uri="/o", input_uri="/in", manifest_uri="/o/manifest.json", quarantine_uri="/o/quarantine.json",
        vector_store={"uri": "/o/milvus.db", "collection": "c"}, embedding_model="m", embedding_dim=4,
        chunking={"chunk_size": 64}, documents_seen=2, documents_indexed=2, documents_new=2, documents_changed=0,
        documents_unchanged=0, documents_deleted=0, documents_quarantined=[], documents_quarantined_count=0,
        chunks_total=7, chunks_written=3, chunks_embedded=7, chunks_reused=0, chunks_deleted=0, duplicates_removed=0,
        full_rebuild=True, duration_s=1.0,
    ).to_json()
    events = _Events()
    CorpusEventOperator(task_id="p", summary=summary, outlets=[CORPUS]).execute({"outlet_events": events})
    # The summary's names, not a renamed copy: `chunks_total` in the XCom and on the event.
    assert events[CORPUS].extra == {"snapshot_id": "abc", "output_uri": "/o", "chunks_total": 7, "chunks_written": 3,
                                    "documents_indexed": 2, "embedding_model": "m"}
    with pytest.raises(AirflowSkipException, match="unchanged"):
        CorpusEventOperator(task_id="p", summary={**summary, "snapshot_changed": False}).execute({})
    with pytest.raises(ValueError, match="malformed"):
        CorpusEventOperator(task_id="p", summary=None).execute({})
