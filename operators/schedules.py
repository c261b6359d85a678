"""Every cron schedule of the project, from one helper: runs start on the cron, never for a time long past.

    schedule=cron_schedule(settings.drift_schedule)                          # cron, preset or `none`
    schedule=cron_schedule(settings.retrain_schedule, assets=CORPUS | RETRAIN)  # cron OR asset events

Airflow's cron timetables, with `catchup=False`, still start the most recent past cron time when a DAG
is first scheduled, unpaused or the scheduler comes back: `CronTriggerTimetable.next_dagrun_info` takes
the max of `_align_to_prev(now)` and the start date, and its `run_immediately` has no effect once the
DAG has a `start_date` (airflow/timetables/trigger.py). For a weekly GPU retrain that means a full
training run the moment someone starts Airflow on a Wednesday. `UpcomingCronTimetable` keeps every
other rule and changes only that one: with `catchup=False`, a cron time that passed more than
`DUE_GRACE` ago is not run; the next run is the next cron time to come.

The class is a core timetable registered by the project's Airflow plugin (`LlmopsPlugin.timetables`),
as Airflow requires for a custom timetable to be serialized and read back by the scheduler.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from airflow.timetables.base import DagRunInfo
from airflow.timetables.trigger import CronTriggerTimetable

from llmops.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow.timetables.base import DataInterval, TimeRestriction
    from pendulum import DateTime

TIMEZONE = "UTC"
"""Every schedule setting is read in UTC."""

DUE_GRACE = datetime.timedelta(minutes=5)
"""A cron time that passed less than this long ago still runs: the scheduler creates a run a moment after
its time, and the DAG processor recomputes the next run on every parse, possibly in that moment."""

PASS_THROUGH = ("@once", "@continuous")
"""Presets that are not crons: Airflow's own timetables handle them."""


def _utcnow() -> DateTime:
    import pendulum

    return pendulum.now("UTC")


class UpcomingCronTimetable(CronTriggerTimetable):
    """`CronTriggerTimetable` whose first run (after registration, unpausing or downtime) is never a cron
    time long past when `catchup=False`; with `catchup=True` it is the stock timetable."""

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if restriction.catchup:
            return super().next_dagrun_info(
                last_automated_data_interval=last_automated_data_interval, restriction=restriction
            )
        now = _utcnow()
        # The first cron time the DAG may run at: after its last scheduled run, not before its start date.
        floor = [self._get_next(last_automated_data_interval.end)] if last_automated_data_interval else []
        if restriction.earliest is not None:
            floor.append(self._align_to_next(restriction.earliest))
        due = self._align_to_prev(now)  # the latest cron time that has come
        if floor and max(floor) > due:
            next_time = max(floor)  # nothing has come due yet: the floor is in the future
        elif now - due <= DUE_GRACE:
            next_time = due  # it came due a moment ago and has not been run
        else:
            next_time = self._get_next(due)  # long past: skip it, wait for the next one
        if restriction.latest is not None and restriction.latest < next_time:
            return None
        return DagRunInfo.interval(next_time - self._interval, next_time)


def cron_schedule(value: str, *, assets: Any = None) -> Any:
    """A schedule setting (cron, preset such as `@hourly`, or `none`) as a DAG's `schedule`.

    :param assets: an asset condition (`CORPUS | RETRAIN`): the DAG then also runs on its asset events
        (`AssetOrTimeSchedule`); with `none`, only on them.
    :return: `None` (manual runs only), the asset condition, `"@once"`/`"@continuous"`, or a timetable.
    """
    from airflow.sdk import AssetOrTimeSchedule

    value = str(value).strip()
    if not value or value.lower() == "none":
        return assets
    if value in PASS_THROUGH:
        if assets is not None:
            raise ConfigError(f"schedule {value!r} cannot be combined with asset events: give a cron or 'none'")
        return value
    timetable = UpcomingCronTimetable(value, timezone=TIMEZONE)
    timetable.validate()
    if assets is None:
        return timetable
    return AssetOrTimeSchedule(timetable=timetable, assets=assets)
