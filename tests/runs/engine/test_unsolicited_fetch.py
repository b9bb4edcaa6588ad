"""An unsolicited FETCH inside a UID FETCH answer is not message data (issue 11 case 7).

The relay injects `* 3 FETCH (FLAGS (\\Flagged \\Seen))` (no UID: a flag change another session
made to sequence 3) into every source answer, right after the response for UID 3. After UID 1
is expunged, sequence 3 is UID 4, not UID 3; UID 4 really has those flags, so the injected
update is true, only about another message than UID 3.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from runs.engine import Outcome, copy_account
from runs.engine.filestate import MemoryStateStore
from runs.engine.imap import by_uid
from tests.runs.engine.helpers import CommandRecorder, assert_same_folder
from tests.support.dovecot import fill, make_message, read

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2021, 11, 12, 13, 14, 15, tzinfo=dt.UTC)
UNSOLICITED = b"* 3 FETCH (FLAGS (\\Flagged \\Seen))\r\n"


def test_an_unsolicited_fetch_does_not_flag_another_message(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"m{i}"), [], WHEN) for i in range(5)])
        client.select_folder("INBOX")
        client.add_flags([1], [b"\\Deleted"])
        client.uid_expunge([1])
        client.add_flags([4], [b"\\Flagged", b"\\Seen"])
        client.unselect_folder()
    injected = []

    def inject(data: bytes) -> bytes:
        if b"* 3 FETCH (UID 4 " in data:
            injected.append(1)
            return data.replace(b"* 3 FETCH (UID 4 ", UNSOLICITED + b"* 3 FETCH (UID 4 ")
        return data

    with CommandRecorder(imap_server.imap_port, server_filter=inject) as relay:
        result = copy_account(
            replace(imap_server.mailbox(source), port=relay.port),
            imap_server.mailbox(destination),
            state=MemoryStateStore(),
            connections=1,
        )
    assert result.outcome == Outcome.DONE and result.copied == 4, result.reason
    assert injected, "the relay never saw the response it should follow"
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 4
        flags = [m.flags for m in read(dst, "INBOX")]
    assert flags.count(("\\Flagged", "\\Seen")) == 1  # UID 4's copy, and no other


def test_by_uid_keys_by_uid_and_merges_an_unsolicited_response_into_the_message_it_names():
    answer = [
        b"2 (UID 3 FLAGS ())",
        b"3 (FLAGS (\\Flagged))",  # unsolicited, about sequence 3
        b"3 (UID 4 FLAGS (\\Seen))",
        b"9 (FLAGS (\\Deleted))",  # unsolicited, about a message not asked for
    ]
    parsed = by_uid(answer)
    assert sorted(parsed) == [3, 4]
    assert parsed[3][b"FLAGS"] == ()
    assert parsed[4][b"FLAGS"] == (b"\\Seen",)  # the solicited answer came last and wins


@pytest.mark.parametrize(
    "answer",
    [
        [
            b'5 (UID 12 RFC822.SIZE 3456 DIGEST.SHA1 "0a4d55a8d778e5022fab701977c5d840bbc486d0")',
            b"6 (RFC822.SIZE 7 UID 13)",
        ],
        [b"5 (uid 12 rfc822.size 3456)"],  # names in any case
        [b"5 (UID 12 RFC822.SIZE 3456)", b"5 (RFC822.SIZE 3457)", b"7 (RFC822.SIZE 9)"],  # merged; no UID: dropped
        [b"5 (UID 12 RFC822.SIZE 3456)", b"6 (FLAGS (\\Seen))"],  # a list: the general parser reads it all
        [b'5 (UID 12 DIGEST.SHA1 "a\\"b")'],  # an escaped quoted string: likewise
        [(b"5 (UID 12 BODY[] {3}", b"abc"), b")"],  # a literal: likewise
        [],
    ],
)
def test_the_fast_fetch_parser_reads_what_the_general_one_reads_or_declines(answer):
    """The size and digest check after each batch (verify.py) reads its answer with parse_scalar_fetch:
    whatever it returns must be what IMAPClient's general parser returns."""
    from imapclient.response_parser import parse_fetch_response

    from runs.engine.imap import parse_scalar_fetch

    fast = parse_scalar_fetch(answer)
    general = parse_fetch_response(answer, False, False)
    if fast is not None:
        assert fast == dict(general)
    assert by_uid(answer) == {int(item[b"UID"]): item for item in general.values() if b"UID" in item}


def test_the_fast_fetch_parser_declines_a_name_without_a_value():
    from runs.engine.imap import parse_scalar_fetch

    assert parse_scalar_fetch([b"5 (UID 12 RFC822.SIZE 3456 X-JUNK)"]) is None
    assert parse_scalar_fetch([b"5 (UID 12 junk RFC822.SIZE 3456)"]) is None
