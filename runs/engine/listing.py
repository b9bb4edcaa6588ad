"""list_folders() and plan_folders(): read-only looks at a mailbox's folders, for the pages."""

from __future__ import annotations

from . import imap as wire
from .connect import connect
from .folders import folder_infos, map_folders
from .folders import with_counts as _with_counts
from .imap import ConnectError, Connection
from .types import FolderInfo, FolderPlan, Mailbox


def list_folders(mailbox: Mailbox, *, with_counts: bool = False) -> list[FolderInfo]:
    """Every folder of the mailbox (read-only connection); with_counts adds STATUS MESSAGES/SIZE.

    Raises ConnectError (with .kind) when the server cannot be used.
    """
    connection = connect(mailbox, read_only=True)
    try:
        infos = folder_infos(connection)
        if with_counts:
            _with_counts(connection, infos)
        return infos
    except wire.TRANSIENT_ERRORS as exc:
        problem = wire.lost(exc)
        raise ConnectError(problem.kind, str(problem)) from None
    finally:
        connection.close()


def plan_folders(source: Mailbox, destination: Mailbox, mapping: dict[str, str] | None) -> list[FolderPlan]:
    """Where each source folder would go (see folders.map_folders).

    Raises ConnectError (its message starts with "source:" or "destination:") when a side cannot
    be used.
    """
    src = _connect_for_listing(source, "source")
    try:
        dst = _connect_for_listing(destination, "destination")
        try:
            try:
                return map_folders(
                    folder_infos(src),
                    src.namespace(),
                    folder_infos(dst),
                    dst.namespace(),
                    mapping,
                )
            except wire.TRANSIENT_ERRORS as exc:
                problem = wire.lost(exc)
                raise ConnectError(problem.kind, str(problem)) from None
        finally:
            dst.close()
    finally:
        src.close()


def _connect_for_listing(mailbox: Mailbox, side: str) -> Connection:
    try:
        return connect(mailbox, read_only=True)
    except ConnectError as exc:
        raise ConnectError(exc.kind, f"{side}: {exc.message}") from None
