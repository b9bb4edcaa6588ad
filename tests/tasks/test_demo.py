from __future__ import annotations

import pytest
from django.core.management import call_command

from runs.models import Run
from tasks.management.commands.demo import MAILBOXES, TASK_NAME
from tasks.models import Account, Endpoint, Task
from tests.support.factories import RunFactory

pytestmark = [pytest.mark.django_db, pytest.mark.imap]


def test_demo_creates_a_tested_task_against_its_own_dovecot(capsys):
    call_command("demo", no_wait=True)
    task = Task.objects.get(name=TASK_NAME)
    accounts = list(task.accounts.all())
    assert len(accounts) == len(MAILBOXES)
    assert all(a.tested_ok for a in accounts), [(a.source_test_message, a.destination_test_message) for a in accounts]
    assert task.source.verify_tls and "BEGIN CERTIFICATE" in task.source.ca_certificate
    out = capsys.readouterr().out
    assert f"/tasks/{task.pk}/" in out
    assert "Projekte/Größenplanung" in out
    assert "  carol: Archive (1 message)\n" in out and "(1 messages)" not in out  # tasks.wording.plural
    for account in accounts:  # passwords stay out of the output
        assert account.source_password not in out

    # Running it again makes a fresh demo task and keeps the earlier one, runs included, under a new name.
    earlier_run = RunFactory(task=task, status=Run.Status.DONE, copied=530)
    Task.objects.filter(pk=task.pk).update(schedule_interval_seconds=3600)
    call_command("demo", no_wait=True, skip_tests=True)
    assert Task.objects.filter(name=TASK_NAME).count() == 1
    fresh = Task.objects.get(name=TASK_NAME)
    assert fresh.pk != task.pk
    kept = Task.objects.get(pk=task.pk)
    assert kept.name.startswith(f"{TASK_NAME} (earlier, made ")
    assert kept.schedule_interval_seconds == 0
    assert list(kept.runs.all()) == [earlier_run]
    out = capsys.readouterr().out
    assert f"The earlier demo task is kept as “{kept.name}” with its 1 run" in out
    assert Endpoint.objects.count() == 2
    assert fresh.accounts.count() == len(MAILBOXES)
    assert not fresh.accounts.filter(source_test_status=Account.TestStatus.OK).exists()
