from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tasks.models import Account
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

pytestmark = pytest.mark.django_db


# --- testaccounts --------------------------------------------------------------------------------


@pytest.fixture
def dovecot_task(imap_server):
    def make():
        options = {
            "host": imap_server.host,
            "port": imap_server.imap_port,
            "security": "plain",
            "verify_tls": False,
        }
        return TaskFactory(source=EndpointFactory(**options), destination=EndpointFactory(**options))

    return make


def _account(task, source, destination) -> Account:
    return AccountFactory(
        task=task,
        source_user=source.username,
        source_password=source.password,
        destination_user=destination.username,
        destination_password=destination.password,
    )


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)  # the accounts are tested in threads, each with its own connection
def test_testaccounts_tests_and_stores_every_account(dovecot_task, make_imap_user):
    task = dovecot_task()
    good = _account(task, make_imap_user(), make_imap_user())
    bad = _account(task, make_imap_user(), make_imap_user())
    bad.source_password = "wrong-password"
    bad.save()
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("testaccounts", task.name, stdout=out)
    assert failed.value.returncode == 1
    assert str(failed.value) == "1 account failed the test"
    text = out.getvalue()
    assert f"{good.source_user} -> {good.destination_user}: source ok (OK: " in text
    assert f"{bad.source_user} -> {bad.destination_user}: source fail (" in text
    assert "AUTHENTICATIONFAILED" in text and "wrong-password" not in text
    assert "1 of 2 accounts OK on both sides" in text
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.tested_ok
    assert bad.source_test_status == Account.TestStatus.FAIL
    assert bad.destination_test_status == Account.TestStatus.OK


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_testaccounts_exits_zero_when_all_pass_and_can_pick_accounts(dovecot_task, make_imap_user):
    task = dovecot_task()
    chosen = _account(task, make_imap_user(), make_imap_user())
    other = AccountFactory(task=task)  # would fail: its users do not exist
    out = io.StringIO()
    call_command("testaccounts", str(task.pk), "--account", chosen.source_user, stdout=out)
    assert "1 of 1 account OK on both sides" in out.getvalue()
    other.refresh_from_db()
    assert other.source_test_status == Account.TestStatus.UNTESTED


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_testaccounts_tests_in_parallel_within_the_connection_caps(imap_server, make_imap_user):
    from tests.support.faultproxy import FaultProxy

    # Each server answers slowly (0.1 s a round trip), so tests that run at once overlap.
    with FaultProxy(imap_server.imap_port, delay=0.1) as source, FaultProxy(imap_server.imap_port, delay=0.1) as dest:
        common = {"host": imap_server.host, "security": "plain", "verify_tls": False}
        task = TaskFactory(
            source=EndpointFactory(port=source.port, max_connections=3, **common),
            destination=EndpointFactory(port=dest.port, max_connections=4, **common),
        )
        accounts = [_account(task, make_imap_user(), make_imap_user()) for _ in range(8)]
        out = io.StringIO()
        call_command("testaccounts", task.name, "--parallel", "10", stdout=out)
        # Several at once, never more than the smaller cap (3): slots hold each endpoint to its own.
        assert 2 <= source.max_concurrent <= 3
        assert 2 <= dest.max_concurrent <= 3
    lines = out.getvalue().splitlines()
    assert lines[-1] == "8 of 8 accounts OK on both sides"
    # The report keeps the accounts' order, however the tests interleaved.
    assert [line.split(" -> ")[0] for line in lines[:-1]] == sorted(a.source_user for a in accounts)
    assert all(Account.objects.get(pk=a.pk).tested_ok for a in accounts)


def test_testaccounts_refuses_an_unknown_task_or_account():
    with pytest.raises(CommandError, match="no task with id or name"):
        call_command("testaccounts", "nope")
    task = TaskFactory()
    with pytest.raises(CommandError, match="has no such active accounts"):
        call_command("testaccounts", task.name)


# --- importaccounts ------------------------------------------------------------------------------


