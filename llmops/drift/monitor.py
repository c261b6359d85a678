"""One drift check end to end: read both sides, embed, test, write the report, log it to MLflow."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops import storage
from llmops.exceptions import ConfigError
from llmops.settings import Settings

log = logging.getLogger(__name__)

Status = Literal["drift", "no_drift", "not_enough_data"]
REPORT_VERSION = 1


class DriftConfig(BaseModel):
    """What one drift check compares and how strictly."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

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
    """Random relabellings for the permutation p-values (the smallest p-value is 1 / (permutations + 1))."""
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
        if 1.0 / (self.permutations + 1) > self.alpha:
            raise ValueError(
                f"with {self.permutations} permutations the smallest p-value is {1 / (self.permutations + 1):.3g}, "
                f"above alpha ({self.alpha}): drift could never be declared; use at least "
                f"{int(1 / self.alpha)} permutations"
            )
        if self.window_hours > 0 and self.until is None:
            raise ValueError("window_hours needs `until`, the end of the window")
        return self


def make_config(**values: Any) -> DriftConfig:
    """A validated DriftConfig; errors name the field, the value and the fix."""
    try:
        return DriftConfig(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "drift config"
            shown = f" = {err['input']!r}" if name != "drift config" and not isinstance(err["input"], dict) else ""
            problems.append(f"{name}{shown}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid drift check: " + "; ".join(problems)) from None


def reports_root(settings: Settings) -> str:
    """Folder holding one sub-folder per drift report."""
    return settings.drift_reports_uri or storage.join(settings.data_root, "drift", "reports")


def reference_default(settings: Settings) -> str:
    return settings.drift_reference_uri or storage.join(settings.data_root, "sample", "finetune.jsonl")


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


def run_drift(cfg: DriftConfig, settings: Settings) -> dict[str, Any]:
    """Run one check and return its report (also written to `cfg.report_uri` and MLflow)."""
    from llmops.drift import inputs, report

    start = time.perf_counter()
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
        else settings.embedding_model
    )
    enough = len(ref.texts) >= cfg.min_samples and len(cur.texts) >= cfg.min_samples
    result = None
    ref_emb = cur_emb = None
    signals: dict[str, Any] | None = None
    timings: dict[str, float] = {}
    if enough:
        from llmops.drift.signals import text_signals
        from llmops.drift.stats import two_sample_test

        t0 = time.perf_counter()
        # The reference rarely changes between hourly checks: cache its embeddings by content hash.
        ref_emb = inputs.side_embeddings(ref, model, inputs.embedding_cache_root(settings.data_root, model))
        cur_emb = inputs.side_embeddings(cur, model)
        timings["embed_s"] = time.perf_counter() - t0
        result = two_sample_test(ref_emb, cur_emb, permutations=cfg.permutations, seed=cfg.seed)
        timings["test_s"] = result.seconds
        t0 = time.perf_counter()
        signals = text_signals(ref.texts, cur.texts, model, seed=cfg.seed)
        timings["signals_s"] = time.perf_counter() - t0
    status: Status
    if result is None:
        status = "not_enough_data"
    else:
        status = "drift" if result.p_value <= cfg.alpha else "no_drift"
    rep: dict[str, Any] = {
        "version": REPORT_VERSION,
        "status": status,
        "drift": status == "drift",
        "p_value": result.p_value if result else None,
        "p_value_mmd": result.p_value_mmd if result else None,
        "p_value_classifier": result.p_value_classifier if result else None,
        "combination": "Westfall-Young min-P of the MMD and classifier p-values over shared permutations",
        "mmd2": result.mmd2 if result else None,
        "auc": result.auc if result else None,
        "partial_auc": result.partial_auc if result else None,
        "bandwidth": result.bandwidth if result else None,
        "alpha": cfg.alpha,
        "min_samples": cfg.min_samples,
        "max_samples": cfg.max_samples,
        "permutations": cfg.permutations,
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
    client = run_id = None
    if cfg.log_mlflow:
        client, run_id = report.start_mlflow_run(
            settings,
            run_name=f"drift-{report_folder_name(created)}",
            tags={"llmops.step": "drift", "llmops.drift.status": status},
        )
        rep["mlflow_run_id"] = run_id
    try:
        rep["seconds"]["total_s"] = time.perf_counter() - start
        with report.local_workdir() as tmp:
            from pathlib import Path

            report.write_report(rep, cfg.report_uri, ref_emb, cur_emb, Path(tmp))
            if client is not None:
                report.finish_mlflow_run(client, run_id, rep, Path(tmp))
    except BaseException:
        if client is not None:
            report.fail_mlflow_run(client, run_id)
        raise
    log.info(
        "drift check: %s (p=%s, p_mmd=%s, p_clf=%s, n_ref=%d, n_cur=%d); report %s",
        status, rep["p_value"], rep["p_value_mmd"], rep["p_value_classifier"],
        rep["n_reference"], rep["n_current"], rep["report_uri"],
    )
    return rep


def summary_of(rep: dict[str, Any]) -> dict[str, Any]:
    """The step summary (XCom): the verdict and where to read more."""
    keys = (
        "status", "drift", "p_value", "p_value_mmd", "p_value_classifier", "alpha", "auc", "partial_auc", "mmd2",
        "n_reference", "n_current", "report_uri", "report_dir", "report_json_uri", "mlflow_run_id",
        "created_at", "embedding_model",
    )
    out = {k: rep.get(k) for k in keys}
    out["reference_uri"] = rep["reference"]["uri"]
    out["current_uri"] = rep["current"]["uri"]
    out["reference_snapshot_id"] = rep["reference"]["snapshot_id"]
    if rep.get("reason"):
        out["reason"] = rep["reason"]
    return out


def retrain_event_extra(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `extra` of the RETRAIN asset event for a drift step's summary, or None when the check found no
    drift (or had not enough data) and no event should be emitted."""
    if not summary or summary.get("status") != "drift":
        return None
    return {
        "report_uri": summary.get("report_uri"),
        "report_json_uri": summary.get("report_json_uri"),
        "p_value": summary.get("p_value"),
        "p_value_mmd": summary.get("p_value_mmd"),
        "p_value_classifier": summary.get("p_value_classifier"),
        "alpha": summary.get("alpha"),
        "n_reference": summary.get("n_reference"),
        "n_current": summary.get("n_current"),
        "mlflow_run_id": summary.get("mlflow_run_id"),
        "created_at": summary.get("created_at"),
    }
