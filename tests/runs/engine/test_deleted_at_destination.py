"""Messages deleted at the destination after they were copied: a one-way copy does not bring them
back, and the totals say so instead of counting them "already there" (real Dovecot)."""

from __future__ import annotations

import pytest

from runs.engine import Outcome, copy_account
from runs.engine.filestate import MemoryStateStore
from runs.engine.types import AccountResult
from runs.management.commands.copymailbox import _accounting
from tests.support.dovecot import fill, make_message

pytestmark = pytest.mark.imap


def _copy(server, source, destination, store):
    result = copy_account(server.mailbox(source), server.mailbox(destination), state=store)
    assert result.outcome == Outcome.DONE, result.reason
    return result, {f.source: f for f in result.folders}


def _delete_two(server, user) -> None:
    with server.connect(user) as client:
        client.select_folder("INBOX")
        client.delete_messages(client.search("ALL")[:2])
        client.expunge()


@pytest.fixture
def copied(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"{source.username}-{i}"), [], None) for i in range(5)])
    store = MemoryStateStore()
    _copy(imap_server, source, destination, store)
    _delete_two(imap_server, destination)
    return source, destination, store


def test_deleted_copies_are_counted_apart_and_not_copied_again(imap_server, copied):
    source, destination, store = copied
    result, folders = _copy(imap_server, source, destination, store)
    inbox = folders["INBOX"]
    assert (inbox.copied, inbox.skipped, inbox.deleted_at_destination, inbox.source_messages) == (0, 3, 2, 5)
    assert inbox.destination_messages == 3 and not inbox.not_copied
    assert (result.skipped, result.deleted_at_destination, result.source_messages) == (3, 2, 5)
    assert "2 deleted at the destination after they were copied (not copied again)" in _accounting(result)


def test_copies_the_uid_map_does_not_know_still_count_as_already_there(imap_server, copied):
    # A state written before the UID map was kept: the deletions cannot be told apart (documented fallback).
    source, destination, store = copied
    store.folders["INBOX"].uid_map = ""
    store.folders["INBOX"].highest_modseq = None  # no shortcut: the folder is read
    _result, folders = _copy(imap_server, source, destination, store)
    inbox = folders["INBOX"]
    assert (inbox.copied, inbox.skipped, inbox.deleted_at_destination) == (0, 5, 0)


def test_the_accounting_line_without_deletions_is_unchanged():
    result = AccountResult(outcome=Outcome.DONE, copied=1, skipped=2, source_messages=3)
    assert _accounting(result) == "source: 3 messages, 3 at the destination"
