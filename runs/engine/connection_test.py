"""test_connection(): can this mailbox be used? Every answer becomes a ConnectionTestResult."""

from __future__ import annotations

import imaplib

from imapclient.exceptions import IMAPClientError

from . import imap as wire
from .connect import UNPARSABLE_ANSWERS, connect
from .imap import ConnectError, Connection
from .types import ConnectionTestResult, ErrorKind, Mailbox


def test_connection(mailbox: Mailbox) -> ConnectionTestResult:
    """Connect, log in, LIST and EXAMINE INBOX; the outcome with the server's words.

    Never raises for anything the server says or does (issue 10 item 5): a refusal, a broken
    connection or an answer the client cannot parse each become a classified result (ok=False,
    kind, message), so pages answer normally and commands print one clean line. A login that
    works followed by refused work is REFUSED_WORK: some servers accept any password and then
    refuse every command ("authenticated but not connected").
    """
    try:
        connection = connect(mailbox, read_only=True)
    except ConnectError as exc:
        return ConnectionTestResult(ok=False, kind=exc.kind, message=exc.message)
    capabilities = sorted(connection.capabilities)
    try:
        return _exercise(connection, capabilities)
    except wire.TRANSIENT_ERRORS as exc:
        problem = wire.lost(exc)
        return ConnectionTestResult(ok=False, kind=problem.kind, message=str(problem), capabilities=capabilities)
    except UNPARSABLE_ANSWERS as exc:
        return ConnectionTestResult(
            ok=False,
            kind=ErrorKind.PROTOCOL,
            message=f"logged in, but the server's answer could not be understood: {wire.describe(exc)}",
            capabilities=capabilities,
        )
    finally:
        connection.close()


def _exercise(connection: Connection, capabilities: list[str]) -> ConnectionTestResult:
    """LIST, then EXAMINE and leave INBOX; a refusal of either is REFUSED_WORK with the words."""
    try:
        folders = connection.list()
    except (imaplib.IMAP4.abort, *UNPARSABLE_ANSWERS):
        raise  # a broken connection or an answer in pieces, not a refusal
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        return ConnectionTestResult(
            ok=False,
            kind=ErrorKind.REFUSED_WORK,
            message=f"logged in, but LIST was refused: {wire.describe(exc)}",
            capabilities=capabilities,
        )
    try:
        connection.examine("INBOX")
        connection.unselect()
    except (imaplib.IMAP4.abort, *UNPARSABLE_ANSWERS):
        raise  # a broken connection or an answer in pieces, not a refusal
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        return ConnectionTestResult(
            ok=False,
            kind=ErrorKind.REFUSED_WORK,
            message=f"logged in, but opening INBOX was refused: {wire.describe(exc)}",
            capabilities=capabilities,
        )
    login = "login"
    mailbox = connection.mailbox
    if mailbox.token_source is not None:
        login = f"OAuth 2.0 sign-in as {mailbox.username}" + (f" ({mailbox.identity})" if mailbox.identity else "")
    return ConnectionTestResult(
        ok=True,
        message=f"{login}, LIST and EXAMINE INBOX succeeded",
        capabilities=capabilities,
        folder_count=len(folders),
    )


# pytest would otherwise collect an imported test_connection as a test.
test_connection.__test__ = False  # type: ignore[attr-defined]
