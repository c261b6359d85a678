"""Retrain triggers with memory: which event started a fine-tune run, and the drift cooldown.

The fine-tune DAG can start for four reasons (`TriggerKind`): a new corpus snapshot (`corpus`), a drift
event (`drift`), its cron (`schedule`) or a person (`manual`). Drift checks run hourly and keep finding the
same drift until a retrained model is serving, so without memory every check would start a retrain (a
retraining storm). The rule here:

- at most one **drift-triggered** retrain per `retrain_cooldown_hours`: a drift trigger closer than that
  to an earlier drift trigger that was answered (the retrain went ahead, or it found no new data to learn)
  is skipped, and the skip is recorded with its reason;
- corpus, schedule and manual triggers always run (new data, or a person, is a reason of its own);
- but nothing is retrained without something to learn: when the champion was trained on the same dataset
  version (`dataset_hash`) with the same training parameters, the run is skipped with the reason
  "no new data since vN" (a drift trigger says so too, instead of training a model the gate would reject).
  A run conf `{"force": true}` trains anyway.

The dataset DAG sits between the triggers and the fine-tune DAG: it builds the dataset on a corpus or
drift event and emits `llmops_dataset` with the build summary and `trigger` (`corpus` or `drift`, with
the drift report and p-values) in its extra, so the kind of the original trigger reaches this decision.

Every decision is appended to a ledger (`<state_uri>/triggers.jsonl`, one JSON record per line) with the
run, the trigger kind, the decision and its reason, the drift report and p-values, and the snapshot id.
Decisions are idempotent per run: asking again for a run already in the ledger returns the recorded
decision, so a retried task does not skip its own run.

Time is always passed in (the run's logical/queued time or the triggering event's time), never read
from the clock here, so decisions are reproducible and testable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from llmops import storage
from llmops.exceptions import ConfigError, InputDataError
from llmops.settings import Settings

log = logging.getLogger(__name__)

TriggerKind = Literal["drift", "corpus", "schedule", "manual"]
Decision = Literal["run", "skipped"]
TRIGGER_KINDS: tuple[str, ...] = ("drift", "corpus", "schedule", "manual")
LEDGER_FILE = "triggers.jsonl"


def ledger_uri(settings: Settings) -> str:
    return storage.join(settings.state, LEDGER_FILE)


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TriggerRecord:
    """One decision of the trigger check, as stored in the ledger."""

    time: str
    """When the trigger happened (ISO 8601, UTC): the event's or the run's time."""
    dag_id: str
    run_id: str
    trigger: TriggerKind
    decision: Decision
    reason: str
    report_uri: str | None = None
    p_values: dict[str, float | None] = field(default_factory=dict)
    snapshot_id: str | None = None
    dataset_hash: str | None = None
    """The dataset version the run would train on."""

    @property
    def at(self) -> datetime:
        return _utc(self.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TriggerRecord:
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        known["p_values"] = dict(known.get("p_values") or {})
        return cls(**known)


class TriggerLedger:
    """The append-only JSONL ledger of trigger decisions, on a local path or `s3://`.

    Appending rewrites the file (object stores have no append); the fine-tune DAG runs one at a time
    (`max_active_runs=1`), so there is a single writer."""

    def __init__(self, uri: str) -> None:
        self.uri = storage.check_uri(uri, "trigger ledger")

    def read(self) -> list[TriggerRecord]:
        try:
            text = storage.read_text(self.uri)
        except FileNotFoundError:
            return []
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(TriggerRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise InputDataError(
                    f"trigger ledger {self.uri} line {n} is not a trigger record ({exc}); fix or remove the line"
                ) from None
        return records

    def append(self, record: TriggerRecord) -> None:
        try:
            old = storage.read_text(self.uri)
        except FileNotFoundError:
            old = ""
        if old and not old.endswith("\n"):
            old += "\n"
        storage.write_text(self.uri, old + json.dumps(record.to_dict(), sort_keys=True) + "\n")


@dataclass(frozen=True)
class Trigger:
    """What started a run, before the cooldown decision."""

    kind: TriggerKind
    at: datetime
    report_uri: str | None = None
    p_values: dict[str, float | None] = field(default_factory=dict)
    snapshot_id: str | None = None
    note: str = ""
    dataset_hash: str | None = None
    dataset_uri: str | None = None
    steered_by: str | None = None


@dataclass(frozen=True)
class TriggerEvent:
    """An asset event reduced to what the decision needs (the Airflow layer builds these)."""

    timestamp: datetime
    extra: dict[str, Any] = field(default_factory=dict)


P_VALUE_KEYS = ("p_value", "p_value_mmd", "p_value_classifier")


def _p_values(extra: dict[str, Any]) -> dict[str, float | None]:
    out = {k: extra[k] for k in P_VALUE_KEYS if k in extra}
    if isinstance(extra.get("p_values"), dict):
        out.update(extra["p_values"])
    return out


def classify_trigger(
    *,
    run_time: datetime,
    run_type: str,
    conf: dict[str, Any] | None = None,
    corpus_events: list[TriggerEvent] = (),  # type: ignore[assignment]
    drift_events: list[TriggerEvent] = (),  # type: ignore[assignment]
    dataset_events: list[TriggerEvent] = (),  # type: ignore[assignment]
) -> Trigger:
    """Which kind of trigger started a run.

    Order: an explicit `conf["trigger"]` (a manual run or `dag.test()` saying what it stands for, with
    optional `time`, `report_uri`, `p_values`, `snapshot_id`); then corpus events (a new snapshot is
    never held back, even when drift events arrived with it); then drift events; then the run type
    (`scheduled` -> schedule, anything else -> manual). The time is the newest triggering event's time,
    else `conf["time"]`, else `run_time`.

    A dataset event (`llmops_dataset`) counts as the trigger that started its build (its extra's
    `trigger`: `drift` or `corpus`) and names the dataset version (`dataset_hash`, `dataset_uri`)."""
    conf = dict(conf or {})
    if dataset_events:
        last_ds = max(dataset_events, key=lambda e: e.timestamp)
        extra = last_ds.extra
        as_event = [TriggerEvent(last_ds.timestamp, extra)]
        inner = classify_trigger(
            run_time=run_time,
            run_type=run_type,
            conf=conf,
            corpus_events=[] if extra.get("trigger") == "drift" else as_event,
            drift_events=as_event if extra.get("trigger") == "drift" else [],
        )
        return Trigger(
            inner.kind,
            inner.at,
            inner.report_uri,
            inner.p_values,
            inner.snapshot_id,
            f"{inner.note} via dataset {str(extra.get('dataset_hash') or '?')[:12]}",
            extra.get("dataset_hash"),
            extra.get("dataset_uri"),
            extra.get("steered_by"),
        )
    if conf.get("trigger"):
        kind = str(conf["trigger"])
        if kind not in TRIGGER_KINDS:
            raise ConfigError(f"run conf trigger = {kind!r}: use one of {', '.join(TRIGGER_KINDS)}")
        at = _utc(conf["time"]) if conf.get("time") else _utc(run_time)
        p_values = dict(conf.get("p_values") or {}) or _p_values(conf)
        return Trigger(kind, at, conf.get("report_uri"), p_values, conf.get("snapshot_id"), "from the run conf")  # type: ignore[arg-type]
    drift_last = max(drift_events, key=lambda e: e.timestamp, default=None)
    if corpus_events:
        last = max(corpus_events, key=lambda e: e.timestamp)
        note = f"{len(corpus_events)} corpus event(s)"
        if drift_last is not None:
            note += f" and {len(drift_events)} drift event(s)"
        return Trigger(
            "corpus",
            _utc(last.timestamp),
            drift_last.extra.get("report_uri") if drift_last else None,
            _p_values(drift_last.extra) if drift_last else {},
            last.extra.get("snapshot_id"),
            note,
        )
    if drift_last is not None:
        return Trigger(
            "drift",
            _utc(drift_last.timestamp),
            drift_last.extra.get("report_uri"),
            _p_values(drift_last.extra),
            None,
            f"{len(drift_events)} drift event(s)",
        )
    kind: TriggerKind = "schedule" if run_type == "scheduled" else "manual"
    return Trigger(kind, _utc(run_time), note=f"run type {run_type}")


def decide(trigger: Trigger, history: list[TriggerRecord], cooldown_hours: float) -> tuple[Decision, str]:
    """Run or skip, with the reason. Only drift triggers are subject to the cooldown: one is skipped when
    a drift trigger was answered less than `cooldown_hours` before (or after) its time: a retrain went
    ahead, or found no new data (asking again within the window would only find the same)."""
    if trigger.kind != "drift":
        return "run", f"{trigger.kind} trigger ({trigger.note}); the drift cooldown does not apply"
    cooldown = timedelta(hours=cooldown_hours)
    ran = [r for r in history if r.trigger == "drift" and (r.decision == "run" or NO_NEW_DATA in r.reason)]
    close = [r for r in ran if abs(trigger.at - r.at) < cooldown]
    if close:
        last = max(close, key=lambda r: r.at)
        answer = "went ahead" if last.decision == "run" else "found no new data"
        return "skipped", (
            f"drift cooldown: a drift-triggered retrain ({last.dag_id} run {last.run_id}) {answer} at "
            f"{last.at.isoformat()}, less than {cooldown_hours:g} h before this trigger at "
            f"{trigger.at.isoformat()}; the next one may run from {(last.at + cooldown).isoformat()}"
        )
    if ran:
        last = max(ran, key=lambda r: r.at)
        return "run", (
            f"drift trigger ({trigger.note}); the last drift-triggered retrain was at {last.at.isoformat()}, "
            f"at least {cooldown_hours:g} h before"
        )
    return "run", f"drift trigger ({trigger.note}); no earlier drift-triggered retrain"


NO_NEW_DATA = "no new data since"
"""The reason's words for a run skipped because the champion already learnt its dataset."""

