"""Thin wrappers over IMAPClient: the Connection, its errors, and parsing of FETCH answers.

With connect.py (opening, TLS, the read-only guard) and append.py (raw pipelined APPEND), everything
the engine needs from the wire lives here, so the other files read as the algorithm.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_fetch_response, parse_response
from imapclient.util import to_unicode

from .types import ErrorKind, Mailbox
from .uidset import UidSet

# imaplib refuses response lines longer than this module global (a big SEARCH or FETCH answer is one
# line); setting it on an instance does nothing (PITFALLS 2.2).
_MAXLINE = 64 * 1024 * 1024
if imaplib._MAXLINE < _MAXLINE:
    imaplib._MAXLINE = _MAXLINE

# Longest sequence-set text sent in one command (Dovecot accepts 64 KiB command lines).
MAX_SET_TEXT = 16 * 1024


class ConnectError(Exception):
    """Connecting or logging in failed; `kind` says how. The message never contains the password."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ConnectionLost(Exception):
    """The connection broke (drop, BYE, timeout): reconnect and resume."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.PROTOCOL, wait: float = 0.0) -> None:
        super().__init__(message)
        self.kind = kind
        self.wait = wait  # seconds the server asked us to wait before trying again


_SUGGESTED_BACKOFF = re.compile(r"Suggested Backoff Time: (\d+) ?milliseconds", re.IGNORECASE)
_THROTTLED = re.compile(r"\bthrottl", re.IGNORECASE)


def throttle_wait(text: str) -> float | None:
    """Seconds the server asks us to wait ("NO Request is throttled. Suggested Backoff Time: 2000
    milliseconds", Office 365), 1.0 for a throttling answer without a figure, None otherwise."""
    match = _SUGGESTED_BACKOFF.search(text)
    if match:
        return int(match.group(1)) / 1000.0
    return 1.0 if _THROTTLED.search(text) else None


class WriteRefused(Exception):
    """A write command was about to be sent on the read-only source connection (a programming error)."""


# Errors that mean "this connection is unusable now".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    imaplib.IMAP4.abort,
    OSError,  # includes socket.timeout / TimeoutError, ConnectionResetError, BrokenPipeError, ssl.SSLError
    EOFError,
)


_BYTES_REPR = re.compile(r"""b(['"])(.*)\1""", re.DOTALL)


def describe(exc: BaseException) -> str:
    """The exception's words, without the b'...' that imaplib's bytes arguments leave behind."""
    arg = exc.args[0] if len(exc.args) == 1 else None
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace").strip()
    text = str(exc).strip() or exc.__class__.__name__
    return _BYTES_REPR.sub(lambda m: m.group(2), text)


def lost(exc: BaseException) -> ConnectionLost:
    if isinstance(exc, TimeoutError | socket.timeout):
        return ConnectionLost("the server stopped answering (timeout)", ErrorKind.TIMEOUT)
    return ConnectionLost(f"connection lost: {describe(exc)}", ErrorKind.PROTOCOL)


# A mailbox name no server holds, EXAMINEd to leave a mailbox where UNSELECT is missing.
NO_SUCH_MAILBOX = "imapcopier-deselect-7f3a9c1e"


# LIST return options list_status() asks for, and the capability that offers each.
LIST_RETURN_OPTIONS = {"SPECIAL-USE": "SPECIAL-USE", "SUBSCRIBED": "LIST-EXTENDED"}


@dataclass
class Namespace:
    prefix: str
    delimiter: str | None


