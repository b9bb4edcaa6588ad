"""Parking accounts from the task page (issue 12, item 1)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tasks.models import Account
from tests.factories import AccountFactory, TaskFactory

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
