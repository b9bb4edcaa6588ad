"""What is worth telling a person, and handing it to a django-q2 job once the change is committed.

Layer: above `runs` and `tasks`, below `scheduling` (the breaker and the tick call it). Nothing here
sends anything: `announce` only enqueues `scheduling.notifications.jobs.send_notification_job` after the caller's
transaction commits, so a slow or failing mail server never holds a request, a run's finalisation or
the tick's transaction (issue 12, item 4).
"""

from __future__ import annotations

import logging
import uuid
from enum import StrEnum

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


class Event(StrEnum):
    """The notification kinds; the value is the webhook's `event` field."""

    RUN_FAILED = "run.failed"
    RUN_ERRORS = "run.errors"
    TASK_BROKEN = "task.broken"
    SCHEDULE_STALLED = "schedule.stalled"


def run_event(*, status: str, errors: int, broke: bool) -> Event | None:
    """The one event a finished run is announced with, or None when it went well.

    `status` is the run's final status (runs.models.Run.Status values), `errors` its count of
    messages not copied, `broke` whether the breaker tripped on it. A broken task says the most (the
    schedule is off until a person acts), then a failed run, then a run with message errors.
    A cancelled run was stopped by a person, so nobody is told.
    """
    if broke:
        return Event.TASK_BROKEN
    if status == "failed":
        return Event.RUN_FAILED
    if status == "done" and errors > 0:
        return Event.RUN_ERRORS
    return None


def wanted(task_id: int) -> bool:
    """Whether anyone gets notifications of this task: its recipients, its webhook, or the site's webhook."""
    from tasks.models import Task

    if settings.NOTIFY_WEBHOOK_URL:
        return True
    row = Task.objects.filter(pk=task_id).values_list("notify_emails", "notify_webhook_url").first()
    return bool(row and (row[0].strip() or row[1]))


def announce(event: Event, *, task_id: int, run_id: int | None = None, detail: str = "") -> str | None:
    """Enqueue one notification after the current transaction commits; returns its id (or None: nobody to tell).

    `detail` is a short sentence for the message (e.g. "10 accounts need a test"). The id travels in
    the webhook body so a receiver can drop a retried delivery it already has.
    """
    if not wanted(task_id):
        return None
    notice_id = str(uuid.uuid4())
    args = (str(event), task_id, run_id, detail, notice_id)
    transaction.on_commit(lambda: _push(args))
    return notice_id


def _push(args: tuple) -> None:
    from runs import q2

    try:
        # The copy cluster's queue: webhook retries may wait a while, and must never delay the tick.
        q2.enqueue(q2.NOTIFY_JOB, *args, task_name=f"notify {args[0]} task {args[1]}")
    except Exception:
        logger.exception("could not enqueue the %s notification of task %s", args[0], args[1])


def after_run(*, task_id: int, run_id: int, status: str, errors: int, broke: bool) -> str | None:
    """Announce a finished run when it calls for it (see run_event); returns the notification id or None."""
    event = run_event(status=status, errors=errors, broke=broke)
    if event is None:
        return None
    return announce(event, task_id=task_id, run_id=run_id)
