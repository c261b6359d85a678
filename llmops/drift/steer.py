"""From a drift verdict to the dataset builder's steer input.

The uncovered traffic groups of a drift report each get their nearest chunks from the corpus index (the
vector store a preprocessing output's manifest names); on drift their chunk ids are written, nearest
first and the largest group first, to `steer.json` beside the report:

    {"drift_event": "drift-20261123T120000Z", "chunk_ids": ["...", ...], "created": "2026-11-23T12:00:00+00:00"}

`llmops dataset build --steer <uri> --budget N` spends its generation budget on those chunks first and
records the drift event as `steered_by` (docs: the dataset contract, "Steering").
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from llmops import storage
from llmops.exceptions import InputDataError, StorageError, VectorStoreError

log = logging.getLogger(__name__)

STEER_JSON = "steer.json"
TEXT_PREVIEW = 300


def index_of(index_uri: str, embedding_model: str) -> dict[str, Any]:
    """The vector store of a preprocessing output, checked against the embedding model of the check."""
    from llmops.rag.snapshot import read_manifest

    manifest = read_manifest(index_uri)
    store = manifest.get("vector_store") or {}
    if not store.get("uri") or not store.get("collection"):
        raise InputDataError(f"{index_uri}: the manifest names no vector store")
    model = manifest.get("embedding_model")
    if model and model != embedding_model:
        raise InputDataError(
            f"{index_uri} is indexed with {model!r} but the drift check embeds with {embedding_model!r}: "
            "the distances would not compare; give --embedding-model or another --index"
        )
    return {"uri": store["uri"], "collection": store["collection"], "snapshot_id": manifest.get("snapshot_id")}


def nearest_chunks(store: dict[str, Any], queries: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
    """The `k` nearest chunks (cosine similarity, best first) of every query vector."""
    from llmops.rag.vector_store import VectorStore

    out = []
    with VectorStore(store["uri"], store["collection"]) as vs:
        for q in queries:
            hits = vs.search(q, k)
            out.append([
                {
                    "chunk_id": h.get("chunk_id"),
                    "doc": h.get("source"),
                    "score": round(float(h["score"]), 6),
                    "heading_path": h.get("heading_path", ""),
                    "text": str(h.get("text", ""))[:TEXT_PREVIEW],
                }
                for h in hits
            ])
    return out


def attach_chunks(groups: list[dict[str, Any]], centroids: np.ndarray, index_uri: str, embedding_model: str,
                  k: int) -> dict[str, Any]:
    """Give every group its nearest chunks (in place); returns what the report says about the index.
    A missing or unusable index is reported, never fatal: the verdict stands without steering."""
    info: dict[str, Any] = {"uri": index_uri, "error": None}
    if not groups:
        return info
    try:
        store = index_of(index_uri, embedding_model)
        info["snapshot_id"] = store["snapshot_id"]
        for group, chunks in zip(groups, nearest_chunks(store, centroids, k), strict=True):
            group["nearest_chunks"] = chunks
    except (InputDataError, StorageError, VectorStoreError, FileNotFoundError) as exc:
        info["error"] = str(exc)
        log.warning("uncovered groups get no corpus chunks: %s", exc)
    return info


def steer_chunk_ids(groups: list[dict[str, Any]]) -> list[str]:
    """Chunk ids of the groups' nearest chunks, largest group first, nearest first, without repeats."""
    seen: dict[str, None] = {}
    for group in groups:
        for chunk in group.get("nearest_chunks") or []:
            if chunk.get("chunk_id"):
                seen.setdefault(str(chunk["chunk_id"]), None)
    return list(seen)


def write_steer(report_uri: str, drift_event: str, chunk_ids: list[str], created: str) -> str:
    """Write the steer file beside the report and return its URI."""
    uri = storage.join(report_uri, STEER_JSON)
    body = {"drift_event": drift_event, "chunk_ids": chunk_ids, "created": created}
    storage.write_text(uri, json.dumps(body, indent=2) + "\n")
    return uri