class Connection:
    """One logged-in connection: the IMAPClient plus what we learned about the server."""

    def __init__(self, client: IMAPClient, mailbox: Mailbox, *, read_only: bool) -> None:
        self.client = client
        self.mailbox = mailbox
        self.read_only = read_only
        self.capabilities = {to_unicode(c).upper() for c in client.capabilities()}
        self.selected: str | None = None
        self.selected_read_only = True

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    @property
    def append_limit(self) -> int | None:
        for cap in self.capabilities:
            if cap.startswith("APPENDLIMIT="):
                try:
                    return int(cap.split("=", 1)[1])
                except ValueError:
                    return None
        return None

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                self.client.shutdown()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.client.shutdown()

    # ------------------------------------------------------------------- folders

    def namespace(self) -> Namespace:
        if self.has("NAMESPACE"):
            personal = self.client.namespace().personal
            if personal:
                prefix, delimiter = personal[0]
                return Namespace(prefix or "", delimiter or None)
        listed = self.client.list_folders("", "")
        delimiter = None
        if listed:
            raw = listed[0][1]
            delimiter = to_unicode(raw) if raw else None
        return Namespace("", delimiter)

    def list(self) -> list[tuple[tuple[str, ...], str | None, str]]:
        """Every folder: (attributes, delimiter, name decoded from modified UTF-7)."""
        return self._listed(self.client.list_folders())

    def list_status(
        self, items: Sequence[str]
    ) -> tuple[list[tuple[tuple[str, ...], str | None, str]], dict[str, dict[str, int]]]:
        """Every folder (as list()) and the STATUS `items` of each selectable one, in one round trip.

        `LIST "" "*" RETURN (STATUS (items))` where the server offers LIST-STATUS (RFC 5819), with
        SPECIAL-USE among the return options where offered (RFC 6154 §3, so the attributes are the
        same as a plain LIST's) and SUBSCRIBED (RFC 5258 §3.2: subscribed folders carry \\Subscribed, so
        no LSUB is needed; subscriptions_listed() says whether it was asked). The STATUS answers are keyed by decoded folder name, item names upper
        case (e.g. {"INBOX": {"MESSAGES": 3, "UIDNEXT": 4}}). A server without LIST-STATUS, or one that
        refuses the extended LIST, gives an empty dict: callers then ask STATUS folder by folder.
        Raises imaplib's abort or OSError when the connection breaks.
        """
        if not self.has("LIST-STATUS"):
            return self.list(), {}
        imap = self.client._imap
        options = " ".join(
            [option for option in ("SPECIAL-USE", "SUBSCRIBED") if self.has(LIST_RETURN_OPTIONS[option])]
            + ["STATUS (" + " ".join(items) + ")"]
        )
        imap.untagged_responses.pop("STATUS", None)
        try:
            typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN", f"({options})")
        except imaplib.IMAP4.abort:
            raise  # a broken connection, not a refusal
        except imaplib.IMAP4.error:  # imaplib raises this for a BAD answer
            typ = "BAD"
        statuses = imap.untagged_responses.pop("STATUS", [])
        if typ != "OK":
            imap.untagged_responses.pop("LIST", None)
            return self.list(), {}
        typ, data = imap._untagged_response(typ, data, "LIST")
        lines = [line for line in data if line not in (b"", None)]
        simple = _simple_list(lines)
        listed = self._listed(simple if simple is not None else self.client._proc_folder_list(data))
        found = _simple_statuses(statuses)
        if found is None:
            found = {}
            tokens = parse_response(statuses) if statuses else ()
            for name, values in zip(tokens[::2], tokens[1::2], strict=False):
                if not isinstance(values, tuple):
                    continue
                key = decode_utf7(name) if isinstance(name, bytes) else str(name)
                found[key] = {
                    to_unicode(values[i]).upper(): int(values[i + 1])
                    for i in range(0, len(values) - 1, 2)
                    if isinstance(values[i + 1], int)
                }
        return listed, found

    def subscriptions_listed(self) -> bool:
        """Did list_status() ask for SUBSCRIBED (the listing's \\Subscribed attributes replace LSUB)?"""
        return self.has("LIST-STATUS") and self.has(LIST_RETURN_OPTIONS["SUBSCRIBED"])

    def _listed(self, folders: Iterable[tuple]) -> list[tuple[tuple[str, ...], str | None, str]]:
        out = []
        for flags, delimiter, name in folders:
            out.append(
                (
                    tuple(to_unicode(f) for f in flags),
                    to_unicode(delimiter) if delimiter else None,
                    name if isinstance(name, str) else to_unicode(name),
                )
            )
        return out

    def status(self, folder: str, items: Iterable[str]) -> dict[str, int]:
        raw = self.client.folder_status(folder, list(items))
        return {to_unicode(k).upper(): v for k, v in raw.items()}

    def examine(self, folder: str) -> dict[bytes, object]:
        info = self.client.select_folder(folder, readonly=True)
        self.selected, self.selected_read_only = folder, True
        return info

    def select(self, folder: str) -> dict[bytes, object]:
        if self.read_only:
            raise WriteRefused("SELECT on the read-only source")
        info = self.client.select_folder(folder, readonly=False)
        self.selected, self.selected_read_only = folder, False
        return info

    def unselect(self) -> None:
        """Leave the selected mailbox without expunging anything: UNSELECT (RFC 3691) where offered.

        Without it (Courier) CLOSE is no option: it is refused on the read-only source (the write
        guard) and would expunge \\Deleted messages after a SELECT at the destination. Instead
        EXAMINE a mailbox that does not exist: a failed EXAMINE leaves no mailbox selected (RFC 3501
        §6.3.2). So no mailbox stays open read-only on a connection that will APPEND (Courier
        refuses an APPEND into a mailbox the same session has open with EXAMINE). Raises imaplib's
        abort when the connection breaks.
        """
        if self.selected is None:
            return
        if self.has("UNSELECT"):
            self.client.unselect_folder()
        else:
            try:
                self.client.select_folder(NO_SUCH_MAILBOX, readonly=True)
            except imaplib.IMAP4.abort:
                raise
            except IMAPClientError:
                pass  # the NO we asked for: nothing is selected now
        self.selected = None

    def fetch_examined(self, folder: str, uids: UidSet, items: Sequence[str]) -> dict[int, dict[bytes, object]]:
        """EXAMINE `folder`, UID FETCH `items` of `uids`, and leave the folder again, in one round trip.

        The three commands are pipelined (RFC 9051 §5.5: the client may send several commands
        without waiting; the server answers them in order) and their tagged answers read in order,
        every one of them, so the connection stays in step whatever each answered. Leaving is as
        unselect() does it: UNSELECT (RFC 3691), or without it the EXAMINE of a mailbox that does
        not exist (a failed EXAMINE leaves no mailbox selected, RFC 3501 §6.3.2). So the connection
        ends unselected, as unselect() leaves it. Returns the FETCH answer keyed by UID, only the
        UIDs asked for (a UID missing was expunged meanwhile).

        Raises IMAPClientError when the server refused the EXAMINE (the FETCH then answers BAD or
        NO, and is read too) or the FETCH; imaplib's abort (or OSError) when the connection broke.
        """
        imap = self.client._imap
        leave_with_unselect = self.has("UNSELECT")
        # What imaplib's select() does before an EXAMINE: old untagged responses go, and the
        # "[READ-ONLY]" the server answers is expected (otherwise the next command raises readonly).
        imap.untagged_responses = {}
        imap.is_readonly = True
        self.selected = None
        examined = False
        try:
            examine_tag = imap._command("EXAMINE", self.client._normalise_folder(folder))
            imap.state = "SELECTED"  # imaplib refuses to send UID FETCH and UNSELECT in any other state
            fetch_tags = [
                imap._command("UID", "FETCH", str(piece), "(" + " ".join(items) + ")") for piece in split_set(uids)
            ]
            if leave_with_unselect:
                leave_tag = imap._command("UNSELECT")
            else:
                leave_tag = imap._command("EXAMINE", self.client._normalise_folder(NO_SUCH_MAILBOX))
            refusal: str | None = None
            answers = [("EXAMINE", examine_tag)] + [("FETCH", tag) for tag in fetch_tags]
            for name, tag in answers:
                typ, data = _tagged_answer(imap, name, tag)
                if name == "EXAMINE":
                    examined = typ == "OK"
                if typ != "OK" and refusal is None:
                    refusal = f"{name} failed: {to_unicode(data[0] or b'')}"
            typ, data = _tagged_answer(imap, "UNSELECT" if leave_with_unselect else "EXAMINE", leave_tag)
            if leave_with_unselect and examined and typ != "OK":
                self.selected, self.selected_read_only = folder, True  # still open: say so
                refusal = refusal or f"UNSELECT failed: {to_unicode(data[0] or b'')}"
            fetched = imap.untagged_responses.pop("FETCH", [])
        finally:
            imap.state = "SELECTED" if self.selected is not None else "AUTH"
        if refusal is not None:
            raise IMAPClientError(refusal)
        if not fetched or fetched == [None]:
            return {}
        return {uid: item for uid, item in by_uid(fetched).items() if uid in uids}

    def search_all(self) -> UidSet:
        """Every UID of the selected folder, compactly with ESEARCH when the server has it."""
        if self.has("ESEARCH"):
            imap = self.client._imap
            typ, data = imap._simple_command("UID", "SEARCH", "RETURN", "(ALL)", "ALL")
            if typ != "OK":
                raise IMAPClientError(f"SEARCH failed: {to_unicode(data[0])}")
            typ, data = imap._untagged_response(typ, data, "ESEARCH")
            for line in data:
                if not line:
                    continue
                text = to_unicode(line)
                match = re.search(r"\bALL\s+([\d:,]+)", text)
                if match:
                    return UidSet.parse(match.group(1))
            return UidSet()
        return UidSet.from_uids(self.client.search(["ALL"]))

    def fetch(
        self,
        uids: UidSet | Sequence[int],
        items: Sequence[str],
        modifiers: Sequence[str] | None = None,
    ) -> dict[int, dict[bytes, object]]:
        """UID FETCH in pieces whose sequence-set text stays short; only the UIDs asked for come back."""
        wanted = uids if isinstance(uids, UidSet) else UidSet.from_uids(uids)
        result: dict[int, dict[bytes, object]] = {}
        for piece in split_set(wanted):
            for uid, item in self.fetch_text(str(piece), items, modifiers).items():
                if uid in piece:
                    result[uid] = item
        return result

    def fetch_start(self, uids: UidSet, items: Sequence[str]) -> bytes:
        """Send a UID FETCH without waiting: the server prepares its answer while we do other work.

        Read the answer with fetch_finish(). Only for sets short enough for one command.
        """
        return self.client._imap._command("UID", "FETCH", str(uids), "(" + " ".join(items) + ")")

    def fetch_finish(self, tag: bytes, uids: UidSet) -> dict[int, dict[bytes, object]]:
        imap = self.client._imap
        typ, data = imap._command_complete("FETCH", tag)
        if typ != "OK":
            raise IMAPClientError(f"FETCH failed: {to_unicode(data[0])}")
        typ, data = imap._untagged_response(typ, data, "FETCH")
        if not data or data == [None]:
            return {}
        parsed = parse_body_fetch(data)
        if parsed is None:  # not the usual shape: the general parser
            parsed = by_uid(data)
        return {uid: item for uid, item in parsed.items() if uid in uids}

    def fetch_text(
        self,
        message_set: str,
        items: Sequence[str],
        modifiers: Sequence[str] | None = None,
    ) -> dict[int, dict[bytes, object]]:
        """UID FETCH with a literal sequence set such as "7:*" (unsolicited responses included)."""
        imap = self.client._imap
        args = ["UID", "FETCH", message_set, "(" + " ".join(items) + ")"]
        if modifiers:
            args.append("(" + " ".join(modifiers) + ")")
        tag = imap._command(*args)
        typ, data = imap._command_complete("FETCH", tag)
        if typ != "OK":
            raise IMAPClientError(f"FETCH failed: {to_unicode(data[0])}")
        typ, data = imap._untagged_response(typ, data, "FETCH")
        if not data or data == [None]:
            return {}
        return by_uid(data)


