"""What the main thread (account.py) and the worker threads (worker.py) share: the work items,
the events, the stop flags, a pair of connections and the reconnect bound."""

from __future__ import annotations

import queue
import threading
from collections import Counter
from dataclasses import dataclass, field

from .append import AppendItem, AppendOutcome, PendingAppends
from .connect import connect
from .folderstate import UidMap
from .imap import ConnectError, Connection, ConnectionLost
from .types import ErrorKind, FolderPlan, FolderResult, FolderStateData, Mailbox, MessageError, MessageWarning
from .uidset import UidSet

MAX_ATTEMPTS = 5  # reconnects in a row without progress before the account fails
BACKOFF_FIRST = 0.5  # seconds; doubled per attempt
BACKOFF_MAX = 8.0
_TAKE_LOCK = threading.Lock()  # two workers may start on one folder at once (_Job.take_destination_uidnext)


@dataclass(eq=False)
class _Job:
    """One source folder being copied in this run."""

    plan: FolderPlan
    state: FolderStateData
    copied: UidSet
    result: FolderResult
    uidvalidity: int
    modseq: int | None  # HIGHESTMODSEQ seen before reading; recorded once the folder is complete
    permanent_flags: tuple[bytes, ...] | None = None
    units_left: int = 0
    queued: bool = False
    incomplete: bool = False
    dropped: Counter[str] = field(default_factory=Counter)
    pending: dict[int, tuple[UidSet, int]] = field(default_factory=dict)
    uid_map: UidMap = field(default_factory=UidMap)  # source UID -> destination UID of the copies
    # The destination folder's UIDNEXT as planning saw it (STATUS), until the first batch takes it as
    # its crash-window floor (take_destination_uidnext); None when unknown or taken.
    destination_uidnext: int | None = None
    # The source folder's bytes (STATUS SIZE, RFC 8438) and UIDNEXT, read together by planning; None when
    # unknown. Every message below that UIDNEXT counts in that size (messages never change, RFC 9051 §2.3.1).
    source_size: int | None = None
    source_uidnext: int | None = None
    # Times the folder was read again because a worker's session saw another UIDVALIDITY (account.py, "Sessions").
    sessions: int = 0

    def adopt_session_uidvalidity(self, uidvalidity: int) -> None:
        """Take the source UIDVALIDITY of the session about to read the folder instead of the one planning read
        (a source that keeps no UIDs between sessions gives each its own, RFC 9051 §2.3.1.1; account.py,
        "Sessions"). What was known under the old UIDs goes: the accepted refusals, the HIGHESTMODSEQ, the UID
        map, and the SIZE/UIDNEXT pair worker._fits_one_batch trusts."""
        self.uidvalidity = self.state.uidvalidity = uidvalidity
        self.state.accepted_uids = ""
        self.state.highest_modseq = None
        self.uid_map = UidMap()
        self.source_size = self.source_uidnext = None

    def take_destination_uidnext(self) -> int | None:
        """The destination UIDNEXT planning saw, to the first caller only (then None).

        A lower bound of every UID the run's copies get (UIDNEXT never decreases while UIDVALIDITY
        holds, RFC 9051 §2.3.1.1), but tight only for the first batch sent into the folder: a later
        batch's window [floor, ...) would also hold the earlier batches' copies. So one batch, the
        first, gets it; the others learn their floor from APPENDUID or ask STATUS (worker._floor).
        """
        with _TAKE_LOCK:
            value, self.destination_uidnext = self.destination_uidnext, None
        return value

    @property
    def source(self) -> str:
        return self.plan.source

    @property
    def destination(self) -> str:
        assert self.plan.destination is not None
        return self.plan.destination


@dataclass
class _Unit:
    job: _Job
    uids: UidSet


@dataclass
class _Batch:
    """What one worker did with one batch, reported to the main thread."""

    job: _Job
    landed: list[int] = field(default_factory=list)
    mapped: dict[int, int] = field(default_factory=dict)  # landed source UID -> its destination UID
    bytes: int = 0
    errors: list[MessageError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message_warnings: list[MessageWarning] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    vanished: int = 0
    altered: int = 0  # of `landed` in an earlier report: stored differently from what was sent
    # The destination UIDVALIDITY the APPENDUIDs of `mapped` named (RFC 4315 §3); None without one.
    uidvalidity: int | None = None

    def add_landed(self, uid: int, size: int, outcome: AppendOutcome) -> None:
        """Count source `uid` as landed, `size` bytes sent; with an APPENDUID in `outcome` (RFC 4315 §3),
        map it to its destination UID and note the UIDVALIDITY that UID is under."""
        self.landed.append(uid)
        self.bytes += size
        if outcome.uid:
            self.mapped[uid] = outcome.uid
            self.uidvalidity = outcome.uidvalidity


@dataclass
class _Sent:
    """A batch whose APPENDs were sent and whose answers are still to be read."""

    job: _Job
    uids: list[int]
    items: list[tuple[int, AppendItem]]
    report: _Batch
    uidnext: int = 0
    appends: PendingAppends | None = None


class _GiveBack(Exception):
    """A worker beyond the first could not open its connections: it hands its unit back."""


class _RunOver(Exception):
    """The account run ended (its main thread left, e.g. because a state write failed) while a worker
    waited for the write that records its next APPENDs: those may not be sent, and the worker ends."""


class _Fatal(Exception):
    def __init__(self, reason: str, kind: ErrorKind | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class _Pair:
    """A source and a destination connection, reopened on demand."""

    def __init__(self, source: Mailbox, destination: Mailbox) -> None:
        self.source_mailbox = source
        self.destination_mailbox = destination
        self.src: Connection | None = None
        self.dst: Connection | None = None

    def open(self, *, source: bool = True) -> tuple[Connection, Connection]:
        """Both connections; with source=False only the destination is (re)opened (src may be None)."""
        if self.src is None and source:
            self.src = _connect_side(self.source_mailbox, "source", read_only=True)
        if self.dst is None:
            self.dst = _connect_side(self.destination_mailbox, "destination", read_only=False)
        return self.src, self.dst  # type: ignore[return-value]

    def drop(self) -> None:
        for conn in (self.src, self.dst):
            if conn is not None:
                conn.abort()
        self.src = self.dst = None

    def close(self) -> None:
        for conn in (self.src, self.dst):
            if conn is not None:
                conn.close()
        self.src = self.dst = None


def _connect_side(mailbox: Mailbox, side: str, *, read_only: bool) -> Connection:
    try:
        return connect(mailbox, read_only=read_only)
    except ConnectError as exc:
        if exc.kind in (ErrorKind.AUTH, ErrorKind.TLS):  # retrying cannot fix these
            raise _Fatal(f"{side}: {exc.message}", exc.kind) from None
        raise ConnectionLost(f"{side}: {exc.message}", exc.kind) from None


def _backoff(attempt: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * (2 ** max(0, attempt - 1)))


class _Run:
    """Shared between the main thread and the workers: the unit queue, the event queue, stop flags."""

    def __init__(self) -> None:
        self.units: queue.Queue[_Unit] = queue.Queue()
        self.events: queue.Queue[tuple] = queue.Queue()
        self.stop = threading.Event()
        self.finished = threading.Event()
