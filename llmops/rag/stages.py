"""The functions Spark runs in its Python workers (through `mapInPandas`).

They are plain functions of pandas batches, importable from this module (Spark pickles them by
reference), with their parameters bound by `functools.partial` on the driver:

- `read_and_chunk`: read each document's bytes through `llmops.storage` (local or S3, boto3 inside the
  worker: no Hadoop S3 connector needed), hash, extract, chunk. A bad document becomes a quarantine row.
- `read_parts`: read a previous snapshot's Parquet parts (carried-over chunks and reusable embeddings).
- `finalize_partition`: per hash partition of chunk ids: remove exact duplicates, reuse or compute
  embeddings (the model is loaded once per Python worker), write this partition's Parquet part, and
  report what the driver must upsert into and delete from the vector store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from llmops import storage
from llmops.exceptions import DocumentRejected, StorageError

log = logging.getLogger(__name__)

# Kinds of rows coming out of `read_and_chunk`.
CHUNK, INDEXED, UNCHANGED, QUARANTINED, GONE = "chunk", "indexed", "unchanged", "quarantined", "gone"

STAGE_A_SCHEMA = (
    "kind string, source string, version string, size long, doc_hash string, reason string, n_chunks int, "
    "chunk_id string, chunk_index int, heading_path string, char_start int, char_end int, n_tokens int, "
    "text string"
)
ROWS_SCHEMA = (
    "chunk_id string, source string, doc_hash string, chunk_index int, heading_path string, char_start int, "
    "char_end int, n_tokens int, text string, embedding array<float>, origin string, carry boolean"
)
STATS_SCHEMA = (
    "part int, file string, source string, chunks long, duplicates long, embedded long, reused long, "
    "dim int, upsert_ids array<string>, delete_ids array<string>"
)
ROW_COLUMNS = [c.split()[0] for c in ROWS_SCHEMA.split(", ")]
STATS_COLUMNS = [c.split()[0] for c in STATS_SCHEMA.split(", ")]
META_COLUMNS = ["source", "doc_hash", "chunk_index", "heading_path", "char_start", "char_end"]


def _doc_row(kind: str, source: str, version: str, size: int, doc_hash: str = "", reason: str = "",
             n_chunks: int = 0) -> dict[str, Any]:
    return {
        "kind": kind, "source": source, "version": version, "size": size, "doc_hash": doc_hash,
        "reason": reason, "n_chunks": n_chunks, "chunk_id": "", "chunk_index": 0, "heading_path": "",
        "char_start": 0, "char_end": 0, "n_tokens": 0, "text": "",
    }


def process_document(item: dict[str, Any], chunking, max_bytes: int) -> list[dict[str, Any]]:
    """Rows for one document: its chunks plus one document row (indexed, unchanged or quarantined)."""
    from llmops.rag.chunking import chunk_document
    from llmops.rag.extract import extract
    from llmops.rag.plan import document_hash

    uri, version, size = item["uri"], item["version"], int(item["size"])
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return [_doc_row(GONE, uri, version, size)]
    except StorageError as exc:
        return [_doc_row(QUARANTINED, uri, version, size, reason=f"unreadable: {exc}")]
    size = len(data)
    doc_hash = document_hash(data)
    if item["old_hash"] == doc_hash and not item["force"] and not item["was_quarantined"]:
        return [_doc_row(UNCHANGED, uri, version, size, doc_hash)]
    if size > max_bytes:
        return [_doc_row(QUARANTINED, uri, version, size, doc_hash,
                         f"oversized: {size / 1048576:.1f} MB is more than the {max_bytes / 1048576:g} MB limit")]
    try:
        doc = extract(uri, data)
        chunks = chunk_document(doc, chunking)
        if not chunks:
            raise DocumentRejected("no text: nothing left to chunk after extraction")
    except DocumentRejected as exc:
        return [_doc_row(QUARANTINED, uri, version, size, doc_hash, exc.reason)]
    except Exception as exc:  # a parser bug on one document must not stop the corpus
        log.exception("extraction of %s failed", uri)
        return [_doc_row(QUARANTINED, uri, version, size, doc_hash, f"extraction failed: {type(exc).__name__}: {exc}")]
    rows = [
        {
            "kind": CHUNK, "source": uri, "version": version, "size": size, "doc_hash": doc_hash, "reason": "",
            "n_chunks": 0, "chunk_id": c.chunk_id, "chunk_index": c.index, "heading_path": c.heading_path,
            "char_start": c.char_start, "char_end": c.char_end, "n_tokens": c.n_tokens, "text": c.text,
        }
        for c in chunks
    ]
    rows.append(_doc_row(INDEXED, uri, version, size, doc_hash, n_chunks=len(chunks)))
    return rows


def read_and_chunk(batches: Iterator[pd.DataFrame], chunking, max_bytes: int) -> Iterator[pd.DataFrame]:
    """mapInPandas: documents (uri, version, size, old_hash, force, was_quarantined) -> STAGE_A rows."""
    for batch in batches:
        rows: list[dict[str, Any]] = []
        for item in batch.to_dict("records"):
            rows.extend(process_document(item, chunking, max_bytes))
            if len(rows) >= 5_000:
                yield pd.DataFrame(rows)
                rows = []
        if rows:
            yield pd.DataFrame(rows)


def read_parts(batches: Iterator[pd.DataFrame], carry: frozenset[str]) -> Iterator[pd.DataFrame]:
    """mapInPandas: previous snapshot part URIs -> ROWS (origin 'old'); text kept only for carried rows."""
    from llmops.rag.snapshot import read_part

    for batch in batches:
        for uri in batch["uri"]:
            frame = read_part(uri)
            frame["origin"] = "old"
            frame["carry"] = frame["source"].isin(carry)
            frame.loc[~frame["carry"], "text"] = ""
            yield frame[ROW_COLUMNS]


def embed_texts(texts: list[str], model_name: str, batch_size: int, threads: int, backend: str = "torch"):
    """Embeddings of texts with the worker's cached embedder (loaded once per Python worker).

    Every backend sorts the partition's texts by length before batching and restores their order, so a
    batch is padded to the longest of similar-length chunks, not of the whole partition."""
    from llmops.embedding import get_embedder

    return get_embedder(model_name, backend, threads).encode(texts, batch_size=batch_size)


def finalize_partition(
    batches: Iterator[pd.DataFrame],
    snap_uri: str,
    model_name: str,
    batch_size: int,
    threads: int,
    upsert_all: bool,
    lineage: dict[str, Any] | None = None,
    backend: str = "torch",
) -> Iterator[pd.DataFrame]:
    """mapInPandas over one hash partition of chunk ids (all copies of an id meet here): see module doc."""
    import numpy as np
    from pyspark import TaskContext

    from llmops.rag.snapshot import part_uri, write_part

    frames = [b for b in batches if len(b)]
    if not frames:
        return
    part = TaskContext.get().partitionId()
    df = pd.concat(frames, ignore_index=True)
    old = df[df["origin"] == "old"]
    old_meta = old.set_index("chunk_id")
    candidates = df[(df["origin"] == "new") | df["carry"]]
    # Exact duplicates share a chunk id: keep the copy from the first source (deterministic).
    candidates = candidates.sort_values(["chunk_id", "source", "chunk_index", "origin"], kind="stable")
    kept = candidates.drop_duplicates("chunk_id", keep="first").copy()
    per_source = candidates.groupby("source").size().rename("candidates").to_frame()
    per_source["chunks"] = kept.groupby("source").size()
    per_source = per_source.fillna(0).astype("int64")
    per_source["duplicates"] = per_source["candidates"] - per_source["chunks"]

    missing = kept["embedding"].isna().to_numpy()
    reused = 0
    if missing.any() and len(old_meta):
        reusable = missing & kept["chunk_id"].isin(old_meta.index).to_numpy()
        if reusable.any():
            kept.loc[reusable, "embedding"] = old_meta.loc[kept.loc[reusable, "chunk_id"], "embedding"].to_numpy()
            reused = int(reusable.sum())
            missing &= ~reusable
    embedded = int(missing.sum())
    if embedded:
        texts = kept.loc[missing, "text"].tolist()
        vectors = embed_texts(texts, model_name, batch_size, threads, backend)
        kept.loc[missing, "embedding"] = pd.Series(list(vectors), index=kept.index[missing], dtype=object)
    dim = len(kept["embedding"].iloc[0]) if len(kept) else 0

    upsert: list[str] | None
    if upsert_all:
        upsert = None  # every row of the part: no need to ship the ids to the driver
    else:
        new_rows = kept[kept["origin"] == "new"]
        known = new_rows["chunk_id"].isin(old_meta.index).to_numpy()
        same = np.zeros(len(new_rows), dtype=bool)
        if known.any():
            before = old_meta.loc[new_rows.loc[known, "chunk_id"], META_COLUMNS].reset_index(drop=True)
            after = new_rows.loc[known, META_COLUMNS].reset_index(drop=True)
            same[known] = (before == after).all(axis=1).to_numpy()
        upsert = new_rows.loc[~same, "chunk_id"].tolist()
    delete = sorted(set(old["chunk_id"]) - set(kept["chunk_id"]))

    file = ""
    if len(kept):
        file = part_uri(snap_uri, part)
        write_part(file, kept.sort_values(["source", "chunk_index"], kind="stable"), lineage)
    stats = [
        {"part": part, "file": file, "source": src, "chunks": int(r.chunks), "duplicates": int(r.duplicates),
         "embedded": 0, "reused": 0, "dim": dim, "upsert_ids": [], "delete_ids": []}
        for src, r in per_source.iterrows()
    ]
    stats.append({"part": part, "file": file, "source": "", "chunks": len(kept), "duplicates": 0,
                  "embedded": embedded, "reused": reused, "dim": dim, "upsert_ids": upsert, "delete_ids": delete})
    yield pd.DataFrame(stats, columns=STATS_COLUMNS)
