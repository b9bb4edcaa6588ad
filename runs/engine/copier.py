r"""copy_account(): the copy algorithm, plus test_connection(), list_folders() and plan_folders().

Shape: the calling thread ("main") connects, plans every folder on its own pair of connections
(what is new, what the destination already holds, which flags changed) and queues units of work
(a folder's candidate UIDs, large folders split into UID ranges). Up to `connections` worker threads,
each with its own source and destination connection, copy the units in batches bounded by a byte
budget. Workers report through a queue; only the main thread touches the StateStore and calls the
progress callback, so a Django-backed store is only ever used from the caller's thread.

Decisions worth knowing:

- Bytes: messages are sent exactly as BODY.PEEK[] returned them, as raw literals (imap.append_many);
  imaplib's append(), which rewrites bare CR/LF to CRLF, is never used. Only when the destination
  refuses a message that has bare CR or LF is it sent a second time with CRLF line endings, and
  that alteration is reported as a warning for that message.
- APPEND: one command per message, pipelined with LITERAL+ (one round trip per batch), rather than
  MULTIAPPEND, which is all-or-nothing: one refused message would fail the whole batch. Messages
  above 4 MiB use a synchronising literal, so the server can refuse before the upload.
- Incremental: FolderStateData.copied_uids is the set of source UIDs known to be at the destination.
  With CONDSTORE a folder whose HIGHESTMODSEQ (STATUS) is unchanged since the last complete run is
  not even opened; otherwise candidates = UID SEARCH ALL − copied. The modseq is only recorded when
  a folder finished without errors, so refused messages are tried again next run.
- Identity (for a destination that already holds mail, a UIDVALIDITY change, flag sync and the crash
  window): Message-ID + size, or a hash of Date/From/Subject + size without a Message-ID, matched as
  a multiset so two identical source messages need two destination copies.
- Crash window: before a batch is sent, its UIDs and the destination's UIDNEXT are saved as
  pending_uids/pending_uidnext; after a reconnect (or on the next run after a crash) those messages
  are looked for among the destination's UIDs >= that UIDNEXT, so an APPEND whose OK was lost is not
  sent twice.
- Flags: \Recent never; filtered to the destination folder's PERMANENTFLAGS (keywords where \* is
  allowed); dropped flags reported once per folder. Changes on the source are carried to the
  destination copies (found by identity) with STORE FLAGS; CHANGEDSINCE keeps this cheap.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imapclient.exceptions import IMAPClientError

from . import imap as wire
from .folders import folder_infos, map_folders
from .folders import with_counts as _with_counts
from .imap import AppendItem, AppendOutcome, ConnectError, Connection, ConnectionLost
from .messages import (
    IDENTITY_FETCH,
    Identity,
    filter_flags,
    has_bare_line_endings,
    identity,
    identity_of_message,
    normalise_line_endings,
    subject_of,
)
from .types import (
    AccountResult,
    ConnectionTestResult,
    ErrorKind,
    FolderInfo,
    FolderPlan,
    FolderResult,
    FolderStateData,
    Mailbox,
    MessageError,
    Outcome,
    Progress,
    ProgressCallback,
    StateStore,
    StopCheck,
)
from .uidset import UidSet

logger = logging.getLogger(__name__)

BATCH_BYTES = 4 * 1024 * 1024  # bodies fetched (and held) per batch, per worker
BATCH_MESSAGES = 250
UNIT_MIN = 200  # a folder is split into units of this many UIDs or more ...
UNIT_MAX = 2000  # ... and at most this many
MAX_ATTEMPTS = 5  # reconnects in a row without progress before the account fails
BACKOFF_FIRST = 0.5  # seconds; doubled per attempt
BACKOFF_MAX = 8.0
IDENTITY_CHUNK = 2000  # messages per identity FETCH


# --------------------------------------------------------------------- connection test


def test_connection(mailbox: Mailbox) -> ConnectionTestResult:
    """Connect, log in, LIST and EXAMINE INBOX; classify any failure. Never raises for server trouble."""
    try:
        connection = wire.connect(mailbox, read_only=True)
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


def list_folders(mailbox: Mailbox, *, with_counts: bool = False) -> list[FolderInfo]:
    """Every folder of the mailbox (read-only connection); with_counts adds STATUS MESSAGES/SIZE.

    Raises ConnectError (with .kind) when the server cannot be used.
    """
    connection = wire.connect(mailbox, read_only=True)
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
        return wire.connect(mailbox, read_only=True)
    except ConnectError as exc:
        raise ConnectError(exc.kind, f"{side}: {exc.message}") from None


# ------------------------------------------------------------------------- internals


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
    bytes: int = 0
    errors: list[MessageError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    vanished: int = 0


@dataclass
class _Sent:
    """A batch whose APPENDs were sent and whose answers are still to be read."""

    job: _Job
    uids: list[int]
    items: list[tuple[int, AppendItem]]
    report: _Batch
    uidnext: int = 0
    appends: wire.PendingAppends | None = None


class _GiveBack(Exception):
    """A worker beyond the first could not open its connections: it hands its unit back."""


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

    def open(self) -> tuple[Connection, Connection]:
        if self.src is None:
            self.src = _connect_side(self.source_mailbox, "source", read_only=True)
        if self.dst is None:
            self.dst = _connect_side(self.destination_mailbox, "destination", read_only=False)
        return self.src, self.dst

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
        return wire.connect(mailbox, read_only=read_only)
    except ConnectError as exc:
        if exc.kind in (ErrorKind.AUTH, ErrorKind.TLS):  # retrying cannot fix these
            raise _Fatal(f"{side}: {exc.message}", exc.kind) from None
        raise ConnectionLost(f"{side}: {exc.message}", exc.kind) from None


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def _release_memory() -> None:
    """Hand freed message buffers back to the OS (glibc keeps them otherwise, so RSS would track
    the largest batches seen rather than the current one)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _backoff(attempt: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * (2 ** max(0, attempt - 1)))


