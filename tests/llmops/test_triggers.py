"""The retrain-trigger ledger: drift cooldown, other triggers unaffected, idempotent per run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from llmops.exceptions import ConfigError
from llmops.triggers import (
    Trigger,
    TriggerEvent,
    TriggerLedger,
    classify_trigger,
    evaluate_trigger,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _drift(at: datetime, p: float = 0.002) -> Trigger:
    return Trigger("drift", at, report_uri=f"/reports/{at:%H%M}/report.html", p_values={"p_value": p})


def _decide(ledger, run_id, trigger, cooldown=24.0):
    return evaluate_trigger(ledger, dag_id="llmops_finetune", run_id=run_id, trigger=trigger,
                            cooldown_hours=cooldown, snapshot_id="snap-1")


def test_drift_cooldown_first_runs_second_skipped_after_window_runs(tmp_path):
    ledger = TriggerLedger(str(tmp_path / "state" / "triggers.jsonl"))
    first = _decide(ledger, "r1", _drift(T0))
    assert first.decision == "run"
    second = _decide(ledger, "r2", _drift(T0 + timedelta(hours=5)))
    assert second.decision == "skipped"
    assert "cooldown" in second.reason and "r1" in second.reason
    assert "2026-11-24T08:00:00+00:00" in second.reason  # when the next one may run
    third = _decide(ledger, "r3", _drift(T0 + timedelta(hours=24)))
    assert third.decision == "run"
    # Skipped triggers do not extend the window: measured from the last one that ran (r3).
    fourth = _decide(ledger, "r4", _drift(T0 + timedelta(hours=30)))
    assert fourth.decision == "skipped"

    rows = [json.loads(line) for line in (tmp_path / "state" / "triggers.jsonl").read_text().splitlines()]
    assert [(r["run_id"], r["decision"]) for r in rows] == [
        ("r1", "run"), ("r2", "skipped"), ("r3", "run"), ("r4", "skipped"),
    ]
    skipped = rows[1]
    assert skipped["trigger"] == "drift"
    assert skipped["report_uri"] == "/reports/1300/report.html"
    assert skipped["p_values"] == {"p_value": 0.002}
    assert skipped["snapshot_id"] == "snap-1"
    assert skipped["time"] == "2026-11-23T13:00:00+00:00"
    assert skipped["reason"]


def test_corpus_schedule_and_manual_triggers_are_not_blocked(tmp_path):
    ledger = TriggerLedger(str(tmp_path / "triggers.jsonl"))
    assert _decide(ledger, "d1", _drift(T0)).decision == "run"
    for i, kind in enumerate(("corpus", "schedule", "manual")):
        rec = _decide(ledger, f"{kind}-1", Trigger(kind, T0 + timedelta(hours=i + 1)))
        assert rec.decision == "run", rec.reason
        assert "does not apply" in rec.reason
    # ...and they do not reset the drift cooldown either way.
    assert _decide(ledger, "d2", _drift(T0 + timedelta(hours=6))).decision == "skipped"


def test_retry_of_the_same_run_gets_the_recorded_decision(tmp_path):
    ledger = TriggerLedger(str(tmp_path / "triggers.jsonl"))
    assert _decide(ledger, "r1", _drift(T0)).decision == "run"
    # A retried task must not find its own earlier "run" and skip itself.
    again = _decide(ledger, "r1", _drift(T0 + timedelta(minutes=10)))
    assert again.decision == "run"
    assert len(ledger.read()) == 1


def test_zero_cooldown_never_skips_and_negative_is_refused(tmp_path):
    ledger = TriggerLedger(str(tmp_path / "triggers.jsonl"))
    assert _decide(ledger, "a", _drift(T0), cooldown=0).decision == "run"
    assert _decide(ledger, "b", _drift(T0), cooldown=0).decision == "run"
    with pytest.raises(ConfigError, match="retrain_cooldown_hours"):
        _decide(ledger, "c", _drift(T0), cooldown=-1)


def test_classify_trigger_from_events_conf_and_run_type():
    run_time = T0 + timedelta(hours=1)
    drift_ev = TriggerEvent(T0, {"report_uri": "/r/report.html", "p_value": 0.01, "p_value_mmd": 0.01})
    corpus_ev = TriggerEvent(T0 + timedelta(minutes=30), {"snapshot_id": "s-9"})

    t = classify_trigger(run_time=run_time, run_type="asset_triggered", drift_events=[drift_ev])
    assert (t.kind, t.at, t.report_uri, t.p_values["p_value_mmd"]) == ("drift", T0, "/r/report.html", 0.01)

    t = classify_trigger(run_time=run_time, run_type="asset_triggered", corpus_events=[corpus_ev], drift_events=[drift_ev])
    assert (t.kind, t.snapshot_id, t.at) == ("corpus", "s-9", corpus_ev.timestamp)

    assert classify_trigger(run_time=run_time, run_type="scheduled").kind == "schedule"
    t = classify_trigger(run_time=run_time, run_type="manual")
    assert (t.kind, t.at) == ("manual", run_time)

    t = classify_trigger(run_time=run_time, run_type="manual",
                         conf={"trigger": "drift", "time": "2026-11-20T00:00:00Z", "report_uri": "x"})
    assert (t.kind, t.at, t.report_uri) == ("drift", datetime(2026, 11, 20, tzinfo=UTC), "x")
    with pytest.raises(ConfigError, match="trigger = 'storm'"):
        classify_trigger(run_time=run_time, run_type="manual", conf={"trigger": "storm"})


@pytest.mark.s3
def test_ledger_on_s3(s3_bucket):
    ledger = TriggerLedger(f"s3://{s3_bucket}/state/triggers.jsonl")
    assert ledger.read() == []
    assert _decide(ledger, "r1", _drift(T0)).decision == "run"
    assert _decide(ledger, "r2", _drift(T0 + timedelta(hours=1))).decision == "skipped"
    assert [r.run_id for r in ledger.read()] == ["r1", "r2"]


def test_triggers_command_shows_the_ledger(tmp_path, capsys):
    from llmops.cli import main

    ledger = TriggerLedger(str(tmp_path / "triggers.jsonl"))
    _decide(ledger, "r1", _drift(T0))
    _decide(ledger, "r2", _drift(T0 + timedelta(hours=1)))
    assert main(["triggers", "--ledger", ledger.uri, "--last", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["decision"]) for r in out["records"]] == [("r2", "skipped")]


# --- retrain only when there is something to learn -------------------------------------------------------

from llmops.triggers import TAG_DATASET_HASH, TAG_TRAINING_PARAMS, nothing_new, training_params_sha256  # noqa: E402

PARAMS = training_params_sha256({"base_model": "/m", "lora_r": 8})
CHAMPION = {"version": "2", "tags": {TAG_DATASET_HASH: "ds-a", TAG_TRAINING_PARAMS: PARAMS}}


def test_training_params_hash_is_stable_and_sensitive():
    assert training_params_sha256({"lora_r": 8, "base_model": "/m"}) == PARAMS
    assert training_params_sha256({"base_model": "/m", "lora_r": 16}) != PARAMS


def test_nothing_new_only_for_the_champions_dataset_and_recipe():
    corpus = Trigger("corpus", T0)
    assert nothing_new(corpus, "ds-a", PARAMS, CHAMPION).startswith("no new data since v2: ")
    assert nothing_new(_drift(T0), "ds-a", PARAMS, CHAMPION).startswith("drift trigger: no new data since v2")
    assert nothing_new(corpus, "ds-b", PARAMS, CHAMPION) is None  # a new dataset version
    assert nothing_new(corpus, "ds-a", "other", CHAMPION) is None  # another recipe
    assert nothing_new(corpus, "ds-a", PARAMS, None) is None  # no champion yet
    assert nothing_new(corpus, None, PARAMS, CHAMPION) is None  # not a dataset version: cannot tell


def test_no_new_data_is_skipped_and_recorded_unless_forced(tmp_path):
    ledger = TriggerLedger(str(tmp_path / "triggers.jsonl"))

    def decide(run_id, trigger, **kw):
        return evaluate_trigger(ledger, dag_id="llmops_finetune", run_id=run_id, trigger=trigger, cooldown_hours=24,
                                dataset_hash="ds-a", params_sha256=PARAMS, champion=CHAMPION, **kw)

    skipped = decide("d1", _drift(T0))
    assert (skipped.decision, skipped.dataset_hash) == ("skipped", "ds-a")
    assert skipped.reason.startswith("drift trigger: no new data since v2")
    # A drift trigger answered with "no new data" starts the cooldown too: asking again finds the same.
    held = decide("d2", _drift(T0 + timedelta(hours=1)))
    assert held.decision == "skipped" and "drift cooldown" in held.reason and "found no new data" in held.reason
    assert decide("m1", Trigger("manual", T0), force=True).decision == "run"
    rows = [json.loads(x) for x in (tmp_path / "triggers.jsonl").read_text().splitlines()]
    assert [(r["run_id"], r["decision"], r["dataset_hash"]) for r in rows] == [
        ("d1", "skipped", "ds-a"), ("d2", "skipped", "ds-a"), ("m1", "run", "ds-a")
    ]


def test_a_dataset_event_stands_for_the_trigger_behind_the_build():
    drift_built = TriggerEvent(T0, {"trigger": "drift", "dataset_hash": "ds-b", "dataset_uri": "/d/versions/ds-b",
                                    "report_uri": "/r/1.html", "p_value": 0.001, "steered_by": "drift-1"})
    t = classify_trigger(run_time=T0, run_type="asset_triggered", dataset_events=[drift_built])
    assert (t.kind, t.report_uri, t.p_values, t.dataset_hash, t.steered_by) == (
        "drift", "/r/1.html", {"p_value": 0.001}, "ds-b", "drift-1"
    )
    corpus_built = TriggerEvent(T0 + timedelta(minutes=1), {"trigger": "corpus", "dataset_hash": "ds-c", "snapshot_id": "s-9"})
    t = classify_trigger(run_time=T0, run_type="asset_triggered", dataset_events=[drift_built, corpus_built])
    assert (t.kind, t.snapshot_id, t.dataset_hash) == ("corpus", "s-9", "ds-c")
    assert "via dataset ds-c" in t.note
