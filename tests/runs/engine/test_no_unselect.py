"""Servers without UNSELECT (Courier-IMAP; issue 10 item 3), mimicked by hiding the capability
from the real Dovecot: the read-only source is never sent CLOSE, and no connection APPENDs while
a mailbox is open read-only on it (Courier refuses that: "Current box is selected READ-ONLY")."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import pytest

from runs.engine import Outcome, copy_account, test_connection
from runs.engine.filestate import MemoryStateStore
from runs.engine.imap import NO_SUCH_MAILBOX
from tests.runs.engine.helpers import CommandRecorder, assert_same_folder
from tests.support.dovecot import fill, make_message

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2023, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
_COMMAND = re.compile(rb"^\S+ (?:UID )?(\w+)(?: \"?([^\"]*)\"?)?", re.IGNORECASE)


def _without_unselect(data: bytes) -> bytes:
    return data.replace(b" UNSELECT", b"")


def _appends_into_read_only_mailbox(session: list[bytes]) -> list[bytes]:
    """APPENDs sent while this connection had a real mailbox open with EXAMINE."""
    open_read_only = False
    bad = []
    for line in session:
        match = _COMMAND.match(line)
        if not match:
            continue
        verb = match.group(1).upper()
        if verb == b"EXAMINE":
            open_read_only = NO_SUCH_MAILBOX.encode() not in line
        elif verb in (b"SELECT", b"UNSELECT", b"CLOSE"):
            open_read_only = False
        elif verb == b"APPEND" and open_read_only:
            bad.append(line)
    return bad


def _verbs(session: list[bytes]) -> set[bytes]:
    return {m.group(1).upper() for line in session if (m := _COMMAND.match(line))}


def test_the_connection_test_passes_without_unselect(imap_server, imap_user):
    with CommandRecorder(imap_server.imap_port, server_filter=_without_unselect) as recorder:
        result = test_connection(replace(imap_server.mailbox(imap_user), port=recorder.port))
    assert result.ok, result.message
    assert b"CLOSE" not in _verbs(recorder.commands) and b"UNSELECT" not in _verbs(recorder.commands)


def test_a_copy_between_servers_without_unselect_is_complete(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"i{i}"), [b"\\Seen"], WHEN) for i in range(6)])
        fill(client, "Work", [(make_message(seed=f"w{i}"), [b"\\Deleted"], WHEN) for i in range(3)])
    with (
        CommandRecorder(imap_server.imap_port, server_filter=_without_unselect) as src_side,
        CommandRecorder(imap_server.imap_port, server_filter=_without_unselect) as dst_side,
    ):
        store = MemoryStateStore()
        for _run in range(2):  # the second run plans with flag sync: SELECT at the destination
            with imap_server.connect(source) as client:
                fill(client, "INBOX", [(make_message(seed=f"new{_run}"), [], WHEN)])
            result = copy_account(
                replace(imap_server.mailbox(source), port=src_side.port),
                replace(imap_server.mailbox(destination), port=dst_side.port),
                state=store,
                connections=2,
            )
            assert result.outcome == Outcome.DONE, result.reason
            assert result.errors == 0
    assert b"CLOSE" not in _verbs(src_side.commands) and b"CLOSE" not in _verbs(dst_side.commands)
    assert b"APPEND" in _verbs(dst_side.commands)
    for session in dst_side.sessions:
        assert _appends_into_read_only_mailbox(session) == []
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 8
        assert assert_same_folder(src, "Work", dst, "Work") == 3  # \Deleted kept: nothing expunged
