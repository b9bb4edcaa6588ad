from __future__ import annotations

import pytest
from django.core.management import call_command

from tasks.management.commands.demo import MAILBOXES, TASK_NAME
from tasks.models import Account, Endpoint, Task

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
    for account in accounts:  # passwords stay out of the output
        assert account.source_password not in out

    # Running it again replaces the demo task instead of piling up copies.
    call_command("demo", no_wait=True, skip_tests=True)
    assert Task.objects.filter(name=TASK_NAME).count() == 1
    assert Endpoint.objects.count() == 2
    assert Account.objects.count() == len(MAILBOXES)
    assert not Task.objects.get(name=TASK_NAME).accounts.filter(source_test_status=Account.TestStatus.OK).exists()
