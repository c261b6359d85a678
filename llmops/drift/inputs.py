"""Both sides of a drift comparison, read from storage as texts (and embeddings when stored).

A side is one of:

- **a preprocessing output folder** (it has a `manifest.json`): the chunks of its current snapshot, with
  the embeddings preprocessing stored (re-embedded only when another model is asked for);
- **traffic or training-data files**: one file or a folder of `.jsonl`, `.jsonl.gz`, `.json` (JSON lines)
  and `.parquet` files, one record per request.

The record format (what a vLLM request-log shipper writes; only `prompt` is required)::

    {"timestamp": "2026-11-23T14:05:09Z", "prompt": "Question: ...\\nAnswer:", "completion": " 4412",
     "model": "llmops-assistant", "request_id": "..."}

- `timestamp`: ISO 8601 (a naive time is UTC) or Unix epoch seconds (milliseconds when above 1e11);
  records without one are always inside the window;
- `prompt`: the text sent to the model; a chat record may give `messages` instead
  (`[{"role": "user", "content": ...}, ...]`): its user turns form the prompt and its assistant turns
  the completion, which is how `finetune.jsonl` chat rows are read;
- `completion`: the generated text (optional; compared when `--field completion|both`);
- `doc_id` (or `source`): the document a training row was generated from (dataset rows carry it); the
  coverage test of a reference leaves a sample's whole document out, so rows of one document are not
  each other's neighbours. Rows without it count as documents of their own;
- any other field is ignored.

Blank prompts and unparsable lines are skipped and counted, never fatal; a file that cannot be read
at all is an error.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from llmops import storage
from llmops.exceptions import InputDataError, StorageError
from llmops.rag.snapshot import embedding_backend, read_manifest, read_snapshot

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

Field = Literal["prompt", "completion", "both"]
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
MANIFEST = "manifest.json"


@dataclass
class Side:
    """The texts of one side of a comparison and where they came from."""

    uri: str
    kind: Literal["snapshot", "records"]
    texts: list[str]
    embeddings: np.ndarray | None = None
    """Stored embeddings (snapshots only), row-aligned with `texts`."""
    embedding_model: str | None = None
    """The model that produced the stored embeddings."""
    embedding_backend: str = "torch"
    """The backend that produced them (`llmops.embedding.BACKENDS`)."""
    snapshot_id: str | None = None
    files: int = 0
    records: int = 0
    """Records read, before the window and the cap."""
    skipped: int = 0
    """Unparsable lines and records without text."""
    outside_window: int = 0
    sampled_from: int = 0
    """Records inside the window, before the random cap to `max_samples`."""
    completions: list[str] = field(default_factory=list)
    documents: list[str] | None = None
    """The document of each text (a snapshot's `source`, a record's `doc_id`/`source`), row-aligned
    with `texts`; None when no record names one."""
    chunk_ids: list[str] | None = None
    """A snapshot's chunk ids, row-aligned with `texts`."""


