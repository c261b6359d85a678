"""Helpers shared by the RAG preprocessing tests (tests/llmops/rag, tests/spark_jobs, tests/operators, tests/dags)."""

from __future__ import annotations

import shutil
from pathlib import Path

from llmops.dev.sample_data import corpus_documents, minimal_pdf
from tests.conftest import require_shared, shared_path

CORPUS = shared_path("corpus")
"""`../shared/corpus` (real documents); tests reading it are marked `requires_shared("corpus")`."""

K8S_DOCS = [
    "concepts/workloads/pods/static-pods.md",
    "concepts/workloads/pods/ephemeral-containers.md",
    "concepts/workloads/pods/pod-hostname.md",
]


def bad_documents(max_document_mb: float) -> dict[str, bytes]:
    """One document per kind of bad input (relative path -> bytes)."""
    return {
        "bad/empty.txt": b"",
        "bad/binary.txt": bytes(range(256)) * 8,
        "bad/undecodable.md": "café crème brûlée".encode("latin-1"),
        "bad/corrupt.pdf": b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n",
        "bad/truncated.pdf": minimal_pdf(["Larkspur truncated handbook"] * 20)[:400],
        "bad/oversized.txt": b"Larkspur " * int(max_document_mb * 1024 * 1024 / 9 + 1000),
        "bad/front-matter-only.md": b"---\ntitle: Only metadata\nweight: 3\n---\n",
    }


BAD_REASONS = {
    "bad/empty.txt": "empty",
    "bad/binary.txt": "binary",
    "bad/undecodable.md": "undecodable",
    "bad/corrupt.pdf": "corrupt PDF",
    "bad/truncated.pdf": "truncated PDF",
    "bad/oversized.txt": "oversized",
    "bad/front-matter-only.md": "front matter only",
}


def write_corpus(root: Path, k8s: list[str] = K8S_DOCS, bad_mb: float | None = None) -> Path:
    """The project's sample corpus, a few Kubernetes pages and (optionally) the bad documents, under root.
    Kubernetes pages come from ../shared/corpus: the calling test skips when that folder is absent."""
    corpus = require_shared("corpus") if k8s else CORPUS
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in corpus_documents().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel in k8s:
        target = root / "k8s" / Path(rel).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / "k8s-docs" / rel, target)
    if bad_mb is not None:
        for rel, data in bad_documents(bad_mb).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
    return root
