"""The breaker end to end: real copy jobs against the test Dovecot, called directly (no cluster)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import jobs, orchestrator
from runs.models import AccountRun, Run
from scheduling.services import next_run_for, set_schedule
from scheduling.ticker import tick
from tasks.models import Task
from tests.runs.conftest import fill_user
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pushed(monkeypatch) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(orchestrator, "push_jobs", lambda pks: ids.extend(pks))
    return ids


@pytest.fixture
def task_with_a_wrong_password(imap_server, make_imap_user):
    """Two accounts tested OK; then one source password changed on the server side (stored one is wrong)."""

    def endpoint():
        return EndpointFactory(
            host=imap_server.host,
            port=imap_server.imap_port,
            security="plain",
            verify_tls=False,
        )

    task = TaskFactory(source=endpoint(), destination=endpoint())
    for index in range(2):
        source, destination = make_imap_user(), make_imap_user()
        fill_user(imap_server, source, {"INBOX": 3})
        AccountFactory(
            task=task,
            tested=True,
            source_user=source.username,
            source_password=source.password if index == 0 else "stale-password",
            destination_user=destination.username,
            destination_password=destination.password,
        )
    return task


def run_jobs(ids: list[int]) -> None:
    for pk in ids:
        jobs.copy_account_job(pk)
    ids.clear()


def test_a_failing_scheduled_run_breaks_the_task_and_no_further_scheduled_run_starts(
    task_with_a_wrong_password, pushed
):
    task = task_with_a_wrong_password
    enabled = timezone.now() - timedelta(hours=2)
    set_schedule(task, 3600, now=enabled)

    report = tick(timezone.now())
    assert len(report.started) == 1
    run = Run.objects.get(pk=report.started[0])
    assert run.trigger == Run.Trigger.SCHEDULED
    run_jobs(pushed)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.errors > 0
    assert run.copied == 3  # the other account was copied
    assert sorted(run.account_runs.values_list("status", flat=True)) == [
        AccountRun.Status.DONE,
        AccountRun.Status.FAILED,
    ]
    task.refresh_from_db()
    assert task.broken is True
    assert task.schedule_interval_seconds == 0
    assert next_run_for(task) is None

    # Hours later, the tick starts nothing: the schedule is off until the operator re-enables it.
    for hours in (1, 2, 5, 25):
        assert tick(timezone.now() + timedelta(hours=hours)).started == []
    assert Run.objects.filter(task=task).count() == 1


def test_a_failing_manual_run_leaves_the_schedule_on(task_with_a_wrong_password, pushed):
    task = task_with_a_wrong_password
    set_schedule(task, 3600, now=timezone.now())

    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    run_jobs(pushed)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.errors > 0
    task.refresh_from_db()
    assert task.broken is False
    assert task.schedule_interval_seconds == 3600
    assert task.status == Task.Status.FAILED
    assert next_run_for(task) == run.finished_at + timedelta(hours=1)
    # And the schedule goes on: one interval after that run, the tick starts a scheduled run.
    assert tick(run.finished_at + timedelta(hours=1)).started != []
