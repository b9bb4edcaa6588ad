"""APPEND, byte for byte: each message its own command, pipelined with LITERAL+ (RFC 7888)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from imapclient import imap_utf7
from imapclient.util import to_unicode

from .imap import TRANSIENT_ERRORS, Connection, lost
from .messages import format_internaldate

# Above this size an APPEND uses a synchronising literal even when LITERAL+ is offered, so the
# server can refuse before we upload megabytes.
SYNC_LITERAL_ABOVE = 4 * 1024 * 1024

# ------------------------------------------------------------------------- APPEND


@dataclass
class AppendItem:
    raw: bytes
    flags: Sequence[str]
    when: object | None  # aware datetime, the server's INTERNALDATE text, or None


@dataclass
class AppendOutcome:
    ok: bool
    text: str  # the server's words
    uid: int | None = None  # from APPENDUID
    uidvalidity: int | None = None  # the destination folder's UIDVALIDITY that `uid` is under (APPENDUID)


_APPENDUID = re.compile(r"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)


def _quote(text: bytes) -> bytes:
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def encode_folder(name: str) -> bytes:
    return _quote(imap_utf7.encode(name))


def _command_head(tag: bytes, folder: bytes, item: AppendItem) -> bytes:
    parts = [tag, b"APPEND", folder, b"(" + " ".join(item.flags).encode("ascii") + b")"]
    if isinstance(item.when, str):  # the source's own INTERNALDATE text (parse_body_fetch)
        parts.append(b'"' + item.when.encode("ascii") + b'"')
    elif item.when is not None:
        parts.append(b'"' + format_internaldate(item.when).encode("ascii") + b'"')  # type: ignore[arg-type]
    return b" ".join(parts)


class PendingAppends:
    """APPEND each item as its own command, byte for byte (raw literals, no CRLF rewriting).

    send() writes the commands; collect() reads their answers. With LITERAL+ the commands are
    pipelined, so a batch costs one round trip while every message still gets its own answer (a
    refused message does not take the others with it, unlike MULTIAPPEND), and the caller can do
    other work (fetch the next batch from the source) while the destination stores this one.
    Outcomes are appended to `outcomes` in item order as answers arrive, so after a ConnectionLost
    the caller knows which ones were confirmed.
    """

    def __init__(self, connection: Connection, folder: str, items: Sequence[AppendItem]) -> None:
        self.connection = connection
        self.folder = folder
        self.items = items
        self.outcomes: list[AppendOutcome] = []
        self._tags: list[bytes] = []

    def send(self) -> None:
        imap = self.connection.client._imap
        quoted = encode_folder(self.folder)
        literal_plus = self.connection.has("LITERAL+")
        try:
            for item in self.items:
                tag = imap._new_tag()
                head = _command_head(tag, quoted, item)
                size = len(item.raw)
                if literal_plus and size <= SYNC_LITERAL_ABOVE:
                    if size <= 65536:
                        imap.send(b"".join((head, b" {%d+}\r\n" % size, item.raw, b"\r\n")))
                    else:  # no concatenated copy of a big message
                        imap.send(head + b" {%d+}\r\n" % size)
                        imap.send(item.raw)
                        imap.send(b"\r\n")
                    self._tags.append(tag)
                    continue
                # A synchronising literal: the server may refuse before we upload.
                self._drain()
                imap.send(head + b" {%d}\r\n" % size)
                refused = False
                while True:
                    if imap._get_response() is None:  # "+" continuation: go ahead
                        break
                    if imap.tagged_commands.get(tag):
                        refused = True
                        break
                if refused:
                    typ, data = imap._get_tagged_response(tag)
                    self.outcomes.append(_outcome(typ, data))
                    continue
                imap.send(item.raw + b"\r\n")
                self._tags.append(tag)
                self._drain()
        except TRANSIENT_ERRORS as exc:
            raise lost(exc) from None

    def collect(self) -> list[AppendOutcome]:
        try:
            self._drain()
        except TRANSIENT_ERRORS as exc:
            raise lost(exc) from None
        finally:
            imap = self.connection.client._imap
            for key in ("EXISTS", "RECENT", "FETCH"):
                imap.untagged_responses.pop(key, None)
        return self.outcomes

    def _drain(self) -> None:
        imap = self.connection.client._imap
        while self._tags:
            typ, data = imap._get_tagged_response(self._tags[0])
            self._tags.pop(0)
            self.outcomes.append(_outcome(typ, data))


def append_many(
    connection: Connection,
    folder: str,
    items: Sequence[AppendItem],
    outcomes: list[AppendOutcome],
) -> None:
    """Send and collect in one go (see PendingAppends); outcomes are appended to `outcomes`."""
    pending = PendingAppends(connection, folder, items)
    pending.outcomes = outcomes
    pending.send()
    pending.collect()


def _outcome(typ: str, data: list[object]) -> AppendOutcome:
    text = to_unicode(data[0]) if data and data[0] is not None else ""
    if typ == "OK":
        match = _APPENDUID.search(text)
        if match is None:
            return AppendOutcome(True, text)
        return AppendOutcome(True, text, int(match.group(2)), int(match.group(1)))
    return AppendOutcome(False, f"{typ} {text}".strip())
