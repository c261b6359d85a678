"""Fixtures for the dataset builder: preprocessing outputs of the sample corpus, written without Spark.

The boundary is the preprocessing output's layout (`llmops.rag.snapshot`: manifest + Parquet snapshot).
Documents are extracted and chunked by the very functions Spark runs (`llmops.rag.stages.process_document`);
only the embeddings are a stand-in (hashed bag of words, L2-normalised), which the dataset builder uses
for nothing but choosing RAFT distractors. `tests/spark_jobs` checks the real job writes this layout.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmops.dev.sample_data import corpus_documents
from llmops.rag import snapshot as snap
from llmops.rag.chunking import ChunkingConfig
from llmops.rag.stages import process_document

CHUNKING = ChunkingConfig(chunk_size=200, chunk_overlap=32, tokenizer="all-MiniLM-L6-v2")
DIM = 64


def _embed(text: str) -> np.ndarray:
    v = np.zeros(DIM, dtype="float32")
    for word in text.lower().split():
        v[int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % DIM] += 1
    return v / (np.linalg.norm(v) or 1.0)


def write_corpus(folder: Path, release: int = 1, docs: dict[str, bytes] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in (docs if docs is not None else corpus_documents(release)).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def write_processed(corpus: Path, out: Path) -> str:
    """A preprocessing output of every document under `corpus` (replacing any previous one); its URI."""
    rows, documents = [], {}
    for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
        got = process_document({"uri": str(path), "version": "1", "size": 0, "old_hash": None, "force": False,
                                "was_quarantined": False}, CHUNKING, 10 * 1024 * 1024)
        chunks = [r for r in got if r["kind"] == "chunk"]
        if chunks:
            documents[str(path)] = {"hash": chunks[0]["doc_hash"], "chunks": len(chunks)}
        rows += chunks
    frame = pd.DataFrame(rows).drop_duplicates("chunk_id")
    frame["embedding"] = [_embed(t) for t in frame["text"]]
    snap_id = snap.snapshot_id({k: v["hash"] for k, v in documents.items()}, "stand-in", CHUNKING.as_dict())
    snap_uri = snap.snapshot_uri(str(out), snap_id)
    if not os.path.exists(snap_uri):
        snap.write_part(snap.part_uri(snap_uri, 0), frame)
    snap.write_json(os.path.join(str(out), snap.MANIFEST), {
        "schema_version": snap.SCHEMA_VERSION, "snapshot_id": snap_id, "snapshot_uri": snap_uri,
        "embedding_model": "stand-in", "chunking": CHUNKING.as_dict(), "documents": documents,
        "chunks_total": len(frame),
    })
    return str(out)


@pytest.fixture
def release1(tmp_path) -> str:
    corpus = write_corpus(tmp_path / "corpus")
    return write_processed(corpus, tmp_path / "processed")