# The usual shapes of LIST and STATUS answer lines (RFC 9051 §7.3.1, §7.3.4): flags, a quoted or NIL delimiter and
# a quoted or atom name; a quoted or atom name and "(ITEM number ...)". Anything else (a literal, extended data)
# goes to IMAPClient's general parser: these only spare its cost on the common case.
_QUOTED = rb'"((?:[^"\\\r\n]|\\["\\])*)"'
_ATOM = rb"([^\s\x00-\x1f\x7f(){%*\"\\\]]+)"
_LIST_LINE = re.compile(rb"\(([^()]*)\) (?:" + _QUOTED + rb"|NIL) (?:" + _QUOTED + rb"|" + _ATOM + rb")")
_STATUS_LINE = re.compile(rb"(?:" + _QUOTED + rb"|" + _ATOM + rb") \(((?:[A-Za-z0-9=.-]+ \d+ ?)*)\)")
_UNESCAPE = re.compile(rb"\\([\\\"])")


def _simple_list(lines: list) -> list[tuple[tuple[bytes, ...], bytes | None, str]] | None:
    """LIST answer lines as IMAPClient gives them ((flags, delimiter, name decoded from modified UTF-7)), or
    None when one of them is not of the usual shape."""
    out = []
    for line in lines:
        match = _LIST_LINE.fullmatch(line) if isinstance(line, bytes) else None
        if match is None:
            return None
        flags, delimiter, quoted, atom = match.groups()
        name = _UNESCAPE.sub(rb"\1", quoted) if quoted is not None else atom
        out.append(
            (
                tuple(flags.split()),
                _UNESCAPE.sub(rb"\1", delimiter) if delimiter is not None else None,
                decode_utf7(name),
            )
        )
    return out


