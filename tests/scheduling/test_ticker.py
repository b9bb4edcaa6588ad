from __future__ import annotations

import logging
import threading
from datetime import timedelta

import django_q.tasks
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from runs import orchestrator
from runs.models import AccountRun, Run
from scheduling.services import next_run_for, set_schedule
from scheduling.ticker import tick
from tasks.models import Account, Task
from tests.support.factories import AccountFactory, RunFactory, TaskFactory


def scheduled_task(*, enabled_at, interval=3600, accounts=2, **kwargs) -> Task:
    task = TaskFactory(**kwargs)
    for _ in range(accounts):
        AccountFactory(task=task, tested=True)
    set_schedule(task, interval, now=enabled_at)
    return task


@pytest.fixture
def no_enqueue(django_capture_on_commit_callbacks):
    # Jobs are enqueued after commit; in these tests nothing is enqueued, the rows are what we check.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        yield callbacks


@pytest.mark.django_db
def test_tick_starts_due_tasks_as_scheduled_runs_and_nothing_else(no_enqueue):
    now = timezone.now()
    due = scheduled_task(enabled_at=now - timedelta(hours=1, seconds=1))
    not_yet = scheduled_task(enabled_at=now - timedelta(minutes=59))
    TaskFactory()  # no schedule
    report = tick(now)
    run = Run.objects.get()
    assert run.task_id == due.pk
    assert run.trigger == Run.Trigger.SCHEDULED
    assert AccountRun.objects.filter(run=run).count() == 2
    assert report.started == [run.pk]
    due.refresh_from_db()
    assert due.status == Task.Status.RUNNING
    assert next_run_for(due) is None  # running
    assert not Run.objects.filter(task=not_yet).exists()


