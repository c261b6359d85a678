"""The preprocessing job, for real and small: Spark local[2], the packaged MiniLM model, Milvus Lite.

A corpus of the sample documents, three Kubernetes pages and one bad document of each kind is indexed,
searched, re-run (a no-op), then edited (changed, deleted and added documents). A second corpus goes
through S3 (moto) both ways.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmops import storage
from llmops.rag.config import PreprocessConfig
from llmops.rag.job import run_preprocess
from llmops.rag.search import search
from llmops.rag.snapshot import read_manifest, read_snapshot
from llmops.rag.vector_store import VectorStore
from tests.rag_helpers import BAD_REASONS, write_corpus

pytestmark = pytest.mark.slow

MAX_MB = 0.25
CHUNK_SIZE = 128


def config(input_uri: str, output_uri: str, **kw) -> PreprocessConfig:
    from llmops.settings import load_settings

    return PreprocessConfig.from_settings(
        load_settings(), input_uri=input_uri, output_uri=output_uri, chunk_size=CHUNK_SIZE, chunk_overlap=16,
        max_document_mb=MAX_MB, **kw,
    )


def milvus_ids(output: Path) -> set[str]:
    manifest = read_manifest(str(output))
    with VectorStore(manifest["vector_store"]["uri"], manifest["vector_store"]["collection"]) as vs:
        vs.load()
        rows = vs.client.query(vs.collection, filter="", output_fields=["chunk_id"], limit=16384)
    return {r["chunk_id"] for r in rows}


@pytest.fixture(scope="module")
def first(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("rag")
    corpus = write_corpus(root / "corpus", bad_mb=MAX_MB)
    # An exact copy under another path: all its chunks are duplicates of the original's (which sorts first).
    (corpus / "zz-copy").mkdir()
    (corpus / "zz-copy" / "glossary.txt").write_bytes((corpus / "glossary.txt").read_bytes())
    out = root / "out"
    summary = run_preprocess(config(str(corpus), str(out)))
    return corpus, out, summary


@pytest.mark.requires_shared("corpus")  # before the Spark session starts
def test_first_run_indexes_good_documents_and_quarantines_bad_ones(first):
    corpus, out, summary = first
    good = 28 + 3 + 1
    assert summary["documents_seen"] == good + len(BAD_REASONS)
    assert summary["documents_indexed"] == good and summary["documents_new"] == good
    reasons = {Path(q["path"]).relative_to(corpus).as_posix(): q["reason"] for q in summary["documents_quarantined"]}
    assert set(reasons) == set(BAD_REASONS)
    for rel, expected in BAD_REASONS.items():
        assert expected in reasons[rel], (rel, reasons[rel])
    report = json.loads((out / "quarantine.json").read_text())
    assert {Path(q["path"]).relative_to(corpus).as_posix(): q["reason"] for q in report} == reasons

    manifest = read_manifest(str(out))
    assert manifest["snapshot_id"] == summary["snapshot_id"]
    assert manifest["snapshot_uri"] == str(out / "snapshots" / summary["snapshot_id"])
    assert manifest["embedding_model"] == "all-MiniLM-L6-v2" and manifest["embedding_dim"] == 384
    assert manifest["chunking"] == {"chunk_size": CHUNK_SIZE, "chunk_overlap": 16, "tokenizer": "all-MiniLM-L6-v2"}
    assert manifest["vector_store"] == {"uri": str(out / "milvus.db"), "collection": "llmops_chunks"}
    assert len(manifest["documents"]) == good
    assert all({"hash", "chunks"} <= set(d) for d in manifest["documents"].values())

    frame = read_snapshot(str(out))
    assert {"chunk_id", "source", "text", "embedding", "heading_path", "char_start", "char_end"} <= set(frame.columns)
    assert len(frame) == summary["chunks_total"] == summary["chunks_written"] == sum(
        d["chunks"] for d in manifest["documents"].values())
    assert frame["chunk_id"].is_unique and frame["text"].is_unique, "exact duplicates are removed"
    copy = manifest["documents"][str(corpus / "zz-copy" / "glossary.txt")]
    original = manifest["documents"][str(corpus / "glossary.txt")]
    assert copy["chunks"] == 0 and copy["duplicates"] == original["chunks"] > 1
    assert summary["duplicates_removed"] == copy["duplicates"]
    vectors = np.stack(frame["embedding"].to_numpy())
    assert vectors.shape == (len(frame), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert (frame["n_tokens"] <= CHUNK_SIZE).all()
    assert milvus_ids(out) == set(frame["chunk_id"])


@pytest.mark.requires_shared("corpus")  # before the Spark session starts
def test_search_finds_the_expected_sources(first):
    _, out, _ = first
    hits = search(str(out), "What is the default port of the Larkspur Harbor service?", k=3)
    assert hits[0]["source"].endswith("components/harbor.md")
    assert hits[0]["score"] >= hits[-1]["score"]
    assert "9465" in hits[0]["text"] or "port" in hits[0]["text"]
    hits = search(str(out), "How do I create a static Pod that the kubelet manages?", k=3)
    assert any(h["source"].endswith("static-pods.md") for h in hits)


@pytest.mark.requires_shared("corpus")  # before the Spark session starts
def test_rerun_is_a_noop_and_edits_replace_only_their_chunks(first):
    corpus, out, summary1 = first
    rerun = run_preprocess(config(str(corpus), str(out)))
    assert rerun["snapshot_id"] == summary1["snapshot_id"] and rerun["snapshot_changed"] is False
    assert rerun["chunks_written"] == 0 and rerun["documents_unchanged"] == summary1["documents_indexed"]
    assert len(list((out / "snapshots").iterdir())) == 1
    # A lost index (dropped collection) is reloaded from the current snapshot, without Spark.
    with VectorStore(str(out / "milvus.db"), "llmops_chunks") as vs:
        vs.drop()
    resync = run_preprocess(config(str(corpus), str(out)))
    assert resync["snapshot_changed"] is False and resync["chunks_written"] == summary1["chunks_total"]

    before = read_snapshot(str(out))
    old_glossary = set(before.loc[before["source"] == str(corpus / "glossary.txt"), "chunk_id"])
    old_relay = set(before.loc[before["source"].str.endswith("components/relay.md"), "chunk_id"])
    # A touched but identical file is still unchanged (content hash).
    (corpus / "faq.html").write_bytes((corpus / "faq.html").read_bytes())
    # Changed, deleted and new documents.
    glossary = corpus / "glossary.txt"
    glossary.write_text(glossary.read_text() + "\nZephyr: the Larkspur component that hums at 7123 hertz.\n")
    (corpus / "components" / "relay.md").unlink()
    (corpus / "new.md").write_text("# Larkspur Zephyr\n\nZephyr listens on port 7123 and speaks Gopher.\n")

    third = run_preprocess(config(str(corpus), str(out)))
    assert third["snapshot_changed"] and third["snapshot_id"] != summary1["snapshot_id"]
    assert third["documents_new"] == 1 and third["documents_changed"] == 1 and third["documents_deleted"] == 1
    assert third["documents_unchanged"] == summary1["documents_indexed"] - 2
    after = read_snapshot(str(out))
    new_glossary = set(after.loc[after["source"] == str(glossary), "chunk_id"])
    assert new_glossary and new_glossary != old_glossary
    assert not after["source"].str.endswith("components/relay.md").any()
    # The copy of the old glossary: the chunks the changed original no longer has are now the copy's.
    copy_rows = after[after["source"] == str(corpus / "zz-copy" / "glossary.txt")]
    assert set(copy_rows["chunk_id"]) == old_glossary - new_glossary
    # Only text never seen before was embedded (the copy's chunks reuse the old embeddings).
    assert third["chunks_embedded"] == len(new_glossary - old_glossary) + 1
    assert third["chunks_reused"] >= len(copy_rows)
    assert third["chunks_written"] == len(new_glossary) + 1 + len(copy_rows)
    ids = milvus_ids(out)
    assert ids == set(after["chunk_id"])
    assert not old_relay & ids
    # Carried-over rows are identical, embeddings included.
    keep = before[~before["source"].str.endswith(("/glossary.txt", "components/relay.md"))].set_index("chunk_id")
    again = after.set_index("chunk_id").loc[keep.index]
    assert (again["text"] == keep["text"]).all()
    assert np.array_equal(np.stack(again["embedding"].to_numpy()), np.stack(keep["embedding"].to_numpy()))
    # Both snapshots stay on disk, each complete.
    assert len(list((out / "snapshots").iterdir())) == 2
    hits = search(str(out), "Which Larkspur component listens on port 7123 and speaks Gopher?", k=2)
    assert hits[0]["source"].endswith("new.md")


@pytest.mark.s3
def test_s3_input_and_output(spark, s3_bucket, tmp_path):
    local = write_corpus(tmp_path / "corpus", k8s=[])
    prefix = f"s3://{s3_bucket}/landing"
    for path in sorted(local.rglob("*"))[:12]:
        if path.is_file():
            storage.write_bytes(storage.join(prefix, path.relative_to(local).as_posix()), path.read_bytes())
    out = f"s3://{s3_bucket}/processed"
    store = str(tmp_path / "milvus.db")
    summary = run_preprocess(config(prefix, out, vector_store_uri=store))
    assert summary["documents_indexed"] == summary["documents_seen"] > 0
    assert summary["output_uri"] == out
    manifest = read_manifest(out)
    assert manifest["snapshot_uri"].startswith(f"{out}/snapshots/")
    assert all(src.startswith(f"{prefix}/") for src in manifest["documents"])
    parts = storage.list_files(manifest["snapshot_uri"])
    assert any(p.uri.endswith(".parquet") for p in parts)
    frame = read_snapshot(out, columns=["chunk_id", "text", "embedding"])
    assert len(frame) == summary["chunks_total"] > 0
    assert storage.exists(storage.join(out, "quarantine.json"))
    again = run_preprocess(config(prefix, out, vector_store_uri=store))
    assert again["chunks_written"] == 0 and again["snapshot_changed"] is False