def _identities(conn: Connection, uids: UidSet) -> dict[int, Identity]:
    """Identity (Message-ID + size, or a Date/From/Subject hash + size) of each UID, headers only."""
    out: dict[int, Identity] = {}
    pieces = list(uids)
    for start in range(0, len(pieces), IDENTITY_CHUNK):
        chunk = UidSet.from_uids(pieces[start : start + IDENTITY_CHUNK])
        data = conn.fetch(chunk, ["RFC822.SIZE", IDENTITY_FETCH])
        for uid, item in data.items():
            headers = _section(item, b"BODY[HEADER.FIELDS")
            out[uid] = identity(headers, int(item.get(b"RFC822.SIZE", 0)))
    return out


def _dest_identities(conn: Connection, since_uid: int = 1) -> dict[int, Identity]:
    """Identities of every message of the selected destination folder with UID ≥ since_uid."""
    data = conn.fetch_text(f"{since_uid}:*", ["RFC822.SIZE", IDENTITY_FETCH])
    out = {}
    for uid, item in data.items():
        if uid < since_uid:  # "n:*" always returns the last message, even below n
            continue
        headers = _section(item, b"BODY[HEADER.FIELDS")
        out[uid] = identity(headers, int(item.get(b"RFC822.SIZE", 0)))
    return out


def _section(item: dict[bytes, object], prefix: bytes) -> bytes:
    """The value of a FETCH item whose key starts with `prefix` (servers echo section specs their way)."""
    for key, value in item.items():
        if isinstance(key, bytes) and key.upper().startswith(prefix):
            return value if isinstance(value, bytes) else b""
    return b""


def _match_multiset(source: dict[int, Identity], destination: Sequence[Identity]) -> list[int]:
    """Source UIDs that already have a copy at the destination; identical messages count one each."""
    available = Counter(destination)
    matched = []
    for uid in sorted(source):
        key = source[uid]
        if available[key] > 0:
            available[key] -= 1
            matched.append(uid)
    return matched


def _flag_key(flags: Sequence[str] | Sequence[bytes]) -> frozenset[str]:
    out = set()
    for f in flags:
        text = f.decode("utf-8", "replace") if isinstance(f, bytes) else f
        if text.lower() != "\\recent":
            out.add(text.lower())
    return frozenset(out)


# ----------------------------------------------------------------------------- worker


