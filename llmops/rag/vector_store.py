"""The chunk index in Milvus: Milvus Lite (a `.db` file) locally, a Milvus server by URI in production.

Rows are keyed by `chunk_id` and written with upsert, so a retried job never duplicates a chunk. The
metric is COSINE on L2-normalized vectors (the score is the cosine similarity, higher is closer).
Milvus Lite is single-process: only the Spark driver writes, after the executors are done, and every
client is closed before the job ends so `llmops search` can open the file afterwards.

A server token, when needed, comes from `MILVUS_TOKEN` (`user:password` or an API key) in the
environment: in pods, a secret reference, never a literal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmops import storage
from llmops.exceptions import ConfigError, VectorStoreError

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 65_535
MAX_SOURCE = 4_096
BATCH = 1_000


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


def check_vector_store_uri(uri: str) -> str:
    """A Milvus Lite `.db` path (local) or a server URL; anything else fails here, naming the value."""
    if not uri:
        raise ConfigError("vector store URI is empty: give a Milvus Lite file (…/milvus.db) or http://host:19530")
    if is_server(uri):
        return uri
    if storage.scheme(uri) not in ("", "file"):
        raise ConfigError(
            f"vector store {uri!r}: Milvus Lite needs a local file path; for a shared index use a Milvus "
            "server (http://host:19530)"
        )
    path = storage.local_path(uri)
    if path.suffix != ".db":
        raise ConfigError(f"vector store {uri!r}: a Milvus Lite file name must end in .db (e.g. milvus.db)")
    return str(path.resolve())


class VectorStore:
    """A Milvus collection of chunks. Use as a context manager so the client is always closed."""

    def __init__(self, uri: str, collection: str) -> None:
        self.uri = check_vector_store_uri(uri)
        self.collection = collection
        self._client = None

    def __enter__(self) -> VectorStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self):
        if self._client is not None:
            return self._client
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise VectorStoreError("pymilvus is not installed: pip install 'airflow-llmops[spark]'") from None
        _quiet_milvus_logs()
        if not is_server(self.uri):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MilvusClient(uri=self.uri, token=os.environ.get("MILVUS_TOKEN", ""))
        except Exception as exc:  # pymilvus raises MilvusException, grpc errors, RuntimeError (Lite)
            raise VectorStoreError(f"cannot open Milvus at {self.uri}: {exc}") from exc
        return self._client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    @property
    def client(self):
        return self.open()

    def _call(self, action: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VectorStoreError:
            raise
        except Exception as exc:
            raise VectorStoreError(f"Milvus {action} on {self.uri} collection {self.collection}: {exc}") from exc

    def exists(self) -> bool:
        return bool(self._call("has_collection", self.client.has_collection, self.collection))

    def dimension(self) -> int | None:
        if not self.exists():
            return None
        desc = self._call("describe_collection", self.client.describe_collection, self.collection)
        for f in desc.get("fields", []):
            if f.get("name") == "embedding":
                return int(f.get("params", {}).get("dim"))
        return None

    def load(self) -> None:
        """Load the collection into memory (Milvus serves search and query only on loaded collections)."""
        self._call("load_collection", self.client.load_collection, self.collection)

    def count(self) -> int:
        if not self.exists():
            return 0
        self.load()
        res = self._call("query", self.client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    def drop(self) -> None:
        if self.exists():
            self._call("drop_collection", self.client.drop_collection, self.collection)

    def ensure(self, dim: int) -> bool:
        """Create the collection for `dim`-dimensional vectors if missing; True when it was created."""
        from pymilvus import DataType

        existing = self.dimension()
        if existing is not None:
            if existing != dim:
                raise VectorStoreError(
                    f"collection {self.collection} at {self.uri} holds {existing}-dimensional vectors but the "
                    f"embedding model gives {dim}: use another collection or let a full rebuild drop it"
                )
            return False
        client = self.client
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE)
        schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("heading_path", DataType.VARCHAR, max_length=MAX_SOURCE)
        schema.add_field("chunk_index", DataType.INT32)
        schema.add_field("char_start", DataType.INT32)
        schema.add_field("char_end", DataType.INT32)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        index = client.prepare_index_params()
        index.add_index("embedding", index_type="AUTOINDEX", metric_type="COSINE")
        self._call("create_collection", client.create_collection, self.collection, schema=schema, index_params=index)
        return True

    def upsert(self, rows: Iterable[dict[str, Any]]) -> int:
        """Upsert rows (snapshot columns) in batches; returns how many were written."""
        batch: list[dict[str, Any]] = []
        total = 0
        for row in rows:
            batch.append(_milvus_row(row))
            if len(batch) >= BATCH:
                self._call("upsert", self.client.upsert, self.collection, batch)
                total += len(batch)
                batch = []
        if batch:
            self._call("upsert", self.client.upsert, self.collection, batch)
            total += len(batch)
        return total

    def delete(self, ids: Sequence[str]) -> int:
        ids = list(ids)
        for i in range(0, len(ids), BATCH):
            self._call("delete", self.client.delete, self.collection, ids=ids[i:i + BATCH])
        return len(ids)

    def search(self, vector: Sequence[float], k: int) -> list[dict[str, Any]]:
        if not self.exists():
            raise VectorStoreError(
                f"collection {self.collection} does not exist at {self.uri}: run `llmops preprocess` first"
            )
        self.load()
        res = self._call(
            "search",
            self.client.search,
            self.collection,
            data=[list(map(float, vector))],
            limit=k,
            anns_field="embedding",
            search_params={"metric_type": "COSINE"},
            output_fields=["source", "heading_path", "text", "char_start", "char_end", "chunk_index"],
        )
        hits = []
        for hit in res[0] if res else []:
            entity = hit.get("entity", {})
            hits.append({"chunk_id": hit.get("chunk_id", hit.get("id")), "score": float(hit["distance"]), **entity})
        return hits


class _DropUnimplemented(logging.Filter):
    """Milvus Lite answers pymilvus' AllocTimestamp probe with "Method not implemented" and grpc logs
    it as an error with a traceback; the client falls back by itself, so the record is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in str(record.exc_info[1] if record.exc_info else record.getMessage())


def _quiet_milvus_logs() -> None:
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    logging.getLogger("milvus_lite").setLevel(logging.WARNING)
    grpc_log = logging.getLogger("grpc._server")
    if not any(isinstance(f, _DropUnimplemented) for f in grpc_log.filters):
        grpc_log.addFilter(_DropUnimplemented())


def _clip_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def _milvus_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "chunk_id": str(row["chunk_id"]),
        "embedding": np.asarray(row["embedding"], dtype=np.float32),
        "source": _clip_utf8(str(row["source"]), MAX_SOURCE),
        "doc_hash": str(row["doc_hash"]),
        "heading_path": _clip_utf8(str(row.get("heading_path") or ""), MAX_SOURCE),
        "chunk_index": int(row["chunk_index"]),
        "char_start": int(row["char_start"]),
        "char_end": int(row["char_end"]),
        # The full text stays in the Parquet snapshot; Milvus caps VARCHAR at 64 KiB.
        "text": _clip_utf8(str(row["text"]), MAX_TEXT_BYTES),
    }
