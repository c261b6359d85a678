"""`llmops bench rag`: the whole preprocessing job against the plain single-process encoding ceiling.

- `chunks_per_s`: chunks in the snapshot / wall time of `run_preprocess` into a fresh output, Spark
  session start-up and stop, extraction, chunking, embedding, Parquet and Milvus writes included.
- `ceiling_chunks_per_s`: the same chunk texts encoded in this one process by sentence-transformers
  with its defaults (torch's default threads, batch size 32), model load and one warm-up batch excluded.
- `ratio`: the first over the second, measured in the same run on the same machine.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from llmops.rag.config import PreprocessConfig


def bench_rag(cfg: PreprocessConfig, ceiling_batch_size: int = 32) -> dict[str, Any]:
    from llmops.rag.job import run_preprocess
    from llmops.rag.snapshot import read_snapshot

    with tempfile.TemporaryDirectory(prefix="llmops-bench-rag-") as tmp:
        out = str(Path(tmp) / "out")
        cfg = cfg.model_copy(update={"output_uri": out, "vector_store_uri": str(Path(out) / "milvus.db")})
        started = time.perf_counter()
        summary = run_preprocess(cfg)
        job_s = time.perf_counter() - started
        texts = read_snapshot(out, columns=["text"])["text"].tolist()

    import torch
    from sentence_transformers import SentenceTransformer

    from llmops.embedding import resolve_model_path

    model = SentenceTransformer(resolve_model_path(cfg.embedding_model), device="cpu")
    model.encode(texts[:ceiling_batch_size], batch_size=ceiling_batch_size, normalize_embeddings=True,
                 show_progress_bar=False)
    started = time.perf_counter()
    model.encode(texts, batch_size=ceiling_batch_size, normalize_embeddings=True, show_progress_bar=False)
    ceiling_s = time.perf_counter() - started

    chunks = len(texts)
    job_rate = chunks / job_s if job_s else 0.0
    ceiling_rate = chunks / ceiling_s if ceiling_s else 0.0
    return {
        "input": cfg.input_uri,
        "limit": cfg.limit,
        "documents": summary["documents_seen"],
        "documents_indexed": summary["documents_indexed"],
        "documents_quarantined": summary["documents_quarantined_count"],
        "chunks": chunks,
        "chunk_size": cfg.chunk_size,
        "chunk_overlap": cfg.chunk_overlap,
        "embedding_model": cfg.embedding_model,
        "job_s": round(job_s, 3),
        "ceiling_s": round(ceiling_s, 3),
        "chunks_per_s": round(job_rate, 2),
        "ceiling_chunks_per_s": round(ceiling_rate, 2),
        "ratio": round(job_rate / ceiling_rate, 3) if ceiling_rate else 0.0,
        "spark_parallelism": summary.get("spark_parallelism"),
        "torch_threads_per_task": summary.get("torch_threads_per_task"),
        "job_timings": summary.get("timings"),
        "ceiling_torch_threads": torch.get_num_threads(),
        "ceiling_batch_size": ceiling_batch_size,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
