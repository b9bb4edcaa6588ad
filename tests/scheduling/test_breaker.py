from __future__ import annotations

import pytest
from django.utils import timezone

from runs.models import AccountRun, Run
from scheduling.breaker import after_run, should_break
from tasks.models import Task
from tests.support.factories import AccountRunFactory, RunFactory, TaskFactory

S, M = Run.Trigger.SCHEDULED, Run.Trigger.MANUAL


@pytest.mark.parametrize(
    ("trigger", "status", "errors", "interrupted", "expected"),
    [
        (S, Run.Status.DONE, 2, False, True),  # scheduled run with errors trips it
        (S, Run.Status.FAILED, 1, False, True),
        (S, Run.Status.DONE, 0, False, False),  # clean scheduled run
        (M, Run.Status.DONE, 5, False, False),  # manual runs never trip it
        (M, Run.Status.FAILED, 5, False, False),
        (M, Run.Status.DONE, 0, False, False),
        (S, Run.Status.CANCELLED, 3, False, False),  # cancelled
        (S, Run.Status.FAILED, 3, True, False),  # interrupted (worker died)
    ],
)
def test_should_break_matrix(trigger, status, errors, interrupted, expected):
    assert should_break(trigger=trigger, status=status, errors=errors, interrupted=interrupted) is expected


def scheduled_task() -> Task:
    return TaskFactory(schedule_interval_seconds=3600, schedule_anchor=timezone.now())


@pytest.mark.django_db
def test_a_scheduled_run_with_errors_breaks_the_task():
    task = scheduled_task()
    run = RunFactory(
        task=task,
        trigger=S,
        status=Run.Status.DONE,
        errors=1,
        finished_at=timezone.now(),
    )
    assert after_run(run) is True
    task.refresh_from_db()
    assert task.broken is True
    assert task.schedule_interval_seconds == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("trigger", "status", "errors"),
    [(M, Run.Status.FAILED, 4), (S, Run.Status.DONE, 0), (S, Run.Status.CANCELLED, 2)],
    ids=["manual with errors", "clean scheduled", "cancelled scheduled"],
)
def test_other_runs_leave_the_schedule_on(trigger, status, errors):
    task = scheduled_task()
    run = RunFactory(
        task=task,
        trigger=trigger,
        status=status,
        errors=errors,
        finished_at=timezone.now(),
    )
    assert after_run(run) is False
    task.refresh_from_db()
    assert task.broken is False
    assert task.schedule_interval_seconds == 3600


@pytest.mark.django_db
def test_an_interrupted_scheduled_run_does_not_break_the_task():
    task = scheduled_task()
    run = RunFactory(
        task=task,
        trigger=S,
        status=Run.Status.FAILED,
        errors=1,
        finished_at=timezone.now(),
        interrupted=True,
    )
    AccountRunFactory(
        run=run,
        status=AccountRun.Status.FAILED,
        last_error="interrupted: worker stopped",
        interrupted=True,
    )
    assert after_run(run) is False
    task.refresh_from_db()
    assert task.broken is False and task.schedule_interval_seconds == 3600


@pytest.mark.django_db
def test_a_server_error_that_says_interrupted_still_breaks_the_task():
    # Interrupted is a field set by the reaper and the job, not a word in the server's message.
    task = scheduled_task()
    run = RunFactory(task=task, trigger=S, status=Run.Status.FAILED, errors=1, finished_at=timezone.now())
    AccountRunFactory(
        run=run, status=AccountRun.Status.FAILED, last_error="Interrupted system call while fetching", errors=1
    )
    assert after_run(run) is True
    task.refresh_from_db()
    assert task.broken is True
