"""The RAG preprocessing job (the Spark driver's side).

    list input --> plan against the last manifest --(nothing to read?)--> no-op
        |
        v   Spark stage A (mapInPandas): read bytes in workers, hash, extract, chunk; bad docs -> quarantine
    snapshot id from (documents' hashes + config) --(same as the manifest's?)--> no-op
        |
        v   Spark stage B: new chunks + previous snapshot, hash-partitioned by chunk id (mapInPandas):
            drop exact duplicates, reuse embeddings of known chunk ids, embed the rest, write one
            Parquet part per partition
    driver: upsert new/changed chunks into Milvus, delete chunks that left, write quarantine.json,
            then manifest.json (the commit point)

Every step is idempotent: part names are per partition, ids are content-derived, Milvus is upserted
by id, and nothing counts as done before the manifest is written, so a retry converges to one result.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmops import __version__, storage
from llmops.contracts import PreprocessSummary
from llmops.exceptions import ConfigError, PreprocessError, StorageError
from llmops.lease import Lease, lease
from llmops.rag import snapshot as snap
from llmops.rag.config import PreprocessConfig
from llmops.rag.plan import QUARANTINE_CONTENT, Plan, ToRead, list_documents, make_plan
from llmops.rag.vector_store import VectorStore, check_vector_store_uri

log = logging.getLogger(__name__)

LOCAL_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "false",
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
}
SPARK_CONF = {
    "spark.python.worker.reuse": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "20000",
}


# --- Spark session -------------------------------------------------------------------------------------


def spark_session(master: str | None = None):
    """The active SparkSession, or a new one (and True when this call created it).

    Under spark-submit (a SparkApplication) the master comes from the submission; a plain process runs
    `local[*]` unless told otherwise. Python workers use this interpreter, so they see this installation.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("llmops-preprocess")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if master or not submitted:
        builder = builder.master(master or "local[*]")
    conf = dict(SPARK_CONF)
    if (master or "local").startswith("local") and not submitted:
        conf.update(LOCAL_SPARK_CONF)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return spark, True


def torch_threads_per_task(spark) -> int:
    """Torch threads per Spark task: LLMOPS_TORCH_THREADS, else the cores each concurrent task owns.

    Oversubscription (every task using every core) is what kills CPU throughput: locally, `local[N]` runs
    N tasks on os.cpu_count() cores; on a cluster each task owns `spark.task.cpus` cores.
    """
    from llmops.settings import process_settings

    explicit = process_settings().torch_threads
    if explicit > 0:
        return explicit
    sc = spark.sparkContext
    task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    if sc.master.startswith("local"):
        return max(task_cpus, (os.cpu_count() or 1) // max(1, sc.defaultParallelism))
    return task_cpus


def _frame(spark, rows: list[tuple], schema: str, slices: int):
    """A DataFrame from driver-side rows, split into `slices` partitions in the given order."""
    slices = max(1, min(slices, len(rows)))
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, slices), schema)


