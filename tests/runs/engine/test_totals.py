"""Truthful totals (issue 11 cases 10 and 12) and subscriptions (case 8), against the real Dovecot.

Every source message of an account is counted once: copied, already there, or not copied by a
named reason; copied + skipped + not copied = the source's messages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from runs.engine import NotCopied, Outcome, copy_account
from runs.engine.filestate import MemoryStateStore
from runs.engine.uidset import UidSet
from tests.runs.engine.helpers import CommandRecorder, assert_same_folder, hiding_capabilities
from tests.support.dovecot import fill, make_message, read

pytestmark = pytest.mark.imap


def _fill(server, user, folders: dict[str, int], size: int = 0) -> None:
    with server.connect(user) as client:
        for folder, count in folders.items():
            fill(
                client,
                folder,
                [
                    (make_message(seed=f"{user.username}{folder}{i}", attachment_size=size), [], None)
                    for i in range(count)
                ],
            )


def _adds_up(result) -> None:
    assert result.source_messages == result.copied + result.skipped + result.not_copied_total
    for folder in result.folders:
        if folder.destination is not None and folder.source_messages is not None:
            assert folder.source_messages == folder.copied + folder.skipped + sum(folder.not_copied.values())


def test_a_folder_the_destination_refuses_to_create_is_counted_not_copied(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    _fill(imap_server, source, {"INBOX": 3, "Projects": 5})
    result = copy_account(
        imap_server.mailbox(source),
        imap_server.mailbox(destination),
        state=MemoryStateStore(),
        folder_mapping={"Projects": "~Projects"},  # Dovecot: "Invalid mailbox name: Begins with '~'"
    )
    assert result.outcome == Outcome.DONE
    assert (result.copied, result.source_messages) == (3, 8)
    assert result.not_copied == {NotCopied.FOLDER_NOT_CREATED: 5}
    folders = {f.source: f for f in result.folders}
    assert (folders["Projects"].source_messages, folders["Projects"].destination_messages) == (5, None)
    assert (folders["INBOX"].source_messages, folders["INBOX"].destination_messages) == (3, 3)
    assert any("Begins with '~'" in w for w in result.warnings)
    _adds_up(result)


def test_a_refused_message_is_counted_with_its_reason(imap_server, make_imap_user):
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=50_000, advertise_appendlimit=False)
    _fill(imap_server, source, {"INBOX": 2})
    _fill(imap_server, source, {"Big": 1}, size=100_000)
    result = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=MemoryStateStore())
    assert (result.copied, result.not_copied) == (2, {NotCopied.REFUSED: 1})
    assert [e.kind for e in result.message_errors] == [NotCopied.REFUSED]
    _adds_up(result)


def test_messages_that_landed_before_a_crash_are_counted_as_already_there(imap_server, make_imap_user):
    # Issue 11 case 12: after a killed worker, 168 + 55 = 223 of 300 with all 300 present.
    source, destination = make_imap_user(), make_imap_user()
    _fill(imap_server, source, {"INBOX": 10})
    store = MemoryStateStore()
    first = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert first.copied == 10
    with imap_server.connect(source) as client:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
    with imap_server.connect(destination) as client:
        landed = read(client, "INBOX")
    # The record as a worker killed after sending the last 4 APPENDs leaves it.
    state = store.folders["INBOX"]
    state.copied_uids = str(UidSet.from_uids(uids[:6]))
    state.pending_uids = str(UidSet.from_uids(uids[6:]))
    state.pending_uidnext = landed[6].uid
    state.uid_map = ",".join(f"{u}={d.uid}" for u, d in zip(uids[:6], landed[:6], strict=True))
    state.highest_modseq = None
    second = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert (second.outcome, second.copied, second.skipped, second.not_copied) == (Outcome.DONE, 0, 10, {})
    assert second.source_messages == 10
    _adds_up(second)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 10


def test_a_stopped_copy_counts_what_it_did_not_reach(imap_server, make_imap_user, monkeypatch):
    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 5)
    source, destination = make_imap_user(), make_imap_user()
    _fill(imap_server, source, {"INBOX": 30})
    seen = []
    result = copy_account(
        imap_server.mailbox(source),
        imap_server.mailbox(destination),
        state=MemoryStateStore(),
        on_progress=lambda p: seen.append(p),
        should_stop=lambda: bool(seen) and seen[-1].copied >= 5,
        connections=1,
    )
    assert result.outcome == Outcome.CANCELLED
    assert 5 <= result.copied < 30
    assert result.not_copied == {NotCopied.NOT_ATTEMPTED: 30 - result.copied}
    _adds_up(result)


def test_a_refused_login_leaves_the_mailbox_not_read(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    wrong = dataclasses.replace(imap_server.mailbox(source), password="not-the-password")
    result = copy_account(wrong, imap_server.mailbox(destination), state=MemoryStateStore())
    assert result.outcome == Outcome.FAILED and result.source_messages is None


# ------------------------------------------------------------------------ 11.8: subscriptions


def _subscribed(server, user) -> set[str]:
    with server.connect(user) as client:
        return {name for _flags, _delim, name in client.list_sub_folders()}


@pytest.mark.parametrize("listed", [True, False], ids=["list-returns-subscribed", "lsub"])
def test_the_destination_subscribes_what_the_source_does_and_keeps_its_own(imap_server, make_imap_user, listed):
    source, destination = make_imap_user(), make_imap_user()
    auto = _subscribed(imap_server, make_imap_user())  # the test server always subscribes its special-use folders
    _fill(imap_server, source, {"INBOX": 1, "A": 1, "B": 1, "C": 1})
    with imap_server.connect(source) as client:
        for name in client.list_sub_folders():
            client.unsubscribe_folder(name[2])
        for name in ("INBOX", "A", "C"):
            client.subscribe_folder(name)
    with imap_server.connect(destination) as client:
        client.create_folder("C")
        client.create_folder("Mine")
        client.subscribe_folder("C")
        client.subscribe_folder("Mine")
        for name in ("INBOX",):
            client.unsubscribe_folder(name)
    assert _subscribed(imap_server, source) == {"INBOX", "A", "C"} | auto
    # A server with LIST-EXTENDED says which folders are subscribed in the LIST itself (RFC 5258 §3.2).
    hide = None if listed else hiding_capabilities(b"LIST-EXTENDED")
    with (
        CommandRecorder(imap_server.imap_port, server_filter=hide) as src_side,
        CommandRecorder(imap_server.imap_port, server_filter=hide) as dst_side,
    ):
        result = copy_account(
            replace(imap_server.mailbox(source), port=src_side.port),
            replace(imap_server.mailbox(destination), port=dst_side.port),
            state=MemoryStateStore(),
        )
    assert result.outcome == Outcome.DONE
    assert _subscribed(imap_server, destination) == {"INBOX", "A", "C", "Mine"} | auto
    assert ("LSUB" in src_side.verbs() + dst_side.verbs()) is not listed


def test_a_source_without_subscriptions_adds_none(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    auto = _subscribed(imap_server, make_imap_user())  # the test server always subscribes its special-use folders
    _fill(imap_server, source, {"INBOX": 1, "A": 1, "B/C": 1})
    with imap_server.connect(source) as client:
        for name in client.list_sub_folders():
            client.unsubscribe_folder(name[2])
    copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=MemoryStateStore())
    assert _subscribed(imap_server, destination) == auto
    assert not {"INBOX", "A", "B", "B/C"} & auto


def test_a_refusal_the_operator_accepted_is_not_tried_and_not_an_error(imap_server, make_imap_user):
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=50_000, advertise_appendlimit=False)
    _fill(imap_server, source, {"INBOX": 2})
    _fill(imap_server, source, {"INBOX": 1}, size=80_000)
    store = MemoryStateStore()
    first = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert (first.copied, first.errors, first.not_copied) == (2, 1, {NotCopied.REFUSED: 1})
    refused = first.message_errors[0].uid
    store.folders["INBOX"].accepted_uids = str(refused)
    for _ in range(2):  # the second run takes the folder as unchanged (CONDSTORE)
        again = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store)
        assert (again.copied, again.skipped, again.errors) == (0, 2, 0)
        assert again.not_copied == {NotCopied.ACCEPTED: 1} and again.message_errors == []
        _adds_up(again)


def test_a_refused_destination_login_counts_the_source_as_account_not_reached(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    _fill(imap_server, source, {"INBOX": 3, "Projects": 2})
    wrong = dataclasses.replace(imap_server.mailbox(destination), password="not-the-password")
    result = copy_account(imap_server.mailbox(source), wrong, state=MemoryStateStore())
    assert result.outcome == Outcome.FAILED and "destination" in result.reason
    assert (result.source_messages, result.not_copied) == (5, {NotCopied.ACCOUNT_NOT_REACHED: 5})
    _adds_up(result)
