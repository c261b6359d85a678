"""`llmops bench rag`: the whole preprocessing job against the plain single-process encoding ceiling.

- `chunks_per_s`: chunks in the snapshot / wall time of `run_preprocess` into a fresh output, Spark
  session start-up and stop, extraction, chunking, embedding (with `embedding_backend`; an ONNX export
  not yet in the model cache is made once and counted), Parquet and Milvus writes included.
- `ceiling_chunks_per_s`: the same chunk texts encoded in this one process by sentence-transformers
  (torch) with its defaults (torch's default threads, batch size 32), model load and one warm-up batch
  excluded.
- `ratio`: the first over the second, measured in the same run on the same machine.
- `backend_ceiling_chunks_per_s`: the same texts encoded in this process by the job's backend (same
  threads and batch size), so the Spark overhead stays visible: `backend_ratio` is the job over it.
- `quality`: the job's embeddings against the torch ones of the same chunks (cosine per chunk: 1st
  percentile, minimum, mean) and hit@5 of a query set (each sampled section heading is a query; it hits
  when one of its 5 nearest chunks lies under that heading), searched exactly over the torch index with
  torch query embeddings and over the job's index with the backend's. `passed` applies `QUALITY_GUARD`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.rag.config import PreprocessConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

QUALITY_GUARD = {"cosine_p1": 0.99, "cosine_min": 0.95, "hit_at_5_max_query_change": 1}
"""A backend passes when its chunk embeddings' cosine to torch has p1 >= 0.99 and min >= 0.95, and its
hit@5 count is within one query of torch's on the same query set."""

MAX_QUERIES = 300


def query_set(frame: pd.DataFrame, limit: int = MAX_QUERIES) -> list[tuple[str, np.ndarray]]:
    """(query, mask of the chunks that answer it): the last heading of chunks' heading paths, of at least
    two words, distinct, the `limit` first by a hash of their text (deterministic, corpus-independent)."""
    import numpy as np

    last = frame["heading_path"].fillna("").astype(str).str.split(" > ").str[-1].str.strip()
    headings = sorted({h for h in last if len(h.split()) >= 2},
                      key=lambda h: hashlib.sha256(h.encode()).hexdigest())[:limit]
    values = last.to_numpy()
    return [(h, np.asarray(values == h)) for h in headings]


