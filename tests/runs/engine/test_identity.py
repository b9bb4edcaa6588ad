"""Identity and state against the real test Dovecot (issue 11 cases 5, 6, 11; issue 10's twins).

Each test replays a reported fault: flags landing on the wrong copy of two look-alike messages, a
source that reports sizes 29 bytes short, and copy state that outlived the destination it described.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from runs.engine import Outcome, copy_account
from runs.engine.filestate import MemoryStateStore
from tests.runs.engine.helpers import ResponseRewriter, sizes_short_by
from tests.support.dovecot import fill, make_message, read

pytestmark = pytest.mark.imap


def _twins() -> tuple[bytes, bytes]:
    """Two different messages sharing Message-ID and size (a resent mail, a list copy)."""
    a = make_message(message_id="<twins@example.org>", body="body AAAA\n", seed="twins")
    b = make_message(message_id="<twins@example.org>", body="body BBBB\n", seed="twins")
    assert len(a) == len(b) and a != b
    return a, b


def _flags_by_body(server, user, folder="INBOX") -> dict[str, tuple[str, ...]]:
    with server.connect(user) as client:
        return {m.sha256: m.flags for m in read(client, folder)}


def _set_flags(server, user, index: int, flags: list[bytes], folder="INBOX") -> None:
    """Replace the flags of the index-th message (by UID order) of `folder`."""
    with server.connect(user) as client:
        client.select_folder(folder)
        uid = sorted(client.search("ALL"))[index]
        client.set_flags([uid], flags)


def _count(server, user, folder="INBOX") -> int:
    with server.connect(user) as client:
        return len(read(client, folder))


def _copy(server, source, dest_server, destination, store):
    result = copy_account(server.mailbox(source), dest_server.mailbox(destination), state=store)
    assert result.outcome == Outcome.DONE, result.reason
    return result


# -------------------------------------------------------------------- 11.5: flags follow the UID map


def test_flagging_one_twin_flags_its_own_copy_only(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    a, b = _twins()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(a, [b"\\Seen"], None), (b, [], None)])
    store = MemoryStateStore()
    assert _copy(imap_server, source, imap_server, destination, store).copied == 2
    _set_flags(imap_server, source, 1, [b"\\Flagged"])
    result = _copy(imap_server, source, imap_server, destination, store)
    assert (result.copied, result.skipped) == (0, 2)
    assert _flags_by_body(imap_server, destination) == _flags_by_body(imap_server, source)
    assert sorted(_flags_by_body(imap_server, destination).values()) == [("\\Flagged",), ("\\Seen",)]


def test_after_a_uidvalidity_change_the_rematched_twins_get_their_own_flags(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    a, b = _twins()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(a, [b"\\Seen"], None), (b, [], None)])
    store = MemoryStateStore()
    _copy(imap_server, source, imap_server, destination, store)
    imap_server.set_uidvalidity(source, "INBOX", 4242)
    _set_flags(imap_server, source, 0, [])
    _set_flags(imap_server, source, 1, [b"\\Flagged", b"\\Answered"])
    result = _copy(imap_server, source, imap_server, destination, store)
    assert (result.copied, result.skipped) == (0, 2)
    assert _flags_by_body(imap_server, destination) == _flags_by_body(imap_server, source)


def test_a_first_run_onto_a_filled_destination_brings_the_flags_in_line(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    a, b = _twins()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(a, [b"\\Seen"], None), (b, [b"\\Flagged"], None)])
    with imap_server.connect(destination) as client:  # copied before by another tool, flags lost
        fill(client, "INBOX", [(b, [], None), (a, [b"\\Deleted"], None)])
    result = _copy(imap_server, source, imap_server, destination, MemoryStateStore())
    assert (result.copied, result.skipped) == (0, 2)
    assert _flags_by_body(imap_server, destination) == _flags_by_body(imap_server, source)


# ------------------------------------------------------- 11.6: a source whose sizes are 29 bytes short


def test_identity_does_not_trust_the_servers_rfc822_size(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"short{i}", subject=f"m{i}"), [], None) for i in range(3)])
    with ResponseRewriter(imap_server.imap_port, sizes_short_by(29)) as short:
        src = dataclasses.replace(imap_server.mailbox(source), port=short.port)
        store = MemoryStateStore()
        first = copy_account(src, imap_server.mailbox(destination), state=store)
        assert (first.outcome, first.copied) == (Outcome.DONE, 3)
        _set_flags(imap_server, source, 1, [b"\\Flagged"])
        copy_account(src, imap_server.mailbox(destination), state=store)
        assert _flags_by_body(imap_server, destination) == _flags_by_body(imap_server, source)
        fresh = copy_account(src, imap_server.mailbox(destination), state=MemoryStateStore())
    assert (fresh.outcome, fresh.copied, fresh.skipped) == (Outcome.DONE, 0, 3)
    assert _count(imap_server, destination) == 3


# -------------------------------------------- 11.11: state bound to the destination it was written for


def _fill_some(server, user, count=30):
    with server.connect(user) as client:
        fill(
            client,
            "INBOX",
            [(make_message(seed=f"{user.username}-{i}", subject=f"in {i}"), [], None) for i in range(count)],
        )
        fill(
            client,
            "Archive",
            [(make_message(seed=f"{user.username}-a{i}", subject=f"ar {i}"), [], None) for i in range(5)],
        )


def _assert_all_there(result, server, user):
    assert (result.copied, result.skipped) == (35, 0)
    assert (_count(server, user), _count(server, user, "Archive")) == (30, 5)


def test_a_new_destination_server_gets_everything(imap_server, imap_server_dotted, make_imap_user):
    source, first = make_imap_user(), make_imap_user()
    second = make_imap_user(imap_server_dotted)
    _fill_some(imap_server, source)
    store = MemoryStateStore()
    _copy(imap_server, source, imap_server, first, store)
    result = _copy(imap_server, source, imap_server_dotted, second, store)
    assert any("destination server changed" in w for w in result.warnings)
    with imap_server_dotted.connect(second) as client:
        assert (len(read(client, "INBOX")), len(read(client, "INBOX.Archive"))) == (30, 5)
    assert (result.copied, result.skipped) == (35, 0)
    again = _copy(imap_server, source, imap_server_dotted, second, store)
    assert (again.copied, again.skipped) == (0, 35)


def test_a_new_destination_user_gets_everything(imap_server, make_imap_user):
    source, first, second = make_imap_user(), make_imap_user(), make_imap_user()
    _fill_some(imap_server, source)
    store = MemoryStateStore()
    _copy(imap_server, source, imap_server, first, store)
    result = _copy(imap_server, source, imap_server, second, store)
    assert any("destination user changed" in w for w in result.warnings)
    _assert_all_there(result, imap_server, second)


def test_a_destination_mailbox_deleted_and_created_again_is_filled_again(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source)
    store = MemoryStateStore()
    _copy(imap_server, source, imap_server, destination, store)
    imap_server.recreate_mailbox(destination, ["INBOX", "Archive"])
    result = _copy(imap_server, source, imap_server, destination, store)
    _assert_all_there(result, imap_server, destination)
    again = _copy(imap_server, source, imap_server, destination, store)
    assert (again.copied, again.skipped) == (0, 35)


def test_a_rematched_destination_that_kept_part_of_the_mail_gets_only_the_rest(imap_server, make_imap_user):
    source, first, second = make_imap_user(), make_imap_user(), make_imap_user()
    _fill_some(imap_server, source)
    with imap_server.connect(source) as src, imap_server.connect(second) as dst:
        src.select_folder("INBOX", readonly=True)
        uids = sorted(src.search("ALL"))[:12]
        bodies = src.fetch(uids, ["BODY.PEEK[]"])
        fill(dst, "INBOX", [(bodies[uid][b"BODY[]"], [], None) for uid in uids])
    store = MemoryStateStore()
    _copy(imap_server, source, imap_server, first, store)
    result = _copy(imap_server, source, imap_server, second, store)
    assert (result.copied, result.skipped) == (23, 12)
    assert (_count(imap_server, second), _count(imap_server, second, "Archive")) == (30, 5)


def _without_uidplus(line: bytes) -> bytes:
    """A destination without UIDPLUS (RFC 4315): no capability, no APPENDUID in its answers."""
    return re.sub(rb"\[APPENDUID \d+ \d+\] ?", b"", line.replace(b" UIDPLUS", b""))


def test_without_uidplus_the_twins_copies_are_found_by_their_bodies(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    a, b = _twins()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(a, [b"\\Seen"], None), (b, [], None)])
    with ResponseRewriter(imap_server.imap_port, _without_uidplus) as plain:
        dst = dataclasses.replace(imap_server.mailbox(destination), port=plain.port)
        store = MemoryStateStore()
        assert copy_account(imap_server.mailbox(source), dst, state=store).copied == 2
        assert store.folders["INBOX"].uid_map == ""  # nothing said where the copies went
        _set_flags(imap_server, source, 1, [b"\\Flagged"])
        copy_account(imap_server.mailbox(source), dst, state=store)
    assert _flags_by_body(imap_server, destination) == _flags_by_body(imap_server, source)
    assert store.folders["INBOX"].uid_map != ""  # found once, remembered
