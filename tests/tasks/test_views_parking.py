"""Parking accounts from the task page (issue 12, item 1)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tasks.models import Account
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_park_one_account_with_a_reason_then_resume_it(admin_client):
    task = TaskFactory()
    account = AccountFactory(task=task, source_user="bob@old.example")
    url = reverse("tasks:account_park", args=[task.pk, account.pk])
    assert b"Park bob@old.example" in admin_client.get(url).content
    refused = admin_client.post(url, {"reason": " "})
    assert refused.status_code == 400 and "Say why the account is parked" in refused.content.decode()
    response = admin_client.post(url, {"reason": "waiting for <b>IT</b>"}, follow=True)
    html = response.content.decode()
    assert "1 account parked" in html
    assert "data-parked-reason>waiting for &lt;b&gt;IT&lt;/b&gt;</div>" in html  # outside words, escaped
    assert "1 parked" in html
    account.refresh_from_db()
    assert account.paused and account.paused_reason == "waiting for <b>IT</b>"
    admin_client.post(reverse("tasks:account_resume", args=[task.pk, account.pk]))
    account.refresh_from_db()
    assert not account.paused


def test_park_every_failed_account_at_once(admin_client):
    task = TaskFactory()
    ok = AccountFactory(task=task, tested=True)
    failed = [
        AccountFactory(task=task, source_test_status=Account.TestStatus.FAIL, source_user=f"bad{i}@x") for i in range(3)
    ]
    page = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "1 of 4 active tested OK" in page and "3 failed" in page
    assert reverse("tasks:accounts_park_failed", args=[task.pk]) in page
    form = admin_client.get(reverse("tasks:accounts_park_failed", args=[task.pk])).content.decode()
    assert "Park 3 accounts whose test failed" in form and "bad0@x" in form
    admin_client.post(reverse("tasks:accounts_park_failed", args=[task.pk]), {"reason": "wrong passwords in the CSV"})
    assert set(Account.objects.filter(paused=True).values_list("pk", flat=True)) == {a.pk for a in failed}
    ok.refresh_from_db()
    assert not ok.paused
    page = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "1 of 1 active tested OK" in page and "3 parked" in page


def test_parking_another_tasks_account_is_404(admin_client):
    task, other = TaskFactory(), TaskFactory()
    account = AccountFactory(task=other)
    assert (
        admin_client.post(reverse("tasks:account_park", args=[task.pk, account.pk]), {"reason": "x"}).status_code == 404
    )
    assert admin_client.post(reverse("tasks:account_resume", args=[task.pk, account.pk])).status_code == 404


def test_the_accounts_table_filters_by_test_state_last_result_and_parked(admin_client):
    from django.utils import timezone

    from runs.models import AccountRun
    from tasks.parking import park_accounts
    from tests.support.factories import AccountRunFactory, RunFactory

    task = TaskFactory()
    ok = AccountFactory(task=task, tested=True, source_user="ok@x")
    failed_test = AccountFactory(task=task, source_test_status=Account.TestStatus.FAIL, source_user="badlogin@x")
    untested = AccountFactory(task=task, source_user="untested@x")
    run_failed = AccountFactory(task=task, tested=True, source_user="runfailed@x")
    parked = AccountFactory(task=task, source_user="parked@x")
    park_accounts(task, [parked.pk], reason="later", now=timezone.now())
    run = RunFactory(task=task)
    AccountRunFactory(run=run, account=ok, status=AccountRun.Status.DONE)
    AccountRunFactory(run=run, account=run_failed, status=AccountRun.Status.FAILED)
    url = reverse("tasks:detail", args=[task.pk])
    table = reverse("tasks:account_table", args=[task.pk])

    def users(params):
        html = admin_client.get(table, params).content.decode()
        return {
            u
            for u in ("ok@x", "badlogin@x", "untested@x", "runfailed@x", "parked@x")
            if f"<strong>{u}</strong>" in html
        }

    assert users({"test": "failed", "parked": "no"}) == {"badlogin@x"}
    assert users({"test": "untested", "parked": "no"}) == {"untested@x"}
    assert users({"result": "failed"}) == {"runfailed@x"}
    assert users({"result": "never"}) == {"badlogin@x", "untested@x", "parked@x"}
    assert users({"parked": "yes"}) == {"parked@x"}
    assert users({"test": "bogus"}) == {"ok@x", "badlogin@x", "untested@x", "runfailed@x", "parked@x"}
    page = admin_client.get(url).content.decode()
    # The counters are links to the same filters.
    assert f'href="{url}?test=failed&amp;parked=no#accounts" data-filter-link="failed">1 failed</a>' in page
    assert f'href="{url}?parked=yes#accounts" data-filter-link="parked">1 parked</a>' in page
    assert ">Failed 1</a>" in page and ">Never run 3</a>" in page
    assert ok and failed_test and untested  # made for the counts above


def test_run_failed_accounts_from_the_page(admin_client, django_capture_on_commit_callbacks, monkeypatch):
    from runs import orchestrator
    from runs.models import AccountRun, Run
    from tests.support.factories import AccountRunFactory, RunFactory

    monkeypatch.setattr(orchestrator, "push_fan_out", lambda run_id: None)
    task = TaskFactory()
    done, failed = AccountFactory(task=task, tested=True), AccountFactory(task=task, tested=True)
    earlier = RunFactory(task=task)
    AccountRunFactory(run=earlier, account=done, status=AccountRun.Status.DONE)
    AccountRunFactory(run=earlier, account=failed, status=AccountRun.Status.FAILED)
    page = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "data-run-failed" in page
    response = admin_client.post(reverse("runs:start", args=[task.pk]), {"only": "failed"}, follow=True)
    assert "started for 1 failed or new account." in response.content.decode()
    run = Run.objects.exclude(pk=earlier.pk).get()
    assert list(run.account_runs.values_list("account_id", flat=True)) == [failed.pk]
    assert run.trigger == Run.Trigger.MANUAL


def test_test_untested_and_failed_tests_only_those(admin_client, monkeypatch):
    from django_q import tasks as q_tasks

    from runs import jobs, q2

    enqueued = []

    def fake_async_task(func, *args, **kw):  # runs the fan-out job at once, as a worker would
        if func == q2.FAN_OUT_TESTS_JOB:
            jobs.fan_out_tests_job(*args)
        else:
            enqueued.append(args[0])

    monkeypatch.setattr(q_tasks, "async_task", fake_async_task)
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    failed = AccountFactory(task=task, source_test_status=Account.TestStatus.FAIL)
    untested = AccountFactory(task=task)
    parked = AccountFactory(task=task, paused=True, paused_reason="later")
    page = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "data-test-needed" in page
    response = admin_client.post(
        reverse("tasks:account_test_all", args=[task.pk]), {"only": "needs-test"}, headers={"HX-Request": "true"}
    )
    assert sorted(enqueued) == sorted([failed.pk, untested.pk])
    assert parked.pk not in enqueued
    assert "Testing the logins of 2 accounts" in response.content.decode()
    assert "only=needs-test" in response.content.decode()


def test_a_rows_test_refreshes_the_tables_counters(admin_client):
    """The row is swapped alone; the HX-Trigger makes the table (its "N of M tested OK") follow."""
    from tests.support.factories import EndpointFactory

    closed = EndpointFactory(host="127.0.0.1", port=1, security="plain")  # nothing listens: the test fails fast
    task = TaskFactory(source=closed, destination=closed)
    account = AccountFactory(task=task)
    response = admin_client.post(
        reverse("tasks:account_test", args=[task.pk, account.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {"accounts-changed": {}}
    table = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert 'hx-trigger="accounts-changed from:body"' in table
    assert "0 of 1 active tested OK" in table and "1 failed" in table
