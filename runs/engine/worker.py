"""The worker threads: each copies units of work (a folder's UIDs) on its own pair of connections,
in batches bounded by a byte budget, and reports every batch to the main thread as an event."""

from __future__ import annotations

import imaplib
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from imapclient.exceptions import IMAPClientError

from . import imap as wire
from .append import AppendItem, AppendOutcome, PendingAppends
from .identity import _dest_identities, _section
from .imap import Connection, ConnectionLost
from .isolation import BLAMED_IN_A_ROW, Isolation, Suspects, Verdict
from .messages import (
    Identity,
    filter_flags,
    has_bare_line_endings,
    identity_of_message,
    keywords_may_be_refused,
    subject_of,
)
from .retries import _AppendRetries
from .types import ErrorKind, MessageError, NotCopied
from .uidset import UidSet
from .verify import alteration_report
from .work import MAX_ATTEMPTS, _backoff, _Batch, _Fatal, _GiveBack, _Job, _Pair, _Run, _RunOver, _Sent, _Unit

logger = logging.getLogger(__name__)

BATCH_BYTES = 4 * 1024 * 1024  # bodies fetched (and held) per batch, per worker
BATCH_MESSAGES = 250
READING = "read from the source"  # what the worker was doing when a suspect broke the connection
SETTLE_SECONDS = 0.3  # after a break mid-APPEND: the destination folder must stay unchanged this long ...
SETTLE_MAX_SECONDS = 5.0  # ... or this long must pass, before the unconfirmed messages are looked for


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