@pytest.mark.django_db
def test_the_scheduled_run_jobs_go_to_the_copy_queue_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    pushed = []
    monkeypatch.setattr(django_q.tasks, "async_task", lambda *a, **kw: pushed.append((a, kw)))
    now = timezone.now()
    task = scheduled_task(enabled_at=now - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        tick(now)
    run = Run.objects.get(task=task)
    assert [a for a, _ in pushed] == [("runs.jobs.fan_out_run_job", run.pk)]
    # The main cluster's queue, not the control cluster the tick runs in; the copy jobs follow it there.
    assert {kw["cluster"] for _, kw in pushed} == {settings.Q_CLUSTER["name"]}


@pytest.mark.django_db
def test_a_cluster_down_for_hours_starts_each_due_task_once(no_enqueue):
    enabled = timezone.now() - timedelta(hours=9)
    task = scheduled_task(enabled_at=enabled)
    later = enabled + timedelta(hours=8)
    # Every missed tick replayed, or many ticks at the same late moment: one run.
    for step in range(20):
        tick(later + timedelta(seconds=30 * step))
    assert Run.objects.filter(task=task).count() == 1


@pytest.mark.django_db
def test_after_a_run_finishes_the_next_one_is_one_interval_later(no_enqueue):
    enabled = timezone.now() - timedelta(hours=2)
    task = scheduled_task(enabled_at=enabled)
    tick(enabled + timedelta(hours=1))
    finished = enabled + timedelta(hours=1, minutes=20)
    Run.objects.filter(task=task).update(status=Run.Status.DONE, finished_at=finished)
    AccountRun.objects.filter(run__task=task).update(status=AccountRun.Status.DONE)
    Task.objects.filter(pk=task.pk).update(status=Task.Status.DONE)
    task.refresh_from_db()
    assert next_run_for(task) == finished + timedelta(hours=1)
    tick(finished + timedelta(minutes=59))
    assert Run.objects.filter(task=task).count() == 1
    tick(finished + timedelta(hours=1))
    assert Run.objects.filter(task=task).count() == 2


@pytest.mark.django_db
def test_tick_skips_a_running_task(no_enqueue):
    now = timezone.now()
    task = scheduled_task(enabled_at=now - timedelta(hours=3))
    orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    report = tick(now)
    assert report.started == []
    assert Run.objects.filter(task=task).count() == 1


@pytest.mark.django_db
def test_a_refused_task_is_logged_and_the_tick_goes_on(no_enqueue, caplog, monkeypatch):
    now = timezone.now()
    refused = scheduled_task(enabled_at=now - timedelta(hours=3), name="a refused")
    fine = scheduled_task(enabled_at=now - timedelta(hours=2), name="b fine")
    real = orchestrator.start_run

    def racing(task_id, **kwargs):
        # An account of the first task was edited (untested) between the tick's reading and the start.
        if task_id == refused.pk:
            Account.objects.filter(task_id=task_id).update(destination_test_status=Account.TestStatus.UNTESTED)
        return real(task_id, **kwargs)

    monkeypatch.setattr(orchestrator, "start_run", racing)
    with caplog.at_level(logging.WARNING, logger="scheduling.ticker"):
        report = tick(now)
    assert report.refused == [refused.pk]
    assert Run.objects.get().task_id == fine.pk
    assert f"scheduled run of task {refused.pk} refused" in caplog.text
    refused.refresh_from_db()
    assert refused.status != Task.Status.RUNNING  # the refused claim was rolled back


@pytest.mark.django_db
def test_a_schedule_whose_account_needs_a_test_waits_and_says_so_once(no_enqueue, caplog):
    # R3: an account edited after the schedule was enabled (untested again) used to leave the schedule
    # on, not broken, with its next run in the past, and a refusal in the log every 30 s for ever.
    now = timezone.now()
    task = scheduled_task(enabled_at=now - timedelta(hours=3))
    edited = Account.objects.filter(task=task).first()
    Account.objects.filter(pk=edited.pk).update(source_test_status=Account.TestStatus.UNTESTED)
    with caplog.at_level(logging.INFO):
        for i in range(4):
            report = tick(now + timedelta(seconds=30 * i))
            assert (report.started, report.refused) == ([], [])
    said = [r for r in caplog.records if "waiting" in r.getMessage()]
    assert [r.getMessage() for r in said] == [
        f"schedule of task {task.pk} is waiting: 1 account needs a test; it starts once they pass"
    ]
    task.refresh_from_db()
    assert (task.schedule_interval_seconds, task.broken, task.schedule_waiting_accounts) == (3600, False, 1)

    Account.objects.filter(pk=edited.pk).update(source_test_status=Account.TestStatus.OK)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        report = tick(now + timedelta(minutes=3))
    assert len(report.started) == 1  # due since long ago: it starts at the first tick after the test
    assert f"schedule of task {task.pk} no longer waiting" in caplog.text
    task.refresh_from_db()
    assert task.schedule_waiting_accounts is None


@pytest.mark.django_db
def test_a_schedule_without_accounts_waits_too(no_enqueue):
    task = scheduled_task(enabled_at=timezone.now() - timedelta(hours=3))
    Account.objects.filter(task=task).delete()
    report = tick(timezone.now())
    assert (report.started, report.refused) == ([], [])
    task.refresh_from_db()
    assert task.schedule_waiting_accounts == 0


@pytest.mark.django_db
def test_an_unexpected_error_on_one_task_does_not_stop_the_tick(no_enqueue, caplog, monkeypatch):
    now = timezone.now()
    first = scheduled_task(enabled_at=now - timedelta(hours=3), name="a")
    second = scheduled_task(enabled_at=now - timedelta(hours=2), name="b")
    real = orchestrator.start_run

    def flaky(task_id, **kwargs):
        if task_id == first.pk:
            raise RuntimeError("database hiccup")
        return real(task_id, **kwargs)

    monkeypatch.setattr(orchestrator, "start_run", flaky)
    report = tick(now)
    assert report.refused == [first.pk]
    assert Run.objects.get().task_id == second.pk
    assert "database hiccup" in caplog.text


@pytest.mark.django_db
def test_deleting_a_scheduled_task_removes_its_runs_and_the_tick_goes_on(no_enqueue, caplog):
    now = timezone.now()
    gone = scheduled_task(enabled_at=now - timedelta(hours=5), name="gone")
    tick(now - timedelta(hours=3))
    Run.objects.filter(task=gone).update(status=Run.Status.DONE, finished_at=now - timedelta(hours=3))
    AccountRun.objects.filter(run__task=gone).update(status=AccountRun.Status.DONE)
    Task.objects.filter(pk=gone.pk).update(status=Task.Status.DONE)
    RunFactory(task=gone, finished_at=now - timedelta(hours=4))
    stays = scheduled_task(enabled_at=now - timedelta(hours=2), name="stays")
    assert Run.objects.filter(task=gone).count() == 2

    gone.delete()
    assert not Run.objects.filter(task_id=gone.pk).exists()
    assert not AccountRun.objects.filter(run__task_id=gone.pk).exists()
    with caplog.at_level(logging.WARNING):
        report = tick(now)
    assert report.refused == []
    assert [r.task_id for r in Run.objects.all()] == [stays.pk]
    assert "Traceback" not in caplog.text and "ERROR" not in caplog.text


def _in_threads(n, target):
    """Run target(i) in n threads released together; returns their results or exceptions."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def work(i):
        try:
            barrier.wait(timeout=30)
            results[i] = target(i)
        except BaseException as exc:  # recorded and asserted on by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_ticks_at_once_start_each_due_task_once(monkeypatch):
    monkeypatch.setattr(orchestrator, "push_fan_out", lambda run_id: None)  # no broker in this test
    now = timezone.now()
    tasks = [scheduled_task(enabled_at=now - timedelta(hours=2), name=f"t{i}") for i in range(3)]
    results = _in_threads(6, lambda i: tick(now))
    assert not [r for r in results if isinstance(r, BaseException)], results
    for task in tasks:
        assert Run.objects.filter(task=task).count() == 1
    assert sum(len(r.started) for r in results) == 3
    assert all(r.refused == [] for r in results)


@pytest.mark.django_db(transaction=True)
def test_a_tick_racing_manual_starts_gives_one_run(monkeypatch):
    monkeypatch.setattr(orchestrator, "push_fan_out", lambda run_id: None)
    now = timezone.now()
    task = scheduled_task(enabled_at=now - timedelta(hours=2))

    def tick_or_manual(i):
        if i % 2:
            return tick(now)
        try:
            return orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
        except orchestrator.TaskAlreadyRunning as exc:
            return exc

    results = _in_threads(6, tick_or_manual)
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, orchestrator.TaskAlreadyRunning)
    ]
    assert not unexpected, unexpected
    runs = list(Run.objects.filter(task=task))
    assert len(runs) == 1
    assert Run.objects.filter(status=Run.Status.RUNNING).count() == 1
    task.refresh_from_db()
    assert task.status == Task.Status.RUNNING


@pytest.mark.django_db
def test_a_schedule_without_active_accounts_says_what_it_waits_for(no_enqueue, caplog):
    now = timezone.now()
    task = scheduled_task(enabled_at=now - timedelta(hours=3))
    Account.objects.filter(task=task).update(paused=True)
    with caplog.at_level(logging.INFO):
        report = tick(now)
    assert report.started == []
    said = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert said == [
        f"schedule of task {task.pk} is waiting: the task has no active accounts; "
        "it starts once the task has an active account that passes its connection test"
    ]
