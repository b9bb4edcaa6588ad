"""The engine's inputs and outputs: plain dataclasses, no Django.

This is the contract between the copy engine and the rest of imapcopier (jobs, commands,
pages). Change it with care: runs/jobs.py, tasks/services.py and the commands build on it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Security(enum.StrEnum):
    SSL = "ssl"
    STARTTLS = "starttls"
    PLAIN = "plain"


@dataclass(frozen=True)
class Mailbox:
    """Where and how to log in. `password` never appears in repr, logs or exception text.

    With `token_source` set, the login is SASL XOAUTH2 or OAUTHBEARER (RFC 7628) with an OAuth 2.0
    access token instead of the password: token_source(fresh) returns the token (str); fresh=True asks
    for a new one rather than a cached one (after the server refused it); it raises TokenUnavailable
    when no token can be had. `identity` says in words whose token it is, for messages.
    """

    host: str
    port: int
    security: Security | str
    username: str
    password: str = field(repr=False)
    verify_tls: bool = True
    ca_certificate: str = ""  # PEM text of a private CA to trust instead of the system store
    timeout: float = 60.0  # seconds, for connect and for every read
    token_source: TokenSource | None = field(default=None, repr=False, compare=False)
    identity: str = ""  # e.g. "application 1234 of tenant contoso", shown with OAuth results


# token_source(fresh: bool) -> access token; see Mailbox.
TokenSource = Callable[[bool], str]


class TokenUnavailable(Exception):
    """No OAuth 2.0 access token could be had: the provider's error code and description (consent
    missing, wrong tenant, invalid scope...) or why it could not be asked. Never contains a secret.

    transient: the provider could not be reached or said to try later (RFC 6749 §5.2 has no such code,
    but "temporarily_unavailable" and "server_error" answers exist): the login is retried like a
    dropped connection instead of failing the account.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ErrorKind(enum.StrEnum):
    """Classification of a failure to connect or log in, for clear per-account errors."""

    UNREACHABLE = "unreachable"  # DNS failure, no route, connect timeout
    REFUSED = "refused"  # the port is closed
    TLS = "tls"  # handshake failed, certificate not trusted, hostname mismatch, STARTTLS unavailable
    AUTH = "auth"  # wrong user name or password
    REFUSED_WORK = "refused_work"  # logged in, then LIST/SELECT refused ("authenticated but not connected")
    TIMEOUT = "timeout"  # connected, then the server stopped answering
    PROTOCOL = "protocol"  # anything else the server said that we cannot work with


@dataclass
class ConnectionTestResult:
    ok: bool
    kind: ErrorKind | None = None  # None when ok
    message: str = ""  # the server's words or a plain-language reason; never contains the password
    capabilities: list[str] = field(default_factory=list)
    folder_count: int = 0


