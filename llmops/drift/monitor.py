"""One drift check end to end: read both sides, embed, test, write the report, log it to MLflow."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops import storage
from llmops.docstrings import field_docstrings
from llmops.settings import Settings
from llmops.validation import config_error

log = logging.getLogger(__name__)

Status = Literal["drift", "no_drift", "not_enough_data"]
REPORT_VERSION = 2


@field_docstrings
class DriftConfig(BaseModel):
    """What one drift check compares and how strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    reference_uri: str
    """Training-side sample: a preprocessing output folder, or JSONL/Parquet files (e.g. `finetune.jsonl`)."""
    current_uri: str
    """Recent inference traffic: JSONL/Parquet files or a folder of them (or a preprocessing output)."""
    report_uri: str
    """Folder for `report.json` and `report.html`; its parent folder holds the earlier reports."""
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    """False-alarm rate of the verdict."""
    min_samples: int = Field(default=50, ge=10)
    """Fewer texts than this on either side gives "not enough data" instead of a verdict."""
    max_samples: int = Field(default=2000, ge=10, le=50000)
    """Texts per side above this are subsampled (seeded) before embedding."""
    permutations: int = Field(default=500, ge=19, le=20000)
    """Random relabellings of the descriptive distribution tests (MMD, classifier)."""
    resamples: int = Field(default=1000, ge=19, le=100000)
    """Random document splits of the reference for the coverage test's null (the smallest p-value is
    1 / (resamples + 1))."""
    min_effect: float = Field(default=0.05, ge=0, le=1)
    """Effect-size floor: drift needs an excess uncovered share of at least this much, besides p <= alpha."""
    quantile: float = Field(default=0.9, ge=0.5, lt=1)
    """Coverage quantile of the reference's leave-one-document-out nearest-neighbour distances."""
    max_groups: int = Field(default=5, ge=1, le=50)
    """Uncovered-traffic groups named in the report."""
    chunks_per_group: int = Field(default=5, ge=1, le=100)
    """Nearest corpus chunks per uncovered group."""
    index_uri: str | None = None
    """Preprocessing output whose vector store gives the groups their nearest chunks; None: none."""
    seed: int = Field(default=0, ge=0)
    """Seed of the subsampling, the permutations and the folds: same inputs, same verdict."""
    window_hours: float = Field(default=0.0, ge=0)
    """Only current records with `until - window_hours < timestamp <= until`; 0 keeps every record."""
    until: datetime | None = None
    """End of the window (the DAG passes the run's data interval end)."""
    field: Literal["prompt", "completion", "both"] = "prompt"
    """Which text of a traffic record is compared."""
    embedding_model: str | None = None
    """Embedding model; default: the model of a preprocessing-output side, else the `embedding_model` setting."""
    log_mlflow: bool = True
    """Log the report to MLflow (metrics, parameters, the report files as artifacts)."""
    created_at: datetime | None = None
    """Time stamped on the report (history order); default `until`, else the current time."""

    @model_validator(mode="after")
    def _consistent(self) -> DriftConfig:
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples ({self.max_samples}) must be at least min_samples ({self.min_samples})")
        for name, count in (("permutations", self.permutations), ("resamples", self.resamples)):
            if 1.0 / (count + 1) > self.alpha:
                raise ValueError(
                    f"with {count} {name} the smallest p-value is {1 / (count + 1):.3g}, above alpha "
                    f"({self.alpha}): no p-value could reach it; use at least {int(1 / self.alpha)} {name}"
                )
        if self.window_hours > 0 and self.until is None:
            raise ValueError("window_hours needs `until`, the end of the window")
        return self


def make_config(**values: Any) -> DriftConfig:
    """A validated DriftConfig; errors name the field, the value and the fix."""
    try:
        return DriftConfig(**values)
    except ValidationError as exc:
        raise config_error("drift check", exc) from None


def reports_root(settings: Settings) -> str:
    """Folder holding one sub-folder per drift report."""
    return settings.drift_reports


def reference_default(settings: Settings) -> str:
    return settings.drift_reference


