"""A keyword the destination refuses does not lose the message (issue 11 case 2).

Dovecot refuses keywords longer than mail_max_keyword_length (50 by default) with
"NO [CANNOT] Keyword length too long". The source here is a Dovecot that allows 200.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

import pytest

from runs.engine import Outcome, copy_account
from runs.engine.filestate import MemoryStateStore
from tests.runs.engine.helpers import CommandRecorder
from tests.support.dovecot import Dovecot, DovecotError, fill, make_message, read

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
LONG = "$" + "k" * 59  # 60 characters


@pytest.fixture(scope="module")
def long_keyword_server() -> Iterator[Dovecot]:
    try:
        server = Dovecot(extra_config="mail_max_keyword_length = 200\n")
    except (DovecotError, OSError) as exc:
        pytest.fail(f"the test Dovecot could not start:\n{exc}", pytrace=False)
    yield server
    server.stop()


def test_a_refused_keyword_is_dropped_and_the_message_copied(long_keyword_server, imap_server, make_imap_user):
    source = long_keyword_server.add_user()
    destination = make_imap_user()
    with long_keyword_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [
                (make_message(seed="a", subject="plain one"), [b"\\Seen", b"$Label1"], WHEN),
                (
                    make_message(seed="b", subject="with a long keyword"),
                    [b"\\Flagged", LONG.encode(), b"$Label1"],
                    WHEN,
                ),
                (make_message(seed="c", subject="after it"), [], WHEN),
            ],
        )
    store = MemoryStateStore()
    result = copy_account(long_keyword_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert result.outcome == Outcome.DONE, result.reason
    assert (result.copied, result.errors) == (3, 0)
    [warning] = result.message_warnings
    assert (warning.folder, warning.uid, warning.subject) == ("INBOX", 2, "with a long keyword")
    assert "Keyword length too long" in warning.text and LONG in warning.text
    assert warning.text in result.warnings
    with imap_server.connect(destination) as client:
        stored = {m.message_id: m.flags for m in read(client, "INBOX")}
    with long_keyword_server.connect(source) as client:
        ids = [m.message_id for m in read(client, "INBOX")]
    assert [stored[i] for i in ids] == [("$Label1", "\\Seen"), ("\\Flagged",), ()]
    again = copy_account(long_keyword_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert (again.copied, again.errors) == (0, 0)  # counted copied: not tried again


def test_a_message_refused_for_its_size_is_not_sent_again_without_keywords(imap_server, make_imap_user):
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=20_000, advertise_appendlimit=False)
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed="big", attachment_size=40_000), [b"$Label1"], WHEN)])
    with CommandRecorder(imap_server.imap_port) as relay:
        result = copy_account(
            imap_server.mailbox(source),
            replace(imap_server.mailbox(destination), port=relay.port),
            state=MemoryStateStore(),
        )
    assert relay.verbs().count("APPEND") == 1
    assert (result.copied, result.errors, result.message_warnings) == (0, 1, [])
    assert "[LIMIT]" in result.message_errors[0].reason