class _Worker(_AppendRetries, threading.Thread):
    def __init__(self, index: int, run: _Run, pair: _Pair, *, borrowed: bool = False) -> None:
        """`borrowed`: the pair belongs to the main thread, which closes it (the worker leaves it open)."""
        super().__init__(name=f"imapcopier-worker-{index}", daemon=True)
        self.index = index
        self.run_ = run
        self.pair = pair
        self.borrowed = borrowed
        # The batch whose APPENDs were sent but not all confirmed when the connection broke.
        self.inflight: tuple[_Job, list[tuple[int, AppendItem]], list[Identity], int] | None = None
        self.remaining = UidSet()
        self.connected_once = False
        self.isolation = Isolation()
        self.sizes: dict[int, int] = {}  # RFC822.SIZE of the unit's UIDs, as the source reported them
        self.unsized = False  # this pass fetches bodies without their sizes first (_fits_one_batch)
        # The crash window (account.py): source UIDs whose APPENDs may reach the destination before
        # the main thread hears how they ended, a lower bound of the destination's UIDNEXT before the
        # first of them was sent (_floor), the job they belong to, and the acknowledgements of the writes that recorded them.
        self.intent = UidSet()
        self.intent_floor: int | None = None
        self.intent_job: _Job | None = None
        self.intent_acks: list[tuple[UidSet, threading.Event]] = []
        # Per job: the highest destination UID this worker learnt from APPENDUID (RFC 4315 §3) since its
        # last reconnect: the next batch's floor is one more (_floor).
        self.highest_copy: dict[_Job, int] = {}

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
        except _RunOver:
            pass  # nobody is left to tell
        except BaseException as exc:  # a programming error: the main thread re-raises it
            self.run_.events.put(("crash", exc))
        finally:
            if not self.borrowed:
                self.pair.close()
            self.run_.events.put(("exit", self.index))

    def _process(self, unit: _Unit) -> bool:
        # self.remaining shrinks as batches land (or fail for good), so a reconnect resumes exactly
        # where the broken connection stopped.
        self.remaining = unit.uids
        self.isolation = Isolation()
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
            attempts = self._after_break(unit.job, reason, kind, wait, attempts, before)
            if self._pause(max(_backoff(attempts), wait)):
                return False
        return True

    def _after_break(
        self, job: _Job, reason: str, kind: ErrorKind | None, wait: float, attempts: int, before: int
    ) -> int:
        """The connection broke: narrow down or blame a message (isolation.py), drop both
        connections, and count the reconnect; returns the new count of reconnects without progress.

        Raises _Fatal past MAX_ATTEMPTS, or when isolation says the server itself is unusable.
        """
        verdict = self.isolation.after_break(self.remaining) if not wait else Verdict(counts=True)
        if verdict.blamed is not None:
            self._blame(job, verdict, reason)
        if verdict.give_up:
            raise _Fatal(
                f"gave up: {BLAMED_IN_A_ROW} messages in a row of {job.source!r} broke the connection "
                f"even when sent alone: {reason}",
                kind,
            )
        self.pair.drop()
        self.highest_copy.clear()  # the floor after a reconnect: STATUS, as before the first batch
        if len(self.remaining) < before:
            attempts = 1
        elif verdict.counts:
            attempts += 1
        if attempts > MAX_ATTEMPTS:
            raise _Fatal(f"gave up after {MAX_ATTEMPTS} reconnects in {job.source!r}: {reason}", kind)
        logger.info("reconnecting (%s/%s) after: %s", attempts, MAX_ATTEMPTS, reason)
        return attempts

    def _blame(self, job: _Job, verdict: Verdict, reason: str) -> None:
        """A message broke the connection twice on its own: an error for it, and on with the rest."""
        assert verdict.blamed is not None
        text = f"the connection broke each time this message was {verdict.doing}, also alone ({reason}); not copied"
        # Counted by the side that failed: a source that cannot deliver it, or a destination that will not take it.
        kind = NotCopied.UNREADABLE if verdict.doing == READING else NotCopied.REFUSED
        error = MessageError(job.source, verdict.blamed, verdict.size, verdict.subject, text, kind=kind)
        logger.warning("%s UID %s: %s", job.source, verdict.blamed, text)
        self._report(_Batch(job, errors=[error]))
        self._drop([verdict.blamed])

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
            if src.selected != job.source and not self._open_source(src, job):
                return False
            self.unsized = self._fits_one_batch(job, dst)
            if self.unsized:
                # One batch within budget whatever the sizes: the bodies are fetched without asking each
                # message's RFC822.SIZE first (what vanished shows in the FETCH answer, _fetch_read).
                self.sizes = {}
                self._pipeline(src, dst, job, [list(self.remaining)])
                return not (self.remaining and self.run_.stop.is_set())
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
        self.sizes = sizes
        self.run_.events.put(("sizes", sum(sizes.values())))
        self._pipeline(src, dst, job, self._cut_batches(src, job, sizes, dst.append_limit))
        return not (self.remaining and self.run_.stop.is_set())

    def _fits_one_batch(self, job: _Job, dst: Connection) -> bool:
        """Is what is left of the unit sure to fit one batch (BATCH_BYTES, the batch's message count) and the
        destination's APPENDLIMIT (RFC 7889)? Sure when all its UIDs are below the UIDNEXT planning read
        together with the folder's SIZE (RFC 8438) and that whole SIZE fits: those messages are part of it."""
        size, uidnext, limit = job.source_size, job.source_uidnext, dst.append_limit
        return (
            size is not None
            and uidnext is not None
            and bool(self.remaining)
            and self.remaining.max < uidnext
            and size <= BATCH_BYTES
            and (limit is None or size <= limit)
            and len(self.remaining) <= self.isolation.batch_messages(BATCH_MESSAGES)
        )

    def _open_source(self, src: Connection, job: _Job) -> bool:
        """EXAMINE the unit's folder; False when it is refused (and a warning) or its UIDVALIDITY is not the
        one planning read (RFC 9051 §2.3.1.1: the unit's UIDs then name other messages, or nothing): the main
        thread reads the folder again and copies it in one session (account.py, "Sessions")."""
        try:
            info = src.examine(job.source)
        except imaplib.IMAP4.abort:
            raise  # a broken connection, not a refusal: the reconnect logic handles it
        except IMAPClientError as exc:
            self._report(_Batch(job, warnings=[f"{job.source!r} could not be opened: {wire.describe(exc)}"]))
            return False
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        if uidvalidity != job.uidvalidity:
            self.run_.events.put(("resession", job, uidvalidity))
            return False
        return True

    def _cut_batches(self, src: Connection, job: _Job, sizes: dict[int, int], limit: int | None) -> list[list[int]]:
        """self.remaining cut into batches of at most BATCH_BYTES / BATCH_MESSAGES (a bigger message
        goes alone); a message above the destination's APPENDLIMIT (RFC 7889) is an error, not sent."""
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
            if batch and (
                batch_bytes + size > BATCH_BYTES or len(batch) >= self.isolation.batch_messages(BATCH_MESSAGES)
            ):
                batches.append(batch)
                batch, batch_bytes = [], 0
            batch.append(uid)
            batch_bytes += size
        if batch:
            batches.append(batch)
        return batches

    def _pipeline(self, src: Connection, dst: Connection, job: _Job, batches: list[list[int]]) -> None:
        """Fetch and append the batches. Look-ahead: the FETCH of batch N+1 is sent before the APPENDs
        of batch N, so the source prepares the next batch while the destination stores this one
        (memory: two batches). The intent of batch N+2 is recorded with the outcome of batch N
        (_finish_batch), so the state write of a batch is never awaited before APPENDs are sent."""
        sent: _Sent | None = None
        self._forget_intent(job)
        try:
            if batches:
                current = batches[0]
                fetched = self._fetch_batch(src, job, current)
                for index in range(len(batches)):
                    if self.run_.stop.is_set():
                        break
                    following = batches[index + 1] if index + 1 < len(batches) else None
                    tag = self._fetch_send(src, following) if following else None
                    sent = self._send_batch(dst, job, current, *fetched, ahead=following)
                    if following is not None:
                        fetched = self._fetch_read(src, job, following, tag)
                    previous, sent = sent, None
                    self._finish_batch(dst, previous, ahead=batches[index + 2] if index + 2 < len(batches) else None)
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
        self.isolation.watch(Suspects(READING, uids, {u: (self.sizes.get(u, 0), "") for u in uids}))
        try:
            data = src.fetch_finish(tag, UidSet.from_uids(uids))
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        self.isolation.watch(None)
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
        if self.unsized:  # their sizes were not asked first (_fits_one_batch): counted as they arrive
            self.run_.events.put(("sizes", sum(len(it.raw) for _, it in items)))
        return items, report

    def _send_batch(
        self,
        dst: Connection,
        job: _Job,
        uids: list[int],
        items: list[tuple[int, AppendItem]],
        report: _Batch,
        *,
        ahead: list[int] | None = None,
    ) -> _Sent:
        """Send the APPENDs of a fetched batch (answers read by _finish_batch). `ahead`: the UIDs of
        the batch after it, recorded as intent with this one when this one was not recorded yet."""
        sent = _Sent(job, uids, items, report)
        if not items:
            return sent
        sent.uidnext = self._floor(dst, job)
        # The intent must be recorded before sending: a crash from here on is resolved on the next
        # run by looking for these messages among the destination's UIDs >= the recorded floor.
        # Normally it was recorded one batch earlier (_finish_batch) and its write acknowledged
        # while the previous batch was being stored, so nothing is awaited here.
        sending = UidSet.from_uids(uid for uid, _ in items)
        if sending - self.intent:
            self._intend(job, sending | UidSet.from_uids(ahead or ()), sent.uidnext)
        self._await_intent(sending)
        sent.appends = PendingAppends(dst, job.destination, [it for _, it in items])
        try:
            sent.appends.send()
        except ConnectionLost:
            self._broken(sent)
            raise
        return sent

    def _floor(self, dst: Connection, job: _Job) -> int:
        """A lower bound of the destination UIDs the next batch's copies can get: the crash-window
        floor recorded with its intent (_finish_batch says why a lower bound is enough).

        Without a round trip where one is known (a new message's UID is above every UID the
        folder ever held, and UIDNEXT never decreases while UIDVALIDITY holds: RFC 9051 §2.3.1.1;
        a changed UIDVALIDITY voids the folder's record next run, folderstate.binding_change):
        1. the highest destination UID this worker learnt in this folder, plus one; after a batch
           with APPENDUIDs (RFC 4315 §3) it is exact, as far as this worker's copies go;
        2. for the first batch sent into the folder, the UIDNEXT planning saw (_Job.destination_uidnext);
        3. otherwise (no UIDPLUS on a later batch, a reconnect) the folder's UIDNEXT by STATUS.
        """
        learnt = self.highest_copy.get(job)
        if learnt is not None:
            return learnt + 1
        planned = job.take_destination_uidnext()
        if planned is not None:
            return planned
        try:
            return int(dst.status(job.destination, ["UIDNEXT"])["UIDNEXT"])
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None

    def _finish_batch(self, dst: Connection, sent: _Sent, *, ahead: list[int] | None = None) -> None:
        """Read the answers of a sent batch and report them, with (one write) the intent of `ahead`,
        the batch after the next one: by the time that one is sent, its intent is on record.

        Why this order is safe: the intent of `ahead` is recorded with this batch's floor (_floor: at
        most the UIDNEXT before this batch was sent, so below any UID `ahead` can get) and before `ahead` is sent
        (_send_batch waits for the write's acknowledgement if it is somehow still queued). A lower
        UIDNEXT only widens where the next run looks: the copies of this batch, which also lie there,
        are already in the UID map (APPENDUID) and excluded (planning._match), and twins are told
        apart by their bodies. A crash therefore still loses at most the batches in flight (their
        copies are found by identity next run) and never sends one twice."""
        job, uids, items, report = sent.job, sent.uids, sent.items, sent.report
        if sent.appends is None:  # nothing to send (all vanished)
            self._report(report, resolved=uids)
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
                report.add_landed(uid, len(it.raw), outcome)
            elif asked is not None:  # not refused, only "not now": tried again after the wait
                throttled.append(uid)
                wait = max(wait, asked)
            elif has_bare_line_endings(it.raw) or keywords_may_be_refused(it.flags, outcome.text):
                retry.append((uid, it, outcome.text))
            else:
                report.errors.append(self._error(job, uid, it, outcome.text))
        keep = {uid for uid, _, _ in retry} | set(throttled)
        # Retried and throttled messages stay in the intent until their own outcome is reported.
        self._report(report, resolved=[uid for uid in uids if uid not in keep], ahead=ahead, floor=sent.uidnext)
        self._drop([uid for uid in uids if uid not in keep])
        self._check_stored(dst, job, [(uid, it, o) for (uid, it), o in zip(items, outcomes, strict=True) if o.ok])
        if throttled:
            raise ConnectionLost(f"the destination is throttling: {len(throttled)} message(s) to send again", wait=wait)
        for uid, it, first_refusal in retry:
            if has_bare_line_endings(it.raw):
                self._append_normalised(dst, job, uid, it, first_refusal)
            else:
                self._append_with_fewer_keywords(dst, job, uid, it, first_refusal)

    def _check_stored(self, dst: Connection, job: _Job, landed: list[tuple[int, AppendItem, AppendOutcome]]) -> None:
        """Report what the destination stored differently from what was sent (verify.py): a warning a message,
        counted as altered, apart from "copied". A refused check is one warning; a lost connection raises."""
        try:
            altered, warnings = alteration_report(
                dst, job.source, job.destination, [(uid, it.raw, o.uid) for uid, it, o in landed]
            )
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        except (IMAPClientError, imaplib.IMAP4.error) as exc:
            altered, warnings = 0, [f"could not check what {job.destination!r} stored: {wire.describe(exc)}"]
        if warnings:
            self._report(_Batch(job, altered=altered, warnings=warnings))

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
                report.add_landed(uid, len(it.raw), outcome)
                confirmed_ids.append(identity_of_message(it.raw))
            else:
                report.errors.append(self._error(job, uid, it, outcome.text))
        self.inflight = (job, items[len(outcomes) :], confirmed_ids, sent.uidnext)
        self._suspect_stored(items[len(outcomes) :])
        # The unconfirmed ones stay in the intent: _resolve_inflight looks for them after the reconnect.
        self._report(report, resolved=[uid for uid, _ in items[: len(outcomes)]])
        self._drop(done)

    def _resolve_inflight(self, dst: Connection) -> UidSet:
        """After a reconnect: which unconfirmed APPENDs of the broken batch did land anyway."""
        assert self.inflight is not None
        job, unconfirmed, confirmed_ids, uidnext = self.inflight
        report = _Batch(job)
        try:
            self._wait_until_settled(dst, job.destination)
            dst.examine(job.destination)
            arrived = _dest_identities(dst, uidnext)
            dst.unselect()
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        found = Counter(arrived.values())
        found.subtract(confirmed_ids)
        # Destination UIDs by identity, oldest first; the confirmed copies took the first ones.
        spare: dict[object, list[int]] = {}
        for dest_uid in sorted(arrived):
            spare.setdefault(arrived[dest_uid], []).append(dest_uid)
        for key in confirmed_ids:
            if spare.get(key):
                spare[key].pop(0)
        for uid, item in unconfirmed:
            key = identity_of_message(item.raw)
            if found[key] > 0:
                found[key] -= 1
                report.landed.append(uid)
                report.bytes += len(item.raw)
                if spare.get(key):
                    report.mapped[uid] = spare[key].pop(0)
        self.inflight = None
        # Every APPEND this worker sent has an outcome now: what landed is reported, the rest is
        # sent again under a new intent; nothing of the old one can land any more.
        self._report(report, resolved=self.intent)
        self.highest_copy.clear()  # copies found by identity are no APPENDUIDs: the next floor by STATUS
        return UidSet.from_uids(report.landed)

    def _wait_until_settled(self, dst: Connection, folder: str) -> None:
        """Wait until the folder stops growing (UIDNEXT unchanged over SETTLE_SECONDS), at most
        SETTLE_MAX_SECONDS. The broken session's server process may still be storing APPENDs it
        had read before the connection dropped (Dovecot does): looked for too early, they would
        seem lost and be sent again, a duplicate each."""
        previous = None
        waited = 0.0
        while waited < SETTLE_MAX_SECONDS:
            current = int(dst.status(folder, ["UIDNEXT"])["UIDNEXT"])
            if current == previous or self._pause(SETTLE_SECONDS):
                return
            previous = current
            waited += SETTLE_SECONDS

    # ------------------------------------------------------------------ the crash window

    def _forget_intent(self, job: _Job) -> None:
        """Start a pass over a unit with no intent left from a previous pass: after _resolve_inflight
        (or a throttle, whose messages were not stored) no APPEND of this worker is unaccounted for."""
        if self.intent_job is not None and self.intent_job is not job and self.intent:
            self._report(_Batch(self.intent_job), resolved=self.intent)
        self.intent, self.intent_floor, self.intent_job, self.intent_acks = UidSet(), None, job, []

    def _intend(self, job: _Job, uids: UidSet, uidnext: int) -> None:
        """Record `uids` as about to be sent (their copies will have UIDs >= uidnext)."""
        self._report(_Batch(job), ahead=uids, floor=uidnext)

    def _await_intent(self, uids: UidSet) -> None:
        """Wait until every write that recorded `uids` as intent is done (normally it is already).

        Raises _RunOver when the account run ended without doing it (the main thread no longer writes):
        APPENDs sent then would be on no record, and the next run could copy them twice (account.py,
        "Crash window")."""
        for recorded, ack in self.intent_acks:
            if recorded & uids:
                while not ack.wait(0.5):
                    if self.run_.finished.is_set():
                        raise _RunOver
        self.intent_acks = [(recorded, ack) for recorded, ack in self.intent_acks if not ack.is_set()]

    def _report(
        self,
        batch: _Batch,
        *,
        resolved: Sequence[int] | UidSet = (),
        ahead: Sequence[int] | UidSet | None = None,
        floor: int | None = None,
    ) -> None:
        """Hand a batch's outcome to the main thread, which records it (state store) in one write
        together with this worker's intent: the UIDs whose APPENDs may land before their outcome
        is known, i.e. the intent so far, less `resolved` (their outcome is in `batch` or will
        never come), plus `ahead` (about to be sent; `floor` is at most the destination's UIDNEXT
        before any of them is sent, _floor)."""
        if batch.landed:
            self.isolation.landed()
        if batch.mapped:
            highest = max(batch.mapped.values())
            self.highest_copy[batch.job] = max(highest, self.highest_copy.get(batch.job, highest))
        intent: tuple[_Job, UidSet, int | None, threading.Event | None] | None = None
        if batch.job is self.intent_job and (resolved or ahead):
            left = self.intent - (resolved if isinstance(resolved, UidSet) else UidSet.from_uids(resolved))
            added = (ahead if isinstance(ahead, UidSet) else UidSet.from_uids(ahead)) if ahead else UidSet()
            added = added - left
            if added:
                assert floor is not None
                self.intent_floor = floor if self.intent_floor is None or not left else min(self.intent_floor, floor)
            elif not left:
                self.intent_floor = None
            self.intent = left | added
            ack = threading.Event() if added else None
            if ack is not None:
                self.intent_acks.append((added, ack))
            intent = (batch.job, self.intent, self.intent_floor, ack)
        self.run_.events.put(("batch", self.index, batch, intent))
