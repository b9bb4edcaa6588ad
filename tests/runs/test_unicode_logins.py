"""Non-ASCII passwords through the product's paths (issue 11 case 1): `testaccounts`, the account
tests behind "Test all", and a task run, against the real test Dovecot."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs import jobs, orchestrator
from runs.models import Run
from tasks import services
from tasks.models import Account
from tests.runs.conftest import fill_user, mail_hashes

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]


def test_testaccounts_and_test_all_log_in_with_unicode_passwords(imap_task, make_imap_user):
    good = (make_imap_user(password="pässwörd€"), make_imap_user(password="ключ-☃"))
    refused = (make_imap_user(password="grüße-1"), make_imap_user())
    after = (make_imap_user(), make_imap_user())
    task, _ = imap_task(users=[good, refused, after])
    wrong = Account.objects.get(task=task, source_user=refused[0].username)
    wrong.source_password = "falsch-ß-€"
    wrong.save()
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("testaccounts", task.name, stdout=out)
    assert str(failed.value) == "1 account failed the test"
    text = out.getvalue()
    assert f"{refused[0].username} -> {refused[1].username}: source fail (login refused: " in text
    assert "AUTHENTICATIONFAILED" in text and "falsch-ß-€" not in text
    assert "2 of 3 accounts OK on both sides" in text
    Account.objects.filter(task=task).update(source_test_status=Account.TestStatus.UNTESTED)
    assert services.test_accounts(task) == 3  # what "Test all" runs for each account
    statuses = dict(Account.objects.filter(task=task).values_list("source_user", "source_test_status"))
    assert statuses == {
        good[0].username: Account.TestStatus.OK,
        refused[0].username: Account.TestStatus.FAIL,
        after[0].username: Account.TestStatus.OK,
    }


def test_a_run_copies_an_account_with_unicode_passwords(imap_server, imap_task, make_imap_user, pushed):
    source, destination = make_imap_user(password="pässwörd€"), make_imap_user(password="ñandú-☃")
    task, _ = imap_task(users=[(source, destination)])
    expected = fill_user(imap_server, source, {"INBOX": 5})
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    for pk in run.account_runs.values_list("pk", flat=True):
        jobs.copy_account_job(pk)
    run.refresh_from_db()
    assert run.status == Run.Status.DONE, run.reason
    assert run.copied == expected
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
