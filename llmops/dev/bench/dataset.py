"""`llmops bench dataset`: how fast the dataset step is, from scratch and incrementally.

On the project's sample corpus, preprocessed for real (`llmops preprocess`'s job: Spark local, the
packaged embedding model, Milvus Lite):

1. full builds into fresh dataset roots (`repeat` times): items/s and seconds;
   With `--corpus DIR`, the documents under DIR are indexed too (a larger corpus);
2. one document changed (a component page gains a paragraph), preprocessed again (incrementally), then
   the dataset rebuilt in the same root (only the changed document's chunks generate) and, for
   comparison, built from scratch into a fresh root.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from llmops.exceptions import ConfigError

CHANGED_DOC = "components/harbor.md"
ADDED = (
    "\n## Tuning\n\nHarbor keeps 64 segments open per partition by default. Raise the limit with the "
    "`harbor.open_segments` key when a node serves more than 2000 partitions.\n"
)


def _preprocess(corpus: Path, out: Path) -> dict[str, Any]:
    from llmops.rag.config import PreprocessConfig
    from llmops.rag.job import run_preprocess
    from llmops.settings import load_settings

    cfg = PreprocessConfig.from_settings(load_settings(), input_uri=str(corpus), output_uri=str(out))
    return run_preprocess(cfg)


def _rows(dataset_uri: str) -> list[tuple]:
    import pyarrow.dataset as pads

    keys = ["item_id", "phrasing", "split", "prompt", "answer", "chunk_id"]
    return sorted(
        tuple(r[k] for k in keys)
        for split in ("train", "eval")
        for r in pads.dataset(f"{dataset_uri}/{split}", format="parquet").to_table(columns=keys).to_pylist()
    )


def bench_dataset(workdir: str | None = None, repeat: int = 3, extra_corpus: str | None = None) -> dict[str, Any]:
    from llmops.dataset.build import build_dataset
    from llmops.dataset.extractive import ExtractiveGenerator
    from llmops.dev.sample_data import corpus_documents

    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="llmops-bench-dataset-")
    root = Path(workdir or tmp.name)
    try:
        corpus = root / "corpus"
        for rel, data in corpus_documents().items():
            (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
            (corpus / rel).write_bytes(data)
        if extra_corpus:
            # More documents make the items/s figure less dominated by the fixed costs (reading the snapshot).
            src = Path(extra_corpus)
            if not src.is_dir():
                raise ConfigError(f"--corpus {extra_corpus}: not a folder of documents")
            shutil.copytree(src, corpus / "extra", dirs_exist_ok=True)
        processed = root / "processed"
        t = time.monotonic()
        pre = _preprocess(corpus, processed)
        preprocess_s = time.monotonic() - t

        full = []
        for i in range(max(1, repeat)):
            full.append(build_dataset(str(processed), str(root / f"full-{i}"), ExtractiveGenerator()))
        hashes = {s["dataset_hash"] for s in full}
        seconds = [s["seconds"] for s in full]
        items = full[0]["items_generated"]

        (corpus / CHANGED_DOC).write_text((corpus / CHANGED_DOC).read_text() + ADDED)
        t = time.monotonic()
        pre2 = _preprocess(corpus, processed)
        preprocess2_s = time.monotonic() - t
        incremental = build_dataset(str(processed), str(root / "full-0"), ExtractiveGenerator())
        scratch = build_dataset(str(processed), str(root / "scratch"), ExtractiveGenerator())
        return {
            "corpus": {"documents": pre["documents_indexed"], "chunks": pre["chunks_total"]},
            "preprocess_s": round(preprocess_s, 3),
            "full_build": {
                "runs": len(full),
                "items": items,
                "rows_train": full[0]["rows_train"],
                "rows_eval": full[0]["rows_eval"],
                "seconds_best": round(min(seconds), 3),
                "seconds_median": round(statistics.median(seconds), 3),
                "items_per_s": round(items / statistics.median(seconds), 1),
                "same_hash_every_run": len(hashes) == 1,
            },
            "one_changed_document": {
                "document": CHANGED_DOC,
                "preprocess_s": round(preprocess2_s, 3),
                "incremental_build_s": incremental["seconds"],
                "incremental_chunks_generated": incremental["chunks_generated"],
                "incremental_items_generated": incremental["items_generated"],
                "incremental_items_reused": incremental["items_reused"],
                "full_build_s": scratch["seconds"],
                "full_chunks_generated": scratch["chunks_generated"],
                # Slices differ by design (the incremental build has a parent): compare the rows without them.
                "same_rows_as_full": _rows(incremental["dataset_uri"]) == _rows(scratch["dataset_uri"]),
                "chunks_changed_in_snapshot": pre2.get("chunks_written"),
            },
        }
    finally:
        if tmp is not None:
            tmp.cleanup()
