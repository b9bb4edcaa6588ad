"""The connection test never raises (issue 10 item 5): every answer a server can give, including
ones no real server gives on purpose, becomes a classified result with the server's words.

A scripted fake server plays the answers; the normal paths run against Dovecot in test_failures.py.
"""

from __future__ import annotations

import pytest

from runs.engine import ErrorKind, Mailbox, test_connection
from tests.runs.engine.helpers import FakeServer


def _server(greeting: bytes = b"* OK fake ready\r\n", **answers: list[str]) -> FakeServer:
    """A fake IMAP server: answers[VERB] replaces the usual answer ("TAG" is the command's tag)."""

    def handler(tag: str, command: str) -> list[str]:
        verb = command.split(" ")[0].upper()
        if verb in answers:
            return [line.replace("TAG", tag) for line in answers[verb]]
        return {
            "CAPABILITY": ["* CAPABILITY IMAP4rev1 UNSELECT", f"{tag} OK done"],
            "LOGIN": [f"{tag} OK logged in"],
            "LIST": ['* LIST () "/" INBOX', f"{tag} OK LIST done"],
            "EXAMINE": ["* 1 EXISTS", "* OK [UIDVALIDITY 5] ok", f"{tag} OK [READ-ONLY] done"],
            "UNSELECT": [f"{tag} OK done"],
            "LOGOUT": ["* BYE bye", f"{tag} OK bye"],
        }.get(verb, [f"{tag} BAD unknown command"])

    return FakeServer(greeting, handler)


CASES = {
    "a malformed UIDVALIDITY": (
        {"EXAMINE": ["* OK [UIDVALIDITY abc] x", "TAG OK done"]},
        ErrorKind.PROTOCOL,
        "could not be understood: invalid literal for int() with base 10: abc",
    ),
    "a LIST answer in pieces": (
        {"LIST": ["* LIST (((( garbage", "TAG OK done"]},
        ErrorKind.PROTOCOL,
        "could not be understood",
    ),
    "BYE instead of the LIST answer": (
        {"LIST": ["* BYE shutting down for maintenance"]},
        ErrorKind.PROTOCOL,
        "shutting down for maintenance",
    ),
    "a line that is no IMAP": ({"LIST": ["HTTP/1.1 400 Bad Request", "TAG OK done"]}, ErrorKind.PROTOCOL, "400"),
    "EXAMINE refused": ({"EXAMINE": ["TAG NO [NONEXISTENT] no INBOX here"]}, ErrorKind.REFUSED_WORK, "no INBOX here"),
    "LOGIN answered BAD": ({"LOGIN": ["TAG BAD [CLIENTBUG] command unknown"]}, ErrorKind.AUTH, "command unknown"),
    "an empty CAPABILITY": ({"CAPABILITY": ["* CAPABILITY", "TAG OK done"]}, ErrorKind.PROTOCOL, "not IMAP4"),
    "a CAPABILITY with 8-bit bytes": (
        {"CAPABILITY": ["* CAPABILITY IMAP4rev1 XÜBER", "TAG OK done"]},
        ErrorKind.PROTOCOL,
        "greeting was not usable",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_every_answer_becomes_a_classified_result(case):
    answers, kind, words = CASES[case]
    with _server(**answers) as server:
        result = test_connection(Mailbox("127.0.0.1", server.port, "plain", "someone", "s3cret-pw", timeout=5))
    assert (result.ok, result.kind) == (False, kind)
    assert words in result.message
    assert "s3cret-pw" not in result.message


@pytest.mark.parametrize(
    ("greeting", "words"),
    [(b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0"), (b"* BYE too many connections\r\n", "too many connections")],
)
def test_an_unusable_greeting_is_a_protocol_failure_with_its_words(greeting, words):
    with _server(greeting) as server:
        result = test_connection(Mailbox("127.0.0.1", server.port, "plain", "someone", "secret", timeout=5))
    assert (result.ok, result.kind) == (False, ErrorKind.PROTOCOL)
    assert words in result.message


def test_a_preauthenticated_connection_is_not_logged_in_again():
    with _server(b"* PREAUTH [CAPABILITY IMAP4rev1 UNSELECT] welcome back\r\n") as server:
        result = test_connection(Mailbox("127.0.0.1", server.port, "plain", "someone", "secret", timeout=5))
    assert result.ok, result.message
