"""The planning LIST with STATUS (RFC 5819): the quick reading of its usual answer lines gives what IMAPClient's
general parser gives, and leaves every other shape to it."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_response

from runs.engine.imap import _simple_list, _simple_statuses

LIST_LINES = [
    rb'(\HasNoChildren) "/" INBOX',
    rb'(\HasChildren \Noselect) "/" "Par"',
    rb'(\Subscribed \Sent) "." "INBOX.Sent Items"',
    rb'() "/" "quote\"d"',
    rb'() "/" "back\\slash"',
    rb'() NIL "Flat"',
    rb'() "\\" "Windows\\Path"',
    rb'() "/" "Projects/&ANw-n&AO8-c&APY-d&AOk- &BB8EQAQ+BDUEOgRC-"',
    rb'() "/" 2019',
    rb'() "/" "A &- B"',
]


def _imapclient_list(lines):
    client = IMAPClient.__new__(IMAPClient)
    client.folder_encode = True
    return client._proc_folder_list(lines)


@pytest.mark.parametrize("line", LIST_LINES)
def test_a_usual_list_line_reads_as_imapclient_reads_it(line):
    [(flags, delimiter, name)] = _simple_list([line])
    [(want_flags, want_delimiter, want_name)] = _imapclient_list([line])
    assert (flags, delimiter, name) == (tuple(want_flags), want_delimiter, str(want_name))


@pytest.mark.parametrize(
    "lines",
    [
        [(rb'() "/" {5}', b'lit"x')],  # a literal name
        [rb'() "/" "foo" ("CHILDINFO" ("SUBSCRIBED"))'],  # extended data (RFC 5258)
        [rb'() "/" odd]name'],  # a resp-special in an atom name
        [rb'(\HasNoChildren) "/" INBOX', (rb'() "/" {3}', b"abc")],  # one unusual line: all go to IMAPClient
    ],
)
def test_any_other_list_line_is_left_to_imapclient(lines):
    assert _simple_list(lines) is None


STATUS_LINES = [
    rb"INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1796108925 HIGHESTMODSEQ 7 SIZE 20480)",
    rb'"Sent Items" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 12)',
    rb'"quote\"d" (MESSAGES 1)',
    rb'"Projects/&ANw-n&AO8-c&APY-d&AOk- &BB8EQAQ+BDUEOgRC-" (MESSAGES 2 UIDNEXT 9)',
]


def test_usual_status_lines_read_as_imapclient_reads_them():
    tokens = parse_response(STATUS_LINES)
    want = {
        decode_utf7(name): {values[i].decode().upper(): values[i + 1] for i in range(0, len(values), 2)}
        for name, values in zip(tokens[::2], tokens[1::2], strict=True)
    }
    assert _simple_statuses(STATUS_LINES) == want
    assert want["Projects/Ünïcödé Проект"] == {"MESSAGES": 2, "UIDNEXT": 9}


@pytest.mark.parametrize(
    "lines", [[(b"{5}", b"ab cd"), b" (MESSAGES 1)"], [rb"INBOX (MESSAGES NIL)"], [rb"INBOX (X-WEIRD (1 2))"]]
)
def test_any_other_status_line_is_left_to_imapclient(lines):
    assert _simple_statuses(lines) is None


@pytest.mark.imap
def test_a_refused_extended_list_falls_back_to_list_and_status_per_folder(imap_server, make_imap_user, monkeypatch):
    # A server that advertises LIST-STATUS but refuses the extended LIST with BAD or NO (no real server here
    # does: the refusal is put in imaplib's mouth): the plain LIST and STATUS folder by folder, and the copy goes on.
    import imaplib

    from runs.engine import Outcome, copy_account
    from runs.engine.connect import connect
    from runs.engine.filestate import MemoryStateStore
    from tests.support.dovecot import fill, make_message

    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "Work", [(make_message(seed=f"rl{i}"), [], None) for i in range(3)])
    original = imaplib.IMAP4._simple_command
    refused = []

    def simple_command(self, name, *args):
        if name == "LIST" and "RETURN" in args:
            refused.append(args)
            if len(refused) % 2:
                raise self.error("LIST command error: BAD [b'Unknown LIST return option']")  # what imaplib does on BAD
            return "NO", [b"LIST-STATUS unavailable"]
        return original(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_simple_command", simple_command)
    connection = connect(imap_server.mailbox(source), read_only=True)
    try:
        listed, statuses = connection.list_status(["MESSAGES"])
        assert statuses == {} and listed == connection.list()
    finally:
        connection.close()
    result = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=MemoryStateStore())
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 3, 0)
    assert refused
    assert [f.destination_messages for f in result.folders if f.source == "Work"] == [3]
