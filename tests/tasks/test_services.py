from __future__ import annotations

import socket
from unittest import mock

import pytest
from django.utils import timezone

from tasks import services, slots
from tasks.models import Account, Task
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory


@pytest.fixture
def dovecot_task(imap_server):
    """make(**endpoint kwargs) -> a task whose both endpoints point at the test Dovecot."""

    def make(**endpoint):
        options = {
            "host": imap_server.host,
            "port": imap_server.imap_port,
            "security": "plain",
            "verify_tls": False,
            **endpoint,
        }
        return TaskFactory(source=EndpointFactory(**options), destination=EndpointFactory(**options))

    return make


def _account(task, source, destination, **kwargs) -> Account:
    return AccountFactory(
        task=task,
        source_user=source.username,
        source_password=source.password,
        destination_user=destination.username,
        destination_password=destination.password,
        **kwargs,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.imap
@pytest.mark.django_db
def test_test_account_logs_in_and_lists_on_both_sides(dovecot_task, make_imap_user):
    task = dovecot_task()
    account = _account(task, make_imap_user(), make_imap_user())
    before = timezone.now()
    services.test_account(account)
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.OK
    assert account.destination_test_status == Account.TestStatus.OK
    assert account.source_test_message.startswith("OK: ")
    assert "folders" in account.source_test_message
    assert account.source_tested_at >= before and account.destination_tested_at >= before
    assert account.tested_ok
    assert slots.in_use(task.source_id, now=timezone.now()) == 0


@pytest.mark.imap
@pytest.mark.django_db
def test_a_wrong_password_is_stored_with_the_servers_words(dovecot_task, make_imap_user):
    task = dovecot_task()
    destination = make_imap_user()
    account = _account(task, make_imap_user(), destination)
    account.destination_password = "definitely-wrong-password"
    account.save()
    services.test_account(account)
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.OK
    assert account.destination_test_status == Account.TestStatus.FAIL
    assert "AUTHENTICATIONFAILED" in account.destination_test_message
    assert "definitely-wrong-password" not in account.destination_test_message
    assert account.destination_tested_at is not None


@pytest.mark.django_db
def test_a_closed_port_fails_with_a_reason():
    endpoint = EndpointFactory(host="127.0.0.1", port=_closed_port(), security="plain")
    task = TaskFactory(source=endpoint, destination=endpoint)
    account = AccountFactory(task=task)
    services.test_account(account)
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.FAIL
    assert account.destination_test_status == Account.TestStatus.FAIL
    assert "refused" in account.source_test_message.lower()


@pytest.mark.django_db
def test_a_test_waits_for_a_connection_slot_and_says_so_when_none_frees_up(monkeypatch):
    endpoint = EndpointFactory(host="127.0.0.1", port=_closed_port(), max_connections=1)
    task = TaskFactory(source=endpoint)
    account = AccountFactory(task=task, tested=True)
    assert slots.try_acquire({endpoint.pk: 1}, "a copy job", now=timezone.now())
    monkeypatch.setattr(services, "TEST_SLOT_WAIT_SECONDS", 0.2)
    with mock.patch("runs.engine.test_connection") as test_connection:
        test_connection.return_value = services.ConnectionTestResult(ok=True)
        services.test_account(account)
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.FAIL
    assert account.source_test_message == (
        f"all 1 connections allowed to {endpoint.label} are in use (max connections); "
        "test again when the running copies have finished"
    )
    # The destination had a free slot and was tested; the source was never connected to.
    assert account.destination_test_status == Account.TestStatus.OK
    assert test_connection.call_count == 1
    assert slots.in_use(endpoint.pk, now=timezone.now()) == 1  # only the copy job's


@pytest.mark.django_db
def test_test_accounts_tests_every_account():
    task = TaskFactory()
    accounts = [AccountFactory(task=task) for _ in range(3)]
    with mock.patch("runs.engine.test_connection") as test_connection:
        test_connection.return_value = services.ConnectionTestResult(ok=True, folder_count=4)
        assert services.test_accounts(task) == 3
    assert test_connection.call_count == 6
    logins = {call.args[0].username for call in test_connection.call_args_list}
    assert logins == {a.source_user for a in accounts} | {a.destination_user for a in accounts}
    assert set(task.accounts.values_list("source_test_message", flat=True)) == {"OK: 4 folders"}


@pytest.mark.django_db
def test_find_task_by_id_or_name():
    task = TaskFactory(name="Migration 2026")
    numeric = TaskFactory(name="424242")  # a name that looks like an id nobody has
    assert services.find_task(str(task.pk)) == task
    assert services.find_task("Migration 2026") == task
    assert services.find_task("424242") == numeric
    with pytest.raises(Task.DoesNotExist, match="no task with id or name 'nope'"):
        services.find_task("nope")


def test_mailbox_for_takes_the_endpoint_settings():
    from tasks.models import Endpoint

    endpoint = Endpoint(
        host="imap.example.org",
        port=143,
        security="starttls",
        verify_tls=False,
        ca_certificate="PEM",
    )
    mailbox = services.mailbox_for(endpoint, "u@example.org", "secret")
    assert (mailbox.host, mailbox.port, mailbox.security) == ("imap.example.org", 143, "starttls")
    assert (mailbox.username, mailbox.password) == ("u@example.org", "secret")
    assert mailbox.verify_tls is False and mailbox.ca_certificate == "PEM"
    assert "secret" not in repr(mailbox)