def test_importaccounts_creates_and_updates_accounts(tmp_path):
    task = TaskFactory(name="acme")
    existing = AccountFactory(task=task, source_user="old@acme.test", tested=True, source_test_message="OK")
    path = tmp_path / "accounts.csv"
    path.write_text(
        "source_user,source_password,destination_user,destination_password\n"
        "alice@acme.test,a-pass,alice@new.test,a-new-pass\n"
        "bob@acme.test,b-pass,bob@new.test,\n"
        "old@acme.test,o-pass,old@new.test,o-new\n"
    )
    out = io.StringIO()
    call_command("importaccounts", "acme", str(path), stdout=out)
    assert "2 accounts created, 1 updated in 'acme'" in out.getvalue()
    alice = Account.objects.get(task=task, source_user="alice@acme.test")
    assert (alice.source_password, alice.destination_password) == ("a-pass", "a-new-pass")
    bob = Account.objects.get(task=task, source_user="bob@acme.test")
    assert bob.destination_password == "b-pass"  # empty: the source password again
    existing.refresh_from_db()
    assert existing.destination_user == "old@new.test"
    assert existing.source_test_status == Account.TestStatus.UNTESTED
    assert "a-pass" not in out.getvalue()


def test_importaccounts_imports_nothing_from_a_file_with_a_bad_line(tmp_path):
    task = TaskFactory()
    path = tmp_path / "accounts.csv"
    path.write_text("alice@acme.test,a-pass,alice@new.test,x\nbroken-line-without-fields\n")
    err = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("importaccounts", str(task.pk), str(path), stderr=err)
    assert refused.value.returncode == 1
    assert "nothing was imported" in str(refused.value)
    assert err.getvalue().startswith("line 2: ")
    assert not task.accounts.exists()


def test_importaccounts_dry_run_changes_nothing(tmp_path):
    task = TaskFactory()
    path = tmp_path / "accounts.csv"
    path.write_text("alice@acme.test,a-pass,alice@new.test,x\n")
    out = io.StringIO()
    call_command("importaccounts", task.name, str(path), "--dry-run", stdout=out)
    assert "would create 1 and update 0 accounts" in out.getvalue()
    assert not task.accounts.exists()


def test_importaccounts_reads_standard_input(monkeypatch):
    task = TaskFactory()

    class Stdin:
        buffer = io.BytesIO(b"carol@acme.test;c-pass;carol@new.test;c2\n")

    monkeypatch.setattr("sys.stdin", Stdin)
    call_command("importaccounts", task.name, "-", stdout=io.StringIO())
    assert task.accounts.get().destination_password == "c2"


def test_importaccounts_says_why_it_cannot_read(tmp_path):
    task = TaskFactory()
    with pytest.raises(CommandError, match="cannot read .*missing.csv: No such file"):
        call_command("importaccounts", task.name, str(tmp_path / "missing.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CommandError):
        call_command("importaccounts", task.name, str(empty), stderr=io.StringIO())
    with pytest.raises(CommandError, match="no task with id or name"):
        call_command("importaccounts", "nope", str(empty))


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)  # the accounts are tested in threads, each with its own connection
def test_testaccounts_can_test_only_what_needs_a_test_and_never_parked_accounts(dovecot_task, make_imap_user):
    from django.utils import timezone

    from tasks.parking import park_accounts

    task = dovecot_task()
    fixed = _account(task, make_imap_user(), make_imap_user())  # password fixed: untested
    passed = AccountFactory(task=task, tested=True, source_user="already-ok@x")  # would fail if tested again
    parked = AccountFactory(task=task, source_user="parked@x")
    park_accounts(task, [parked.pk], reason="no password yet", now=timezone.now())
    out = io.StringIO()
    call_command("testaccounts", task.name, "--only", "needs-test", stdout=out)
    assert "1 of 1 account OK on both sides" in out.getvalue()
    for account in (fixed, passed, parked):
        account.refresh_from_db()
    assert fixed.tested_ok and passed.tested_ok
    assert parked.source_test_status == Account.TestStatus.UNTESTED