def hits_at_5(index: np.ndarray, queries: np.ndarray, relevant: list[np.ndarray], k: int = 5) -> np.ndarray:
    """Per query, whether one of its k nearest chunks (exact cosine: a dot product of unit vectors) is relevant."""
    import numpy as np

    if not len(queries) or not len(index):
        return np.zeros(len(queries), dtype=bool)
    scores = queries @ index.T
    k = min(k, index.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.array([bool(rel[idx].any()) for rel, idx in zip(relevant, top, strict=True)])


def quality(job_vectors: np.ndarray, torch_vectors: np.ndarray, frame: pd.DataFrame, model_name: str,
            backend: str) -> dict[str, Any]:
    """The quality guard's figures (see the module doc) and whether the backend passes."""
    import numpy as np

    from llmops.embedding import embed

    cos = np.sum(job_vectors * torch_vectors, axis=1) if len(job_vectors) else np.ones(1)
    queries = query_set(frame)
    texts = [q for q, _ in queries]
    relevant = [m for _, m in queries]
    hits_torch = hits_at_5(torch_vectors, embed(texts, model_name, backend="torch"), relevant)
    hits_backend = hits_at_5(job_vectors, embed(texts, model_name, backend=backend), relevant)
    n = max(1, len(texts))
    changed = int(abs(int(hits_backend.sum()) - int(hits_torch.sum())))
    result = {
        "cosine_p1": round(float(np.percentile(cos, 1)), 5),
        "cosine_min": round(float(cos.min()), 5),
        "cosine_mean": round(float(cos.mean()), 6),
        "queries": len(texts),
        "hit_at_5": round(float(hits_backend.sum()) / n, 4),
        "hit_at_5_torch": round(float(hits_torch.sum()) / n, 4),
        "hit_at_5_query_change": changed,
        "queries_answered_differently": int((hits_backend != hits_torch).sum()),
        "guard": QUALITY_GUARD,
    }
    failures = []
    if result["cosine_p1"] < QUALITY_GUARD["cosine_p1"]:
        failures.append(f"cosine p1 {result['cosine_p1']} < {QUALITY_GUARD['cosine_p1']}")
    if result["cosine_min"] < QUALITY_GUARD["cosine_min"]:
        failures.append(f"cosine min {result['cosine_min']} < {QUALITY_GUARD['cosine_min']}")
    if changed > QUALITY_GUARD["hit_at_5_max_query_change"]:
        failures.append(f"hit@5 changed by {changed} queries of {len(texts)} (more than "
                        f"{QUALITY_GUARD['hit_at_5_max_query_change']})")
    result["passed"] = not failures
    result["failures"] = failures
    return result


def _timed_encode(encode, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    encode(texts[:batch_size])  # warm-up
    started = time.perf_counter()
    vectors = encode(texts)
    return vectors, time.perf_counter() - started


def bench_rag(cfg: PreprocessConfig, ceiling_batch_size: int = 32) -> dict[str, Any]:
    import numpy as np

    from llmops.rag.job import run_preprocess
    from llmops.rag.snapshot import read_snapshot

    with tempfile.TemporaryDirectory(prefix="llmops-bench-rag-") as tmp:
        out = str(Path(tmp) / "out")
        cfg = cfg.model_copy(update={"output_uri": out, "vector_store_uri": str(Path(out) / "milvus.db")})
        started = time.perf_counter()
        summary = run_preprocess(cfg)
        job_s = time.perf_counter() - started
        frame = read_snapshot(out, columns=["chunk_id", "heading_path", "text", "embedding"])
    texts = frame["text"].tolist()
    job_vectors = (np.stack(frame["embedding"].to_numpy()).astype(np.float32) if len(frame)
                   else np.zeros((0, 0), np.float32))

    import torch
    from sentence_transformers import SentenceTransformer

    from llmops.embedding import get_embedder, resolve_model_path

    model = SentenceTransformer(resolve_model_path(cfg.embedding_model), device="cpu")
    threads = torch.get_num_threads()

    def torch_encode(batch: list[str]) -> np.ndarray:
        return model.encode(batch, batch_size=ceiling_batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    torch_vectors, ceiling_s = _timed_encode(torch_encode, texts, ceiling_batch_size)
    if cfg.embedding_backend == "torch":
        backend_s = ceiling_s
    else:
        embedder = get_embedder(cfg.embedding_model, cfg.embedding_backend, threads)
        _, backend_s = _timed_encode(lambda b: embedder.encode(b, batch_size=ceiling_batch_size), texts,
                                     ceiling_batch_size)
    guard = quality(job_vectors, np.asarray(torch_vectors, dtype=np.float32), frame, cfg.embedding_model,
                    cfg.embedding_backend)

    chunks = len(texts)
    job_rate = chunks / job_s if job_s else 0.0
    ceiling_rate = chunks / ceiling_s if ceiling_s else 0.0
    backend_rate = chunks / backend_s if backend_s else 0.0
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
        "embedding_backend": cfg.embedding_backend,
        "job_s": round(job_s, 3),
        "ceiling_s": round(ceiling_s, 3),
        "chunks_per_s": round(job_rate, 2),
        "ceiling_chunks_per_s": round(ceiling_rate, 2),
        "ratio": round(job_rate / ceiling_rate, 3) if ceiling_rate else 0.0,
        "backend_ceiling_s": round(backend_s, 3),
        "backend_ceiling_chunks_per_s": round(backend_rate, 2),
        "backend_ratio": round(job_rate / backend_rate, 3) if backend_rate else 0.0,
        "quality": guard,
        "spark_parallelism": summary.get("spark_parallelism"),
        "torch_threads_per_task": summary.get("torch_threads_per_task"),
        "job_timings": summary.get("timings"),
        "ceiling_torch_threads": threads,
        "ceiling_batch_size": ceiling_batch_size,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
