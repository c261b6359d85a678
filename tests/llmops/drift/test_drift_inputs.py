"""Reading both sides of a drift check: traffic records, fine-tuning rows, preprocessing snapshots."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from llmops.drift import inputs
from llmops.exceptions import InputDataError


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_traffic_records_prompts_chat_rows_and_bad_lines(tmp_path):
    _jsonl(tmp_path / "t" / "a.jsonl", [
        {"timestamp": "2026-11-23T10:00:00Z", "prompt": "p1", "completion": "c1", "model": "m"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"},
                      {"role": "assistant", "content": "a1"}]},
        "{not json",
        {"prompt": "   "},
        {"completion": "no prompt"},
    ])
    with gzip.open(tmp_path / "t" / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"prompt": "p2", "timestamp": 1795000000}) + "\n")
    (tmp_path / "t" / "notes.txt").write_text("ignored")
    side = inputs.read_side(str(tmp_path / "t"))
    assert sorted(side.texts) == ["p1", "p2", "u1"]
    assert (side.files, side.records, side.skipped) == (2, 5, 3)
    both = inputs.read_side(str(tmp_path / "t"), which="both")
    assert "p1\nc1" in both.texts and "u1\na1" in both.texts


def test_window_keeps_recent_records_and_untimed_ones(tmp_path):
    _jsonl(tmp_path / "t.jsonl", [
        {"timestamp": "2026-11-23T09:59:59Z", "prompt": "old"},
        {"timestamp": "2026-11-23T10:30:00+00:00", "prompt": "recent"},
        {"timestamp": "2026-11-23T11:00:00", "prompt": "edge"},
        {"timestamp": "2026-11-23T11:00:01Z", "prompt": "future"},
        {"prompt": "untimed"},
    ])
    until = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    side = inputs.read_side(str(tmp_path / "t.jsonl"), window_hours=1, until=until)
    assert sorted(side.texts) == ["edge", "recent", "untimed"]
    assert side.outside_window == 2


def test_parquet_traffic_and_seeded_cap(tmp_path):
    import pandas as pd

    pd.DataFrame({"prompt": [f"q{i}" for i in range(50)], "model": "m"}).to_parquet(tmp_path / "t.parquet")
    a = inputs.read_side(str(tmp_path / "t.parquet"), max_samples=10, seed=1)
    b = inputs.read_side(str(tmp_path / "t.parquet"), max_samples=10, seed=1)
    assert a.texts == b.texts and len(a.texts) == 10 and a.sampled_from == 50


def test_preprocessing_output_snapshot_with_stored_embeddings(tmp_path):
    import numpy as np
    import pandas as pd

    out = tmp_path / "processed"
    snap = out / "snapshots" / "s1"
    snap.mkdir(parents=True)
    emb = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    pd.DataFrame({
        "chunk_id": ["a", "b", "c"], "source": "doc.md", "text": ["one", "two", "three"],
        "embedding": [list(e) for e in emb],
    }).to_parquet(snap / "part-0.parquet")
    (out / "manifest.json").write_text(json.dumps(
        {"schema_version": 1, "snapshot_id": "s1", "snapshot_uri": str(snap), "embedding_model": "tiny-model",
         "chunks_total": 3}
    ))
    side = inputs.read_side(str(out))
    assert side.kind == "snapshot" and side.snapshot_id == "s1" and side.texts == ["one", "two", "three"]
    assert side.documents == ["doc.md"] * 3 and side.chunk_ids == ["a", "b", "c"]
    assert np.array_equal(inputs.side_embeddings(side, "tiny-model"), emb)


def test_missing_reference_is_an_error_missing_traffic_is_no_traffic(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        inputs.read_side(str(tmp_path / "nope"))
    side = inputs.read_side(str(tmp_path / "nope"), missing_ok=True)
    assert side.texts == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no preprocessing manifest"):
        inputs.read_side(str(tmp_path / "empty"))


@pytest.mark.s3
def test_traffic_on_s3(s3_bucket):
    from llmops import storage

    storage.write_text(f"s3://{s3_bucket}/traffic/a.jsonl", json.dumps({"prompt": "hello"}) + "\n")
    assert inputs.read_side(f"s3://{s3_bucket}/traffic").texts == ["hello"]


def test_rows_name_their_document_for_the_coverage_test(tmp_path):
    _jsonl(tmp_path / "rows.jsonl", [
        {"prompt": "q1", "doc_id": "pods.md"},
        {"prompt": "q2", "doc_id": "pods.md"},
        {"prompt": "q3", "source": "svc.md"},
        {"prompt": "q4"},
    ])
    side = inputs.read_side(str(tmp_path / "rows.jsonl"))
    assert side.documents[:3] == ["pods.md", "pods.md", "svc.md"]
    # A row without a document is a document of its own.
    assert side.documents[3] not in side.documents[:3]
    _jsonl(tmp_path / "plain.jsonl", [{"prompt": "q1"}, {"prompt": "q2"}])
    assert inputs.read_side(str(tmp_path / "plain.jsonl")).documents is None


def test_read_records_one_file_of_each_format(tmp_path):
    """The public reader drift and the canary's replay share: records plus the count of skipped lines."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = _jsonl(tmp_path / "a.jsonl", [{"prompt": "p1"}, "not json", "[1, 2]", {"prompt": "p2"}])
    assert inputs.read_records(str(plain)) == ([{"prompt": "p1"}, {"prompt": "p2"}], 2)
    packed = tmp_path / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"prompt": "p3"}\n'))
    assert inputs.read_records(str(packed)) == ([{"prompt": "p3"}], 0)
    table = tmp_path / "c.parquet"
    pq.write_table(pa.table({"prompt": ["p4"], "extra": [1]}), table)
    assert inputs.read_records(str(table)) == ([{"prompt": "p4"}], 0)
    with pytest.raises(InputDataError, match="cannot read traffic records .*missing.jsonl"):
        inputs.read_records(str(tmp_path / "missing.jsonl"))
