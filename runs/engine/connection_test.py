"""test_connection(): can this mailbox be used? Every answer becomes a ConnectionTestResult."""

from __future__ import annotations

import imaplib

from imapclient.exceptions import IMAPClientError

from . import imap as wire
from .connect import connect
from .imap import ConnectError
from .types import ConnectionTestResult, ErrorKind, Mailbox


def test_connection(mailbox: Mailbox) -> ConnectionTestResult:
    """Connect, log in, LIST and EXAMINE INBOX; classify any failure. Never raises for server trouble."""
    try:
        connection = connect(mailbox, read_only=True)
    except ConnectError as exc:
        return ConnectionTestResult(ok=False, kind=exc.kind, message=exc.message)
    capabilities = sorted(connection.capabilities)
    try:
        try:
            folders = connection.list()
        except imaplib.IMAP4.abort:
            raise  # a broken connection, not a refusal: the reconnect logic handles it
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
        except imaplib.IMAP4.abort:
            raise  # a broken connection, not a refusal: the reconnect logic handles it
        except (IMAPClientError, imaplib.IMAP4.error) as exc:
            return ConnectionTestResult(
                ok=False,
                kind=ErrorKind.REFUSED_WORK,
                message=f"logged in, but opening INBOX was refused: {wire.describe(exc)}",
                capabilities=capabilities,
            )
        return ConnectionTestResult(
            ok=True,
            message="login, LIST and EXAMINE INBOX succeeded",
            capabilities=capabilities,
            folder_count=len(folders),
        )
    except wire.TRANSIENT_ERRORS as exc:
        problem = wire.lost(exc)
        return ConnectionTestResult(ok=False, kind=problem.kind, message=str(problem), capabilities=capabilities)
    finally:
        connection.close()


# pytest would otherwise collect an imported test_connection as a test.
test_connection.__test__ = False  # type: ignore[attr-defined]
