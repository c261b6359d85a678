"""Cron schedules: the real timetable never starts a cron time long past, and every scheduled DAG uses it."""

from __future__ import annotations

import datetime

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from llmops.exceptions import ConfigError
from llmops_operators import schedules
from llmops_operators.schedules import DUE_GRACE, UpcomingCronTimetable, cron_schedule

START = pendulum.datetime(2026, 1, 1, tz="UTC")
WEEKLY = "0 3 * * 0"  # the retrain_schedule default: Sundays 03:00 UTC
# A Wednesday: the last Sunday 03:00 (2026-11-22) is three days past, the next is 2026-11-29.
WEDNESDAY = pendulum.datetime(2026, 11, 25, 12, 0, tz="UTC")


def no_catchup(earliest=START):
    return TimeRestriction(earliest=earliest, latest=None, catchup=False)


def at(monkeypatch, now):
    monkeypatch.setattr(schedules, "_utcnow", lambda: now)


def test_stock_cron_trigger_timetable_fires_the_past_interval(monkeypatch):
    """Why the project has its own timetable: Airflow's starts last Sunday's run on a Wednesday."""
    from airflow.timetables.trigger import CronTriggerTimetable

    monkeypatch.setattr("airflow.timetables.trigger.utcnow", lambda: WEDNESDAY)
    info = CronTriggerTimetable(WEEKLY, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=no_catchup()
    )
    assert info.run_after == pendulum.datetime(2026, 11, 22, 3, tz="UTC")


def test_first_run_is_the_next_cron_time_not_the_past_one(monkeypatch):
    at(monkeypatch, WEDNESDAY)
    info = UpcomingCronTimetable(WEEKLY, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=no_catchup()
    )
    assert info.run_after == pendulum.datetime(2026, 11, 29, 3, tz="UTC")
    assert info.logical_date == info.run_after


def test_first_run_with_the_real_clock_is_in_the_future():
    """No fake clock: a daily cron twelve hours from now has its last time twelve hours past."""
    now = pendulum.now("UTC")
    cron = f"{now.minute} {(now.hour + 12) % 24} * * *"
    info = UpcomingCronTimetable(cron, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=no_catchup(earliest=now.subtract(days=30))
    )
    assert info.run_after > now
    assert info.run_after - now <= datetime.timedelta(hours=12, minutes=1)


def test_scheduler_down_over_a_cron_time_does_not_start_it(monkeypatch):
    """The last scheduled run was two Sundays ago; Airflow comes back on Wednesday: next Sunday, not last."""
    at(monkeypatch, WEDNESDAY)
    last_end = pendulum.datetime(2026, 11, 15, 3, tz="UTC")
    info = UpcomingCronTimetable(WEEKLY, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=DataInterval(last_end, last_end), restriction=no_catchup()
    )
    assert info.run_after == pendulum.datetime(2026, 11, 29, 3, tz="UTC")


def test_a_cron_time_that_just_came_due_still_runs(monkeypatch):
    """The DAG processor may recompute between the cron time and the scheduler creating its run."""
    due = pendulum.datetime(2026, 11, 22, 3, tz="UTC")
    at(monkeypatch, due + DUE_GRACE - datetime.timedelta(seconds=1))
    last_end = pendulum.datetime(2026, 11, 15, 3, tz="UTC")
    info = UpcomingCronTimetable(WEEKLY, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=DataInterval(last_end, last_end), restriction=no_catchup()
    )
    assert info.run_after == due
    at(monkeypatch, due + DUE_GRACE + datetime.timedelta(seconds=1))
    info = UpcomingCronTimetable(WEEKLY, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=DataInterval(last_end, last_end), restriction=no_catchup()
    )
    assert info.run_after == pendulum.datetime(2026, 11, 29, 3, tz="UTC")


def test_after_a_run_the_next_is_one_period_later(monkeypatch):
    every_minute = UpcomingCronTimetable("* * * * *", timezone="UTC")
    ran = pendulum.datetime(2026, 11, 25, 12, 0, tz="UTC")
    at(monkeypatch, ran.add(seconds=2))
    info = every_minute.next_dagrun_info(
        last_automated_data_interval=DataInterval(ran, ran), restriction=no_catchup()
    )
    assert info.run_after == ran.add(minutes=1)


def test_start_date_in_the_future_and_end_date_are_kept(monkeypatch):
    at(monkeypatch, WEDNESDAY)
    table = UpcomingCronTimetable(WEEKLY, timezone="UTC")
    later = pendulum.datetime(2027, 3, 1, tz="UTC")
    info = table.next_dagrun_info(last_automated_data_interval=None, restriction=no_catchup(earliest=later))
    assert info.run_after == pendulum.datetime(2027, 3, 7, 3, tz="UTC")
    ended = TimeRestriction(earliest=START, latest=pendulum.datetime(2026, 11, 28, tz="UTC"), catchup=False)
    assert table.next_dagrun_info(last_automated_data_interval=None, restriction=ended) is None


def test_catchup_true_is_the_stock_behaviour(monkeypatch):
    at(monkeypatch, WEDNESDAY)
    info = UpcomingCronTimetable(WEEKLY, timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(earliest=START, latest=None, catchup=True)
    )
    assert info.run_after == pendulum.datetime(2026, 1, 4, 3, tz="UTC")


def test_cron_schedule_values():
    from airflow.sdk import Asset, AssetOrTimeSchedule

    assert cron_schedule("none") is None
    assert cron_schedule("@once") == "@once"
    asset = Asset(name="a", uri="llmops://a")
    assert cron_schedule("none", assets=asset) is asset
    hourly = cron_schedule("@hourly")
    assert isinstance(hourly, UpcomingCronTimetable) and hourly.summary == "0 * * * *"
    both = cron_schedule(WEEKLY, assets=asset)
    assert isinstance(both, AssetOrTimeSchedule) and isinstance(both.timetable, UpcomingCronTimetable)
    with pytest.raises(ConfigError, match="'@continuous' cannot be combined"):
        cron_schedule("@continuous", assets=asset)


@pytest.mark.parametrize(
    ("dag_id", "summary"),
    [("llmops_data_sensor", "*/5 * * * *"), ("llmops_drift", "0 * * * *"), ("llmops_finetune", "Asset or 0 3 * * 0")],
)
def test_every_scheduled_dag_uses_the_helper_and_round_trips_through_serialization(dagbag, dag_id, summary):
    """The DAG processor serializes the timetable and the scheduler reads it back (plugin-registered)."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dagbag.get_dag(dag_id)
    data = DagSerialization.to_dict(dag)
    table = DagSerialization.from_dict(data).timetable
    inner = getattr(table, "timetable", table)
    assert type(inner) is UpcomingCronTimetable, type(inner)
    assert table.summary == summary
