from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runs.models import Run
from scheduling.services import (
    ScheduleRefused,
    due_tasks,
    last_finished_at,
    next_run_for,
    runs_newest_first,
    set_schedule,
    with_last_finished,
)
from tasks.models import Account, Task
from tests.support.factories import AccountFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 7, 3, 12, 0, tzinfo=UTC)


def make_tested_task(**kwargs) -> Task:
    task = TaskFactory(**kwargs)
    AccountFactory(task=task, tested=True)
    AccountFactory(task=task, tested=True)
    return task


def test_schedule_defaults():
    task = TaskFactory()
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0
    assert task.schedule_anchor is None
    assert task.broken is False
    assert next_run_for(task) is None


def test_enable_stamps_the_anchor_and_makes_the_task_schedulable():
    task = make_tested_task()
    set_schedule(task, 3600, now=NOW)
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 3600
    assert task.schedule_anchor == NOW
    assert list(Task.objects.schedulable()) == [task]
    assert next_run_for(task) == NOW + timedelta(hours=1)


def test_enable_break_and_re_enable():
    task = make_tested_task()
    set_schedule(task, 3600, now=NOW)
    Task.objects.filter(pk=task.pk).update(broken=True, schedule_interval_seconds=0)
    task.refresh_from_db()
    assert task.broken and task.schedule_interval_seconds == 0
    assert not Task.objects.schedulable().exists()

    later = NOW + timedelta(hours=2)
    set_schedule(task, 21600, now=later)
    task.refresh_from_db()
    assert task.broken is False
    assert task.schedule_interval_seconds == 21600
    assert task.schedule_anchor == later


def test_switching_off_is_always_allowed_and_clears_broken():
    task = TaskFactory(broken=True)  # no accounts at all
    AccountFactory(task=task)  # untested
    set_schedule(task, 0, now=NOW)
    task.refresh_from_db()
    assert task.broken is False
    assert task.schedule_interval_seconds == 0


@pytest.mark.parametrize(
    "accounts",
    [
        [],
        [{"tested": True}, {}],
        [
            {
                "source_test_status": Account.TestStatus.OK,
                "destination_test_status": Account.TestStatus.FAIL,
            }
        ],
        [
            {
                "source_test_status": Account.TestStatus.FAIL,
                "destination_test_status": Account.TestStatus.OK,
            }
        ],
        [{"source_test_status": Account.TestStatus.OK}],
    ],
    ids=[
        "no accounts",
        "one untested",
        "destination failed",
        "source failed",
        "destination untested",
    ],
)
def test_enabling_is_refused_unless_every_account_tested_ok_and_nothing_changes(
    accounts,
):
    task = TaskFactory(broken=True)
    for kwargs in accounts:
        AccountFactory(task=task, **kwargs)
    with pytest.raises(
        ScheduleRefused,
        match="all accounts must pass connection tests before scheduling",
    ):
        set_schedule(task, 3600, now=NOW)
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0
    assert task.schedule_anchor is None
    assert task.broken is True  # a refused change is no change


def test_only_presets_are_accepted():
    task = make_tested_task()
    for bad in (60, -3600, 7200, True, "3600", 3600.0):
        with pytest.raises(ValueError):
            set_schedule(task, bad, now=NOW)
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0


def test_schedulable_excludes_off_broken_and_running_tasks():
    on = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=NOW)
    TaskFactory()
    TaskFactory(schedule_interval_seconds=3600, schedule_anchor=NOW, broken=True)
    TaskFactory(schedule_interval_seconds=3600, schedule_anchor=NOW, status=Task.Status.RUNNING)
    assert list(Task.objects.schedulable()) == [on]


def test_runs_newest_first_with_trigger():
    task = TaskFactory()
    first = RunFactory(
        task=task,
        trigger=Run.Trigger.MANUAL,
        started_at=NOW - timedelta(hours=2),
        finished_at=NOW - timedelta(hours=1),
        copied=5,
        skipped=1,
    )
    second = RunFactory(
        task=task,
        trigger=Run.Trigger.SCHEDULED,
        status=Run.Status.RUNNING,
        started_at=NOW,
    )
    RunFactory()  # another task's run
    runs = list(runs_newest_first(task.pk))
    assert runs == [second, first]
    assert runs[0].trigger == Run.Trigger.SCHEDULED and runs[0].finished_at is None
    assert runs[1].trigger == Run.Trigger.MANUAL and runs[1].copied == 5


def test_last_finished_time_is_the_latest_finished_run():
    task = TaskFactory()
    assert last_finished_at(task.pk) is None
    RunFactory(
        task=task,
        started_at=NOW - timedelta(hours=5),
        finished_at=NOW - timedelta(hours=4),
    )
    RunFactory(
        task=task,
        started_at=NOW - timedelta(hours=3),
        finished_at=NOW - timedelta(hours=2),
    )
    RunFactory(task=task, status=Run.Status.RUNNING, started_at=NOW)
    assert last_finished_at(task.pk) == NOW - timedelta(hours=2)


def test_due_selection():
    anchor_old = NOW - timedelta(hours=2)
    due = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=anchor_old)
    recent = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=anchor_old)
    RunFactory(
        task=recent,
        started_at=NOW - timedelta(minutes=40),
        finished_at=NOW - timedelta(minutes=30),
    )
    TaskFactory(schedule_interval_seconds=21600, schedule_anchor=anchor_old)  # six hours: not yet
    old_run = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=NOW - timedelta(minutes=10))
    RunFactory(
        task=old_run,
        started_at=NOW - timedelta(days=1),
        finished_at=NOW - timedelta(days=1),
    )
    exactly = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=NOW - timedelta(hours=1))
    TaskFactory(schedule_interval_seconds=3600, schedule_anchor=anchor_old, broken=True)
    TaskFactory(
        schedule_interval_seconds=3600,
        schedule_anchor=anchor_old,
        status=Task.Status.RUNNING,
    )

    for task in Task.objects.all():
        AccountFactory(task=task, tested=True)  # a schedule whose task has no accounts waits
    assert due_tasks(NOW) == [due, exactly]


def test_next_run_for_a_list_is_one_query(django_assert_num_queries):
    tasks = [TaskFactory(schedule_interval_seconds=3600, schedule_anchor=NOW) for _ in range(5)]
    for task in tasks:
        RunFactory(task=task, started_at=NOW, finished_at=NOW + timedelta(minutes=3))
    with django_assert_num_queries(1):
        moments = [next_run_for(t) for t in with_last_finished(Task.objects.all())]
    assert moments == [NOW + timedelta(hours=1, minutes=3)] * 5


def test_enabling_counts_only_active_accounts_and_names_how_many_block():
    from django.utils import timezone

    from scheduling.services import ScheduleRefused, set_schedule
    from tasks.parking import park_accounts

    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    bad = [AccountFactory(task=task) for _ in range(2)]
    with pytest.raises(ScheduleRefused) as refused:
        set_schedule(task, 3600, now=timezone.now())
    assert refused.value.blocking == 2
    assert refused.value.detail == "2 of 3 active accounts need a test"
    park_accounts(task, [a.pk for a in bad], reason="waiting for passwords", now=timezone.now())
    assert set_schedule(task, 3600, now=timezone.now()).schedule_interval_seconds == 3600
