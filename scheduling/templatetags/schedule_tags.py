"""Template helpers for the schedule partials: `{% load schedule_tags %}`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone

from scheduling.jobs import last_tick_at
from scheduling.services import next_run_for
from tasks.models import ScheduleInterval, Task

register = template.Library()

# The tick runs about every 30 s; this long without one means nothing drives it.
TICK_STALE_SECONDS = 150


def panel_state(task: Task, now: datetime | None = None) -> dict[str, Any]:
    """What the schedule panel shows for `task`, and a token that changes when any of it does."""
    now = now or timezone.now()
    next_run = next_run_for(task)
    on = task.schedule_interval_seconds > 0 and not task.broken
    last_tick = last_tick_at() if on else None
    stale = on and (last_tick is None or now - last_tick > timedelta(seconds=TICK_STALE_SECONDS))
    return {
        "next_run": next_run,
        "presets": ScheduleInterval.choices,
        "polling": on,
        "scheduler_stale": stale,
        "last_tick": last_tick,
        "token": (
            f"{task.schedule_interval_seconds}-{int(task.broken)}-{task.status}-"
            f"{next_run.isoformat() if next_run else 'none'}-{int(stale)}"
        ),
    }


@register.simple_tag
def schedule_panel(task: Task) -> dict[str, Any]:
    """`{% schedule_panel task as panel %}`: panel.next_run, panel.presets, panel.polling, panel.token."""
    return panel_state(task)


@register.simple_tag
def next_run(task: Task) -> Any:
    """`{% next_run task as moment %}`: the task's next scheduled start (aware UTC datetime) or None."""
    return next_run_for(task)
