"""`llmops bench drift`: calibration, power and speed of the drift test on real corpora.

Units are paragraphs of the Kubernetes documentation (`../shared/corpus/k8s-docs`): every document is
split into paragraphs (front matter, code blocks, shortcodes and tables removed), all paragraphs are
embedded once with the embedding model and cached under `<data_root>/cache/embeddings/`, keyed by a hash
of the model name and the texts, so later runs skip the embedding.

- false-alarm rate: both sides are disjoint random samples of k8s paragraphs (no drift by construction);
  the share of splits flagged as drift must stay near alpha;
- power: the current side mixes in a share (10%, 30%) of paragraphs from another corpus
  (`hf-hub-docs`), the share of splits flagged is the power;
- speed: seconds per test (both tests, all permutations) at 300 and 2,000 embeddings per side;
- the same splits through Evidently's default embedding drift method (`EmbeddingsDriftMetric` without a
  `drift_method`: `model(bootstrap=n_reference < 1000)`, a SGD domain classifier whose ROC AUC is
  compared with the 95th percentile of random-score AUCs), imported only here.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_SHORTCODE = re.compile(r"\{\{[<%].*?[%>]\}\}", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HEADING = re.compile(r"^#{1,6}\s.*$", re.M)
MIN_PARAGRAPH_CHARS = 80


def corpus_root() -> Path:
    """`../shared/corpus` next to the checkout (or next to the folder holding a git worktree of it);
    `LLMOPS_CORPUS_DIR` overrides."""
    import os

    from llmops.settings import PROJECT_ROOT

    if os.environ.get("LLMOPS_CORPUS_DIR"):
        return Path(os.environ["LLMOPS_CORPUS_DIR"])
    candidates = [PROJECT_ROOT.parent / "shared" / "corpus", PROJECT_ROOT.parent.parent / "shared" / "corpus"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def corpus_dir(name: str) -> Path:
    """One corpus folder under the shared corpus root."""
    return corpus_root() / name


def markdown_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of one Markdown document: blank-line separated blocks without front matter,
    code, shortcodes, HTML tags, headings and tables, whitespace collapsed, at least 80 characters."""
    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n"))
    text = _FENCE.sub("", text)
    text = _HTML_COMMENT.sub("", text)
    text = _SHORTCODE.sub("", text)
    text = _TAG.sub("", text)
    text = _HEADING.sub("", text)
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("|")]
        para = " ".join(" ".join(lines).split())
        if len(para) >= MIN_PARAGRAPH_CHARS:
            out.append(para)
    return out


def corpus_paragraphs(folder: Path) -> list[str]:
    """Distinct paragraphs of every `.md` file under a folder, in a stable order."""
    seen: set[str] = set()
    out: list[str] = []
    for path in sorted(Path(folder).rglob("*.md")):
        for para in markdown_paragraphs(path.read_text(encoding="utf-8", errors="replace")):
            if para not in seen:
                seen.add(para)
                out.append(para)
    return out


def cached_embeddings(texts: list[str], model_name: str, cache_root: str) -> np.ndarray:
    """Embeddings of `texts`, computed once and cached under `cache_root` by content hash."""
    import numpy as np

    from llmops import storage
    from llmops.embedding import embed

    digest = hashlib.sha256(model_name.encode())
    for t in texts:
        digest.update(b"\0" + t.encode())
    uri = storage.join(cache_root, f"{digest.hexdigest()[:32]}.npy")
    if storage.exists(uri):
        return np.load(io.BytesIO(storage.read_bytes(uri)))
    start = time.perf_counter()
    vectors = embed(texts, model_name)
    log.info("embedded %d texts in %.1f s; caching at %s", len(texts), time.perf_counter() - start, uri)
    buf = io.BytesIO()
    np.save(buf, vectors)
    storage.write_bytes(uri, buf.getvalue())
    return vectors


def corpus_embeddings(name: str, model_name: str, cache_root: str) -> np.ndarray:
    folder = corpus_dir(name)
    paragraphs = corpus_paragraphs(folder)
    if not paragraphs:
        from llmops.exceptions import InputDataError

        raise InputDataError(f"no paragraphs found under {folder}: the benchmark needs ../shared/corpus/{name}")
    return cached_embeddings(paragraphs, model_name, cache_root)