@dataclass
class FolderInfo:
    """One folder as LISTed, name decoded from modified UTF-7."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...] = ()
    special_use: str | None = None  # e.g. "\\Sent"
    selectable: bool = True
    messages: int | None = None
    size: int | None = None  # bytes, when known


@dataclass
class FolderPlan:
    """Where one source folder goes."""

    source: str
    destination: str | None  # None = skipped
    rule: str  # "explicit", "skip", "special-use", "path"
    conflict: str = ""  # non-empty: why this mapping cannot be done as is (merge, name not allowed)
    selectable: bool = True
    note: str = ""  # non-empty: how the name had to change to fit the destination (copied, and said so)


@dataclass
class FolderStateData:
    """What has been copied from one source folder; persisted by the caller between runs."""

    source_folder: str
    destination_folder: str
    uidvalidity: int
    copied_uids: str = ""  # IMAP sequence set of source UIDs already at the destination
    highest_modseq: int | None = None
    # APPENDs sent but not yet confirmed (the crash window): source UIDs, and the destination's
    # UIDNEXT before they were sent. The next run looks for them at the destination before
    # copying them again. Empty / None almost always; a store that cannot keep them loses only
    # that protection (at most one batch may then be copied twice after a crash).
    pending_uids: str = ""
    pending_uidnext: int | None = None
    # The destination this state was written for (folderstate.binding_change): "host:port", the
    # login, and the destination folder's UIDVALIDITY. Empty / None: not known (a state written
    # before bindings were kept), adopted as it is by the next run.
    destination_server: str = ""
    destination_user: str = ""
    destination_uidvalidity: int | None = None
    # Source UID -> destination UID of the copies (folderstate.UidMap text form); flag changes
    # follow it. Copies without a known UID (no UIDPLUS) are found by identity instead.
    uid_map: str = ""
    # Input only (never saved): source UIDs of this folder whose refusal the operator accepted
    # (same source UIDVALIDITY). They are not attempted, and counted NotCopied.ACCEPTED.
    accepted_uids: str = ""

    def snapshot(self) -> tuple[object, ...]:
        """The field values in declaration order: equal snapshots, same state. What dataclasses.astuple
        gives for these flat fields (str, int, None) without its deep copy of each value."""
        return tuple(getattr(self, name) for name in _STATE_FIELDS)


class StateStore(Protocol):
    """Persistence for FolderStateData. The engine calls save() once per batch, from one thread: the batch's
    outcome together with the UIDs about to be sent (pending_uids, recorded before they are sent; see
    account.py, "Crash window"), and not at all when the state is what the store already holds. save()
    must have made the state durable when it returns."""

    def load(self) -> dict[str, FolderStateData]: ...

    def save(self, state: FolderStateData) -> None: ...

    def delete(self, source_folder: str) -> None: ...


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(FolderStateData))


class NotCopied(enum.StrEnum):
    """Why a source message is not at the destination after a run (issue 11 case 10).

    Every source message of a finished account is counted once: copied, already there, or not copied
    for one of these reasons.
    """

    FOLDER_NOT_CREATED = "folder not created"  # the destination refused CREATE, or cannot hold the name
    FOLDER_NOT_READ = "folder not read"  # the source refused to open the folder
    REFUSED = "refused by the destination"  # APPEND refused, too large for APPENDLIMIT
    UNREADABLE = "unreadable at the source"  # FETCH of the message failed for good
    NOT_ATTEMPTED = "not attempted"  # the run stopped (cancelled, account failed) before reaching it
    ACCOUNT_NOT_REACHED = "account not reached"  # login or connection failed before the folder was read
    ACCEPTED = "accepted as not copied"  # refused before; the operator accepted that: not attempted, not an error


@dataclass
class MessageError:
    folder: str
    uid: int
    size: int
    subject: str
    reason: str  # the server's words
    permanent: bool = True
    kind: NotCopied = NotCopied.REFUSED  # how it counts in the totals


@dataclass
class MessageWarning:
    """A message that was copied, but not quite as it was (keywords dropped, line endings
    rewritten); the report lists it. `text` says what was changed and why, in words."""

    folder: str
    uid: int
    size: int
    subject: str
    text: str


@dataclass
class Progress:
    folder: str
    copied: int
    skipped: int
    errors: int
    bytes: int
    total_messages: int  # found on the source so far (grows as folders are scanned)
    total_bytes: int
    rate: float  # messages per second since start
    not_copied: int = 0  # source messages counted as not copied so far (NotCopied reasons)


@dataclass
class FolderResult:
    source: str
    destination: str | None
    copied: int = 0
    skipped: int = 0
    errors: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    altered: int = 0  # landed, but stored differently from what was sent (a warning each; not in `copied`)
    # Messages in the source folder (None: never read) and, once the copy is over, in the
    # destination folder (None: not counted);
    # copied + altered + skipped + deleted_at_destination + not copied = source_messages.
    source_messages: int | None = None
    destination_messages: int | None = None
    not_copied: dict[str, int] = field(default_factory=dict)  # NotCopied value -> messages
    # Copied by an earlier run, then deleted at the destination (folderstate.deleted_at_destination):
    # not copied again, and not counted in `skipped` ("already there").
    deleted_at_destination: int = 0


class Outcome(enum.StrEnum):
    DONE = "done"  # every folder processed (possibly with per-message errors)
    FAILED = "failed"  # the account failed as a whole (login, server unreachable, too many reconnects)
    CANCELLED = "cancelled"  # should_stop() said so


@dataclass
class AccountResult:
    outcome: Outcome
    copied: int = 0
    skipped: int = 0
    errors: int = 0
    bytes: int = 0
    reason: str = ""  # for FAILED / CANCELLED: why, in words
    error_kind: ErrorKind | None = None
    folders: list[FolderResult] = field(default_factory=list)
    message_errors: list[MessageError] = field(default_factory=list)
    message_warnings: list[MessageWarning] = field(default_factory=list)  # their text is in warnings too
    warnings: list[str] = field(default_factory=list)
    altered: int = 0  # landed, but stored differently from what was sent (a warning each; not in `copied`)
    # Messages found on the source (None: the mailbox was not read, e.g. the login failed), and
    # those not copied by reason (NotCopied value -> messages). For an account that was read to the
    # end, copied + altered + skipped + deleted_at_destination + sum(not_copied) == source_messages.
    source_messages: int | None = None
    not_copied: dict[str, int] = field(default_factory=dict)
    deleted_at_destination: int = 0  # over the folders: FolderResult.deleted_at_destination

    @classmethod
    def failed(cls, reason: str, kind: ErrorKind | None = None) -> AccountResult:
        return cls(outcome=Outcome.FAILED, reason=reason, error_kind=kind, errors=1)

    @property
    def not_copied_total(self) -> int:
        return sum(self.not_copied.values())


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]


class SignalFlag:
    """A one-way flag that a signal handler may set: set() takes no lock.

    A Python signal handler runs in the main thread between two bytecodes of whatever it interrupted.
    threading.Event.set() takes the event's (non-reentrant) lock, so a handler calling it while the
    main thread is inside set() or wait() of the same event deadlocks that thread for ever. A plain
    attribute assignment is atomic under the GIL and cannot.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set
