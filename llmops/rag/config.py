"""Typed configuration of one preprocessing run (CLI flags and DAG Params over the settings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops import storage
from llmops.docstrings import field_docstrings
from llmops.rag.chunking import ChunkingConfig
from llmops.settings import Settings, default_vector_store
from llmops.validation import config_error


@field_docstrings
class PreprocessConfig(BaseModel):
    """One run of the preprocessing job. Built from the settings plus per-run overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    input_uri: str
    """Folder or `s3://` prefix holding the documents (recursively)."""

    output_uri: str
    """Folder or `s3://` prefix of the output: manifest, quarantine report, Parquet snapshots."""

    chunk_size: int = Field(default=200, ge=16, le=8192)
    """Most tokens per chunk; at most the embedding model's max sequence length minus 2."""

    chunk_overlap: int = Field(default=32, ge=0, le=4096)
    """Tokens repeated at the start of the next chunk of the same section."""

    embedding_model: str = "all-MiniLM-L6-v2"
    """Sentence-transformers model (hub id, local folder, or the packaged all-MiniLM-L6-v2)."""

    embedding_backend: Literal["torch", "onnx", "onnx-int8", "onnx-int8-fused", "openvino"] = "openvino"
    """How the chunks are embedded (`llmops.embedding`); recorded in the manifest, and searches use it."""

    vector_store_uri: str | None = None
    """Milvus Lite file or Milvus server URL. Default: `<output>/milvus.db` for a local output."""

    collection: str = Field(default="llmops_chunks", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    """Milvus collection of the chunks."""

    max_document_mb: float = Field(default=50.0, gt=0)
    """Larger documents are quarantined without being read."""

    master: str | None = None
    """Spark master; default `local[*]`, or the cluster's when launched by spark-submit."""

    limit: int | None = Field(default=None, ge=1)
    """Process only this many documents, chosen deterministically (by a hash of their path)."""

    embedding_batch_size: int = Field(default=64, ge=1, le=4096)
    """Texts per forward pass of the embedding model inside a Spark task."""

    rows_per_partition: int = Field(default=20_000, ge=100)
    """Upper bound on chunks per embedding task (more chunks means more partitions)."""

    allow_empty: bool = False
    """Accept an input without documents (it empties the index); off so a wrong URI cannot wipe it."""

    @model_validator(mode="after")
    def _check(self) -> PreprocessConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self

    @property
    def chunking(self) -> ChunkingConfig:
        return ChunkingConfig(self.chunk_size, self.chunk_overlap, self.embedding_model)

    @property
    def vector_store(self) -> str:
        return self.vector_store_uri or default_vector_store(self.output_uri)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PreprocessConfig:
        """Settings' defaults (landing, processed, chunking, model, store) with non-None overrides on top."""
        values: dict[str, Any] = {
            "input_uri": settings.landing,
            "output_uri": settings.processed,
            "chunk_size": settings.rag.chunk_size,
            "chunk_overlap": settings.rag.chunk_overlap,
            "embedding_model": settings.rag.embedding_model,
            "embedding_backend": settings.rag.embedding_backend,
            "vector_store_uri": settings.rag.vector_store_uri,
            "collection": settings.rag.vector_collection,
            "max_document_mb": settings.rag.max_document_mb,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("input_uri", "output_uri"):
            values[key] = absolute_uri(values[key], key)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise config_error(
                "preprocessing config", exc, show=lambda value: json.dumps(value, default=str)
            ) from None


def absolute_uri(uri: str, what: str) -> str:
    """Local paths become absolute (document sources are stable whatever the working directory)."""
    storage.check_uri(uri, what)
    if storage.is_s3(uri):
        return uri.rstrip("/")
    return str(Path(storage.local_path(uri)).resolve())
