"""The schedule breaker: a scheduled run that ends with errors switches its task's schedule off.

`runs.orchestrator` calls `after_run(run)` inside the transaction that finalises the run, so the run's
final state and the breaker commit together: a crash between the two can neither leave a failed scheduled
run with its schedule still on, nor switch a schedule off for a run that is still recorded as running.
"""

from __future__ import annotations

import logging

from runs.models import Run
from scheduling.notifications.events import after_run as announce_run
from tasks.models import ScheduleInterval, Task

logger = logging.getLogger(__name__)


def should_break(*, trigger: str, status: str, errors: int, interrupted: bool = False) -> bool:
    """Whether a finished run trips the breaker: only a scheduled run with errors.

    Manual runs never trip it; cancelled runs and runs interrupted by a dying worker do not either.
    """
    return trigger == Run.Trigger.SCHEDULED and errors > 0 and status != Run.Status.CANCELLED and not interrupted


def after_run(run: Run) -> bool:
    """Trip the breaker if `run` calls for it, then announce the run; returns True when the breaker tripped.

    Call it inside the transaction that finalises the run, with the run's final status and totals
    set: broken = true and schedule off, in one UPDATE. The notification (a broken task, a failed run,
    a run with errors) is only enqueued, after that transaction commits (scheduling.notifications.events).
    """
    broke = _trip(run)
    try:
        announce_run(task_id=run.task_id, run_id=run.pk, status=run.status, errors=run.errors, broke=broke)
    except Exception:
        logger.exception("could not announce run %s", run.pk)
    return broke


def _trip(run: Run) -> bool:
    if not should_break(
        trigger=run.trigger,
        status=run.status,
        errors=run.errors,
        interrupted=run.interrupted,
    ):
        return False
    Task.objects.filter(pk=run.task_id).update(broken=True, schedule_interval_seconds=ScheduleInterval.OFF)
    logger.warning(
        "schedule of task %s switched off: scheduled run %s ended with %s errors",
        run.task_id,
        run.pk,
        run.errors,
    )
    return True