def report_folder_name(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _side_info(side) -> dict[str, Any]:
    return {
        "uri": side.uri,
        "kind": side.kind,
        "snapshot_id": side.snapshot_id,
        "files": side.files,
        "records": side.records,
        "skipped": side.skipped,
        "outside_window": side.outside_window,
        "sampled_from": side.sampled_from,
    }


def verdict(p_value: float | None, excess: float | None, alpha: float, min_effect: float) -> Status:
    """Drift needs both a significant coverage p-value and an excess uncovered share of at least the
    floor; no test (too few samples) is "not enough data"."""
    if p_value is None or excess is None:
        return "not_enough_data"
    return "drift" if p_value <= alpha and excess >= min_effect else "no_drift"


def drift_event_id(created: datetime) -> str:
    """Id of the drift event a report describes (the steer file's `drift_event`, the dataset's `steered_by`)."""
    return f"drift-{report_folder_name(created)}"


def describe_groups(cov, cur_texts: list[str], cur_emb, max_groups: int) -> tuple[list[dict[str, Any]], Any]:
    """The uncovered current samples, grouped, largest first: size, share of the traffic, mean distance to
    the reference, a few example texts; and each group's centroid (the query for its nearest chunks)."""
    import numpy as np

    from llmops.drift.coverage import centroid, group_uncovered

    idx = cov.uncovered
    groups = []
    centroids = []
    for g, members in enumerate(group_uncovered(cur_emb[idx], max_groups=max_groups)):
        rows = idx[members]
        # The farthest samples first: the clearest examples of what the training data lacks.
        rows = rows[np.argsort(-cov.current_distance[rows], kind="stable")]
        groups.append({
            "group": g,
            "size": int(len(rows)),
            "share": float(len(rows) / cov.n_current),
            "mean_distance": float(cov.current_distance[rows].mean()),
            "examples": [cur_texts[i][:300] for i in rows[:3]],
            "nearest_chunks": [],
        })
        centroids.append(centroid(cur_emb[rows]))
    return groups, (np.stack(centroids) if centroids else np.zeros((0, cur_emb.shape[1]), dtype=np.float32))


def index_default(cfg: DriftConfig, ref, settings: Settings) -> str | None:
    """The preprocessing output whose index gives groups their chunks: the config's, the setting's, the
    reference when it is one, else the processed location when it holds a manifest."""
    from llmops.drift import inputs

    if cfg.index_uri:
        return cfg.index_uri
    if settings.drift.drift_index_uri:
        return settings.drift.drift_index_uri
    if ref.kind == "snapshot":
        return ref.uri
    return settings.processed if inputs.is_preprocessing_output(settings.processed) else None


def run_drift(cfg: DriftConfig, settings: Settings) -> dict[str, Any]:
    """Run one check and return its report (also written to `cfg.report_uri` and MLflow)."""
    start = time.perf_counter()
    sides = _read_sides(cfg, settings)
    enough = len(sides.ref.texts) >= cfg.min_samples and len(sides.cur.texts) >= cfg.min_samples
    found = _measure(cfg, sides, settings) if enough else _Measures()
    cov = found.cov
    status = verdict(cov.p_value if cov else None, cov.excess if cov else None, cfg.alpha, cfg.min_effect)
    event = drift_event_id(sides.created)
    index_info: dict[str, Any] | None = None
    steer_uri = None
    if status == "drift":
        index_info, steer_uri = _steer(cfg, settings, sides, found, event)
    rep = _report(cfg, sides, found, status, event, index_info, steer_uri, enough)
    _publish(cfg, settings, rep, found, steer_uri, sides.created, start)
    log.info(
        "drift check: %s (p=%s, uncovered %s vs expected %s, p_mmd=%s, p_clf=%s, n_ref=%d, n_cur=%d); report %s",
        status, rep["p_value"], rep["uncovered_share"], rep["expected_share"], rep["p_value_mmd"],
        rep["p_value_classifier"], rep["n_reference"], rep["n_current"], rep["report_uri"],
    )
    return rep


@dataclass
class _Sides:
    """What one check compares: its time, both sides' texts, and the embedding model for both."""

    created: datetime
    until: datetime | None
    ref: Any  # llmops.drift.inputs.Side
    cur: Any
    model: str


@dataclass
class _Measures:
    """What the statistics found; empty when a side has fewer than `min_samples` texts."""

    cov: Any = None  # llmops.drift.coverage result
    result: Any = None  # llmops.drift.stats two-sample result
    ref_emb: Any = None
    cur_emb: Any = None
    signals: dict[str, Any] | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)
    centroids: Any = None
    timings: dict[str, float] = field(default_factory=dict)


