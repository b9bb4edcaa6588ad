from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from runs.models import AccountRun, FolderState, Run
from tasks.models import Account, Endpoint, Task
from tests.support.factories import (
    AccountFactory,
    AccountRunFactory,
    EndpointFactory,
    FolderStateFactory,
    RunFactory,
    TaskFactory,
)

pytestmark = pytest.mark.django_db


def test_a_task_has_at_most_one_running_run():
    task = TaskFactory()
    RunFactory(task=task, status=Run.Status.RUNNING)
    RunFactory(task=task, status=Run.Status.DONE)  # finished runs do not count
    with pytest.raises(IntegrityError), transaction.atomic():
        RunFactory(task=task, status=Run.Status.RUNNING)
    RunFactory(status=Run.Status.RUNNING)  # another task may run at the same time


def test_deleting_a_task_removes_its_accounts_runs_and_states_but_not_its_servers():
    task = TaskFactory()
    account = AccountFactory(task=task)
    run = RunFactory(task=task)
    AccountRunFactory(run=run, account=account)
    FolderStateFactory(account=account)

    task.delete()

    assert not Account.objects.exists()
    assert not Run.objects.exists() and not AccountRun.objects.exists()
    assert not FolderState.objects.exists()
    assert Endpoint.objects.count() == 2


def test_an_endpoint_in_use_cannot_be_deleted():
    task = TaskFactory()
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        task.source.delete()


@pytest.mark.parametrize("port", [0, 65536, 100000])
def test_ports_outside_the_tcp_range_are_refused(port):
    endpoint = EndpointFactory.build(port=port)
    with pytest.raises(ValidationError) as excinfo:
        endpoint.full_clean()
    assert "port" in excinfo.value.message_dict


def test_an_unknown_security_mode_is_refused_by_validation_and_by_the_database():
    endpoint = EndpointFactory.build(security="tls13")
    with pytest.raises(ValidationError):
        endpoint.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        EndpointFactory(security="tls13")


def test_only_the_six_schedule_presets_are_accepted():
    task = TaskFactory.build(schedule_interval_seconds=1234)
    with pytest.raises(ValidationError):
        task.full_clean(exclude=["source", "destination"])
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskFactory(schedule_interval_seconds=1234)
    for preset in (0, 3600, 10800, 21600, 43200, 86400):
        TaskFactory(schedule_interval_seconds=preset)


def test_a_source_user_appears_once_per_task():
    account = AccountFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountFactory(task=account.task, source_user=account.source_user)
    AccountFactory(source_user=account.source_user)  # another task may reuse it


def test_schedulable_excludes_off_broken_and_running_tasks():
    due = TaskFactory(schedule_interval_seconds=3600)
    TaskFactory(schedule_interval_seconds=0)
    TaskFactory(schedule_interval_seconds=3600, broken=True)
    TaskFactory(schedule_interval_seconds=3600, status=Task.Status.RUNNING)
    assert list(Task.objects.schedulable()) == [due]