TAG_DATASET_HASH = "llmops.dataset_hash"
"""Model version tag: the dataset version (`dataset_hash` of `llmops dataset build`) it was trained on."""

TAG_TRAINING_PARAMS = "llmops.training_params_sha256"
"""Model version tag: hash of the training parameters of the run (base model and hyperparameters)."""


def training_params_sha256(params: dict[str, Any]) -> str:
    """A stable hash of the training parameters (JSON, sorted keys): equal parameters, equal hash."""
    import hashlib

    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def nothing_new(
    trigger: Trigger, dataset_hash: str | None, params_sha256: str | None, champion: dict[str, Any] | None
) -> str | None:
    """The reason to skip a run that has nothing to learn, or None. `champion`: `version` and `tags` of
    the champion version (None: there is none, so everything is new)."""
    if not champion or not dataset_hash:
        return None
    tags = champion.get("tags") or {}
    if tags.get(TAG_DATASET_HASH) != dataset_hash:
        return None
    if params_sha256 and tags.get(TAG_TRAINING_PARAMS) not in (None, params_sha256):
        return None
    prefix = "drift trigger: " if trigger.kind == "drift" else ""
    return (
        f"{prefix}{NO_NEW_DATA} v{champion.get('version')}: the champion was trained on dataset "
        f"{dataset_hash[:12]} with the same training parameters; nothing to learn (force with conf force=true)"
    )


