"""Next-run arithmetic: pure functions, no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def next_run_at(
    *,
    interval_seconds: int,
    anchor: datetime | None,
    last_finished_at: datetime | None,
    running: bool,
    broken: bool,
) -> datetime | None:
    """When the task should next start by itself, or None if it should not.

    One interval after the later of: the moment the schedule was enabled (the anchor) and the last
    finished run. So the first scheduled run is always one interval after enabling, even on a task
    that ran before. None while the schedule is off, the task is running or broken.
    """
    if interval_seconds <= 0 or broken or running or anchor is None:
        return None
    start = max(anchor, last_finished_at) if last_finished_at else anchor
    return start + timedelta(seconds=interval_seconds)


def rfc3339(moment: datetime | None) -> str | None:
    """An aware datetime as RFC 3339 in UTC with a "Z" (whole seconds), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