def _simple_statuses(lines: list) -> dict[str, dict[str, int]] | None:
    """STATUS answer lines as {decoded folder name: {ITEM: number}}, or None when one is not of the usual shape."""
    found: dict[str, dict[str, int]] = {}
    for line in lines:
        match = _STATUS_LINE.fullmatch(line) if isinstance(line, bytes) else None
        if match is None:
            return None
        quoted, atom, items = match.groups()
        words = items.split()
        name = _UNESCAPE.sub(rb"\1", quoted) if quoted is not None else atom
        found[decode_utf7(name)] = {words[i].decode().upper(): int(words[i + 1]) for i in range(0, len(words), 2)}
    return found


def _tagged_answer(imap: imaplib.IMAP4, name: str, tag: bytes) -> tuple[str, list]:
    """The tagged answer to a command already sent: ("OK" | "NO" | "BAD", data). imaplib raises its
    error for BAD once the answer is read; it is returned instead, so the caller can read the
    answers to the commands sent after it. A broken connection raises imaplib's abort."""
    try:
        return imap._command_complete(name, tag)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        return "BAD", [describe(exc).encode()]


def by_uid(data: Sequence[object]) -> dict[int, dict[bytes, object]]:
    """The FETCH responses of a UID FETCH answer keyed by UID; a response without UID is no message data.

    A server may interleave unsolicited FETCH responses (flags changed by another session) that
    carry a sequence number and no UID; a UID command's own responses always carry the UID
    (RFC 3501 §6.4.8). IMAPClient's parser, asked for UID keys, files a response without UID under
    its sequence number, as if that were a UID: another message's flags. Parsed by sequence number,
    such a response merges into the answer for the message it names, or is dropped with none.
    """
    parsed = parse_scalar_fetch(data)
    if parsed is None:
        parsed = parse_fetch_response(data, False, False)
    return {int(item[b"UID"]): item for item in parsed.values() if b"UID" in item}