def _read_sides(cfg: DriftConfig, settings: Settings) -> _Sides:
    """Both sides' texts (an empty reference is an error; no traffic yet is not) and the model to embed
    them with: the configured one, else the snapshot's, else the settings'."""
    from llmops.drift import inputs

    created = cfg.created_at or cfg.until or datetime.now(UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    until = cfg.until.replace(tzinfo=UTC) if cfg.until and cfg.until.tzinfo is None else cfg.until
    storage.check_uri(cfg.report_uri, "report folder")
    ref = inputs.read_side(cfg.reference_uri, which=cfg.field, max_samples=cfg.max_samples, seed=cfg.seed)
    if not ref.texts:
        from llmops.exceptions import InputDataError

        raise InputDataError(f"the reference {cfg.reference_uri} holds no usable text")
    # No traffic yet (a missing traffic folder) is "not enough data", not an error.
    cur = inputs.read_side(
        cfg.current_uri,
        which=cfg.field,
        max_samples=cfg.max_samples,
        seed=cfg.seed + 1,
        window_hours=cfg.window_hours,
        until=until,
        missing_ok=True,
    )
    model = cfg.embedding_model or (
        ref.embedding_model if ref.kind == "snapshot" and ref.embedding_model
        else cur.embedding_model if cur.kind == "snapshot" and cur.embedding_model
        else settings.rag.embedding_model
    )
    return _Sides(created=created, until=until, ref=ref, cur=cur, model=model)


def _measure(cfg: DriftConfig, sides: _Sides, settings: Settings) -> _Measures:
    """Embed both sides, then the coverage test (the verdict), the distribution tests, the uncovered
    groups and the text signals (descriptive), each timed."""
    from llmops.drift import inputs
    from llmops.drift.coverage import coverage_test
    from llmops.drift.signals import text_signals
    from llmops.drift.stats import two_sample_test

    ref, cur, model = sides.ref, sides.cur, sides.model
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # The reference rarely changes between hourly checks: cache its embeddings by content hash.
    ref_emb = inputs.side_embeddings(ref, model, inputs.embedding_cache_root(settings.storage.data_root, model))
    cur_emb = inputs.side_embeddings(cur, model)
    timings["embed_s"] = time.perf_counter() - t0
    cov = coverage_test(ref_emb, cur_emb, ref.documents, quantile=cfg.quantile, resamples=cfg.resamples,
                        seed=cfg.seed)
    timings["coverage_s"] = cov.seconds
    result = two_sample_test(ref_emb, cur_emb, permutations=cfg.permutations, seed=cfg.seed)
    timings["test_s"] = result.seconds
    t0 = time.perf_counter()
    groups, centroids = describe_groups(cov, cur.texts, cur_emb, cfg.max_groups)
    timings["groups_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    signals = text_signals(ref.texts, cur.texts, model, seed=cfg.seed)
    timings["signals_s"] = time.perf_counter() - t0
    return _Measures(cov=cov, result=result, ref_emb=ref_emb, cur_emb=cur_emb, signals=signals, groups=groups,
                     centroids=centroids, timings=timings)


def _steer(
    cfg: DriftConfig, settings: Settings, sides: _Sides, found: _Measures, event: str
) -> tuple[dict[str, Any], str | None]:
    """On drift only (it pays for opening the index): the index chunks nearest each uncovered group,
    which steer the next dataset build; returns the index's info and the steer file, if any."""
    from llmops.drift import steer

    index_uri = index_default(cfg, sides.ref, settings)
    if index_uri is None:
        index_info = {"uri": None, "error": "no preprocessing output to search: give --index"}
    else:
        t0 = time.perf_counter()
        index_info = steer.attach_chunks(found.groups, found.centroids, index_uri, sides.model, cfg.chunks_per_group)
        found.timings["index_s"] = time.perf_counter() - t0
    chunk_ids = steer.steer_chunk_ids(found.groups)
    steer_uri = None
    if chunk_ids:
        steer_uri = steer.write_steer(cfg.report_uri, event, chunk_ids, sides.created.isoformat())
    return index_info, steer_uri


def _report(
    cfg: DriftConfig, sides: _Sides, found: _Measures, status: Status, event: str,
    index_info: dict[str, Any] | None, steer_uri: str | None, enough: bool,
) -> dict[str, Any]:
    """The check's report: the verdict and why, every statistic, and where each input and output is."""
    from llmops.drift import report

    cov, result, groups, signals, timings = found.cov, found.result, found.groups, found.signals, found.timings
    ref, cur, until, model, created = sides.ref, sides.cur, sides.until, sides.model, sides.created
    rep: dict[str, Any] = {
        "version": REPORT_VERSION,
        "status": status,
        "drift": status == "drift",
        "verdict": (
            "drift when the coverage p-value is at most alpha and the excess uncovered share is at least "
            "min_effect; the distribution tests (MMD, classifier) are descriptive"
        ),
        "p_value": cov.p_value if cov else None,
        "uncovered_share": cov.uncovered_share if cov else None,
        "expected_share": cov.expected_share if cov else None,
        "excess": cov.excess if cov else None,
        "min_effect": cfg.min_effect,
        "significant": (cov.p_value <= cfg.alpha) if cov else None,
        "coverage": cov.to_dict() if cov else None,
        "groups": groups,
        "index": index_info,
        "drift_event": event if status == "drift" else None,
        "steer_uri": steer_uri,
        "p_value_distribution": result.p_value if result else None,
        "p_value_mmd": result.p_value_mmd if result else None,
        "p_value_classifier": result.p_value_classifier if result else None,
        "combination": "descriptive: Westfall-Young min-P of the MMD and classifier p-values over shared permutations",
        "mmd2": result.mmd2 if result else None,
        "auc": result.auc if result else None,
        "partial_auc": result.partial_auc if result else None,
        "bandwidth": result.bandwidth if result else None,
        "alpha": cfg.alpha,
        "min_samples": cfg.min_samples,
        "max_samples": cfg.max_samples,
        "permutations": cfg.permutations,
        "resamples": cfg.resamples,
        "quantile": cfg.quantile,
        "seed": cfg.seed,
        "n_reference": len(ref.texts),
        "n_current": len(cur.texts),
        "reference": _side_info(ref),
        "current": _side_info(cur),
        "window_hours": cfg.window_hours,
        "until": until.isoformat() if until else None,
        "field": cfg.field,
        "embedding_model": model,
        "signals": signals,
        "created_at": created.isoformat(),
        "report_dir": cfg.report_uri,
        "report_uri": storage.join(cfg.report_uri, report.REPORT_HTML),
        "report_json_uri": storage.join(cfg.report_uri, report.REPORT_JSON),
        "mlflow_run_id": None,
        "seconds": timings,
    }
    if not enough:
        rep["reason"] = (
            f"not enough data: {len(ref.texts)} reference and {len(cur.texts)} current texts, "
            f"at least {cfg.min_samples} per side are needed"
        )
    elif status == "no_drift" and cov is not None and cov.p_value <= cfg.alpha:
        rep["reason"] = (
            f"significant (p = {cov.p_value:.3g}) but the excess uncovered share {cov.excess:.3f} is below "
            f"the floor {cfg.min_effect}"
        )
    return rep


def _publish(
    cfg: DriftConfig, settings: Settings, rep: dict[str, Any], found: _Measures, steer_uri: str | None,
    created: datetime, start: float,
) -> None:
    """Write the report (JSON, HTML, plots) to `cfg.report_uri` and, with `log_mlflow`, to an MLflow run
    (marked failed if writing fails)."""
    from pathlib import Path

    from llmops.drift import report, steer

    client = run_id = None
    if cfg.log_mlflow:
        client, run_id = report.start_mlflow_run(
            settings,
            run_name=f"drift-{report_folder_name(created)}",
            tags={"llmops.step": "drift", "llmops.drift.status": rep["status"]},
        )
        rep["mlflow_run_id"] = run_id
    try:
        rep["seconds"]["total_s"] = time.perf_counter() - start
        with report.local_workdir() as tmp:
            report.write_report(rep, cfg.report_uri, found.ref_emb, found.cur_emb, Path(tmp))
            if steer_uri:
                (Path(tmp) / steer.STEER_JSON).write_text(storage.read_text(steer_uri))
            if client is not None:
                report.finish_mlflow_run(client, run_id, rep, Path(tmp))
    except BaseException:
        if client is not None:
            report.fail_mlflow_run(client, run_id)
        raise


def summary_of(rep: dict[str, Any]) -> dict[str, Any]:
    """The step summary (XCom, `llmops.contracts.DriftSummary`): the verdict, its effect size, and where
    to read more."""
    from llmops.contracts import DriftSummary

    keys = [k for k in DriftSummary.model_fields if k not in DRIFT_SUMMARY_DERIVED]
    return DriftSummary(
        **{k: rep.get(k) for k in keys},
        reference_uri=rep["reference"]["uri"],
        current_uri=rep["current"]["uri"],
        reference_snapshot_id=rep["reference"]["snapshot_id"],
        groups=[
            {"size": g["size"], "share": g["share"],
             "chunk_ids": [c["chunk_id"] for c in g.get("nearest_chunks") or []]}
            for g in rep.get("groups") or []
        ],
    ).to_json()


DRIFT_SUMMARY_DERIVED = ("reference_uri", "current_uri", "reference_snapshot_id", "groups")
"""The summary fields not copied from the report's top level."""

RETRAIN_EXTRA_KEYS = (
    "drift_event", "steer_uri", "report_uri", "report_json_uri", "p_value", "uncovered_share",
    "expected_share", "excess", "min_effect", "p_value_mmd", "p_value_classifier", "alpha",
    "n_reference", "n_current", "mlflow_run_id", "created_at",
)
"""The drift summary's fields copied into the RETRAIN event's `extra`."""


def retrain_event_extra(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `extra` of the RETRAIN asset event for a drift step's summary, or None when the check found no
    drift (or had not enough data) and no event should be emitted. `steer_uri` (None when no chunk was
    found) is what the dataset DAG passes to `llmops dataset build --steer`."""
    from llmops.contracts import DriftSummary

    if not summary:
        return None
    parsed = DriftSummary.model_validate(summary)
    if parsed.status != "drift":
        return None
    return parsed.model_dump(mode="json", include=set(RETRAIN_EXTRA_KEYS))
