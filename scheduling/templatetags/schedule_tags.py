"""Template helpers for the schedule partials: `{% load schedule_tags %}`."""

from __future__ import annotations

from typing import Any

from django import template

from scheduling.services import next_run_for
from tasks.models import ScheduleInterval, Task

register = template.Library()


def panel_state(task: Task) -> dict[str, Any]:
    """What the schedule panel shows for `task`, and a token that changes when any of it does."""
    next_run = next_run_for(task)
    return {
        "next_run": next_run,
        "presets": ScheduleInterval.choices,
        "polling": task.schedule_interval_seconds > 0 and not task.broken,
        "token": f"{task.schedule_interval_seconds}-{int(task.broken)}-{task.status}-{next_run.isoformat() if next_run else 'none'}",
    }


@register.simple_tag
def schedule_panel(task: Task) -> dict[str, Any]:
    """`{% schedule_panel task as panel %}`: panel.next_run, panel.presets, panel.polling, panel.token."""
    return panel_state(task)


@register.simple_tag
def next_run(task: Task) -> Any:
    """`{% next_run task as moment %}`: the task's next scheduled start (aware UTC datetime) or None."""
    return next_run_for(task)
