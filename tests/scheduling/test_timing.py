from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from scheduling.timing import next_run_at, rfc3339

ANCHOR = datetime(2026, 7, 3, 10, 0, tzinfo=UTC)
HOUR = 3600


def test_first_run_is_one_interval_after_the_anchor():
    assert next_run_at(
        interval_seconds=HOUR,
        anchor=ANCHOR,
        last_finished_at=None,
        running=False,
        broken=False,
    ) == ANCHOR + timedelta(hours=1)


def test_later_runs_are_one_interval_after_the_last_finished_run():
    finished = ANCHOR + timedelta(hours=1, minutes=7)
    assert next_run_at(
        interval_seconds=HOUR,
        anchor=ANCHOR,
        last_finished_at=finished,
        running=False,
        broken=False,
    ) == finished + timedelta(hours=1)


def test_a_run_older_than_the_anchor_does_not_fire_at_once():
    # The task ran yesterday, the schedule was enabled now: the first run is one interval after enabling.
    yesterday = ANCHOR - timedelta(days=1)
    assert next_run_at(
        interval_seconds=HOUR,
        anchor=ANCHOR,
        last_finished_at=yesterday,
        running=False,
        broken=False,
    ) == ANCHOR + timedelta(hours=1)


def test_none_when_the_schedule_is_off():
    assert (
        next_run_at(
            interval_seconds=0,
            anchor=ANCHOR,
            last_finished_at=None,
            running=False,
            broken=False,
        )
        is None
    )


def test_none_while_the_task_is_running():
    assert (
        next_run_at(
            interval_seconds=HOUR,
            anchor=ANCHOR,
            last_finished_at=None,
            running=True,
            broken=False,
        )
        is None
    )


def test_none_when_the_task_is_broken():
    assert (
        next_run_at(
            interval_seconds=HOUR,
            anchor=ANCHOR,
            last_finished_at=None,
            running=False,
            broken=True,
        )
        is None
    )


def test_none_without_an_anchor():
    assert (
        next_run_at(
            interval_seconds=HOUR,
            anchor=None,
            last_finished_at=None,
            running=False,
            broken=False,
        )
        is None
    )


def test_rfc3339_is_utc_with_z():
    paris = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 7, 3, 12, 0, 5, 123456, tzinfo=paris)) == "2026-07-03T10:00:05Z"
    assert rfc3339(None) is None
