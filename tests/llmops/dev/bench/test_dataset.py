"""`llmops bench dataset`'s bookkeeping, with the Spark job replaced by the Spark-free writer of conftest
(the real job runs in `llmops bench dataset` itself and in tests/spark_jobs)."""

from __future__ import annotations

from pathlib import Path

from llmops.dev.bench import dataset as bench
from tests.llmops.dataset.conftest import write_processed


def test_bench_reports_full_and_incremental_builds(tmp_path, monkeypatch):
    def preprocess(corpus: Path, out: Path) -> dict:
        write_processed(corpus, out)
        return {"documents_indexed": len([p for p in corpus.rglob("*") if p.is_file()]), "chunks_total": 0,
                "chunks_written": None}

    monkeypatch.setattr(bench, "_preprocess", preprocess)
    got = bench.bench_dataset(str(tmp_path), repeat=2)
    full, one = got["full_build"], got["one_changed_document"]
    assert full["runs"] == 2 and full["same_hash_every_run"] and full["items"] > 300 and full["items_per_s"] > 0
    assert one["incremental_chunks_generated"] == 1 < one["full_chunks_generated"]
    assert one["incremental_items_reused"] > one["incremental_items_generated"] > 0
    assert one["same_rows_as_full"] is True
