"""Thin wrappers over IMAPClient: connecting safely, a read-only source, raw pipelined APPEND.

Everything the copier needs from the wire lives here, so copier.py reads as the algorithm.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imapclient import IMAPClient, imap_utf7
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.response_parser import parse_fetch_response
from imapclient.util import to_unicode

from .messages import format_internaldate
from .types import ErrorKind, Mailbox, Security
from .uidset import UidSet

# imaplib refuses response lines longer than this module global (a big SEARCH or FETCH answer is one
# line); setting it on an instance does nothing (PITFALLS 2.2).
_MAXLINE = 64 * 1024 * 1024
if imaplib._MAXLINE < _MAXLINE:
    imaplib._MAXLINE = _MAXLINE

# Above this size an APPEND uses a synchronising literal even when LITERAL+ is offered, so the
# server can refuse before we upload megabytes.
SYNC_LITERAL_ABOVE = 4 * 1024 * 1024
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


_TEMPORARY_LOGIN_FAILURE = re.compile(
    r"\[(UNAVAILABLE|INUSE|SERVERBUG|LIMIT)\]|too many|throttl|try again", re.IGNORECASE
)
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


# ---------------------------------------------------------------------------- TLS


def ssl_context_for(mailbox: Mailbox) -> ssl.SSLContext:
    """A verifying context (system store, or the endpoint's own CA), or an unverified one on opt-out."""
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    if mailbox.ca_certificate.strip():
        context.load_verify_locations(cadata=mailbox.ca_certificate)
    if not mailbox.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _tls_message(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"TLS: certificate verify failed: {detail}"
    reason = getattr(exc, "reason", None) or describe(exc)
    return f"TLS handshake failed: {reason}"


# ---------------------------------------------------------------------- connecting

_READ_COMMANDS = frozenset(
    {
        "CAPABILITY",
        "LOGIN",
        "AUTHENTICATE",
        "LOGOUT",
        "NOOP",
        "STARTTLS",
        "ID",
        "ENABLE",
        "NAMESPACE",
        "LIST",
        "LSUB",
        "XLIST",
        "STATUS",
        "EXAMINE",
        "UNSELECT",
        "SEARCH",
        "FETCH",
        "ESEARCH",
    }
)
# FETCH items that would set \Seen: BODY[...] / BINARY[...] without .PEEK, RFC822 and RFC822.TEXT.
_SEEN_SETTING_FETCH = re.compile(
    r"(?<![\w.])(BODY|BINARY)\[|(?<![\w.])RFC822(?![\w.]*\.(SIZE|HEADER))(\.TEXT)?(?![\w.])",
    re.IGNORECASE,
)


def check_read_only(name: str, args: Sequence[object]) -> None:
    """Raise WriteRefused unless the command cannot change the source mailbox."""
    words = [name.upper()]
    rest = list(args)
    if words[0] == "UID" and rest:
        words.append(to_unicode(rest.pop(0)).upper())
    verb = words[-1]
    if verb not in _READ_COMMANDS:
        raise WriteRefused(f"refused to send {verb} to the read-only source")
    if verb == "FETCH":
        items = " ".join(to_unicode(a) for a in rest[1:] if a is not None)
        if _SEEN_SETTING_FETCH.search(items):
            raise WriteRefused(f"refused a FETCH that would mark messages seen: {items}")


def _guard(client: IMAPClient) -> None:
    """Wrap the two paths by which IMAPClient sends commands so only read commands get through."""
    imap = client._imap
    original_command = imap._command
    original_raw = client._raw_command

    def guarded_command(name: str, *args: object) -> object:
        check_read_only(name, args)
        return original_command(name, *args)

    def guarded_raw(command: bytes, args: object, uid: bool = True) -> object:
        check_read_only(
            to_unicode(command),
            list(args) if isinstance(args, list | tuple) else [args],
        )
        return original_raw(command, args, uid=uid)

    imap._command = guarded_command
    client._raw_command = guarded_raw


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
        out = []
        for flags, delimiter, name in self.client.list_folders():
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
        if self.selected is None:
            return
        if self.has("UNSELECT"):
            self.client.unselect_folder()
        elif self.selected_read_only:
            self.client.close_folder()  # CLOSE after EXAMINE never expunges
        else:
            # CLOSE would expunge \Deleted messages at the destination: select nothing instead.
            self.client.select_folder("INBOX", readonly=True)
        self.selected = None

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
            parsed = parse_fetch_response(data, False, True)
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
        return parse_fetch_response(data, False, True)


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


def connect(mailbox: Mailbox, *, read_only: bool) -> Connection:
    """Open, secure and log in; raise ConnectError with a classified, password-free reason."""
    security = Security(mailbox.security)
    context = ssl_context_for(mailbox)
    try:
        client = IMAPClient(
            mailbox.host,
            port=mailbox.port,
            ssl=security == Security.SSL,
            ssl_context=context,
            timeout=mailbox.timeout,
        )
    except ssl.SSLError as exc:
        raise ConnectError(ErrorKind.TLS, _tls_message(exc)) from None
    except ConnectionRefusedError:
        raise ConnectError(
            ErrorKind.REFUSED,
            f"connection refused by {mailbox.host}:{mailbox.port} (nothing listens on that port)",
        ) from None
    except socket.gaierror as exc:
        raise ConnectError(
            ErrorKind.UNREACHABLE,
            f"cannot resolve {mailbox.host}: {exc.strerror or exc}",
        ) from None
    except TimeoutError:
        if _accepts_tcp(mailbox):
            raise ConnectError(
                ErrorKind.TIMEOUT,
                f"{mailbox.host}:{mailbox.port} accepted the connection but sent no greeting within {mailbox.timeout:g} s",
            ) from None
        raise ConnectError(
            ErrorKind.UNREACHABLE,
            f"no answer from {mailbox.host}:{mailbox.port} within {mailbox.timeout:g} s",
        ) from None
    except OSError as exc:
        raise ConnectError(
            ErrorKind.UNREACHABLE,
            f"cannot reach {mailbox.host}:{mailbox.port}: {exc.strerror or exc}",
        ) from None
    except imaplib.IMAP4.error as exc:
        raise ConnectError(ErrorKind.PROTOCOL, f"the server's greeting was not usable: {describe(exc)}") from None
    # Never log protocol traffic: it contains message contents (and imaplib formats every line).
    client._imap.debug = 0
    client.normalise_times = False
    try:
        if security == Security.STARTTLS:
            caps = {to_unicode(c).upper() for c in client.capabilities()}
            if "STARTTLS" not in caps:
                raise ConnectError(
                    ErrorKind.TLS,
                    "the server does not offer STARTTLS; refusing to continue without encryption",
                )
            try:
                client.starttls(context)
            except ssl.SSLError as exc:
                raise ConnectError(ErrorKind.TLS, _tls_message(exc)) from None
            client._cached_capabilities = None
        if read_only:
            _guard(client)
        caps = {to_unicode(c).upper() for c in client.capabilities()}
        if "LOGINDISABLED" in caps:
            raise ConnectError(
                ErrorKind.TLS,
                "the server refuses LOGIN on an unencrypted connection (LOGINDISABLED)",
            )
        try:
            client.login(mailbox.username, mailbox.password)
        except LoginError as exc:
            if isinstance(exc.__context__, imaplib.IMAP4.abort):
                # IMAPClient wraps a connection lost mid-LOGIN in LoginError: not a wrong password.
                raise ConnectError(
                    ErrorKind.PROTOCOL, f"connection lost while logging in: {describe(exc.__context__)}"
                ) from None
            if _TEMPORARY_LOGIN_FAILURE.search(describe(exc)):
                # "[UNAVAILABLE]", "Too many simultaneous connections", throttling: not the password.
                raise ConnectError(
                    ErrorKind.PROTOCOL, f"login refused for now: {_strip_password(describe(exc), mailbox)}"
                ) from None
            raise ConnectError(
                ErrorKind.AUTH,
                f"login refused: {_strip_password(describe(exc), mailbox)}",
            ) from None
        client._cached_capabilities = None  # many servers announce more after login
        connection = Connection(client, mailbox, read_only=read_only)
        # Only the source's modseqs are used; enabling CONDSTORE on the destination would make it
        # track modseqs for every message we append.
        if read_only and connection.has("ENABLE") and connection.has("CONDSTORE"):
            with contextlib.suppress(IMAPClientError):
                client.enable("CONDSTORE")
        return connection
    except ConnectError:
        _shutdown(client)
        raise
    except TimeoutError:
        _shutdown(client)
        raise ConnectError(
            ErrorKind.TIMEOUT,
            f"the server stopped answering (no reply within {mailbox.timeout:g} s)",
        ) from None
    except ssl.SSLError as exc:
        _shutdown(client)
        raise ConnectError(ErrorKind.TLS, _tls_message(exc)) from None
    except (OSError, imaplib.IMAP4.abort) as exc:
        _shutdown(client)
        raise ConnectError(ErrorKind.PROTOCOL, f"connection lost while logging in: {describe(exc)}") from None
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        _shutdown(client)
        raise ConnectError(ErrorKind.PROTOCOL, _strip_password(describe(exc), mailbox)) from None


def _accepts_tcp(mailbox: Mailbox) -> bool:
    """After a timeout: did the TCP connection work (a stalled server) or not (an unreachable host)?"""
    try:
        with socket.create_connection((mailbox.host, mailbox.port), timeout=min(mailbox.timeout, 5.0)):
            return True
    except OSError:
        return False


def _strip_password(text: str, mailbox: Mailbox) -> str:
    if mailbox.password and mailbox.password in text:
        text = text.replace(mailbox.password, "********")
    return text


def _shutdown(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()


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


_APPENDUID = re.compile(r"\[APPENDUID \d+ (\d+)\]", re.IGNORECASE)


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
        return AppendOutcome(True, text, int(match.group(1)) if match else None)
    return AppendOutcome(False, f"{typ} {text}".strip())