def _balanced_order(items: list[ToRead], slices: int) -> list[ToRead]:
    """Order documents so that `parallelize`'s contiguous slices get similar byte totals (largest first)."""
    n = len(items)
    slices = max(1, min(slices, n))
    capacity = [(i + 1) * n // slices - i * n // slices for i in range(slices)]
    bins: list[list[ToRead]] = [[] for _ in range(slices)]
    totals = [0] * slices
    for item in sorted(items, key=lambda t: (-t.file.size, t.file.uri)):
        open_bins = [i for i in range(slices) if len(bins[i]) < capacity[i]]
        target = min(open_bins, key=lambda i: (totals[i], i))
        bins[target].append(item)
        totals[target] += item.file.size
    return [item for b in bins for item in b]


# --- checks ----------------------------------------------------------------------------------------------


def check_inputs(cfg: PreprocessConfig) -> list:
    """Fail early, naming the URI, for a wrong input, output or vector store, or missing credentials."""
    storage.check_uri(cfg.input_uri, "--input")
    storage.check_uri(cfg.output_uri, "--output")
    check_vector_store_uri(cfg.vector_store)
    from pathlib import Path

    from llmops.embedding import max_seq_length, resolve_model_path

    model_path = resolve_model_path(cfg.embedding_model)
    if model_path.startswith(("/", "./", "../", "~")) and not Path(model_path).expanduser().is_dir():
        raise ConfigError(
            f"--embedding-model {cfg.embedding_model!r}: folder {model_path} does not exist; give a "
            "sentence-transformers folder, a hub id, or all-MiniLM-L6-v2"
        )
    limit = max_seq_length(cfg.embedding_model) - 2
    if cfg.chunk_size > limit:
        raise ConfigError(
            f"chunk_size = {cfg.chunk_size}: embedding model {cfg.embedding_model!r} encodes at most {limit} "
            f"tokens per chunk (its max_seq_length minus [CLS]/[SEP]); use --chunk-size {limit} or less"
        )
    if not storage.is_s3(cfg.input_uri) and not storage.local_path(cfg.input_uri).exists():
        raise StorageError(f"--input {cfg.input_uri} does not exist: give the folder holding the documents")
    try:
        files = list_documents(cfg.input_uri, cfg.limit)
    except StorageError as exc:
        raise StorageError(f"--input {cfg.input_uri}: {exc}") from None
    if not files and not cfg.allow_empty:
        raise PreprocessError(
            f"--input {cfg.input_uri} holds no documents: check the URI (an empty input would empty the index; "
            "pass --allow-empty to do that on purpose)"
        )
    try:
        # Touches the output location: a missing bucket or credentials fail here, before any work.
        storage.exists(storage.join(cfg.output_uri, snap.MANIFEST))
    except StorageError as exc:
        raise StorageError(f"--output {cfg.output_uri}: {exc}") from None
    return files


def _compatible(previous: dict | None, cfg: PreprocessConfig) -> bool:
    return bool(
        previous
        and previous.get("embedding_model") == cfg.embedding_model
        and previous.get("embedding_backend", "torch") == cfg.embedding_backend
        and previous.get("chunking") == cfg.chunking.as_dict()
    )


def _same_store(previous: dict | None, cfg: PreprocessConfig) -> bool:
    store = (previous or {}).get("vector_store", {})
    return store.get("uri") == check_vector_store_uri(cfg.vector_store) and store.get("collection") == cfg.collection


# --- the job ----------------------------------------------------------------------------------------------


def run_preprocess(cfg: PreprocessConfig) -> dict[str, Any]:
    """Run the whole job and return its summary (see the CLI's `llmops preprocess --help`).

    The job holds the lease on its output (`llmops.lease`): a second job on the same output waits, or
    fails naming the holder; the lease is verified before the vector store and the manifest are written."""
    with lease(cfg.output_uri, "preprocessing output") as held:
        return _run_preprocess(cfg, held)


def _verify(held: Lease | None) -> None:
    if held is not None:
        held.verify()


def _run_preprocess(cfg: PreprocessConfig, held: Lease | None = None) -> dict[str, Any]:
    started = time.monotonic()
    files = check_inputs(cfg)
    store_uri = check_vector_store_uri(cfg.vector_store)
    stored = snap.read_manifest_or_none(cfg.output_uri)
    compatible = _compatible(stored, cfg)
    previous = stored if compatible else None
    if previous is not None and previous.get("chunks_total", 0) and not snap.snapshot_parts(previous["snapshot_uri"]):
        log.warning("snapshot %s of the manifest has no Parquet parts (deleted?): rebuilding everything",
                    previous["snapshot_id"])
        previous = None
    plan = make_plan(files, previous, cfg.max_document_mb)
    in_sync = False
    if previous is not None and _same_store(previous, cfg):
        with VectorStore(store_uri, cfg.collection) as vs:
            in_sync = vs.count() > 0 or previous.get("chunks_total", 0) == 0
    log.info(
        "input %s: %d documents (%d unchanged by version, %d to read, %d quarantined from the listing, "
        "%d deleted); previous snapshot %s%s",
        cfg.input_uri, len(files), len(plan.unchanged), len(plan.to_read), len(plan.quarantined),
        len(plan.deleted), (stored or {}).get("snapshot_id"),
        "" if compatible or not stored else " (other model/chunking: full rebuild)",
    )
    job = _Job(cfg=cfg, plan=plan, previous=previous, stored=stored, in_sync=in_sync, store_uri=store_uri,
               started=started, held=held)
    if previous is not None and not plan.changes_possible:
        return _no_op(job, plan_docs=plan.unchanged)

    # Documents whose chunks were partly dropped as duplicates of other documents are re-chunked
    # whenever anything changes: the copy they duplicated may be the one leaving.
    if previous is not None:
        by_uri = {f.uri: f for f in files}
        for uri, entry in list(plan.unchanged.items()):
            if entry.get("duplicates", 0) > 0:
                plan.to_read.append(ToRead(by_uri[uri], old_hash=entry.get("hash"), force=True))
                del plan.unchanged[uri]

    t = time.monotonic()
    spark, created = spark_session(cfg.master)
    job.timings.update(plan_s=round(t - started, 3), spark_start_s=round(time.monotonic() - t, 3))
    try:
        return _run_spark(spark, job)
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("pyspark", "py4j"):
            raise PreprocessError(f"the Spark job failed: {_spark_failure(exc)}") from exc
        raise
    finally:
        if created:
            spark.stop()


@dataclass
class _Job:
    """One preprocessing run as planned before Spark starts: what to read and what it builds on."""

    cfg: PreprocessConfig
    plan: Plan
    previous: dict[str, Any] | None  # the last manifest, when this run can build on its snapshot
    stored: dict[str, Any] | None  # the last manifest, whatever model and chunking it was built with
    in_sync: bool  # the vector store holds the previous snapshot
    store_uri: str
    started: float  # time.monotonic() at the start
    held: Lease | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Documents:
    """Where every listed document stands after stage A (source -> manifest entry)."""

    indexed: dict[str, dict]  # read and chunked anew: hash, version, size, chunks, duplicates
    unchanged: dict[str, dict]  # rows carried from the previous snapshot (or re-chunked, if forced)
    quarantined: dict[str, dict]
    new: list[str]
    changed: list[str]
    forced: set[str]  # unchanged documents re-chunked because some of their chunks were duplicates

    @property
    def all(self) -> dict[str, dict]:
        return {**self.unchanged, **self.indexed}


@dataclass
class _Tally:
    """What stage B reported: per-document chunk counts are set on the documents; the rest is here."""

    upserts: dict[str, list[str] | None]  # part file -> chunk ids to upsert (None: every row of it)
    delete_ids: list[str]
    embedded: int
    reused: int
    dim: int


def _run_spark(spark, job: _Job) -> dict[str, Any]:
    """Stage A, the snapshot id (the same as the previous: no-op), stage B, then the vector store, the
    quarantine list and the manifest (the commit point)."""
    cfg, plan, previous, stored, timings = job.cfg, job.plan, job.previous, job.stored, job.timings
    parallelism = spark.sparkContext.defaultParallelism
    stage_a, docs_rows = _read_and_chunk(spark, job, parallelism)
    docs = _documents_after_reading(job, docs_rows)
    documents = docs.all
    indexed, unchanged, quarantined = docs.indexed, docs.unchanged, docs.quarantined
    deleted = sorted(set((previous or {}).get("documents", {})) - set(documents))
    snap_id = snap.snapshot_id({u: e["hash"] for u, e in documents.items()}, cfg.embedding_model,
                               cfg.chunking.as_dict(), cfg.embedding_backend)

    if previous is not None and snap_id == previous["snapshot_id"]:
        if stage_a is not None:
            stage_a.unpersist()
        return _no_op(job, plan_docs=documents, quarantined=quarantined)

    snap_uri = snap.snapshot_uri(cfg.output_uri, snap_id)
    # A folder under this id can only be a failed attempt (or an old identical snapshot): rewrite it whole.
    storage.delete(snap_uri)
    full_rebuild = previous is None
    upsert_all = full_rebuild or not job.in_sync
    threads = torch_threads_per_task(spark)
    rows_df, total_rows = _candidate_rows(spark, job, stage_a, docs_rows, docs, parallelism)
    stats_rows: list[Any] = []
    if rows_df is not None:
        lineage = {"snapshot_id": snap_id, "embedding_model": cfg.embedding_model,
                   "embedding_backend": cfg.embedding_backend, "chunking": cfg.chunking.as_dict()}
        partitions = max(parallelism, math.ceil(total_rows / cfg.rows_per_partition))
        log.info("stage B: %d candidate rows in %d partitions, %d torch threads per task",
                 total_rows, partitions, threads)
        stats_rows = _embed_and_write(job, rows_df, partitions, threads, snap_uri, upsert_all, lineage)
    if stage_a is not None:
        stage_a.unpersist()

    tally = _tally(stats_rows, documents, job)
    embedded, reused, dim, delete_ids = tally.embedded, tally.reused, tally.dim, tally.delete_ids
    chunks_total = sum(e["chunks"] for e in documents.values())
    written, quarantine_list, manifest = _commit(job, snap_id, snap_uri, docs, tally, chunks_total)
    new_docs, changed_docs, started = docs.new, docs.changed, job.started
    summary = PreprocessSummary(
        snapshot_id=snap_id,
        snapshot_uri=snap_uri,
        snapshot_changed=True,
        previous_snapshot_id=(stored or {}).get("snapshot_id"),
        output_uri=cfg.output_uri,
        input_uri=cfg.input_uri,
        manifest_uri=storage.join(cfg.output_uri, snap.MANIFEST),
        quarantine_uri=storage.join(cfg.output_uri, snap.QUARANTINE),
        vector_store=manifest["vector_store"],
        embedding_model=cfg.embedding_model,
        embedding_backend=cfg.embedding_backend,
        embedding_dim=dim,
        chunking=cfg.chunking.as_dict(),
        documents_seen=len(plan.files),
        documents_indexed=len(indexed),
        documents_new=len(new_docs),
        documents_changed=len(changed_docs),
        documents_unchanged=len(unchanged),
        documents_deleted=len(deleted),
        documents_quarantined=quarantine_list,
        documents_quarantined_count=len(quarantined),
        chunks_total=chunks_total,
        chunks_written=written,
        chunks_embedded=embedded,
        chunks_reused=reused,
        chunks_deleted=len(delete_ids),
        duplicates_removed=sum(e["duplicates"] for e in documents.values()),
        full_rebuild=full_rebuild,
        torch_threads_per_task=threads,
        spark_parallelism=parallelism,
        timings=timings,
        duration_s=round(time.monotonic() - started, 3),
    ).to_json()
    log.info("snapshot %s: %d chunks (%d written, %d embedded, %d reused, %d deleted)",
             snap_id, chunks_total, written, embedded, reused, len(delete_ids))
    return summary


def _commit(job: _Job, snap_id: str, snap_uri: str, docs: _Documents, tally: _Tally,
            chunks_total: int) -> tuple[int, list[dict], dict[str, Any]]:
    """The snapshot's metadata, the vector store brought in line with it, the quarantine list, then the
    manifest (the commit point), the lease verified before each durable write. Returns the rows written
    to the vector store, the summary's quarantine list and the manifest."""
    cfg, previous, stored, timings = job.cfg, job.previous, job.stored, job.timings
    documents, quarantined, dim, delete_ids = docs.all, docs.quarantined, tally.dim, tally.delete_ids
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    snapshot_meta = {
        "schema_version": snap.SCHEMA_VERSION,
        "snapshot_id": snap_id,
        "embedding_model": cfg.embedding_model,
        "embedding_backend": cfg.embedding_backend,
        "embedding_dim": dim,
        "chunking": cfg.chunking.as_dict(),
        "chunks_total": chunks_total,
        "documents": {u: {"hash": e["hash"], "chunks": e["chunks"]} for u, e in sorted(documents.items())},
        "created_at": created_at,
    }
    snap.write_json(storage.join(snap_uri, snap.SNAPSHOT_META), snapshot_meta)

    t = time.monotonic()
    _verify(job.held)
    written = _sync_vector_store(job.store_uri, cfg.collection, dim, tally.upserts, delete_ids,
                                 drop_first=stored is not None and previous is None and _same_store(stored, cfg))
    timings["vector_store_s"] = round(time.monotonic() - t, 3)
    quarantine_list = _write_quarantine(cfg.output_uri, quarantined)
    manifest = {
        **snapshot_meta,
        "snapshot_uri": snap_uri,
        "output_uri": cfg.output_uri,
        "input_uri": cfg.input_uri,
        "vector_store": {"uri": job.store_uri, "collection": cfg.collection},
        "documents": {u: documents[u] for u in sorted(documents)},
        "quarantined": {u: quarantined[u] for u in sorted(quarantined)},
        "previous_snapshot_id": (stored or {}).get("snapshot_id"),
        "llmops_version": __version__,
    }
    _verify(job.held)
    snap.write_json(storage.join(cfg.output_uri, snap.MANIFEST), manifest)
    return written, quarantine_list, manifest


def _read_and_chunk(spark, job: _Job, parallelism: int) -> tuple[Any, list[Any]]:
    """Stage A: the documents to read, balanced over the workers, read, hashed, extracted and chunked.
    Returns the stage's frame (persisted: stage B reads its chunk rows) and its per-document rows."""
    if not job.plan.to_read:
        return None, []
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from llmops.rag import stages

    cfg = job.cfg
    max_bytes = int(cfg.max_document_mb * 1024 * 1024)
    ordered = _balanced_order(job.plan.to_read, parallelism * 2)
    rows = [(t.file.uri, t.file.version, t.file.size, t.old_hash or "", t.force, t.was_quarantined)
            for t in ordered]
    docs = _frame(spark, rows, "uri string, version string, size long, old_hash string, force boolean, "
                  "was_quarantined boolean", parallelism * 2)
    stage_a = docs.mapInPandas(
        functools.partial(stages.read_and_chunk, chunking=cfg.chunking, max_bytes=max_bytes),
        stages.STAGE_A_SCHEMA,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    t = time.monotonic()
    docs_rows = stage_a.filter(F.col("kind") != stages.CHUNK).drop("text").collect()
    job.timings["read_chunk_s"] = round(time.monotonic() - t, 3)
    return stage_a, docs_rows


def _documents_after_reading(job: _Job, docs_rows: list[Any]) -> _Documents:
    """Each document read in stage A is indexed (new or changed), unchanged (same hash, or re-chunked)
    or quarantined; one deleted between listing and reading is simply not part of this snapshot."""
    from llmops.rag import stages

    plan = job.plan
    indexed: dict[str, dict] = {}  # source -> manifest entry (hash, version, size, chunks, duplicates)
    unchanged = {u: dict(e) for u, e in plan.unchanged.items()}
    quarantined = dict(plan.quarantined)
    new_docs, changed_docs = [], []
    forced = {t.file.uri for t in plan.to_read if t.force}
    old_docs = (job.previous or {}).get("documents", {})
    for r in docs_rows:
        base = {"hash": r.doc_hash, "version": r.version, "size": r.size}
        if r.kind == stages.UNCHANGED or (r.kind == stages.INDEXED and r.source in forced):
            unchanged[r.source] = {**old_docs.get(r.source, {}), **base}
        elif r.kind == stages.INDEXED:
            indexed[r.source] = {**base, "chunks": r.n_chunks, "duplicates": 0}
            (changed_docs if r.source in old_docs else new_docs).append(r.source)
        elif r.kind == stages.QUARANTINED:
            quarantined[r.source] = {**base, "reason": r.reason, "kind": QUARANTINE_CONTENT}
        # GONE: deleted between listing and reading; it simply is not part of this snapshot.
    return _Documents(indexed=indexed, unchanged=unchanged, quarantined=quarantined, new=new_docs,
                      changed=changed_docs, forced=forced)


def _candidate_rows(spark, job: _Job, stage_a, docs_rows: list[Any], docs: _Documents,
                    parallelism: int) -> tuple[Any, int]:
    """Stage B's input: the new chunks of stage A and the previous snapshot's rows of the unchanged
    documents (the re-chunked ones' rows come anew); returns the frame (None: no rows) and its size."""
    from pyspark.sql import functions as F

    from llmops.rag import stages

    # Unchanged documents keep their previous rows, except the re-chunked ones (their rows come anew).
    carry = frozenset(set(docs.unchanged) - docs.forced)
    frames = []
    total_rows = 0
    if stage_a is not None:
        frames.append(
            stage_a.filter(F.col("kind") == stages.CHUNK).select(
                "chunk_id", "source", "doc_hash", "chunk_index", "heading_path", "char_start", "char_end",
                "n_tokens", "text", F.lit(None).cast("array<float>").alias("embedding"),
                F.lit("new").alias("origin"), F.lit(False).alias("carry"),
            )
        )
        total_rows += sum(r.n_chunks for r in docs_rows)
    if job.previous is not None:
        parts = snap.snapshot_parts(job.previous["snapshot_uri"])
        if parts:
            files_df = _frame(spark, [(p,) for p in parts], "uri string", parallelism)
            frames.append(files_df.mapInPandas(functools.partial(stages.read_parts, carry=carry),
                                               stages.ROWS_SCHEMA))
            total_rows += job.previous.get("chunks_total", 0)
    if not frames:
        return None, 0
    rows_df = frames[0]
    for f in frames[1:]:
        rows_df = rows_df.unionByName(f)
    return rows_df, total_rows


def _embed_and_write(job: _Job, rows_df, partitions: int, threads: int, snap_uri: str, upsert_all: bool,
                     lineage: dict[str, Any]) -> list[Any]:
    """Stage B: rows hash-partitioned by chunk id; each partition drops exact duplicates, reuses the
    embeddings of known chunk ids, embeds the rest and writes one Parquet part. Returns its stats rows."""
    from llmops.rag import stages

    cfg = job.cfg
    if cfg.embedding_backend != "torch":
        from llmops.embedding import export_model

        t = time.monotonic()
        export_model(cfg.embedding_model, cfg.embedding_backend)  # once, here; workers find it cached
        job.timings["export_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    stats_rows = (
        rows_df.repartition(partitions, "chunk_id")
        .mapInPandas(
            functools.partial(
                stages.finalize_partition, snap_uri=snap_uri, model_name=cfg.embedding_model,
                batch_size=cfg.embedding_batch_size, threads=threads, upsert_all=upsert_all,
                lineage=lineage, backend=cfg.embedding_backend,
            ),
            stages.STATS_SCHEMA,
        )
        .collect()
    )
    job.timings["embed_write_s"] = round(time.monotonic() - t, 3)
    return stats_rows


def _tally(stats_rows: list[Any], documents: dict[str, dict], job: _Job) -> _Tally:
    """Per-document chunk counts after duplicate removal (set on `documents`), and what the vector store
    needs: the rows to upsert per part, the chunk ids to delete, the embedding dimension."""
    for entry in documents.values():
        entry["chunks"], entry["duplicates"] = 0, 0
    upserts: dict[str, list[str] | None] = {}
    delete_ids: list[str] = []
    embedded = reused = dim = 0
    for s in stats_rows:
        if s.source:
            documents[s.source]["chunks"] += s.chunks
            documents[s.source]["duplicates"] += s.duplicates
            continue
        embedded += s.embedded
        reused += s.reused
        dim = dim or s.dim
        delete_ids.extend(s.delete_ids or [])
        if s.file and s.upsert_ids is None:
            upserts[s.file] = None  # all rows of the part
        elif s.file and s.upsert_ids:
            upserts[s.file] = list(s.upsert_ids)
    if not dim:
        dim = (job.previous or job.stored or {}).get("embedding_dim") or embedding_dimension(job.cfg.embedding_model)
    return _Tally(upserts=upserts, delete_ids=delete_ids, embedded=embedded, reused=reused, dim=dim)


def _spark_failure(exc: BaseException) -> str:
    """The useful line of a Spark failure: the Python exception raised in a worker, when there is one."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error:" in line or "Exception:" in line or "Rejected:" in line:
            return line[:2000]
    return (lines[-1] if lines else type(exc).__name__)[:2000]


def _no_op(job: _Job, plan_docs: dict, quarantined: dict | None = None) -> dict[str, Any]:
    """Nothing changed: no new snapshot. Refresh versions/quarantine in the manifest; resync Milvus if lost."""
    cfg, plan, previous, in_sync, store_uri, started = (
        job.cfg, job.plan, job.previous, job.in_sync, job.store_uri, job.started
    )
    held = job.held
    quarantined = quarantined if quarantined is not None else dict(plan.quarantined)
    written = 0
    _verify(held)
    if not in_sync:
        # The snapshot is current but the vector store lost it (new store, dropped collection): reload it.
        upserts = {p: None for p in snap.snapshot_parts(previous["snapshot_uri"])}
        written = _sync_vector_store(store_uri, cfg.collection, previous["embedding_dim"], upserts, [],
                                     drop_first=False)
    documents = {u: {**previous["documents"].get(u, {}), **e} for u, e in plan_docs.items()}
    quarantine_list = _write_quarantine(cfg.output_uri, quarantined)
    manifest = dict(previous)
    if (documents != previous["documents"] or quarantined != previous.get("quarantined", {})
            or not in_sync):
        manifest.update(documents=documents, quarantined=quarantined,
                        vector_store={"uri": store_uri, "collection": cfg.collection})
        snap.write_json(storage.join(cfg.output_uri, snap.MANIFEST), manifest)
    return PreprocessSummary(
        snapshot_id=previous["snapshot_id"],
        snapshot_uri=previous["snapshot_uri"],
        snapshot_changed=False,
        previous_snapshot_id=previous["snapshot_id"],
        output_uri=cfg.output_uri,
        input_uri=cfg.input_uri,
        manifest_uri=storage.join(cfg.output_uri, snap.MANIFEST),
        quarantine_uri=storage.join(cfg.output_uri, snap.QUARANTINE),
        vector_store={"uri": store_uri, "collection": cfg.collection},
        embedding_model=cfg.embedding_model,
        embedding_dim=previous.get("embedding_dim"),
        chunking=cfg.chunking.as_dict(),
        documents_seen=len(plan.files),
        documents_indexed=0,
        documents_new=0,
        documents_changed=0,
        documents_unchanged=len(documents),
        documents_deleted=0,
        documents_quarantined=quarantine_list,
        documents_quarantined_count=len(quarantined),
        chunks_total=previous.get("chunks_total", 0),
        chunks_written=written,
        chunks_embedded=0,
        chunks_reused=0,
        chunks_deleted=0,
        duplicates_removed=sum(e.get("duplicates", 0) for e in documents.values()),
        full_rebuild=False,
        duration_s=round(time.monotonic() - started, 3),
    ).to_json()


SUMMARY_QUARANTINE_LIMIT = 1000
"""The summary (an XCom) lists at most this many quarantined documents; quarantine.json has them all."""


def _write_quarantine(output_uri: str, quarantined: dict[str, dict]) -> list[dict]:
    """`quarantine.json`: a list of {path, reason, size[, hash]} for every document left out.

    Returns the summary's list: {path, reason}, at most `SUMMARY_QUARANTINE_LIMIT` of them.
    """
    rows = []
    for uri in sorted(quarantined):
        q = quarantined[uri]
        row = {"path": uri, "reason": q["reason"], "size": q.get("size")}
        if q.get("hash"):
            row["hash"] = q["hash"]
        rows.append(row)
    snap.write_json(storage.join(output_uri, snap.QUARANTINE), rows)
    return [{"path": r["path"], "reason": r["reason"]} for r in rows[:SUMMARY_QUARANTINE_LIMIT]]


def _sync_vector_store(uri: str, collection: str, dim: int, upserts: dict[str, list[str] | None],
                       delete_ids: list[str], drop_first: bool) -> int:
    """Delete chunks that left, upsert new/changed ones (read back from the Parquet parts, one at a time).

    `upserts` maps a part URI to the chunk ids to upsert from it (None: all its rows).
    """
    written = 0
    with VectorStore(uri, collection) as vs:
        if drop_first:
            log.info("model or chunking changed: dropping collection %s", collection)
            vs.drop()
        vs.ensure(dim)
        if delete_ids and not drop_first:
            vs.delete(delete_ids)
        for part, ids in upserts.items():
            frame = snap.read_part(part)
            if ids is not None:
                frame = frame[frame["chunk_id"].isin(set(ids))]
            written += vs.upsert(frame.to_dict("records"))
    return written


def embedding_dimension(model_name: str) -> int:
    """Vector size of a sentence-transformers model, from its config files when it is local."""
    import json
    from pathlib import Path

    from llmops.embedding import load_embedder, resolve_model_path

    root = Path(resolve_model_path(model_name))
    modules = root / "modules.json"
    if modules.exists():
        dim = None
        for m in json.loads(modules.read_text()):
            cfg = root / m.get("path", "") / "config.json"
            if m.get("type", "").endswith("Pooling") and cfg.exists():
                dim = json.loads(cfg.read_text()).get("word_embedding_dimension", dim)
            elif m.get("type", "").endswith("Dense") and cfg.exists():
                dim = json.loads(cfg.read_text()).get("out_features", dim)
        if dim:
            return int(dim)
    model = load_embedder(model_name)
    return int(model.get_embedding_dimension())