def parse_time(value: Any) -> datetime | None:
    """A record's timestamp as an aware UTC datetime, or None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return parse_time(value.to_pydatetime())
    if isinstance(value, int | float):
        seconds = float(value) / 1000.0 if float(value) > 1e11 else float(value)
        return datetime.fromtimestamp(seconds, tz=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_texts(record: dict[str, Any]) -> tuple[str, str]:
    """(prompt, completion) of one record: plain fields, or the user/assistant turns of `messages`."""
    prompt = record.get("prompt")
    completion = record.get("completion")
    messages = record.get("messages")
    if prompt is None and isinstance(messages, list):
        turns = [m for m in messages if isinstance(m, dict)]
        prompt = "\n".join(str(m.get("content", "")) for m in turns if m.get("role") == "user")
        if completion is None:
            completion = "\n".join(str(m.get("content", "")) for m in turns if m.get("role") == "assistant")
    return ("" if prompt is None else str(prompt)), ("" if completion is None else str(completion))


def _text_for(prompt: str, completion: str, which: Field) -> str:
    if which == "prompt":
        return prompt
    if which == "completion":
        return completion
    return f"{prompt}\n{completion}" if completion else prompt


def _json_lines(uri: str, data: bytes) -> tuple[list[dict[str, Any]], int]:
    if uri.endswith(".gz"):
        data = gzip.decompress(data)
    records, bad = [], 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        else:
            bad += 1
    return records, bad


def _parquet_records(uri: str, data: bytes) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    wanted = [c for c in ("timestamp", "prompt", "completion", "messages") if c in table.column_names]
    if "prompt" not in wanted and "messages" not in wanted:
        raise InputDataError(
            f"{uri}: Parquet traffic needs a `prompt` (or `messages`) column; found {table.column_names}"
        )
    return table.select(wanted).to_pylist()


def read_records(uri: str) -> tuple[list[dict[str, Any]], int]:
    """One traffic record file (`.jsonl`, `.jsonl.gz`, `.parquet`): its records, and how many lines were
    skipped as unparsable or not a JSON object (Parquet: 0). Drift and the canary's replay read through it."""
    try:
        data = storage.read_bytes(uri)
    except (StorageError, FileNotFoundError) as exc:
        raise InputDataError(f"cannot read traffic records {uri}: {exc}") from None
    if uri.endswith(".parquet"):
        return _parquet_records(uri, data), 0
    return _json_lines(uri, data)


def record_files(uri: str) -> list[str]:
    """The record files of a side: the file itself, or every supported file under a folder."""
    files = storage.list_files(uri)
    return [f.uri for f in files if f.uri.endswith(RECORD_SUFFIXES) and not f.uri.endswith("/" + MANIFEST)]


def is_preprocessing_output(uri: str) -> bool:
    return not uri.endswith(RECORD_SUFFIXES) and storage.exists(storage.join(uri, MANIFEST))


def _subsample(n: int, max_samples: int, seed: int) -> list[int]:
    """Indices of a seeded random subset of size `max_samples` (all indices when n is not larger)."""
    if n <= max_samples:
        return list(range(n))
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(n, size=max_samples, replace=False).tolist())


def read_side(
    uri: str,
    *,
    which: Field = "prompt",
    max_samples: int = 2000,
    seed: int = 0,
    window_hours: float = 0.0,
    until: datetime | None = None,
    missing_ok: bool = False,
) -> Side:
    """Read one side. `window_hours` > 0 keeps records with `until - window < timestamp <= until`
    (`until` defaults to no upper bound); `missing_ok` turns a missing location into an empty side
    (no traffic yet) instead of an error."""
    storage.check_uri(uri, "drift input")
    if is_preprocessing_output(uri):
        return _read_snapshot_side(uri, max_samples=max_samples, seed=seed)
    if not storage.exists(uri):
        if missing_ok:
            return Side(uri=uri, kind="records", texts=[])
        raise InputDataError(f"{uri} does not exist: give a preprocessing output folder or JSONL/Parquet files")
    files = record_files(uri)
    if not files and not missing_ok:
        raise InputDataError(
            f"{uri} holds no preprocessing manifest and no {', '.join(RECORD_SUFFIXES)} files"
        )
    lower = until - timedelta(hours=window_hours) if (until and window_hours > 0) else None
    if window_hours > 0 and until is None:
        raise InputDataError("a time window needs its end: give --until (the DAG passes the run's time)")
    side = Side(uri=uri, kind="records", texts=[], files=len(files))
    kept: list[tuple[str, str, str | None]] = []
    for f in files:
        records, bad = read_records(f)
        side.records += len(records)
        side.skipped += bad
        for rec in records:
            prompt, completion = record_texts(rec)
            text = _text_for(prompt, completion, which)
            if not text.strip():
                side.skipped += 1
                continue
            if lower is not None or until is not None:
                ts = parse_time(rec.get("timestamp"))
                if ts is not None and ((until is not None and ts > until) or (lower is not None and ts <= lower)):
                    side.outside_window += 1
                    continue
            doc = rec.get("doc_id", rec.get("source"))
            kept.append((text, completion, None if doc is None or doc == "" else str(doc)))
    side.sampled_from = len(kept)
    idx = _subsample(len(kept), max_samples, seed)
    side.texts = [kept[i][0] for i in idx]
    side.completions = [kept[i][1] for i in idx]
    docs = [kept[i][2] for i in idx]
    if any(d is not None for d in docs):
        # A row without a document is a document of its own.
        side.documents = [d if d is not None else f"\0row:{i}" for d, i in zip(docs, idx, strict=True)]
    if side.skipped:
        log.warning("%s: skipped %d unparsable or empty records", uri, side.skipped)
    return side