_SCALAR_FETCH_LINE = re.compile(rb"^(\d+) \((.*)\)$", re.DOTALL)
_SCALAR_FETCH_PAIR = re.compile(rb'([A-Za-z0-9.]+) (\d+|"[^"\\]*")')


def parse_scalar_fetch(data: Sequence[object]) -> dict[int, dict[bytes, object]] | None:
    """Fast path for FETCH answers whose every item is a number or a plain quoted string, as
    `UID FETCH (RFC822.SIZE DIGEST.SHA1)` gets after each batch (verify.py): keyed by sequence number,
    exactly as IMAPClient's parse_fetch_response gives them (names upper-cased, numbers as int, quoted
    strings as bytes without their quotes, b"SEQ" added, two responses for one message merged).

    Returns None for any other shape (a literal, a parenthesised list such as FLAGS, NIL, an escaped
    quoted string), which the general parser then reads: that parser costs about a tenth of the copy's
    CPU on these small answers (issue 14's profile).
    """
    out: dict[int, dict[bytes, object]] = {}
    for element in data:
        line = _SCALAR_FETCH_LINE.match(element) if isinstance(element, bytes) else None
        if line is None:
            return None
        inner = line.group(2)
        pairs = _SCALAR_FETCH_PAIR.findall(inner)
        if b" ".join(name + b" " + value for name, value in pairs) != inner:
            return None  # something between or beyond the pairs: not this shape
        seq = int(line.group(1))
        item = out.setdefault(seq, {b"SEQ": seq})
        for name, value in pairs:
            item[name.upper()] = value[1:-1] if value[:1] == b'"' else int(value)
    return out