class _Worker(threading.Thread):
    def __init__(self, index: int, run: _Run, pair: _Pair) -> None:
        super().__init__(name=f"imapcopier-worker-{index}", daemon=True)
        self.index = index
        self.run_ = run
        self.pair = pair
        # The batch whose APPENDs were sent but not all confirmed when the connection broke.
        self.inflight: tuple[_Job, list[tuple[int, AppendItem]], list[Identity], int] | None = None
        self.remaining = UidSet()
        self.connected_once = False

    def run(self) -> None:
        try:
            while not self.run_.stop.is_set():
                try:
                    unit = self.run_.units.get_nowait()
                except queue.Empty:
                    break
                try:
                    complete = self._process(unit)
                except _GiveBack as exc:
                    # An extra connection the server would not grant: the others do the work.
                    self.run_.units.put(unit)
                    self.run_.events.put(("gave_back", self.index, str(exc)))
                    return
                self.run_.events.put(("unit_done", unit.job, complete))
        except _Fatal as exc:
            self.run_.events.put(("fatal", exc.reason, exc.kind))
        except BaseException as exc:  # a programming error: the main thread re-raises it
            self.run_.events.put(("crash", exc))
        finally:
            self.pair.close()
            self.run_.events.put(("exit", self.index))

    def _process(self, unit: _Unit) -> bool:
        # self.remaining shrinks as batches land (or fail for good), so a reconnect resumes exactly
        # where the broken connection stopped.
        self.remaining = unit.uids
        attempts = 0
        idle_passes = 0
        while self.remaining:
            if self.run_.stop.is_set():
                return False
            before = len(self.remaining)
            wait = 0.0
            try:
                try:
                    src, dst = self.pair.open()
                except ConnectionLost as exc:
                    if self.index > 0 and not self.connected_once:
                        raise _GiveBack(str(exc)) from None
                    raise
                self.connected_once = True
                if not self._copy(src, dst, unit.job):
                    return False
                if len(self.remaining) < before:
                    continue
                # A full pass that moved nothing and raised nothing should not happen; never spin.
                idle_passes += 1
                if idle_passes >= MAX_ATTEMPTS:
                    self._report(
                        _Batch(
                            unit.job,
                            warnings=[f"{len(self.remaining)} message(s) of {unit.job.source!r} left for the next run"],
                        )
                    )
                    return False
                continue
            except ConnectionLost as exc:
                reason, kind, wait = str(exc), exc.kind, exc.wait
            except wire.TRANSIENT_ERRORS as exc:  # includes imaplib's abort (BYE, EOF)
                problem = wire.lost(exc)
                reason, kind = str(problem), problem.kind
            except (IMAPClientError, imaplib.IMAP4.error) as exc:
                # The server refused a read command: reconnect and retry, within the same bound.
                reason, kind = wire.describe(exc), ErrorKind.PROTOCOL
                wait = wire.throttle_wait(reason) or 0.0
            self.pair.drop()
            attempts = 1 if len(self.remaining) < before else attempts + 1
            if attempts > MAX_ATTEMPTS:
                raise _Fatal(
                    f"gave up after {MAX_ATTEMPTS} reconnects in {unit.job.source!r}: {reason}",
                    kind,
                )
            logger.info("reconnecting (%s/%s) after: %s", attempts, MAX_ATTEMPTS, reason)
            if self._pause(max(_backoff(attempts), wait)):
                return False
        return True

    def _pause(self, seconds: float) -> bool:
        """Wait before reconnecting; True when a stop was requested meanwhile."""
        return self.run_.stop.wait(seconds)

    def _drop(self, uids: Sequence[int] | UidSet) -> None:
        self.remaining = self.remaining - (uids if isinstance(uids, UidSet) else UidSet.from_uids(uids))

    def _copy(self, src: Connection, dst: Connection, job: _Job) -> bool:
        """Copy self.remaining batch by batch; False: give the unit up (stop, folder gone)."""
        try:
            if self.inflight is not None:
                inflight_job = self.inflight[0]
                landed = self._resolve_inflight(dst)
                if inflight_job is job:  # UIDs of another folder mean other messages
                    self._drop(landed)
            if src.selected != job.source:
                try:
                    info = src.examine(job.source)
                except imaplib.IMAP4.abort:
                    raise  # a broken connection, not a refusal: the reconnect logic handles it
                except IMAPClientError as exc:
                    self._report(
                        _Batch(
                            job,
                            warnings=[f"{job.source!r} could not be opened: {wire.describe(exc)}"],
                        )
                    )
                    return False
                if int(info.get(b"UIDVALIDITY", 0)) != job.uidvalidity:
                    self._report(
                        _Batch(
                            job,
                            warnings=[f"{job.source!r} changed UIDVALIDITY during the run; it is copied next run"],
                        )
                    )
                    return False
            sizes = {
                uid: int(item.get(b"RFC822.SIZE", 0))
                for uid, item in src.fetch(self.remaining, ["RFC822.SIZE"]).items()
            }
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        vanished = self.remaining - UidSet.from_uids(sizes)
        if vanished:
            self._report(
                _Batch(
                    job,
                    vanished=len(vanished),
                    warnings=[
                        f"{len(vanished)} message(s) vanished from {job.source!r} during the run (UIDs {vanished})"
                    ],
                )
            )
            self._drop(vanished)
        self.run_.events.put(("sizes", sum(sizes.values())))
        limit = dst.append_limit
        batches: list[list[int]] = []
        batch: list[int] = []
        batch_bytes = 0
        for uid in list(self.remaining):
            size = sizes[uid]
            if limit is not None and size > limit:
                reason = f"larger than the destination's APPENDLIMIT ({limit} bytes): skipped before upload"
                error = MessageError(job.source, uid, size, self._subject(src, uid), reason)
                self._report(_Batch(job, errors=[error]))
                self._drop([uid])
                continue
            if batch and (batch_bytes + size > BATCH_BYTES or len(batch) >= BATCH_MESSAGES):
                batches.append(batch)
                batch, batch_bytes = [], 0
            batch.append(uid)
            batch_bytes += size
        if batch:
            batches.append(batch)
        # Look-ahead: the FETCH of batch N+1 is sent before the APPENDs of batch N, so the source
        # prepares the next batch while the destination stores this one (memory: two batches).
        sent: _Sent | None = None
        try:
            if batches:
                current = batches[0]
                fetched = self._fetch_batch(src, job, current)
                for index in range(len(batches)):
                    if self.run_.stop.is_set():
                        break
                    following = batches[index + 1] if index + 1 < len(batches) else None
                    tag = self._fetch_send(src, following) if following else None
                    sent = self._send_batch(dst, job, current, *fetched)
                    if following is not None:
                        fetched = self._fetch_read(src, job, following, tag)
                    previous, sent = sent, None
                    self._finish_batch(dst, previous)
                    _release_memory()
                    if following is not None:
                        current = following
        except ConnectionLost:
            if sent is not None:
                # The source broke while the destination was storing a batch: take its answers
                # first (if the destination broke too, this raises again).
                previous, sent = sent, None
                self._finish_batch(dst, previous)
            raise
        return not (self.remaining and self.run_.stop.is_set())

    def _subject(self, src: Connection, uid: int) -> str:
        try:
            data = src.fetch([uid], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        except (IMAPClientError, *wire.TRANSIENT_ERRORS):
            return ""
        raw = _section(data.get(uid, {}), b"BODY[HEADER.FIELDS")
        return subject_of(raw)

    _BODY_ITEMS = ("BODY.PEEK[]", "FLAGS", "INTERNALDATE")

    def _fetch_batch(self, src: Connection, job: _Job, uids: list[int]) -> tuple[list[tuple[int, AppendItem]], _Batch]:
        """Bodies, flags (filtered) and INTERNALDATE of one batch, read with BODY.PEEK."""
        return self._fetch_read(src, job, uids, self._fetch_send(src, uids))

    def _fetch_send(self, src: Connection, uids: list[int]) -> bytes:
        try:
            return src.fetch_start(UidSet.from_uids(uids), self._BODY_ITEMS)
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None

    def _fetch_read(
        self, src: Connection, job: _Job, uids: list[int], tag: bytes | None
    ) -> tuple[list[tuple[int, AppendItem]], _Batch]:
        report = _Batch(job)
        assert tag is not None
        try:
            data = src.fetch_finish(tag, UidSet.from_uids(uids))
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        items: list[tuple[int, AppendItem]] = []
        for uid in uids:
            item = data.get(uid)
            raw = item.get(b"BODY[]") if item else None
            if raw is None:
                report.vanished += 1
                report.warnings.append(f"message UID {uid} vanished from {job.source!r} during the run")
                continue
            kept, dropped = filter_flags(item.get(b"FLAGS", ()), job.permanent_flags)
            report.dropped.update(dropped)
            when = item.get(b"INTERNALDATE")
            items.append(
                (
                    uid,
                    AppendItem(
                        raw=bytes(raw),
                        flags=kept,
                        when=when if isinstance(when, str) or hasattr(when, "tzinfo") else None,
                    ),
                )
            )
        return items, report

    def _send_batch(
        self,
        dst: Connection,
        job: _Job,
        uids: list[int],
        items: list[tuple[int, AppendItem]],
        report: _Batch,
    ) -> _Sent:
        sent = _Sent(job, uids, items, report)
        if not items:
            return sent
        try:
            sent.uidnext = int(dst.status(job.destination, ["UIDNEXT"])["UIDNEXT"])
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        # Record the intent before sending: a crash from here on is resolved on the next run by
        # looking for these messages among the destination's UIDs >= uidnext.
        self._announce(job, UidSet.from_uids(uid for uid, _ in items), sent.uidnext)
        sent.appends = wire.PendingAppends(dst, job.destination, [it for _, it in items])
        try:
            sent.appends.send()
        except ConnectionLost:
            self._broken(sent)
            raise
        return sent

    def _finish_batch(self, dst: Connection, sent: _Sent) -> None:
        job, uids, items, report = sent.job, sent.uids, sent.items, sent.report
        if sent.appends is None:  # nothing to send (all vanished)
            self._report(report)
            self._drop(uids)
            return
        try:
            outcomes = sent.appends.collect()
        except ConnectionLost:
            self._broken(sent)
            raise
        retry: list[tuple[int, AppendItem, str]] = []
        throttled: list[int] = []
        wait = 0.0
        for (uid, it), outcome in zip(items, outcomes, strict=True):
            asked = None if outcome.ok else wire.throttle_wait(outcome.text)
            if outcome.ok:
                report.landed.append(uid)
                report.bytes += len(it.raw)
            elif asked is not None:  # not refused, only "not now": tried again after the wait
                throttled.append(uid)
                wait = max(wait, asked)
            elif has_bare_line_endings(it.raw):
                retry.append((uid, it, outcome.text))
            else:
                report.errors.append(self._error(job, uid, it, outcome.text))
        keep = {uid for uid, _, _ in retry} | set(throttled)
        self._report(report)
        self._drop([uid for uid in uids if uid not in keep])
        if throttled:
            raise ConnectionLost(f"the destination is throttling: {len(throttled)} message(s) to send again", wait=wait)
        for uid, it, first_refusal in retry:
            self._append_normalised(dst, job, uid, it, first_refusal)

    def _broken(self, sent: _Sent) -> None:
        """The destination connection broke with this batch's answers partly read: report the
        confirmed ones and keep the rest in flight, to be looked for after the reconnect."""
        job, uids, items, report = sent.job, sent.uids, sent.items, sent.report
        outcomes = sent.appends.outcomes if sent.appends is not None else []
        confirmed_ids = []
        sent_uids = {u for u, _ in items}
        done = [uid for uid in uids if uid not in sent_uids]
        for (uid, it), outcome in zip(items, outcomes, strict=False):
            done.append(uid)
            if outcome.ok:
                report.landed.append(uid)
                report.bytes += len(it.raw)
                confirmed_ids.append(identity_of_message(it.raw))
            else:
                report.errors.append(self._error(job, uid, it, outcome.text))
        self.inflight = (job, items[len(outcomes) :], confirmed_ids, sent.uidnext)
        self._report(report, keep_pending=True)
        self._drop(done)

    def _append_normalised(self, dst: Connection, job: _Job, uid: int, item: AppendItem, refusal: str) -> None:
        """Second try for a refused message with bare CR/LF: the same bytes with CRLF line endings."""
        report = _Batch(job)
        fixed = AppendItem(raw=normalise_line_endings(item.raw), flags=item.flags, when=item.when)
        outcome: list[AppendOutcome] = []
        try:
            uidnext = int(dst.status(job.destination, ["UIDNEXT"])["UIDNEXT"])
            wire.append_many(dst, job.destination, [fixed], outcome)
        except ConnectionLost:
            self.inflight = (job, [(uid, fixed)], [], uidnext)
            raise
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        if outcome[0].ok:
            report.landed.append(uid)
            report.bytes += len(fixed.raw)
            report.warnings.append(
                f"message UID {uid} in {job.source!r}: the destination refused it as is ({refusal}); "
                "copied with bare CR/LF rewritten to CRLF"
            )
        else:
            report.errors.append(self._error(job, uid, item, outcome[0].text))
        self._report(report)
        self._drop([uid])

    def _error(self, job: _Job, uid: int, item: AppendItem, reason: str) -> MessageError:
        return MessageError(job.source, uid, len(item.raw), subject_of(item.raw), reason)

    def _resolve_inflight(self, dst: Connection) -> UidSet:
        """After a reconnect: which unconfirmed APPENDs of the broken batch did land anyway."""
        assert self.inflight is not None
        job, unconfirmed, confirmed_ids, uidnext = self.inflight
        report = _Batch(job)
        try:
            dst.examine(job.destination)
            found = Counter(_dest_identities(dst, uidnext).values())
            dst.unselect()
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        found.subtract(confirmed_ids)
        for uid, item in unconfirmed:
            key = identity_of_message(item.raw)
            if found[key] > 0:
                found[key] -= 1
                report.landed.append(uid)
                report.bytes += len(item.raw)
        self.inflight = None
        self._report(report)
        return UidSet.from_uids(report.landed)

    def _announce(self, job: _Job, uids: UidSet, uidnext: int) -> None:
        ack = threading.Event()
        self.run_.events.put(("pending", self.index, job, uids, uidnext, ack))
        while not ack.wait(0.5):
            if self.run_.finished.is_set():
                return

    def _report(self, batch: _Batch, *, keep_pending: bool = False) -> None:
        self.run_.events.put(("batch", self.index, batch, keep_pending))


class _Run:
    """Shared between the main thread and the workers: the unit queue, the event queue, stop flags."""

    def __init__(self) -> None:
        self.units: queue.Queue[_Unit] = queue.Queue()
        self.events: queue.Queue[tuple] = queue.Queue()
        self.stop = threading.Event()
        self.finished = threading.Event()


# ------------------------------------------------------------------------ copy_account


class _Account:
    """The main thread's side of one copy_account() call."""

    def __init__(
        self,
        source: Mailbox,
        destination: Mailbox,
        state: StateStore,
        folder_mapping: dict[str, str] | None,
        on_progress: ProgressCallback | None,
        should_stop: StopCheck | None,
        connections: int,
    ) -> None:
        self.source = source
        self.destination = destination
        self.store = state
        self.mapping = folder_mapping
        self.on_progress = on_progress
        self.should_stop = should_stop or (lambda: False)
        self.connections = max(1, int(connections))
        self.result = AccountResult(outcome=Outcome.DONE)
        self.jobs: list[_Job] = []
        self.to_copy: list[tuple[_Job, UidSet]] = []
        self.run = _Run()
        self.started = time.monotonic()
        self.total_messages = 0
        self.total_bytes = 0
        self.current_folder = ""
        self.cancelled = False
        self.fatal: _Fatal | None = None
        self.pair = _Pair(source, destination)
        self._last_stop_check = 0.0

    # ---------------------------------------------------------------- plumbing

    def progress(self) -> None:
        if self.on_progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        r = self.result
        self.on_progress(
            Progress(
                folder=self.current_folder,
                copied=r.copied,
                skipped=r.skipped,
                errors=r.errors,
                bytes=r.bytes,
                total_messages=self.total_messages,
                total_bytes=self.total_bytes,
                rate=r.copied / elapsed,
            )
        )

    def stop_requested(self) -> bool:
        if self.cancelled:
            return True
        if self.should_stop():
            self.cancelled = True
            self.run.stop.set()
        return self.cancelled

    def save(self, job: _Job) -> None:
        job.state.copied_uids = str(job.copied)
        pending = UidSet()
        since = None
        for uids, uidnext in job.pending.values():
            pending = pending | uids
            since = uidnext if since is None else min(since, uidnext)
        job.state.pending_uids = str(pending)
        job.state.pending_uidnext = since
        self.store.save(job.state)

    def add_warning(self, job: _Job | None, text: str) -> None:
        if job is not None:
            job.result.warnings.append(text)
        self.result.warnings.append(text)

    def add_error(self, job: _Job, error: MessageError) -> None:
        job.result.errors += 1
        job.incomplete = True
        self.result.errors += 1
        self.result.message_errors.append(error)

    # -------------------------------------------------------------------- run

    def first_connect(self) -> AccountResult | None:
        """Log in on both sides; a connection dropped while doing so is retried, anything else
        (wrong password, refused port, unreachable host, TLS, no answer) fails the account at once."""
        attempts = 0
        while True:
            try:
                self.pair.open()
                return None
            except _Fatal as exc:
                return AccountResult.failed(exc.reason, exc.kind)
            except ConnectionLost as exc:
                self.pair.drop()
                attempts += 1
                if exc.kind != ErrorKind.PROTOCOL or attempts > MAX_ATTEMPTS:
                    return AccountResult.failed(str(exc), exc.kind)
                time.sleep(_backoff(attempts))

    def execute(self) -> AccountResult:
        try:
            failure = self.first_connect()
            if failure is not None:
                return failure
            self.plan_all()
            if not self.cancelled and self.fatal is None:
                self.copy_all()
        except _Fatal as exc:
            self.fatal = exc
        finally:
            self.pair.close()
            self.run.finished.set()
        for job in self.jobs:
            self.result.folders.append(job.result)
        if self.fatal is not None:
            self.result.outcome = Outcome.FAILED
            self.result.reason = self.fatal.reason
            self.result.error_kind = self.fatal.kind
            self.result.errors += 1
        elif self.cancelled:
            self.result.outcome = Outcome.CANCELLED
            self.result.reason = "stopped on request; everything copied so far is recorded"
        self.progress()
        return self.result

    def _retrying(self, what: str, action: Callable[[Connection, Connection], None]) -> None:
        attempts = 0
        while True:
            try:
                src, dst = self.pair.open()
                action(src, dst)
                return
            except ConnectionLost as exc:
                reason, kind = str(exc), exc.kind
            except wire.TRANSIENT_ERRORS as exc:
                problem = wire.lost(exc)
                reason, kind = str(problem), problem.kind
            self.pair.drop()
            attempts += 1
            if attempts > MAX_ATTEMPTS:
                raise _Fatal(
                    f"gave up after {MAX_ATTEMPTS} reconnects while {what}: {reason}",
                    kind,
                )
            time.sleep(_backoff(attempts))

    # ---------------------------------------------------------------- planning

    def plan_all(self) -> None:
        listing: dict[str, object] = {}

        def discover(src: Connection, dst: Connection) -> None:
            listing["src"] = folder_infos(src)
            listing["dst"] = folder_infos(dst)
            listing["src_ns"] = src.namespace()
            listing["dst_ns"] = dst.namespace()

        self._retrying("listing folders", discover)
        plans = map_folders(
            listing["src"],  # type: ignore[arg-type]
            listing["src_ns"],  # type: ignore[arg-type]
            listing["dst"],  # type: ignore[arg-type]
            listing["dst_ns"],  # type: ignore[arg-type]
            self.mapping,
        )
        dest_names = {f.name for f in listing["dst"]}  # type: ignore[attr-defined]
        dest_ns = listing["dst_ns"]
        self.states = self.store.load()
        self._create_destinations(plans, dest_names, dest_ns.delimiter or "/")  # type: ignore[attr-defined]
        for plan in plans:
            if self.stop_requested():
                return
            if plan.destination is None or not plan.selectable or plan.conflict:
                continue
            self.current_folder = plan.source
            try:
                self._retrying(
                    f"reading {plan.source!r}",
                    lambda src, dst, plan=plan: self.plan_folder(src, dst, plan),
                )
            except (IMAPClientError, imaplib.IMAP4.error) as exc:  # aborts are retried inside
                text = f"{plan.source!r} not copied: the server refused: {wire.describe(exc)}"
                self.result.folders.append(FolderResult(plan.source, plan.destination, errors=1, warnings=[text]))
                self.result.errors += 1
                self.result.warnings.append(text)
                self.pair.drop()  # the connection may be in any state now
            self.progress()

    def _create_destinations(self, plans: list[FolderPlan], existing: set[str], delimiter: str) -> None:
        existing_folded = {n.upper() if n.upper() == "INBOX" else n for n in existing}
        wanted = sorted({p.destination for p in plans if p.destination and not p.conflict and p.selectable})
        hierarchy = sorted(
            {
                p.destination
                for p in plans
                if p.destination and not p.conflict and not p.selectable and p.destination not in wanted
            }
        )
        for plan in plans:
            if plan.conflict:
                result = FolderResult(plan.source, plan.destination, errors=1, warnings=[plan.conflict])
                self.result.folders.append(result)
                self.result.errors += 1
                self.result.warnings.append(f"{plan.source!r} not copied: {plan.conflict}")
            elif plan.destination is None:  # skipped by the mapping: listed, nothing copied
                self.result.folders.append(FolderResult(plan.source, None))
        self._failed_destinations: dict[str, str] = {}

        def create(src: Connection, dst: Connection) -> None:
            for name in hierarchy:
                if name in existing_folded or any(w.startswith(name + delimiter) for w in wanted):
                    continue
                try:
                    dst.client.create_folder(name + delimiter)
                except imaplib.IMAP4.abort:
                    raise  # a broken connection, not a refusal: the reconnect logic handles it
                except IMAPClientError as exc:
                    self.result.warnings.append(f"could not create the folder level {name!r}: {wire.describe(exc)}")
                existing_folded.add(name)
            for name in wanted:
                if name in existing_folded or (name.upper() == "INBOX"):
                    continue
                try:
                    dst.client.create_folder(name)
                except imaplib.IMAP4.abort:
                    raise  # a broken connection, not a refusal: the reconnect logic handles it
                except IMAPClientError as exc:
                    text = wire.describe(exc)
                    if "exists" not in text.lower():
                        self._failed_destinations[name] = text
                        continue
                with contextlib.suppress(IMAPClientError):
                    dst.client.subscribe_folder(name)
                existing_folded.add(name)

        self._retrying("creating folders", create)

    def plan_folder(self, src: Connection, dst: Connection, plan: FolderPlan) -> None:
        source = plan.source
        destination = plan.destination
        assert destination is not None
        if destination in self._failed_destinations:
            result = FolderResult(source, destination, errors=1)
            text = f"{source!r} not copied: the destination refused to create {destination!r}: {self._failed_destinations[destination]}"
            result.warnings.append(text)
            self.result.folders.append(result)
            self.result.errors += 1
            self.result.warnings.append(text)
            return
        condstore = src.has("CONDSTORE")
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"] + (["HIGHESTMODSEQ"] if condstore else [])
        try:
            status = src.status(source, items)
        except imaplib.IMAP4.abort:
            raise  # a broken connection, not a refusal: the reconnect logic handles it
        except IMAPClientError as exc:
            text = f"{source!r} not copied: it could not be read: {wire.describe(exc)}"
            self.result.folders.append(FolderResult(source, destination, errors=1, warnings=[text]))
            self.result.errors += 1
            self.result.warnings.append(text)
            return
        self.total_messages += int(status.get("MESSAGES", 0))
        uidvalidity = int(status["UIDVALIDITY"])
        modseq = status.get("HIGHESTMODSEQ")
        previous = self.states.get(source)
        result = FolderResult(source, destination)
        if previous is not None and previous.uidvalidity != uidvalidity:
            self.store.delete(source)
            self.states.pop(source, None)
            result.warnings.append(
                f"UIDVALIDITY of {source!r} changed ({previous.uidvalidity} → {uidvalidity}): its record was voided "
                "and its messages are matched against the destination again"
            )
            previous = None
        if previous is not None and previous.destination_folder != destination:
            self.store.delete(source)
            self.states.pop(source, None)
            result.warnings.append(
                f"{source!r} now goes to {destination!r} instead of {previous.destination_folder!r}: "
                "its messages are matched against the new destination"
            )
            previous = None
        self.result.warnings.extend(result.warnings)
        if (
            previous is not None
            and modseq is not None
            and previous.highest_modseq is not None
            and int(modseq) == previous.highest_modseq
            and not getattr(previous, "pending_uids", "")
        ):
            # Nothing was added, removed or re-flagged since the last complete run: every message
            # of the folder is already at the destination.
            already = int(status.get("MESSAGES", 0))
            result.skipped += already
            self.result.skipped += already
            self.jobs.append(
                _Job(
                    plan,
                    previous,
                    UidSet.parse(previous.copied_uids),
                    result,
                    uidvalidity,
                    previous.highest_modseq,
                )
            )
            return
        state = previous or FolderStateData(
            source_folder=source,
            destination_folder=destination,
            uidvalidity=uidvalidity,
        )
        copied = UidSet.parse(state.copied_uids)
        job = _Job(
            plan,
            state,
            copied,
            result,
            uidvalidity,
            int(modseq) if modseq is not None else None,
        )
        info = src.examine(source)
        if int(info.get(b"UIDVALIDITY", 0)) != uidvalidity:
            raise ConnectionLost(f"UIDVALIDITY of {source!r} changed while reading it")
        all_uids = src.search_all()
        candidates = all_uids - copied
        # Messages copied by earlier runs count as skipped: "already there" for the operator.
        already = len(copied & all_uids)
        result.skipped += already
        self.result.skipped += already
        pending = UidSet.parse(getattr(state, "pending_uids", "") or "") & candidates
        needs_flags = bool(previous is not None and (copied & all_uids))
        dest_status = dst.status(destination, ["MESSAGES"])
        dest_has_mail = int(dest_status.get("MESSAGES", 0)) > 0
        if not candidates and not needs_flags:
            src.unselect()
            self._finish_plan(job)
            self.jobs.append(job)
            return
        select = dst.select(destination)
        perm = select.get(b"PERMANENTFLAGS")
        job.permanent_flags = tuple(perm) if perm is not None else None
        try:
            if previous is None and candidates and dest_has_mail:
                # First run onto a destination that already holds mail: copy only what is missing.
                matched = self._match(src, dst, candidates, since=1)
                if matched:
                    job.copied = job.copied | matched
                    result.skipped += len(matched)
                    self.result.skipped += len(matched)
                    candidates = candidates - matched
            elif pending and getattr(state, "pending_uidnext", None):
                # The last run stopped between sending APPENDs and hearing back: find what landed.
                landed = self._match(src, dst, pending, since=int(state.pending_uidnext))
                if landed:
                    job.copied = job.copied | landed
                    candidates = candidates - landed
            if needs_flags:
                self._sync_flags(src, dst, job, previous, all_uids)
        finally:
            dst.unselect()
            src.unselect()
        job.state.pending_uids = ""
        job.state.pending_uidnext = None
        if candidates:
            self._queue(job, candidates)
        else:
            self._finish_plan(job)
        self.jobs.append(job)

    def _finish_plan(self, job: _Job) -> None:
        job.state.highest_modseq = job.modseq
        job.state.uidvalidity = job.uidvalidity
        self.save(job)

    def _match(self, src: Connection, dst: Connection, uids: UidSet, *, since: int) -> UidSet:
        source_ids = _identities(src, uids)
        dest_ids = list(_dest_identities(dst, since).values())
        return UidSet.from_uids(_match_multiset(source_ids, dest_ids))

    def _sync_flags(
        self,
        src: Connection,
        dst: Connection,
        job: _Job,
        previous: FolderStateData | None,
        all_uids: UidSet,
    ) -> None:
        """Carry flag changes of already-copied messages to their destination copies."""
        copied = job.copied & all_uids
        if not copied:
            return
        modifiers = None
        if src.has("CONDSTORE") and previous is not None and previous.highest_modseq is not None:
            modifiers = [f"CHANGEDSINCE {previous.highest_modseq}"]
        changed = src.fetch(copied, ["FLAGS"], modifiers)
        if not changed:
            return
        source_ids = _identities(src, UidSet.from_uids(changed))
        dest_data = dst.fetch_text("1:*", ["FLAGS", "RFC822.SIZE", IDENTITY_FETCH])
        by_identity: dict[Identity, list[tuple[int, frozenset[str]]]] = {}
        for uid in sorted(dest_data):
            item = dest_data[uid]
            headers = _section(item, b"BODY[HEADER.FIELDS")
            key = identity(headers, int(item.get(b"RFC822.SIZE", 0)))
            by_identity.setdefault(key, []).append((uid, _flag_key(item.get(b"FLAGS", ()))))
        stores: dict[tuple[str, ...], list[int]] = {}
        for uid in sorted(changed):
            key = source_ids.get(uid)
            if key is None or not by_identity.get(key):
                continue
            dest_uid, current = by_identity[key].pop(0)
            kept, _dropped = filter_flags(changed[uid].get(b"FLAGS", ()), job.permanent_flags)
            if _flag_key(kept) != current:
                stores.setdefault(tuple(sorted(kept)), []).append(dest_uid)
        for flags, dest_uids in stores.items():
            dst.client.set_flags(str(UidSet.from_uids(dest_uids)), list(flags), silent=True)
        if stores:
            updated = sum(len(v) for v in stores.values())
            job.result.warnings.append(f"flags updated on {updated} message(s) already copied")

    def _queue(self, job: _Job, candidates: UidSet) -> None:
        """Note a folder's work; the units are cut once every folder is planned (_make_units)."""
        job.queued = True
        self.to_copy.append((job, candidates))

    def _make_units(self) -> None:
        """Cut the work into units for the workers.

        Workers on different folders do not get in each other's way; two sessions appending to one
        destination folder make the server lock and re-read that folder's index all the time. So a
        folder is only split when there are fewer folders than connections (or it is very large),
        and the queue alternates between folders.
        """
        per_folder: list[list[_Unit]] = []
        for job, candidates in self.to_copy:
            count = len(candidates)
            if len(self.to_copy) >= self.connections:
                per_unit = UNIT_MAX
            else:
                per_unit = max(UNIT_MIN, min(UNIT_MAX, -(-count // self.connections)))
            units: list[_Unit] = []
            chunk: list[tuple[int, int]] = []
            size = 0
            for low, high in candidates.ranges:
                while low <= high:
                    take = min(high, low + (per_unit - size) - 1)
                    chunk.append((low, take))
                    size += take - low + 1
                    low = take + 1
                    if size >= per_unit:
                        units.append(_Unit(job, UidSet(chunk)))
                        chunk, size = [], 0
            if chunk:
                units.append(_Unit(job, UidSet(chunk)))
            job.units_left = len(units)
            per_folder.append(units)
        # Largest folders first, then round-robin, so neighbours in the queue are different folders.
        per_folder.sort(key=len, reverse=True)
        for round_ in range(max((len(u) for u in per_folder), default=0)):
            for units in per_folder:
                if round_ < len(units):
                    self.run.units.put(units[round_])
        self.to_copy = []

    # ----------------------------------------------------------------- copying

    def copy_all(self) -> None:
        self._make_units()
        pending_units = self.run.units.qsize()
        if pending_units == 0:
            return
        workers = []
        count = min(self.connections, pending_units)
        for index in range(count):
            pair = self.pair if index == 0 else _Pair(self.source, self.destination)
            workers.append(_Worker(index, self.run, pair))
        self.pair = _Pair(self.source, self.destination)  # worker 0 owns the planning connections now
        for worker in workers:
            worker.start()
        alive = len(workers)
        crash: BaseException | None = None
        last_stop_check = 0.0
        while alive or (
            # A worker handed work back after the others had finished: take it up again.
            crash is None and self.fatal is None and not self.run.stop.is_set() and not self.run.units.empty()
        ):
            if not alive:
                worker = _Worker(0, self.run, _Pair(self.source, self.destination))
                workers.append(worker)
                worker.start()
                alive = 1
            try:
                event = self.run.events.get(timeout=0.25)
            except queue.Empty:
                event = None
            if event is not None:
                kind = event[0]
                if kind == "exit":
                    alive -= 1
                elif kind == "crash":
                    crash = event[1]
                    self.run.stop.set()
                elif kind == "gave_back":
                    text = f"used fewer connections than allowed: the server refused one ({event[2]})"
                    if text not in self.result.warnings:
                        self.result.warnings.append(text)
                elif kind == "fatal":
                    if self.fatal is None:
                        self.fatal = _Fatal(event[1], event[2])
                    self.run.stop.set()
                else:
                    self.handle(event)
            batch_done = event is not None and event[0] == "batch"
            if batch_done or event is None:
                self.progress()  # after every batch: the caller throttles its writes
            now = time.monotonic()
            if batch_done or event is None or now - last_stop_check >= 0.1:
                last_stop_check = now
                self.stop_requested()
        for worker in workers:
            worker.join()
        if crash is not None:
            raise crash
        # Everything the workers reported is in; finish the folders.
        for job in self.jobs:
            if not job.queued:
                continue
            if job.units_left == 0 and not job.incomplete and not job.pending:
                job.state.highest_modseq = job.modseq
            self.save(job)

    def handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "pending":
            _kind, index, job, uids, uidnext, ack = event
            job.pending[index] = (uids, uidnext)
            self.save(job)
            ack.set()
        elif kind == "batch":
            _kind, index, batch, keep_pending = event
            job = batch.job
            self.current_folder = job.source
            if not keep_pending:
                job.pending.pop(index, None)
            if batch.landed:
                job.copied = job.copied | UidSet.from_uids(batch.landed)
                job.result.copied += len(batch.landed)
                job.result.bytes += batch.bytes
                self.result.copied += len(batch.landed)
                self.result.bytes += batch.bytes
            for error in batch.errors:
                self.add_error(job, error)
            for text in batch.warnings:
                self.add_warning(job, text)
            if batch.dropped:
                new = [f for f in batch.dropped if f not in job.dropped]
                job.dropped.update(batch.dropped)
                if new:
                    self.add_warning(
                        job,
                        f"flags the destination does not accept were dropped in {job.source!r}: {', '.join(sorted(new))}",
                    )
            self.save(job)
        elif kind == "sizes":
            self.total_bytes += event[1]
        elif kind == "unit_done":
            _kind, job, complete = event
            job.units_left -= 1
            if not complete:
                job.incomplete = True


def copy_account(
    source: Mailbox,
    destination: Mailbox,
    *,
    state: StateStore,
    folder_mapping: dict[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    connections: int = 2,
) -> AccountResult:
    """Copy every folder of `source` to `destination`, incrementally, never changing the source.

    `connections` is the most connections opened to each side at once. Returns an AccountResult:
    DONE (possibly with per-message errors), FAILED (login, unreachable, too many reconnects; the
    reason says which) or CANCELLED (should_stop() said so between batches). Everything that landed
    is recorded in `state` before returning. Raises only for programming errors.
    """
    account = _Account(
        source,
        destination,
        state,
        folder_mapping,
        on_progress,
        should_stop,
        connections,
    )
    return account.execute()


# pytest would otherwise collect an imported test_connection as a test.
test_connection.__test__ = False  # type: ignore[attr-defined]