def _read_snapshot_side(uri: str, *, max_samples: int, seed: int) -> Side:
    import numpy as np

    manifest = read_manifest(uri)
    df = read_snapshot(uri, columns=["chunk_id", "source", "text", "embedding"])
    df = df[df["text"].astype(str).str.strip() != ""]
    idx = _subsample(len(df), max_samples, seed)
    df = df.iloc[idx]
    embeddings = np.stack(df["embedding"].to_numpy()).astype(np.float32) if len(df) else None
    return Side(
        uri=uri,
        kind="snapshot",
        texts=df["text"].astype(str).tolist(),
        embeddings=embeddings,
        embedding_model=manifest.get("embedding_model"),
        embedding_backend=embedding_backend(manifest),
        snapshot_id=manifest.get("snapshot_id"),
        documents=df["source"].astype(str).tolist(),
        chunk_ids=df["chunk_id"].astype(str).tolist(),
        files=1,
        records=int(manifest.get("chunks_total") or manifest.get("chunks") or len(df)),
        sampled_from=len(df),
    )


def cached_embeddings(texts: list[str], model_name: str, cache_root: str | None) -> np.ndarray:
    """Embeddings of `texts`, cached under `cache_root` (a folder or `s3://` prefix) by a hash of the model
    name and the texts: the reference side of an hourly check rarely changes, so it is embedded once."""
    import hashlib
    import time

    import numpy as np

    from llmops.embedding import embed

    if not cache_root:
        return embed(texts, model_name)
    digest = hashlib.sha256(model_name.encode())
    for t in texts:
        digest.update(b"\0" + t.encode())
    uri = storage.join(cache_root, f"{digest.hexdigest()[:32]}.npy")
    if storage.exists(uri):
        return np.load(io.BytesIO(storage.read_bytes(uri)))
    start = time.perf_counter()
    vectors = embed(texts, model_name)
    log.info("embedded %d texts in %.1f s; cached at %s", len(texts), time.perf_counter() - start, uri)
    buf = io.BytesIO()
    np.save(buf, vectors)
    storage.write_bytes(uri, buf.getvalue())
    return vectors


def embedding_cache_root(data_root: str, model_name: str) -> str:
    return storage.join(data_root, "cache", "embeddings", model_name.replace("/", "--"))


def side_embeddings(side: Side, model_name: str, cache_root: str | None = None) -> np.ndarray:
    """The side's embeddings under `model_name`: the stored ones when they come from that model and a backend
    equivalent to torch (what the other side is embedded with), else computed by torch (through the cache
    when `cache_root` is given): an int8 index is never compared with torch embeddings."""
    import numpy as np

    from llmops.embedding import equivalent_backends

    if not side.texts:
        return np.zeros((0, 0), dtype=np.float32)
    if (side.embeddings is not None and side.embedding_model == model_name
            and equivalent_backends(side.embedding_backend, "torch")):
        return side.embeddings
    return cached_embeddings(side.texts, model_name, cache_root)
