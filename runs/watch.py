"""Tokens that change when what a page shows about runs changes (issue 12, item 6: live pages).

A page polls with the token it was rendered with; the answer is 204 while the token is the same, so
an open page costs one small query every few seconds and still notices a run that the scheduler or
another user started.
"""

from __future__ import annotations

import hashlib

from django.db.models import Count, Max

from runs.models import Run
from tasks.models import Task

# How often an open task page or task list asks whether anything changed.
WATCH_SECONDS = 5


def task_token(task_id: int) -> str:
    """The task's status and its latest run (id, status): changes when a run starts or ends, whoever started it."""
    status = Task.objects.filter(pk=task_id).values_list("status", flat=True).first() or "gone"
    latest = Run.objects.filter(task_id=task_id).order_by("-started_at", "-id").values_list("pk", "status").first()
    return token_of(status, *(latest or (None, None)))


def token_of(task_status: str, run_id: int | None, run_status: str | None) -> str:
    """task_token() from values a page has already loaded (the task page: its task and latest run)."""
    return f"{task_status}-{run_id}-{run_status}" if run_id else f"{task_status}-none"


def tasks_token() -> str:
    """One token for the task list: a task added, renamed, deleted, started, finished, broken or
    rescheduled, or any run started or ended, changes it. A short hash; tasks are tens, not thousands.
    """
    rows = list(
        Task.objects.order_by("pk").values_list(
            "pk", "name", "status", "broken", "schedule_interval_seconds", "schedule_anchor"
        )
    )
    runs = Run.objects.aggregate(newest=Max("pk"), ended=Max("finished_at"), count=Count("pk"))
    return hashlib.sha256(repr((rows, sorted(runs.items()))).encode()).hexdigest()[:20]