def evaluate_trigger(
    ledger: TriggerLedger,
    *,
    dag_id: str,
    run_id: str,
    trigger: Trigger,
    cooldown_hours: float,
    snapshot_id: str | None = None,
    dataset_hash: str | None = None,
    params_sha256: str | None = None,
    champion: dict[str, Any] | None = None,
    force: bool = False,
) -> TriggerRecord:
    """Decide for one run and record the decision (once per run: a retry gets the recorded one).

    The drift cooldown first, then "nothing new" (`nothing_new`) unless `force`."""
    if cooldown_hours < 0:
        raise ConfigError(f"retrain_cooldown_hours = {cooldown_hours}: must be 0 or more")
    history = ledger.read()
    for rec in history:
        if rec.dag_id == dag_id and rec.run_id == run_id:
            log.info("run %s already decided: %s (%s)", run_id, rec.decision, rec.reason)
            return rec
    decision, reason = decide(trigger, history, cooldown_hours)
    dataset_hash = dataset_hash or trigger.dataset_hash
    if decision == "run" and not force:
        stale = nothing_new(trigger, dataset_hash, params_sha256, champion)
        if stale:
            decision, reason = "skipped", stale
    record = TriggerRecord(
        time=trigger.at.astimezone(UTC).isoformat(),
        dag_id=dag_id,
        run_id=run_id,
        trigger=trigger.kind,
        decision=decision,
        reason=reason,
        report_uri=trigger.report_uri,
        p_values=dict(trigger.p_values),
        snapshot_id=snapshot_id or trigger.snapshot_id,
        dataset_hash=dataset_hash,
    )
    ledger.append(record)
    log.info("trigger %s for %s: %s (%s)", record.trigger, run_id, decision, reason)
    return record


def latest_snapshot_id(processed_uri: str) -> str | None:
    """The snapshot id of the newest corpus snapshot (the preprocessing output's manifest), if any."""
    from llmops.rag.snapshot import read_manifest_or_none

    manifest = read_manifest_or_none(processed_uri)
    return manifest.get("snapshot_id") if manifest else None


def summary_of(record: TriggerRecord, ledger: TriggerLedger, cooldown_hours: float) -> dict[str, Any]:
    """What the trigger task returns (XCom): the lead passes `trigger` on as a tag of the training run."""
    return {
        "trigger": record.trigger,
        "decision": record.decision,
        "reason": record.reason,
        "snapshot_id": record.snapshot_id,
        "dataset_hash": record.dataset_hash,
        "time": record.time,
        "run_id": record.run_id,
        "report_uri": record.report_uri,
        "p_values": record.p_values,
        "cooldown_hours": cooldown_hours,
        "ledger_uri": ledger.uri,
    }


def champion_lineage(settings: Settings) -> dict[str, Any] | None:
    """The champion's `version` and lineage `tags` (no download), or None when there is no champion."""
    from llmops.registry import current_champion

    champion = current_champion(settings=settings, download=False)
    if champion is None:
        return None
    return {"version": champion.version, "tags": dict(champion.tags)}