_BODY_FETCH_HEAD = re.compile(rb"^\d+ \((.*) BODY\[\] \{(\d+)\}$", re.DOTALL)
_FETCH_UID = re.compile(rb"(?:^|[ (])UID (\d+)(?:[ )]|$)")
_FETCH_FLAGS = re.compile(rb"(?:^|[ (])FLAGS \(([^()]*)\)")
_FETCH_DATE = re.compile(rb'(?:^|[ (])INTERNALDATE "([ \d]\d-[A-Za-z]{3}-\d{4} \d\d:\d\d:\d\d [+-]\d{4})"')


def parse_body_fetch(data: Sequence[object]) -> dict[int, dict[bytes, object]] | None:
    """Fast path for the answer to UID FETCH (BODY.PEEK[] FLAGS INTERNALDATE).

    The usual shape (UID, FLAGS and INTERNALDATE before the BODY[] literal, which ends the item
    list) is read with three regular expressions instead of IMAPClient's general tokenizer, which
    costs more CPU than everything else the engine does. INTERNALDATE stays the server's text, so
    it goes back into APPEND exactly as the source wrote it. Returns None for any other shape.
    """
    out: dict[int, dict[bytes, object]] = {}
    items = iter(data)
    for element in items:
        if not isinstance(element, tuple) or len(element) != 2:
            return None
        head, literal = element
        match = _BODY_FETCH_HEAD.match(head) if isinstance(head, bytes) else None
        if match is None or not isinstance(literal, bytes) or len(literal) != int(match.group(2)):
            return None
        if next(items, None) != b")":
            return None
        fields = match.group(1)
        uid = _FETCH_UID.search(fields)
        flags = _FETCH_FLAGS.search(fields)
        date = _FETCH_DATE.search(fields)
        if uid is None or flags is None or (date is None and b"INTERNALDATE NIL" not in fields):
            return None
        out[int(uid.group(1))] = {
            b"BODY[]": literal,
            b"FLAGS": tuple(flags.group(1).split()),
            b"INTERNALDATE": date.group(1).decode("ascii") if date else None,
        }
    return out


def split_set(uids: UidSet, max_text: int = MAX_SET_TEXT) -> list[UidSet]:
    pieces: list[UidSet] = []
    current: list[tuple[int, int]] = []
    length = 0
    for low, high in uids.ranges:
        part = len(str(low)) + (len(str(high)) + 1 if high != low else 0) + 1
        if current and length + part > max_text:
            pieces.append(UidSet(current))
            current, length = [], 0
        current.append((low, high))
        length += part
    if current:
        pieces.append(UidSet(current))
    return pieces
