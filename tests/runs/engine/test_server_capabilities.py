"""Capability-driven engine behaviour against the real servers that have or lack each capability (issue 10
items 3 and 4): LITERAL+, CREATE-SPECIAL-USE, LOGINDISABLED before STARTTLS, and what the destination altered."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from runs.engine import copy_account, list_folders, plan_folders, test_connection
from runs.engine.filestate import MemoryStateStore
from runs.engine.types import ErrorKind, Outcome
from tests.runs.engine.helpers import CommandRecorder
from tests.runs.engine.test_server_matrix import _key, folder_name
from tests.support.courier import Courier
from tests.support.cyrus import Cyrus
from tests.support.dovecot import fill, make_message, read

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2021, 11, 5, 8, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))


def test_a_message_the_destination_rewrites_is_a_warning_counted_apart(imap_server, cyrus_server):
    # Cyrus turns 8-bit header bytes into 'X' and answers OK (same size: DIGEST.SHA1 tells).
    source, destination = imap_server.add_user(), cyrus_server.add_user()
    plain = make_message(subject="plain", seed=21)
    eight_bit = make_message(subject="Grüße aus Köln", eight_bit=True, seed=22)
    with imap_server.connect(source) as client:
        fill(client, "Briefe", [(plain, (), None), (eight_bit, ("\\Seen",), None)])
    store = MemoryStateStore()
    result = copy_account(imap_server.mailbox(source), cyrus_server.mailbox(destination), state=store)
    assert result.outcome == Outcome.DONE, result.reason
    assert (result.copied, result.altered, result.errors) == (1, 1, 0)
    [folder] = [f for f in result.folders if f.source == "Briefe"]
    assert (folder.copied, folder.altered) == (1, 1)
    [warning] = [w for w in result.warnings if "altered" in w]
    assert "message UID 2 in 'Briefe'" in warning
    assert "'INBOX.Briefe'" in warning and "as UID 2" in warning
    assert "8-bit header bytes replaced with 'X'" in warning
    assert "Köln" not in warning  # outside text stays out of the warning

    again = copy_account(imap_server.mailbox(source), cyrus_server.mailbox(destination), state=store)
    assert (again.copied, again.altered, again.errors) == (0, 0, 0)


def test_messages_stored_as_sent_raise_no_alteration_warning(imap_server, cyrus_server):
    source, destination = cyrus_server.add_user(), imap_server.add_user()
    with cyrus_server.connect(source) as client:
        fill(
            client, "INBOX", [(make_message(subject=f"m{i}", eight_bit=True, seed=30 + i), (), None) for i in range(3)]
        )
    result = copy_account(cyrus_server.mailbox(source), imap_server.mailbox(destination), state=MemoryStateStore())
    assert (result.copied, result.altered, result.errors) == (3, 0, 0)
    assert not [w for w in result.warnings if "altered" in w]


def _uses(client) -> dict[str, set[str]]:
    return {
        name: {f.decode() for f in flags} & {"\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"}
        for flags, _delimiter, name in client.list_folders()
    }


def test_special_use_is_carried_where_the_destination_can_create_it(imap_server, cyrus_server):
    # The test Dovecot gives every user Sent, Drafts, Trash and Junk marked \Sent... (RFC 6154); Cyrus offers
    # CREATE-SPECIAL-USE, so the new folders get the same marks.
    source, destination = imap_server.add_user(), cyrus_server.add_user()
    with imap_server.connect(source) as client:
        fill(client, "Sent", [(make_message(subject="sent", seed=41), ("\\Seen",), None)])
    result = copy_account(imap_server.mailbox(source), cyrus_server.mailbox(destination), state=MemoryStateStore())
    assert result.outcome == Outcome.DONE, result.reason
    with cyrus_server.connect(destination) as client:
        uses = _uses(client)
        assert len(read(client, "INBOX.Sent")) == 1
    assert uses["INBOX.Sent"] == {"\\Sent"}
    assert uses["INBOX.Drafts"] == {"\\Drafts"}
    assert uses["INBOX.Trash"] == {"\\Trash"}
    assert uses["INBOX.Junk"] == {"\\Junk"}


def test_special_use_the_destination_already_has_is_not_created_twice(imap_server, cyrus_server):
    source, destination = imap_server.add_user(), cyrus_server.add_user()
    with cyrus_server.connect(destination) as client:
        client._imap._simple_command("CREATE", '"INBOX.Gesendet"', "(USE (\\Sent))")
    result = copy_account(imap_server.mailbox(source), cyrus_server.mailbox(destination), state=MemoryStateStore())
    assert result.outcome == Outcome.DONE, result.reason
    with cyrus_server.connect(destination) as client:
        uses = _uses(client)
    # Dovecot's \Sent folder goes into the destination's \Sent folder (the special-use rule), not a new one.
    assert uses["INBOX.Gesendet"] == {"\\Sent"}
    assert "INBOX.Sent" not in uses


@pytest.mark.parametrize(("name", "literal_plus"), [("courier", False), ("cyrus", True)])
def test_appends_use_synchronising_literals_where_literal_plus_is_missing(imap_server, request, name, literal_plus):
    # Courier has no LITERAL+: each APPEND waits for the "+" go-ahead (RFC 3501 section 7.5); Cyrus has it.
    # Only folders below INBOX here, so this holds apart from engine-a's Courier INBOX/UNSELECT fix.
    destination_server = request.getfixturevalue(f"{name}_server")
    source, destination = imap_server.add_user(), destination_server.add_user()
    sent = [(make_message(subject=f"m{i}", seed=50 + i), ("\\Seen",) if i else (), WHEN) for i in range(4)]
    with imap_server.connect(source) as client:
        fill(client, "Sent", sent[:2])
        fill(client, "Projekte/Grüße", sent[2:])
    with CommandRecorder(destination_server.imap_port) as recorder:
        mailbox = replace(destination_server.mailbox(destination), port=recorder.port)
        result = copy_account(imap_server.mailbox(source), mailbox, state=MemoryStateStore())
    assert result.outcome == Outcome.DONE, result.reason
    assert (result.copied, result.errors) == (4, 0)
    appends = [line for line in recorder.commands if b" APPEND " in line.upper()]
    assert len(appends) == 4
    assert all(line.endswith(b"+}") == literal_plus for line in appends)
    creates = [line for line in recorder.commands if b" CREATE " in line.upper()]
    assert any(b"(USE (\\Sent))" in line for line in creates) == literal_plus  # only Cyrus offers CREATE-SPECIAL-USE
    with imap_server.connect(source) as src, destination_server.connect(destination) as dst:
        for path in ("Sent", "Projekte/Grüße"):
            theirs = [_key(m) for m in read(src, folder_name(imap_server, path))]
            assert [_key(m) for m in read(dst, folder_name(destination_server, path))] == theirs


def test_logindisabled_before_starttls_sends_no_password_in_clear_and_logs_in_after_starttls():
    # Courier with IMAP_TLS_REQUIRED=1 announces STARTTLS and LOGINDISABLED until TLS is on (RFC 9051 section 6.2.3).
    with Courier(tls_required=True) as server:
        user = server.add_user()
        with CommandRecorder(server.imap_port) as recorder:
            plain = test_connection(replace(server.mailbox(user), port=recorder.port))
        assert not plain.ok
        assert plain.kind == ErrorKind.TLS
        assert "LOGINDISABLED" in plain.message
        assert not [line for line in recorder.commands if b"LOGIN" in line.upper() or b"AUTHENTICATE" in line.upper()]
        assert user.password not in plain.message

        folders = list_folders(server.mailbox(user, security="starttls"))
        assert [f.name for f in folders] == ["INBOX"]


def test_folder_names_the_destination_cannot_hold_are_reported_never_silently_changed(imap_server, cyrus_server):
    # Dovecot holds '"' and '.' in names; Cyrus refuses '"' and uses '.' between levels.
    source, destination = imap_server.add_user(), cyrus_server.add_user()
    with imap_server.connect(source) as client:
        for name in ('Say "hi"', "v1.2", "plain"):
            fill(client, name, [(make_message(subject=name, seed=name), (), None)])
    plans = {p.source: p for p in plan_folders(imap_server.mailbox(source), cyrus_server.mailbox(destination), None)}
    # Before any copy, the plan (the folder mapping page) says how "v1.2" has to change.
    assert plans["v1.2"].destination == "INBOX.v1_2"
    assert "'.' separates folder levels on the destination" in plans["v1.2"].note
    assert plans["plain"].note == ""

    result = copy_account(imap_server.mailbox(source), cyrus_server.mailbox(destination), state=MemoryStateStore())
    folders = {f.source: f for f in result.folders}
    assert (folders["plain"].copied, folders["v1.2"].copied) == (1, 1)
    assert (folders['Say "hi"'].copied, folders['Say "hi"'].errors) == (0, 1)
    assert "refused to create 'INBOX.Say \"hi\"'" in folders['Say "hi"'].warnings[0]
    assert "Invalid mailbox name" in folders['Say "hi"'].warnings[0]  # Cyrus's own words
    assert any(w.startswith("'v1.2' copied as 'INBOX.v1_2'") for w in result.warnings)


def test_a_message_over_cyrus_appendlimit_is_never_uploaded_and_says_why(imap_server):
    # Cyrus announces its maxmessagesize as APPENDLIMIT (RFC 7889); Courier announces none (the matrix).
    with Cyrus(extra_config="maxmessagesize: 20000\n") as cyrus:
        source, destination = imap_server.add_user(), cyrus.add_user()
        with cyrus.connect(destination) as client:
            assert b"APPENDLIMIT=20000" in client.capabilities()
        with imap_server.connect(source) as client:
            fill(
                client,
                "INBOX",
                [
                    (make_message(subject="small", seed=70), (), None),
                    (make_message(subject="big", attachment_size=30_000, seed=71), (), None),
                ],
            )
        with CommandRecorder(cyrus.imap_port) as recorder:
            result = copy_account(
                imap_server.mailbox(source),
                replace(cyrus.mailbox(destination), port=recorder.port),
                state=MemoryStateStore(),
            )
        assert (result.copied, result.errors) == (1, 1)
        [error] = result.message_errors
        assert error.subject == "big"
        assert "APPENDLIMIT (20000 bytes)" in error.reason
        assert len([line for line in recorder.commands if b" APPEND " in line.upper()]) == 1
