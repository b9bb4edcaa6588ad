r"""copy_account(): the copy algorithm.

Shape: the calling thread ("main") connects, plans every folder on its own pair of connections
(what is new, what the destination already holds, which flags changed) and queues units of work
(a folder's candidate UIDs, large folders split into UID ranges). Up to `connections` worker threads,
each with its own source and destination connection, copy the units in batches bounded by a byte
budget. Workers report through a queue; only the main thread touches the StateStore and calls the
progress callback, so a Django-backed store is only ever used from the caller's thread.

Decisions worth knowing:

- Bytes: messages are sent exactly as BODY.PEEK[] returned them, as raw literals (append.append_many);
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
- State is bound to the destination it was written for (server, user, destination folder and its
  UIDVALIDITY, folderstate.binding_change): when any of them changes, the folder's record is voided
  and its messages are matched against what the destination really holds.
- Identity (a destination that already holds mail, a voided record, the crash window, a copy the
  UID map does not know): the Message-ID, or a hash of Date/From/Subject without one; never
  RFC822.SIZE, which servers disagree on. Messages sharing an identity (twins) are told apart by
  their bodies. Matched as a multiset, so two identical source messages need two copies.
- UID map: which destination UID each source UID became (APPENDUID, else found by identity once);
  flag changes follow it, so they land on the right copy of look-alike messages.
- Totals: every source message is counted once, copied, already there ("skipped") or not copied
  with a NotCopied reason; the destination folders are counted at the end for the report.
- Crash window: before a batch is sent, its UIDs and a lower bound of the destination's UIDNEXT
  before it are saved as pending_uids/pending_uidnext; after a reconnect (or on the next run after a
  crash) those messages are looked for among the destination's UIDs >= that bound, so an APPEND
  whose OK was lost is not sent twice. The bound costs no round trip where known (worker._floor: the
  last APPENDUID + 1, or planning's STATUS for a folder's first batch). To keep that write off the
  critical path, a worker records the intent of batch N+2 in the same write as the outcome of batch
  N (worker._finish_batch): one state write per batch, normally acknowledged long before the batch
  is sent. The main thread saves each folder once for all the events it finds queued (copy_all),
  then acknowledges them.
- Flags: \Recent never; filtered to the destination folder's PERMANENTFLAGS (keywords where \* is
  allowed); dropped flags reported once per folder. Changes on the source are carried to the
  destination copies (through the UID map) with STORE FLAGS; CHANGEDSINCE keeps this cheap.
- Sessions: planning reads a folder on its own connection, a worker copies it on another; the UIDs
  planned hold there only under the same UIDVALIDITY. A server that keeps no UIDs between sessions
  gives each session a new one (RFC 9051 §2.3.1.1; Courier, for a folder nobody opened read-write).
  A worker that finds another UIDVALIDITY hands the folder back; once the workers are done, it is
  read again on the planning connections (planning._plan_in_session: matched by identity against the
  destination) and copied by worker 0 on them, in that same session; after MAX_ATTEMPTS readings,
  what is left waits for the next run, with a warning.
- Subscriptions: the destination subscribes what the source subscribes (mapped names); nothing is
  unsubscribed and nothing the source does not subscribe is subscribed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from imapclient.exceptions import IMAPClientError

from . import imap as wire
from .folders import folder_infos, with_counts
from .folderstate import bind_to_appended, destination_server
from .imap import Connection, ConnectionLost
from .planning import _Planning
from .types import (
    AccountResult,
    ErrorKind,
    FolderResult,
    Mailbox,
    MessageError,
    NotCopied,
    Outcome,
    Progress,
    ProgressCallback,
    StateStore,
    StopCheck,
)
from .uidset import UidSet
from .work import MAX_ATTEMPTS, _backoff, _Fatal, _Job, _Pair, _Run
from .worker import _Worker

# A worker past the first per this many messages to copy (each costs one more login per side; for a
# few small messages that is more than it saves).
MESSAGES_PER_EXTRA_WORKER = 100


class _Account(_Planning):
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
        self.resessions: list[_Job] = []  # folders a worker found under another UIDVALIDITY ("Sessions")
        self.run = _Run()
        self.started = time.monotonic()
        self.total_messages = 0
        self.total_bytes = 0
        self.current_folder = ""
        self.cancelled = False
        self.fatal: _Fatal | None = None
        self.pair = _Pair(source, destination)
        self._last_stop_check = 0.0
        self.destination_key = destination_server(destination)
        self._failed_destinations: dict[str, str] = {}
        self.planned = False  # every folder was looked at: the source's message count is known
        self.saved: dict[str, tuple] = {}  # source folder -> its state as the store holds it (save())
        self.listed_status: dict[str, dict[str, dict[str, int]]] = {}  # planning.py: LIST-STATUS per side
        self.listed_subscriptions: dict[str, set[str]] = {}  # planning.py: \Subscribed per side

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
                not_copied=r.not_copied_total,
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
        """Hand the job's state to the store, unless the store already holds exactly that (as loaded or
        last saved): a folder with nothing new, or a batch that changed nothing, costs no write."""
        job.state.copied_uids = str(job.copied)
        job.state.uid_map = str(job.uid_map)
        pending = UidSet()
        since = None
        for uids, uidnext in job.pending.values():
            pending = pending | uids
            since = uidnext if since is None else min(since, uidnext)
        job.state.pending_uids = str(pending)
        job.state.pending_uidnext = since
        snapshot = job.state.snapshot()
        if self.saved.get(job.state.source_folder) == snapshot:
            return
        self.store.save(job.state)
        self.saved[job.state.source_folder] = snapshot

    def add_warning(self, job: _Job | None, text: str) -> None:
        if job is not None:
            job.result.warnings.append(text)
        self.result.warnings.append(text)

    def add_error(self, job: _Job, error: MessageError) -> None:
        job.result.errors += 1
        job.incomplete = True
        self.result.errors += 1
        self.result.message_errors.append(error)
        self.count_not_copied(job.result, error.kind, 1)

    def count_not_copied(self, folder: FolderResult, reason: NotCopied, messages: int) -> None:
        """Count `messages` of `folder` as not copied for `reason`, in the folder and the account."""
        if messages <= 0:
            return
        folder.not_copied[reason] = folder.not_copied.get(reason, 0) + messages
        self.result.not_copied[reason] = self.result.not_copied.get(reason, 0) + messages

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
                self._count_unreached(failure)
                return failure
            self.plan_all()
            if not self.cancelled and self.fatal is None:
                self.copy_all()
            if not self.cancelled and self.fatal is None:
                self._retrying("counting the destination folders", self._count_destination, source=False)
        except _Fatal as exc:
            self.fatal = exc
        finally:
            # Normally every worker has ended by now; after an error (a state write that failed) they
            # stop at their next check, and send nothing off the record (worker._await_intent).
            self.run.stop.set()
            self.pair.close()
            self.run.finished.set()
        for job in self.jobs:
            self.result.folders.append(job.result)
        self._tally()
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

    def _count_unreached(self, failure: AccountResult) -> None:
        """The destination could not be used but the source could: count the source's messages,
        all "account not reached" (issue 11 case 10). Without a source, they stay unknown."""
        src = self.pair.src
        if src is None:
            return
        try:
            infos = with_counts(src, [info for info in folder_infos(src) if info.selectable])
        except (IMAPClientError, *wire.TRANSIENT_ERRORS):
            return  # not known: the report says "mailbox not read"
        failure.source_messages = sum(info.messages or 0 for info in infos)
        if failure.source_messages:
            failure.not_copied[NotCopied.ACCOUNT_NOT_REACHED] = failure.source_messages

    def _count_destination(self, _src: Connection | None, dst: Connection) -> None:
        """Messages in each destination folder once the copy is over (the report compares them): one
        LIST-STATUS (RFC 5819) for all of them where the server has it, else STATUS folder by folder."""
        listed = dst.list_status(["MESSAGES"])[1] if len(self.jobs) > 1 else {}
        for job in self.jobs:
            status = listed.get(job.destination) or dst.status(job.destination, ["MESSAGES"])
            job.result.destination_messages = int(status.get("MESSAGES", 0))

    def _tally(self) -> None:
        """Account for every source message: what no batch reached is counted "not attempted".

        Then copied + altered + skipped + not copied = source messages, per folder and for the account
        (issue 11 cases 10 and 12). The account's source count stays None when planning did not
        look at every folder (the account failed or was stopped first): the mailbox was not read.
        """
        known = 0
        for folder in self.result.folders:
            if folder.destination is None or folder.source_messages is None:
                continue
            arrived = folder.copied + folder.altered + folder.skipped + folder.deleted_at_destination
            rest = folder.source_messages - arrived - sum(folder.not_copied.values())
            if rest > 0:
                self.count_not_copied(folder, NotCopied.NOT_ATTEMPTED, rest)
            known += folder.source_messages
        self.result.source_messages = known if self.planned else None

    def _retrying(self, what: str, action: Callable[[Connection, Connection], None], *, source: bool = True) -> None:
        """Run action(src, dst), reconnecting on a broken connection (source=False: the destination
        alone is needed, and src may be None)."""
        attempts = 0
        while True:
            try:
                src, dst = self.pair.open(source=source)
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

    # ----------------------------------------------------------------- copying

    def copy_all(self) -> None:
        wanted = sum(len(candidates) for _job, candidates in self.to_copy)
        self._make_units()
        pending_units = self.run.units.qsize()
        if pending_units == 0:
            return
        # Each worker past the first logs in once more on each side: worth it only for enough messages.
        worth = 1 + wanted // MESSAGES_PER_EXTRA_WORKER
        crash = self._work(self._start_workers(min(self.connections, pending_units, worth)))
        while crash is None and self.fatal is None and not self.run.stop.is_set() and self.resessions:
            job = self.resessions.pop(0)
            job.sessions += 1  # once per reading, however many reconnects it takes
            self._retrying(
                f"reading {job.source!r} again", lambda src, dst, job=job: self._plan_in_session(src, dst, job)
            )
            if not self.run.units.empty():
                # Worker 0 on the planning connections, where the folder is still open in that session.
                crash = self._work(self._start_workers(1))
        if crash is not None:
            raise crash
        self._finish_jobs()

    def _work(self, workers: list[_Worker]) -> BaseException | None:
        """Apply the workers' events until every worker has ended and no unit is left; returns a worker's
        crash (a programming error, to re-raise), else None."""
        alive = len(workers)
        crash: BaseException | None = None
        last_stop_check = 0.0
        while alive or (
            # A worker handed work back after the others had finished: take it up again.
            crash is None and self.fatal is None and not self.run.stop.is_set() and not self.run.units.empty()
        ):
            if not alive:
                # A worker 0 again, on the planning connections the first one left open: under a per-user
                # connection limit they may hold the only slot the server grants.
                workers += self._start_workers(1)
                alive = 1
            try:
                event = self.run.events.get(timeout=0.25)
            except queue.Empty:
                event = None
            events = [event] if event is not None else []
            while event is not None and len(events) < 1000:  # drain: one save per folder for all of them
                try:
                    event = self.run.events.get_nowait()
                except queue.Empty:
                    break
                events.append(event)
            dirty: dict[int, _Job] = {}
            acks: list[threading.Event] = []
            for event in events:
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
                    for job in self.handle(event, acks):
                        dirty[id(job)] = job
            for job in dirty.values():
                self.save(job)
            for ack in acks:  # only once the intents are on record
                ack.set()
            batch_done = any(e[0] == "batch" for e in events)
            if batch_done or not events:
                self.progress()  # after every batch: the caller throttles its writes
            now = time.monotonic()
            if batch_done or not events or now - last_stop_check >= 0.1:
                last_stop_check = now
                self.stop_requested()
        for worker in workers:
            worker.join()
        return crash

    def _start_workers(self, count: int) -> list[_Worker]:
        """Start `count` workers; worker 0 borrows the planning connections (self.pair) and leaves them
        open when it ends, so counting the destination afterwards, or a worker 0 started again for a unit
        handed back, needs no new login."""
        workers = []
        for index in range(count):
            pair = self.pair if index == 0 else _Pair(self.source, self.destination)
            workers.append(_Worker(index, self.run, pair, borrowed=index == 0))
        for worker in workers:
            worker.start()
        return workers

    def _finish_jobs(self) -> None:
        """Everything the workers reported is in: save each copied folder, its HIGHESTMODSEQ only
        when the folder is complete (so refused messages are tried again next run)."""
        for job in self.jobs:
            if not job.queued:
                continue
            if self._complete(job):
                job.state.highest_modseq = job.modseq
            self.save(job)  # nothing to write when unit_done recorded it all already

    def handle(self, event: tuple, acks: list[threading.Event]) -> list[_Job]:
        """Apply one worker event to the result; returns the jobs whose state must be saved, and
        adds to `acks` what to acknowledge once they are (the worker may send what they record)."""
        kind = event[0]
        if kind == "batch":
            _kind, index, batch, intent = event
            job = batch.job
            self.current_folder = job.source
            changed = [job]
            if intent is not None:
                intent_job, uids, floor, ack = intent
                if uids:
                    intent_job.pending[index] = (uids, floor)
                else:
                    intent_job.pending.pop(index, None)
                if intent_job is not job:
                    changed.append(intent_job)
                if ack is not None:
                    acks.append(ack)
            if batch.uidvalidity is not None:
                bind_to_appended(job.state, job.copied, job.uid_map, batch.uidvalidity)
            job.uid_map.update(batch.mapped.items())
            if batch.vanished and job.result.source_messages is not None:
                job.result.source_messages -= batch.vanished  # no longer at the source
            if batch.landed:
                job.copied = job.copied | UidSet.from_uids(batch.landed)
                job.result.copied += len(batch.landed)
                job.result.bytes += batch.bytes
                self.result.copied += len(batch.landed)
                self.result.bytes += batch.bytes
            if batch.altered:  # counted apart: they landed (the state keeps them), but not as sent
                job.result.copied -= batch.altered
                job.result.altered += batch.altered
                self.result.copied -= batch.altered
                self.result.altered += batch.altered
            for error in batch.errors:
                self.add_error(job, error)
            for text in batch.warnings:
                self.add_warning(job, text)
            for warning in batch.message_warnings:
                self.add_warning(job, warning.text)
                self.result.message_warnings.append(warning)
            if batch.dropped:
                new = [f for f in batch.dropped if f not in job.dropped]
                job.dropped.update(batch.dropped)
                if new:
                    self.add_warning(
                        job,
                        f"flags the destination does not accept were dropped in {job.source!r}: {', '.join(sorted(new))}",
                    )
            return changed
        if kind == "resession":
            _kind, job, uidvalidity = event
            if job.sessions < MAX_ATTEMPTS:
                if job not in self.resessions:  # two units of the folder may both find it so
                    self.resessions.append(job)
            else:
                self.add_warning(
                    job,
                    f"{job.source!r} had another UIDVALIDITY ({uidvalidity}) each time it was opened; "
                    "what is left of it is copied next run",
                )
        elif kind == "sizes":
            self.total_bytes += event[1]
        elif kind == "unit_done":
            _kind, job, complete = event
            job.units_left -= 1
            if not complete:
                job.incomplete = True
            if self._complete(job):
                # Recorded now, in the write of the folder's last batch (same drain), not in one more.
                job.state.highest_modseq = job.modseq
                return [job]
        return []

    @staticmethod
    def _complete(job: _Job) -> bool:
        """Every unit of the folder done, nothing refused or left, nothing in flight: its
        HIGHESTMODSEQ may be recorded (so refused messages are tried again next run otherwise)."""
        return job.units_left == 0 and not job.incomplete and not job.pending


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
