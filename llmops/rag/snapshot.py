"""The preprocessing output: immutable Parquet snapshots, the manifest, the quarantine report.

Layout under an output folder or `s3://` prefix (other steps rely on these names):

    manifest.json                     the current snapshot: id, model and backend, chunking, vector store, documents
    quarantine.json                   documents that could not be indexed, each with its reason
    snapshots/<snapshot_id>/          one complete, immutable snapshot
        part-00000.parquet ...        chunks with their embeddings (`SNAPSHOT_COLUMNS`)
        _snapshot.json                the snapshot's own manifest (written after its parts)

`manifest.json` is written last: it is the commit point. A snapshot id is derived from the indexed
documents' content hashes and the config (schema version, embedding model and backend, chunking), so the same
input under the same config always has the same id and a re-run writes nothing new.

Readers use `read_manifest(output_uri)` and `read_snapshot(output_uri, columns=...)`.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING, Any

from llmops import storage
from llmops.exceptions import InputDataError, StorageError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = 1
"""Bumped when the Parquet columns or the manifest change incompatibly; a new version re-processes all."""

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.json"
SNAPSHOTS = "snapshots"
SNAPSHOT_META = "_snapshot.json"

SNAPSHOT_COLUMNS = {
    "chunk_id": "hex id from the chunk text and the chunking config (primary key in the vector store)",
    "source": "URI of the document the chunk comes from",
    "doc_hash": "sha256 of the document bytes",
    "chunk_index": "position of the chunk in its document",
    "heading_path": "headings above the chunk, joined by ' > '",
    "char_start": "offset of the first character in the document's normalized text",
    "char_end": "offset after the last character in the document's normalized text",
    "n_tokens": "tokens of the embedding tokenizer (special tokens excluded)",
    "text": "the chunk text",
    "embedding": "L2-normalized float32 vector of the embedding model",
}


def arrow_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("source", pa.string()),
            ("doc_hash", pa.string()),
            ("chunk_index", pa.int32()),
            ("heading_path", pa.string()),
            ("char_start", pa.int32()),
            ("char_end", pa.int32()),
            ("n_tokens", pa.int32()),
            ("text", pa.string()),
            ("embedding", pa.list_(pa.float32())),
        ],
        metadata={b"llmops.schema_version": str(SCHEMA_VERSION).encode()},
    )


def snapshot_id(documents: dict[str, str], embedding_model: str, chunking: dict,
                embedding_backend: str = "torch") -> str:
    """Deterministic id of a snapshot: its documents' (source, content hash) pairs plus the config."""
    payload = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "embedding_model": embedding_model,
            "embedding_backend": embedding_backend,
            "chunking": chunking,
            "documents": sorted(documents.items()),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def snapshot_uri(output_uri: str, snap_id: str) -> str:
    return storage.join(output_uri, SNAPSHOTS, snap_id)


def part_uri(snap_uri: str, part: int) -> str:
    return storage.join(snap_uri, f"part-{part:05d}.parquet")


def write_part(uri: str, frame: pd.DataFrame, lineage: dict[str, Any] | None = None) -> int:
    """Write one Parquet part (atomically on local disks) and return its row count.

    `lineage` (snapshot id, model, chunking) goes into the file's metadata: every part describes itself.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    if lineage:
        schema = schema.with_metadata(
            {**schema.metadata, **{f"llmops.{k}".encode(): json.dumps(v).encode() for k, v in lineage.items()}}
        )
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())
    return table.num_rows


def read_part(uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=columns).to_pandas()


def write_json(uri: str, obj: Any) -> None:
    storage.write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(uri: str) -> Any:
    return json.loads(storage.read_text(uri))


def read_manifest(output_uri: str) -> dict:
    """The manifest of a preprocessing output (`InputDataError` when there is none yet)."""
    storage.check_uri(output_uri, "preprocessing output")
    uri = storage.join(output_uri, MANIFEST)
    try:
        manifest = read_json(uri)
    except FileNotFoundError:
        raise InputDataError(
            f"no manifest at {uri}: {output_uri} is not a preprocessing output yet "
            "(run `llmops preprocess --output ...` first)"
        ) from None
    except json.JSONDecodeError as exc:
        raise InputDataError(f"manifest {uri} is not valid JSON ({exc.msg})") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise InputDataError(
            f"manifest {uri} has schema_version {manifest.get('schema_version')!r}; this version of "
            f"llmops reads {SCHEMA_VERSION}: re-run `llmops preprocess` to rebuild the snapshot"
        )
    return manifest


def embedding_backend(manifest: dict) -> str:
    """The backend that embedded a manifest's chunks (`torch` for outputs written before backends existed)."""
    return manifest.get("embedding_backend") or "torch"


def read_manifest_or_none(output_uri: str) -> dict | None:
    """The manifest, or None when the output is new or was written by another schema version."""
    try:
        return read_manifest(output_uri)
    except InputDataError:
        return None


def snapshot_parts(snap_uri: str) -> list[str]:
    """URIs of a snapshot's Parquet parts, sorted."""
    return [f.uri for f in storage.list_files(snap_uri) if f.uri.endswith(".parquet")]


def read_snapshot(output_uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The current snapshot's chunks as one DataFrame (all `SNAPSHOT_COLUMNS`, or the ones asked for).

    Embeddings come back as one float32 numpy array per row; stack them with `numpy.stack`.
    """
    import pandas as pd

    manifest = read_manifest(output_uri)
    unknown = sorted(set(columns or []) - set(SNAPSHOT_COLUMNS))
    if unknown:
        raise InputDataError(f"unknown snapshot columns {unknown}: the snapshot has {sorted(SNAPSHOT_COLUMNS)}")
    parts = snapshot_parts(manifest["snapshot_uri"])
    if not parts and manifest.get("chunks_total", 0):
        raise StorageError(
            f"snapshot {manifest['snapshot_uri']} has no Parquet parts but the manifest lists "
            f"{manifest['chunks_total']} chunks: the snapshot was deleted; re-run `llmops preprocess`"
        )
    if not parts:
        schema = arrow_schema()
        empty = schema.empty_table().to_pandas()
        return empty[columns] if columns else empty
    return pd.concat([read_part(p, columns) for p in parts], ignore_index=True)
