"""Pages that talk to a real IMAP server: endpoint probe, account tests, folder mapping."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

pytestmark = [pytest.mark.django_db, pytest.mark.imap]


def endpoint_for(imap_server, security="starttls", **kwargs):
    kwargs.setdefault("verify_tls", True)
    kwargs.setdefault("ca_certificate", imap_server.ca_certificate)
    return EndpointFactory(
        host="127.0.0.1",
        port=imap_server.port_for(security),
        security=security,
        **kwargs,
    )


def test_test_all_without_javascript_tests_in_the_background(admin_client, imap_server, make_imap_user, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)  # the background jobs run right here
    task = TaskFactory(source=endpoint_for(imap_server), destination=endpoint_for(imap_server))
    users = [make_imap_user() for _ in range(2)]
    AccountFactory(
        task=task,
        source_user=users[0].username,
        source_password=users[0].password,
        destination_user=users[1].username,
        destination_password=users[1].password,
    )
    response = admin_client.post(reverse("tasks:account_test_all", args=[task.pk]), follow=True)
    assert "in the background" in response.content.decode()
    assert task.accounts.get().tested_ok


def test_test_all_with_htmx_returns_the_table_polling_until_done(
    admin_client, imap_server, make_imap_user, monkeypatch
):
    import django_q.tasks

    monkeypatch.setattr(django_q.tasks, "async_task", lambda *a, **k: None)  # jobs not run yet
    task = TaskFactory(source=endpoint_for(imap_server), destination=endpoint_for(imap_server))
    AccountFactory(task=task)
    response = admin_client.post(
        reverse("tasks:account_test_all", args=[task.pk]),
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert 'hx-trigger="every 2s"' in html
    assert "Testing the logins of 1 account" in html
    poll_url = html.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    still = admin_client.get(poll_url, headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 2s"' in still  # not tested yet: keeps polling
    task.accounts.update(
        source_test_status="ok",
        destination_test_status="ok",
        source_tested_at=timezone.now(),
        destination_tested_at=timezone.now(),
    )
    done = admin_client.get(poll_url, headers={"HX-Request": "true"}).content.decode()
    assert "every 2s" not in done
