"""One message that breaks the connection does not stop the folder (issue 11 cases 3 and 4).

Case 4: the source answers `* BYE FETCH failed: Internal error` whenever one message's body is
read (the relay plays the source dying there). Case 3: a proxy resets the destination connection
whenever an APPEND of more than 200 KB starts. Either way the message is narrowed down by
halving the batches, reported by folder, UID, size (and subject when known), and the rest copied.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import pytest

from runs.engine import NotCopied, Outcome, copy_account
from runs.engine.filestate import MemoryStateStore
from runs.engine.isolation import BLAMED_IN_A_ROW, Isolation, Suspects
from runs.engine.uidset import UidSet
from tests.runs.engine.helpers import CommandRecorder
from tests.support.dovecot import fill, make_message, read

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2023, 9, 10, 11, 12, 13, tzinfo=dt.UTC)
_APPEND_LITERAL = re.compile(rb" APPEND .*\{(\d+)\+?\}$")


def _bye_on_body_of(uid: int):
    """A server_cut: the source dies with BYE when it is about to send this UID's body."""
    head = re.compile(rb"\* \d+ FETCH \(UID %d [^\r\n]*BODY\[\]" % uid)

    def cut(chunk: bytes) -> bytes | None:
        match = head.search(chunk)
        return None if match is None else chunk[: match.start()] + b"* BYE FETCH failed: Internal error\r\n"

    return cut


def _uids(client, folder: str) -> list[str]:
    return sorted(m.sha256 for m in read(client, folder))


def test_an_unreadable_source_message_is_reported_and_the_rest_copied(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"r{i}", subject=f"m{i}"), [], WHEN) for i in range(10)])
        fill(client, "Later", [(make_message(seed="later"), [], WHEN)])
    with CommandRecorder(imap_server.imap_port, server_cut=_bye_on_body_of(7)) as relay:
        result = copy_account(
            replace(imap_server.mailbox(source), port=relay.port),
            imap_server.mailbox(destination),
            state=MemoryStateStore(),
            connections=1,
        )
    assert relay.cuts >= 2
    assert result.outcome == Outcome.DONE, result.reason  # done with errors, not failed
    assert (result.copied, result.errors) == (10, 1)
    [error] = result.message_errors
    assert (error.folder, error.uid) == ("INBOX", 7)
    assert error.size > 0 and "FETCH failed: Internal error" in error.reason
    # Counted once, by its reason (issue 11 case 10): 11 source messages, 10 copied, 1 unreadable.
    assert (result.source_messages, result.not_copied) == (11, {NotCopied.UNREADABLE: 1})
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        source_messages = read(src, "INBOX")
        expected = sorted(m.sha256 for m in source_messages if m.uid != 7)
        assert _uids(dst, "INBOX") == expected
        assert _uids(dst, "Later") == _uids(src, "Later")


def test_a_message_that_breaks_the_destination_connection_is_isolated(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    messages = (
        [(make_message(seed="first", subject="small first"), [], WHEN)]
        + [(make_message(seed="big", subject="the big one", attachment_size=300_000), [], WHEN)]
        + [(make_message(seed=f"s{i}", subject=f"small {i}"), [], WHEN) for i in range(20)]
    )
    with imap_server.connect(source) as client:
        fill(client, "INBOX", messages)

    def big_append(line: bytes) -> bool:
        match = _APPEND_LITERAL.search(line)
        return match is not None and int(match.group(1)) > 200_000

    with CommandRecorder(imap_server.imap_port, client_cut=big_append) as relay:
        result = copy_account(
            imap_server.mailbox(source),
            replace(imap_server.mailbox(destination), port=relay.port),
            state=MemoryStateStore(),
            connections=1,
        )
    assert relay.cuts >= 2
    assert result.outcome == Outcome.DONE, result.reason
    assert (result.copied, result.errors) == (21, 1)
    [error] = result.message_errors
    assert (error.folder, error.uid, error.subject) == ("INBOX", 2, "the big one")
    assert error.size > 300_000 and "stored at the destination" in error.reason
    assert (result.source_messages, result.not_copied) == (22, {NotCopied.REFUSED: 1})
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        expected = sorted(m.sha256 for m in read(src, "INBOX") if m.uid != 2)
        assert _uids(dst, "INBOX") == expected  # each of the 21 exactly once


def test_isolation_halves_then_blames_a_message_that_breaks_twice_alone():
    isolation = Isolation()
    remaining = UidSet.from_uids(range(1, 11))
    suspects = Suspects("read from the source", list(range(1, 11)), {7: (1234, "")})
    isolation.watch(suspects)
    assert not isolation.after_break(remaining).counts and isolation.batch_messages(250) == 5
    isolation.watch(Suspects("read from the source", [6, 7], {7: (1234, "")}))
    assert isolation.batch_messages(250) == 5 and not isolation.after_break(remaining).counts
    assert isolation.batch_messages(250) == 1
    isolation.watch(Suspects("read from the source", [7], {7: (1234, "")}))
    first = isolation.after_break(remaining)
    assert first.counts and first.blamed is None  # once alone may be a network drop
    isolation.watch(Suspects("read from the source", [7], {7: (1234, "")}))
    second = isolation.after_break(remaining)
    assert (second.blamed, second.size, second.counts, second.give_up) == (7, 1234, False, False)
    assert isolation.batch_messages(250) == 1  # on with single messages ...
    isolation.landed()
    isolation.landed()
    assert isolation.batch_messages(250) == 4  # ... twice as many after each batch that lands
    for _ in range(12):
        isolation.landed()
    assert isolation.batch_messages(250) == 250 and isolation.limit is None


def test_isolation_gives_up_after_messages_in_a_row_break_the_connection():
    isolation = Isolation()
    remaining = UidSet.from_uids(range(1, 100))
    verdicts = []
    for uid in range(1, BLAMED_IN_A_ROW + 1):
        for _ in range(2):
            isolation.watch(Suspects("read from the source", [uid]))
            verdicts.append(isolation.after_break(remaining))
    assert [v.blamed for v in verdicts if v.blamed] == list(range(1, BLAMED_IN_A_ROW + 1))
    assert verdicts[-1].give_up and not any(v.give_up for v in verdicts[:-1])
    isolation.landed()
    isolation.watch(Suspects("read from the source", [50]))
    isolation.after_break(remaining)
    isolation.watch(Suspects("read from the source", [50]))
    assert not isolation.after_break(remaining).give_up  # something landed in between


def test_a_break_with_nothing_on_the_wire_is_an_ordinary_failed_reconnect():
    isolation = Isolation()
    assert isolation.after_break(UidSet.from_uids([1, 2])).counts
    isolation.watch(Suspects("read from the source", [5, 6]))
    assert isolation.after_break(UidSet.from_uids([1, 2])).counts  # those already landed
