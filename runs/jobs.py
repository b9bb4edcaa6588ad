"""django-q2 entry points. Arguments are ids, never model instances and never passwords.

copy_account_job is the adapter between django-q2 and the copy engine: it claims its AccountRun,
waits for connection slots, runs the engine, and records the outcome. It never raises: a raised
job would be handed out again by the broker, and our own rows already say what happened.

While the engine works, a JobMonitor thread writes the progress and the heartbeat about once a
second (fenced by the claim's attempt number), renews the connection-slot leases, and watches for
a cancel request or a lost claim; the engine sees those through should_stop() between batches.
A job also stops by itself, resumably ("interrupted"), on SIGTERM and shortly before django-q2's
timeout, so neither kills it in the middle of a batch.

Stopping a worker machine (README, "Production"): SIGTERM to the qcluster main process sets the
cluster's stop event, which every job watches (worker_stopping()); SIGTERM to a worker process itself
(a process manager signalling the whole group) reaches the job's handler. Either way the copy in
flight stops after its batch and is recorded as interrupted, and a job the cluster had already taken
from the broker but not started goes back to the queue instead of starting.

Waiting for a connection slot happens inside the job, with the heartbeat going: the account run
shows as running "waiting for a free connection", stays cancellable, and the worker is held while
it waits. Parallelism is therefore min(cluster workers, what the endpoints' max connections allow);
size Q_WORKERS to the connections you allow, not above.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import connections
from django.utils import timezone

from runs import engine, lifeline, orchestrator, q2
from runs.engine.types import AccountResult, Outcome, Progress, SignalFlag
from runs.models import AccountRun, Run
from runs.progress import WAITING_FOR_SLOTS
from runs.state import FolderStateStore
from tasks import slots
from tasks.models import Account, Task
from tasks.services import BACKGROUND_TEST_SLOT_WAIT_SECONDS, account_mailbox, test_account

logger = logging.getLogger(__name__)

# Connections the engine opens on each side for one account.
CONNECTIONS_PER_SIDE = 2
HEARTBEAT_SECONDS = 1.0
SLOT_RENEW_SECONDS = 10.0


def time_limit_seconds() -> float:
    """How long one copy job may run: django-q2's timeout (settings.COPY_JOB_TIMEOUT_SECONDS) minus a margin
    to finish the batch in flight."""
    timeout = settings.Q_CLUSTER["timeout"]
    return max(60.0, timeout - max(60.0, min(600.0, timeout * 0.05)))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# Set once this worker process got SIGTERM: the copy in flight stops, and no other starts here.
_SIGTERM_RECEIVED = SignalFlag()  # runs/engine/types.py says why not threading.Event


def worker_stopping() -> bool:
    """True when this worker should not copy any more: it got SIGTERM, or its cluster is stopping."""
    if _SIGTERM_RECEIVED.is_set():
        return True
    return q2.cluster_stopping()


class JobMonitor:
    """The job's heartbeat: persists progress about once a second and tells the engine when to stop."""

    def __init__(
        self,
        account_run_id: int,
        run_id: int,
        attempt: int,
        slot_holder: str,
        *,
        interval: float | None = None,
        clock: Callable = timezone.now,
    ) -> None:
        self.account_run_id = account_run_id
        self.run_id = run_id
        self.attempt = attempt
        self.slot_holder = slot_holder
        self.interval = HEARTBEAT_SECONDS if interval is None else interval
        self.clock = clock
        self.latest: Progress | None = None
        self.waiting = False
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self.terminated = threading.Event()
        self.timed_out = threading.Event()
        # Stop cleanly (resumable) before django-q2's timeout would kill the worker mid-batch.
        self.deadline = time.monotonic() + time_limit_seconds()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ok = time.monotonic()
        self._last_renew = 0.0
        self.engine_called: float | None = None  # time.monotonic() around engine.copy_account
        self.engine_returned: float | None = None

    # called by the engine, in the job's thread: no database access here
    def on_progress(self, progress: Progress) -> None:
        self.latest = progress

    def should_stop(self) -> bool:
        if not self.timed_out.is_set() and time.monotonic() >= self.deadline:
            self.timed_out.set()
        if not self.terminated.is_set() and worker_stopping():
            self.terminated.set()
        return self.cancelled.is_set() or self.lost.is_set() or self.terminated.is_set() or self.timed_out.is_set()

    def beat(self) -> None:
        """One fenced write of progress + heartbeat, slot renewal, and the cancel check."""
        now = self.clock()
        fields: dict = {"heartbeat_at": now}
        progress = self.latest
        if progress is not None:
            fields.update(
                current_folder=progress.folder[:1000],
                copied=progress.copied,
                skipped=progress.skipped,
                errors=progress.errors,
                bytes=progress.bytes,
                total_messages=progress.total_messages,
                total_bytes=progress.total_bytes,
                not_copied_messages=progress.not_copied,
            )
        else:
            fields["current_folder"] = WAITING_FOR_SLOTS if self.waiting else ""
        written = AccountRun.objects.filter(
            pk=self.account_run_id,
            attempt=self.attempt,
            status=AccountRun.Status.RUNNING,
        ).update(**fields)
        if not written:
            if not self.lost.is_set():
                logger.warning(
                    "account run %s attempt %s: claim lost, stopping",
                    self.account_run_id,
                    self.attempt,
                )
            self.lost.set()
            return
        self._last_ok = time.monotonic()
        if time.monotonic() - self._last_renew >= SLOT_RENEW_SECONDS:
            slots.renew(self.slot_holder, now=now)
            self._last_renew = time.monotonic()
        if Run.objects.filter(pk=self.run_id).values_list("cancel_requested", flat=True).first():
            self.cancelled.set()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                except Exception:
                    logger.exception("account run %s: heartbeat failed", self.account_run_id)
                    # Unable to prove we still hold the claim for half a lease: stop copying.
                    if time.monotonic() - self._last_ok > orchestrator.HEARTBEAT_LEASE_SECONDS / 2:
                        self.lost.set()
        finally:
            connections.close_all()  # this thread's own connections

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.account_run_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def on_sigterm(signum: int, frame: object) -> None:
    """The copy job's SIGTERM handler: only raises a lock-free flag (see SignalFlag).

    The job's monitor turns the flag into "stop after this batch" the next time the engine asks
    should_stop() (worker_stopping() reads it), in the job's own thread, where taking locks is safe.
    """
    _SIGTERM_RECEIVED.set()


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a process manager stopping the worker) ends the copy cleanly after the batch in flight."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def slot_needs(account_run: AccountRun) -> tuple[dict[int, int], int]:
    """Connection slots one account copy needs on each endpoint, and connections per side."""
    task = account_run.run.task
    source, destination = task.source, task.destination
    if source.pk == destination.pk:
        per_side = min(CONNECTIONS_PER_SIDE, source.max_connections // 2)
        if per_side < 1:
            raise slots.SlotsImpossible(
                f"source and destination are the same server ({source.label}), which needs two "
                f"connections at once, but its max connections is {source.max_connections}"
            )
        return {source.pk: 2 * per_side}, per_side
    per_side = min(CONNECTIONS_PER_SIDE, source.max_connections, destination.max_connections)
    return {source.pk: per_side, destination.pk: per_side}, per_side


def copy_account_job(account_run_id: int) -> None:
    """Copy one account of a run. Does nothing for a duplicate delivery; never raises.

    SIGTERM is held from the first line to the last: a worker told to stop claims nothing more, stops
    its copy after the batch in flight and records the account run before it may die. A SIGTERM that
    arrives between the copy's end and the record (runs/lifeline.py sends one each second once the
    sentinel is gone) must not end the process with the run claimed and unrecorded.
    """
    with _stop_on_sigterm():
        _copy_account_job(account_run_id)


def _copy_account_job(account_run_id: int) -> None:
    if worker_stopping():
        # A job the cluster took from the broker before it was told to stop: back to the queue for
        # another worker (or this one after its restart), unclaimed.
        logger.info(
            "account run %s: this worker is stopping, its job goes back to the queue",
            account_run_id,
            extra={"event": "account.handed_back", "account_run_id": account_run_id},
        )
        orchestrator.push_jobs([account_run_id])
        return
    taken = time.monotonic()
    try:
        account_run = orchestrator.claim_account_run(account_run_id, worker=worker_id(), now=timezone.now())
    except Exception:
        logger.exception("account run %s: claim failed", account_run_id)
        return
    if account_run is None:
        logger.info(
            "account run %s: nothing to do (already taken, finished or cancelled)",
            account_run_id,
        )
        return
    attempt = account_run.attempt
    fields = {
        "run_id": account_run.run_id,
        "task_id": account_run.run.task_id,
        "account_run_id": account_run.pk,
        "account_id": account_run.account_id,
        "source_user": account_run.account.source_user,
        "worker": account_run.worker,
        "attempt": attempt,
    }
    logger.info("account run %s started", account_run.pk, extra={"event": "account.started", **fields})
    result, monitor = _copy_watched(account_run, attempt)
    why = _interruption(result, monitor)
    if why:
        # Stopped for the worker's sake, not by the operator: resumable, not judged by the breaker.
        result.outcome = Outcome.FAILED
        result.reason = f"{orchestrator.INTERRUPTED}: {why}; run the task again to resume"
    try:
        recorded = orchestrator.finish_account_run(
            account_run, attempt, result, now=timezone.now(), progress=monitor.latest, interrupted=why is not None
        )
    except Exception:
        # The row stays running without a heartbeat: the reaper finalises it as interrupted.
        logger.exception("account run %s: could not record its result", account_run_id)
        return
    if recorded:
        # Per-account overhead (issue 14, bench/many.py): job taken -> engine called, engine, engine -> recorded.
        ended = time.monotonic()
        called, returned = monitor.engine_called or ended, monitor.engine_returned or ended
        fields.update(
            before_copy_s=round(called - taken, 4),
            copy_s=round(returned - called, 4),
            after_copy_s=round(ended - returned, 4),
        )
        _log_finished(account_run.pk, result, fields)


def _copy_watched(account_run: AccountRun, attempt: int) -> tuple[AccountResult, JobMonitor]:
    """Run the copy with its heartbeat going; never raises (an error is the result)."""
    holder = slots.account_run_holder(account_run.pk, attempt)
    monitor = JobMonitor(account_run.pk, account_run.run_id, attempt, holder)
    monitor.start()
    try:
        result = _copy(account_run, attempt, monitor, holder)
    except Exception as exc:
        # Recorded on the AccountRun. The job must not raise, or django-q2 would deliver it again.
        logger.exception("account run %s failed", account_run.pk)
        result = AccountResult.failed(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        monitor.stop()
        with contextlib.suppress(Exception):
            slots.release(holder)
    return result, monitor


def _interruption(result: AccountResult, monitor: JobMonitor) -> str | None:
    """Why the copy stopped for the worker's sake (SIGTERM, its cluster's main process died, time limit),
    or None (done, failed, cancelled)."""
    if result.outcome != Outcome.CANCELLED or monitor.cancelled.is_set():
        return None  # finished by itself, or cancelled by the operator
    if monitor.terminated.is_set():
        # A SIGTERM from outside (a process manager stopping the whole group) is the reason, even when the
        # cluster's main process died of the same signal meanwhile (CI, 2026-12-02). The main process's death
        # is the reason when only it stopped the copy: the sentinel's stop event or the lifeline's own SIGTERM.
        told_to_stop = _SIGTERM_RECEIVED.is_set() and not lifeline.signalled_itself()
        if lifeline.main_gone() and not told_to_stop:
            return orchestrator.MAIN_PROCESS_DIED
        return orchestrator.STOPPED_BY_SIGTERM
    if monitor.timed_out.is_set():
        return f"{orchestrator.TIME_LIMIT_REACHED} ({time_limit_seconds() / 3600:.1f} h)"
    return None


def _log_finished(account_run_id: int, result: AccountResult, fields: dict) -> None:
    status = orchestrator.account_status(result)
    logger.info(
        "account run %s finished %s: %s copied, %s skipped, %s errors",
        account_run_id,
        status,
        result.copied,
        result.skipped,
        result.errors,
        extra={
            "event": "account.finished",
            **fields,
            "status": status,
            "copied": result.copied,
            "skipped": result.skipped,
            "errors": result.errors,
            "bytes": result.bytes,
            "reason": "" if status == AccountRun.Status.DONE else result.reason,
        },
    )


def _copy(account_run: AccountRun, attempt: int, monitor: JobMonitor, holder: str) -> AccountResult:
    try:
        needs, per_side = slot_needs(account_run)
    except slots.SlotsImpossible as exc:
        return AccountResult.failed(str(exc))
    monitor.waiting = True
    got = slots.acquire(needs, holder, give_up=monitor.should_stop)
    monitor.waiting = False
    if not got:
        return AccountResult(outcome=Outcome.CANCELLED, reason="cancelled before it started")
    task = account_run.run.task
    account = account_run.account  # loaded by the claim, with its task and endpoints
    source = account_mailbox(account, "source")
    destination = account_mailbox(account, "destination")
    del account
    store = FolderStateStore(
        account_run.account_id,
        account_run_id=account_run.pk,
        attempt=attempt,
        on_lost=monitor.lost.set,
    )
    monitor.engine_called = time.monotonic()
    try:
        return engine.copy_account(
            source,
            destination,
            state=store,
            folder_mapping=task.folder_mapping or None,
            on_progress=monitor.on_progress,
            should_stop=monitor.should_stop,
            connections=per_side,
        )
    finally:
        monitor.engine_returned = time.monotonic()


def test_account_job(account_id: int) -> None:
    """Test both logins of one account (the pages' "Test all"). Never raises."""
    try:
        test_account(Account(pk=account_id), slot_wait_seconds=BACKGROUND_TEST_SLOT_WAIT_SECONDS)
    except Account.DoesNotExist:
        logger.info("account %s: gone before its test ran", account_id)
    except Exception:
        logger.exception("account %s: connection test failed", account_id)


def enqueue_account_tests(task: Task, *, only_needing_test: bool = False) -> int:
    """Test the task's active (not parked) accounts in the background, or only the blocking ones
    (untested or failed: "Test untested and failed"); returns how many accounts that is.

    Returns at once: one fan-out job (fan_out_tests_job) enqueues a test_account_job per account, so
    "Test all" on 1,000 accounts does not wait for 1,000 enqueues. The account rows show the results
    as the jobs store them; the caller keeps the time it asked (its `until`) to see which are done.
    """
    count = _accounts_to_test(task.pk, only_needing_test=only_needing_test).count()
    q2.enqueue(q2.FAN_OUT_TESTS_JOB, task.pk, only_needing_test, task_name=f"test the accounts of task {task.pk}")
    return count


def _accounts_to_test(task_id: int, *, only_needing_test: bool):
    """The accounts "Test all" (active ones) or "Test untested and failed" (blocking ones) tests."""
    accounts = Account.objects.filter(task_id=task_id)
    return accounts.blocking() if only_needing_test else accounts.active()


def fan_out_tests_job(task_id: int, only_needing_test: bool = False) -> None:
    """Enqueue one test_account_job per account enqueue_account_tests chose (ids only). Never raises."""
    try:
        accounts = _accounts_to_test(task_id, only_needing_test=only_needing_test)
        ids = list(accounts.order_by("source_user").values_list("pk", flat=True))
        for pk in ids:
            q2.enqueue(q2.TEST_ACCOUNT_JOB, pk, task_name=f"test account {pk}")
    except Exception:
        logger.exception("task %s: could not enqueue its account tests", task_id)


def fan_out_run_job(run_id: int) -> None:
    """Enqueue the copy jobs of a run that start_run recorded (orchestrator.fan_out). Never raises: an
    account run left unqueued is enqueued by the reaper."""
    try:
        count = orchestrator.fan_out(run_id)
        logger.info("run %s: %s copy jobs enqueued", run_id, count)
    except Exception:
        logger.exception("run %s: could not enqueue its copy jobs; the reaper will", run_id)
