"""Starting, cancelling, finishing and reaping runs. The database is the truth; the broker only rings.

Every state change is a conditional UPDATE on the row's own columns, so two processes racing for
the same change (two starts, a duplicate job delivery, two jobs finishing at once, the reaper and a
late worker) see exactly one winner, on SQLite and on PostgreSQL:

- start_run claims the task (status not running -> running), backed by Run's partial unique
  constraint `one_running_run_per_task`.
- A job claims its AccountRun (queued -> running, attempt + 1); `attempt` is the fencing token on
  every later write of that job, so a worker that lost its lease changes nothing.
- Whoever finishes an AccountRun finalises the Run when it was the last active one, under a lock
  on the Run row (PostgreSQL) or SQLite's IMMEDIATE write lock, so that happens exactly once.
- The tick calls reap_stale(now): account runs whose heartbeat stopped are failed as
  "interrupted", jobs the broker lost are re-enqueued once, so no run stays running forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from runs import q2
from runs.engine.types import AccountResult, Outcome, Progress
from runs.models import AccountRun, Run
from scheduling import breaker  # the one call up the layers: see _after_run
from tasks import slots
from tasks.models import Account, Task
from tasks.wording import plural

logger = logging.getLogger(__name__)

# A running account run whose heartbeat is older than this is considered dead. Jobs beat about
# once a second, so this only needs to cover a stalled database or a long GC pause.
HEARTBEAT_LEASE_SECONDS = 90
# A queued account run whose job is not in the broker this long after it was enqueued is lost.
LOST_JOB_GRACE_SECONDS = 600
# The first word of the reason of an interrupted account run and of its run, for the operator. The
# programs read the `interrupted` field instead (resumed by the next run; the breaker ignores it).
INTERRUPTED = "interrupted"
# Why an account run was interrupted, as its reason says it (after "interrupted: "), and as its run's
# reason sums it up. One home for both, so the run can say what happened: a clean stop (SIGTERM) is
# not a dead worker.
STOPPED_BY_SIGTERM = "the worker was stopped (SIGTERM)"
MAIN_PROCESS_DIED = "the cluster's main process died, so its workers stopped"
TIME_LIMIT_REACHED = "the copy reached the job time limit"
WORKER_SILENT = "stopped answering"  # the reaper: "the worker <id> stopped answering since <time>"
JOB_LOST = "the job queue lost this account's job twice"
INTERRUPTION_CAUSES = {
    STOPPED_BY_SIGTERM: "stopped cleanly with their worker (SIGTERM)",
    MAIN_PROCESS_DIED: "stopped because their cluster's main process died",
    TIME_LIMIT_REACHED: "reached the job time limit",
    WORKER_SILENT: "lost their worker (it died or hung: no heartbeat)",
    JOB_LOST: "never started: the job queue lost their jobs",
}

# Account runs created, marked and pushed per round by start_run and fan_out.
FAN_OUT_BATCH = 500

MAX_STORED_MESSAGE_ERRORS = 1000
MAX_STORED_WARNINGS = 200

ACTIVE = (AccountRun.Status.QUEUED, AccountRun.Status.RUNNING)


class RunRefused(Exception):
    """A run cannot start; the message is meant for the user."""


class TaskAlreadyRunning(RunRefused):
    def __init__(self, task_id: int):
        super().__init__("This task is already running.")
        self.task_id = task_id


class NoAccounts(RunRefused):
    def __init__(self, task_id: int):
        super().__init__("This task has no accounts: add or import accounts first.")
        self.task_id = task_id


class AccountsNotTested(RunRefused):
    def __init__(self, task_id: int, users: list[str], total: int):
        shown = ", ".join(users[:5]) + (" and others" if len(users) > 5 else "")
        super().__init__(
            f"{len(users)} of {plural(total, 'active account')} have not passed the connection test on both sides "
            f"({shown}): test them, or park the ones that cannot be fixed now."
        )
        self.task_id = task_id
        self.users = users
        self.blocking = len(users)


class AllAccountsParked(RunRefused):
    def __init__(self, task_id: int):
        super().__init__("Every account of this task is parked: resume at least one first.")
        self.task_id = task_id


class NothingToRetry(RunRefused):
    def __init__(self, task_id: int):
        super().__init__("No active account failed, had errors or is new since the last run: nothing to retry.")
        self.task_id = task_id


# What a run takes: every active account, or only those to retry (runs.selection.accounts_to_retry).
ONLY_ALL = "all"
ONLY_FAILED = "failed"


# --- start ---------------------------------------------------------------------------------------


def start_run(task_id: int, *, trigger: Run.Trigger | str, now: datetime | None = None, only: str = ONLY_ALL) -> Run:
    """Start a run of the task: claim it, create the Run and one AccountRun per account it takes, enqueue the jobs.

    The run takes the task's active (not parked) accounts; with only="failed", only those whose last
    result was failed or had errors, or that no run has taken yet ("Run failed accounts", issue 12).
    Either way it starts only when every active account passed the connection test on both sides.
    Raises a RunRefused subclass (TaskAlreadyRunning, NoAccounts, AllAccountsParked, NothingToRetry,
    AccountsNotTested) with a message for the user, Task.DoesNotExist for an unknown task, and
    ValueError for an unknown `only`. The jobs are enqueued after commit.
    """
    from runs.selection import accounts_to_retry

    if only not in (ONLY_ALL, ONLY_FAILED):
        raise ValueError(f"unknown account selection {only!r}")
    now = now or timezone.now()
    with transaction.atomic():
        active = Account.objects.filter(task_id=task_id).active()
        untested = list(active.blocking().order_by("source_user").values_list("source_user", flat=True))
        active_count = active.count()
        taken = accounts_to_retry(task_id) if only == ONLY_FAILED else active
        accounts = list(taken.order_by("source_user").values_list("pk", flat=True))
        claimed = Task.objects.filter(pk=task_id).exclude(status=Task.Status.RUNNING).update(status=Task.Status.RUNNING)
        if claimed != 1:
            if not Task.objects.filter(pk=task_id).exists():
                raise Task.DoesNotExist(f"task {task_id} does not exist")
            raise TaskAlreadyRunning(task_id)
        # Refusals raise inside the transaction, so the claim above is rolled back with them.
        if not active_count:
            if Account.objects.filter(task_id=task_id).exists():
                raise AllAccountsParked(task_id)
            raise NoAccounts(task_id)
        if untested:
            raise AccountsNotTested(task_id, untested, active_count)
        if not accounts:
            raise NothingToRetry(task_id)
        try:
            with transaction.atomic():
                run = Run.objects.create(
                    task_id=task_id,
                    trigger=trigger,
                    status=Run.Status.RUNNING,
                    started_at=now,
                )
        except IntegrityError:
            # The task row said "not running" but a running Run exists (the constraint caught it).
            raise TaskAlreadyRunning(task_id) from None
        # enqueued_at/enqueues count the fan-out job's hand-over: the reaper's clock starts now.
        AccountRun.objects.bulk_create(
            (AccountRun(run=run, account_id=pk, enqueued_at=now, enqueues=1) for pk in accounts),
            batch_size=FAN_OUT_BATCH,
        )
        # After commit, so the job sees the rows. One job, however many accounts: the request that
        # starts a run of 1,000 accounts answers at once, not after 1,000 enqueues.
        run_id = run.pk
        transaction.on_commit(lambda: push_fan_out(run_id))
    logger.info(
        "run %s of task %s started (%s, %s accounts)",
        run.pk,
        task_id,
        trigger,
        len(accounts),
        extra={
            "event": "run.started",
            "run_id": run.pk,
            "task_id": task_id,
            "trigger": str(trigger),
            "accounts": len(accounts),
        },
    )
    return run


def push_fan_out(run_id: int) -> None:
    """Hand the run's fan-out job (runs.jobs.fan_out_run_job) to the broker.

    A push that fails is logged: the reaper enqueues account runs that were never enqueued once
    LOST_JOB_GRACE_SECONDS have passed, so the run still starts.
    """
    try:
        q2.enqueue(q2.FAN_OUT_RUN_JOB, run_id, task_name=f"start run {run_id}")
    except Exception:
        logger.exception("could not enqueue the start of run %s; the reaper will enqueue its accounts", run_id)


def fan_out(run_id: int) -> int:
    """Enqueue the copy job of every account run of the run still queued; returns how many.

    Called by runs.jobs.fan_out_run_job, in a worker. Account runs cancelled or already taken
    meanwhile are skipped; a job pushed twice (a second delivery of the fan-out job, or the reaper
    after a fan-out that waited too long) does nothing the second time (claim_account_run).
    """
    pushed, after = 0, 0
    while True:
        batch = list(
            AccountRun.objects.filter(run_id=run_id, status=AccountRun.Status.QUEUED, pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:FAN_OUT_BATCH]
        )
        if not batch:
            return pushed
        push_jobs(batch)
        pushed += len(batch)
        after = batch[-1]


def push_jobs(account_run_ids: Iterable[int]) -> None:
    """Hand one job per account run to the broker: ids only, never a password.

    A push that fails is logged and left to reap_stale, which re-enqueues lost jobs.
    """
    for pk in account_run_ids:
        try:
            q2.enqueue(q2.COPY_ACCOUNT_JOB, pk, task_name=f"copy account run {pk}")
        except Exception:
            logger.exception("could not enqueue account run %s; the reaper will retry", pk)


# --- cancel --------------------------------------------------------------------------------------


def cancel_run(run_id: int, *, now: datetime | None = None) -> bool:
    """Ask a running run to stop. Returns False when it is not running.

    Queued account runs end cancelled at once; running jobs notice within about a second and stop
    between batches, keeping in FolderState everything copied so far.
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != Run.Status.RUNNING:
            return False
        Run.objects.filter(pk=run_id).update(cancel_requested=True)
        AccountRun.objects.filter(run_id=run_id, status=AccountRun.Status.QUEUED).update(
            status=AccountRun.Status.CANCELLED,
            finished_at=now,
            last_error="cancelled before it started",
        )
        _finalise_if_complete(run_id, now)
    logger.info("run %s: cancel requested", run_id)
    return True


def running_run(task_id: int) -> Run | None:
    return Run.objects.filter(task_id=task_id, status=Run.Status.RUNNING).first()


# --- jobs: claim and finish ----------------------------------------------------------------------


def claim_account_run(account_run_id: int, *, worker: str, now: datetime) -> AccountRun | None:
    """Claim a queued account run for this worker; None when there is nothing to do.

    A second delivery of the same job, a job of a cancelled or finished run, or an id that no longer
    exists all give None. The returned row carries the new `attempt`, the job's fencing token, and
    its run, task, endpoints and account loaded.
    """
    with transaction.atomic():
        claimed = AccountRun.objects.filter(pk=account_run_id, status=AccountRun.Status.QUEUED).update(
            status=AccountRun.Status.RUNNING,
            attempt=F("attempt") + 1,
            worker=worker[:200],
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            current_folder="",
        )
        if claimed != 1:
            return None
        # Our UPDATE holds the row until commit, so this reads our own attempt number. The account comes
        # along (the job logs in with it), its task being the run's (one query for all a job reads).
        account_run = AccountRun.objects.select_related("run__task__source", "run__task__destination", "account").get(
            pk=account_run_id
        )
        account_run.account.task = account_run.run.task
        return account_run


_OUTCOME_STATUS = {
    Outcome.DONE: AccountRun.Status.DONE,
    Outcome.FAILED: AccountRun.Status.FAILED,
    Outcome.CANCELLED: AccountRun.Status.CANCELLED,
}


def account_status(result: AccountResult) -> str:
    """The AccountRun status an engine result is recorded with."""
    return _OUTCOME_STATUS[Outcome(result.outcome)]


def finish_account_run(
    account_run: AccountRun,
    attempt: int,
    result: AccountResult,
    *,
    now: datetime,
    progress: Progress | None = None,
    interrupted: bool = False,
) -> bool:
    """Record an account's outcome (fenced by `attempt`); the last account to finish finalises the run.

    `interrupted`: the copy stopped for the worker's sake (SIGTERM, time limit), not because of the
    account: it is resumed by the next run and the breaker does not count it. Returns False when the job had lost its claim (reaped, or cancelled and finalised meanwhile):
    then nothing is written.
    """
    status = _OUTCOME_STATUS[Outcome(result.outcome)]
    fields: dict = {
        "status": status,
        "copied": result.copied,
        "skipped": result.skipped,
        "errors": result.errors,
        "bytes": result.bytes,
        "finished_at": now,
        "heartbeat_at": now,
        "current_folder": "",
        "last_error": result.reason if status != AccountRun.Status.DONE else "",
        "message_errors": [asdict(e) for e in result.message_errors[:MAX_STORED_MESSAGE_ERRORS]],
        "warnings": [str(w) for w in result.warnings[:MAX_STORED_WARNINGS]],
        "source_messages": result.source_messages,
        "not_copied": {str(reason): n for reason, n in result.not_copied.items() if n},
        "not_copied_messages": result.not_copied_total,
        "altered": result.altered,
        "folder_totals": [
            {
                "source": f.source,
                "destination": f.destination,
                "source_messages": f.source_messages,
                "destination_messages": f.destination_messages,
                "copied": f.copied,
                "skipped": f.skipped,
                "altered": f.altered,
                "errors": f.errors,
                "bytes": f.bytes,
                "not_copied": {str(reason): n for reason, n in f.not_copied.items() if n},
                "deleted_at_destination": f.deleted_at_destination,
            }
            for f in result.folders
        ],
        "interrupted": interrupted,
    }
    if status == AccountRun.Status.CANCELLED and not fields["last_error"]:
        fields["last_error"] = "cancelled"
    if progress is not None:
        fields["total_messages"] = progress.total_messages
        fields["total_bytes"] = progress.total_bytes
    with transaction.atomic():
        _lock_run(account_run.run_id)
        written = AccountRun.objects.filter(
            pk=account_run.pk, attempt=attempt, status=AccountRun.Status.RUNNING
        ).update(**fields)
        if not written:
            logger.warning(
                "account run %s attempt %s: no longer ours, result dropped",
                account_run.pk,
                attempt,
            )
            return False
        _finalise_if_complete(account_run.run_id, now)
    return True


def _lock_run(run_id: int) -> None:
    # Serialises the finalisers of one run on PostgreSQL (a no-op on SQLite, where the IMMEDIATE
    # transaction already holds the database's write lock).
    list(Run.objects.select_for_update().filter(pk=run_id).values_list("pk"))


def _finalise_if_complete(run_id: int, now: datetime) -> Run | None:
    """Finalise the run if no account run is active any more. Call inside a transaction holding _lock_run."""
    if AccountRun.objects.filter(run_id=run_id, status__in=ACTIVE).exists():
        return None
    run = Run.objects.select_for_update().get(pk=run_id)
    if run.status != Run.Status.RUNNING:
        return None
    rows = AccountRun.objects.filter(run_id=run_id)
    totals = rows.aggregate(
        copied=Sum("copied"),
        skipped=Sum("skipped"),
        errors=Sum("errors"),
        bytes=Sum("bytes"),
        not_copied=Sum("not_copied_messages"),
        altered=Sum("altered"),
        accounts=Count("pk"),
        failed=Count("pk", filter=Q(status=AccountRun.Status.FAILED)),
        cancelled=Count("pk", filter=Q(status=AccountRun.Status.CANCELLED)),
        interrupted=Count("pk", filter=Q(status=AccountRun.Status.FAILED, interrupted=True)),
    )
    # Why the interrupted ones stopped (a second query: `interrupted` is also the name of a total above).
    totals.update(
        rows.filter(status=AccountRun.Status.FAILED, interrupted=True).aggregate(
            **{
                f"cause_{n}": Count("pk", filter=Q(last_error__contains=marker))
                for n, marker in enumerate(INTERRUPTION_CAUSES)
            }
        )
    )
    for key in ("copied", "skipped", "errors", "bytes", "not_copied", "altered"):
        setattr(run, key, totals[key] or 0)
    failures = list(
        rows.filter(status=AccountRun.Status.FAILED)
        .exclude(interrupted=True)
        .order_by("account__source_user")
        .values_list("account__source_user", "last_error")[:3]
    )
    run.status, run.reason = _verdict(run, totals, failures)
    run.interrupted = totals["interrupted"] > 0
    run.finished_at = now
    run.save(
        update_fields=[
            "status",
            "reason",
            "interrupted",
            "finished_at",
            "copied",
            "skipped",
            "errors",
            "bytes",
            "not_copied",
            "altered",
        ]
    )
    Task.objects.filter(pk=run.task_id, status=Task.Status.RUNNING).update(status=Task.Status(run.status))
    _after_run(run)
    logger.info(
        "run %s finished %s: %s copied, %s skipped, %s errors",
        run.pk,
        run.status,
        run.copied,
        run.skipped,
        run.errors,
        extra={
            "event": "run.finished",
            "run_id": run.pk,
            "task_id": run.task_id,
            "trigger": run.trigger,
            "status": run.status,
            "accounts": totals["accounts"],
            "failed_accounts": totals["failed"],
            "interrupted_accounts": totals["interrupted"],
            "copied": run.copied,
            "skipped": run.skipped,
            "errors": run.errors,
            "bytes": run.bytes,
            "seconds": round((now - run.started_at).total_seconds(), 1) if run.started_at else None,
            "reason": run.reason,
        },
    )
    return run


def _verdict(run: Run, totals: dict, failures: list[tuple[str, str]]) -> tuple[str, str]:
    accounts, failed = totals["accounts"], totals["failed"]
    interrupted, cancelled = totals["interrupted"], totals["cancelled"]
    if cancelled:
        return Run.Status.CANCELLED, "cancelled by the operator"
    if interrupted:
        causes = [
            f"{totals[f'cause_{n}']} {phrase}"
            for n, phrase in enumerate(INTERRUPTION_CAUSES.values())
            if totals[f"cause_{n}"]
        ]
        other = interrupted - sum(totals[f"cause_{n}"] for n in range(len(INTERRUPTION_CAUSES)))
        if other:
            causes.append(f"{other} for another reason")
        return (
            Run.Status.FAILED,
            f"{INTERRUPTED}: {interrupted} of {plural(accounts, 'account')} stopped without finishing "
            f"({', '.join(causes)}); run the task again to resume",
        )
    if failed:
        detail = "; ".join(f"{user}: {error}" for user, error in failures)
        more = " …" if failed > len(failures) else ""
        return (
            Run.Status.FAILED,
            f"{failed} of {plural(accounts, 'account')} failed: {detail}{more}",
        )
    not_copied = run.not_copied
    if not_copied:
        return Run.Status.DONE, f"{not_copied} message{'s' if not_copied != 1 else ''} not copied"
    if run.errors:
        return Run.Status.DONE, f"{plural(run.errors, 'message')} could not be copied"
    return Run.Status.DONE, ""


def _after_run(run: Run) -> None:
    # The one import up the layers (runs -> scheduling), kept as an explicit call rather than a registered
    # hook: the breaker must run inside the transaction that finalises the run, so the run's final state
    # and the switched-off schedule commit together or not at all, and a reader of this function sees that
    # it happens. A hook (a signal) would hide both. The import contract (pyproject.toml) allows this one
    # import and no other. A bug in the breaker must not keep the run running forever, so it runs in a
    # savepoint and its failure is logged.
    try:
        with transaction.atomic():
            breaker.after_run(run)
    except Exception:
        logger.exception("breaker failed after run %s", run.pk)


# --- recovery ------------------------------------------------------------------------------------


def reap_stale(now: datetime) -> int:
    """Recover from dead workers and lost jobs; returns how many account runs were failed.

    - running with a heartbeat older than the lease: failed, "interrupted: ..."; the run is
      finalised when it was the last one, and the task is free again;
    - queued while its job is in no broker queue long after it was enqueued: re-enqueued once,
      then failed, "interrupted: ...";
    - a run left running with nothing active (should not happen) is finalised.
    """
    reaped = 0
    lease_cutoff = now - timedelta(seconds=HEARTBEAT_LEASE_SECONDS)
    stale = AccountRun.objects.filter(status=AccountRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=lease_cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=lease_cutoff)
    )
    for pk, attempt, run_id, heartbeat_at, worker in stale.values_list(
        "pk", "attempt", "run_id", "heartbeat_at", "worker"
    ):
        since = f" since {heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if heartbeat_at else ""
        reason = (
            f"{INTERRUPTED}: the worker {worker or '(unknown)'} {WORKER_SILENT}{since}; run the task again to resume"
        )
        if _fail_account_run(pk, run_id, now, reason, attempt=attempt):
            reaped += 1
            logger.warning(
                "account run %s reaped: %s",
                pk,
                reason,
                extra={
                    "event": "account.finished",
                    "run_id": run_id,
                    "account_run_id": pk,
                    "worker": worker,
                    "status": AccountRun.Status.FAILED,
                    "reason": reason,
                },
            )
        slots.release_account_run(pk)
    reaped += _reap_lost_jobs(now)
    orphans = (
        Run.objects.filter(status=Run.Status.RUNNING)
        .exclude(Exists(AccountRun.objects.filter(run_id=OuterRef("pk"), status__in=ACTIVE)))
        .values_list("pk", flat=True)
    )
    for run_id in list(orphans):
        with transaction.atomic():
            _lock_run(run_id)
            _finalise_if_complete(run_id, now)
    _free_orphan_tasks()
    return reaped


def _fail_account_run(pk: int, run_id: int, now: datetime, reason: str, *, attempt: int | None = None) -> bool:
    """Fail an account run as interrupted (its worker died, or its job was lost): resumable, not judged."""
    with transaction.atomic():
        _lock_run(run_id)
        rows = AccountRun.objects.filter(pk=pk)
        if attempt is None:
            rows = rows.filter(status=AccountRun.Status.QUEUED)
        else:
            rows = rows.filter(attempt=attempt, status=AccountRun.Status.RUNNING)
        if not rows.update(
            status=AccountRun.Status.FAILED,
            finished_at=now,
            last_error=reason,
            interrupted=True,
            current_folder="",
        ):
            return False
        _finalise_if_complete(run_id, now)
    return True


def _reap_lost_jobs(now: datetime) -> int:
    cutoff = now - timedelta(seconds=LOST_JOB_GRACE_SECONDS)
    candidates = list(
        AccountRun.objects.filter(status=AccountRun.Status.QUEUED, run__status=Run.Status.RUNNING)
        .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, run__started_at__lt=cutoff))
        .values_list("pk", "run_id", "enqueued_at", "enqueues")
    )
    if not candidates:
        return 0
    pending = q2.pending_job_ids()
    starting = q2.pending_fan_out_run_ids()
    if pending is None or starting is None:
        return 0  # the broker cannot be read: decide nothing
    # With Redis, a worker may hold a few jobs it has popped but not started (waiting for a free
    # worker). While some account is being copied, a job missing from the broker may be one of
    # those, so it is re-enqueued (a duplicate delivery does nothing) but not failed.
    busy = AccountRun.objects.filter(status=AccountRun.Status.RUNNING).exists()
    failed = 0
    for pk, run_id, enqueued_at, enqueues in candidates:
        if pk in pending or run_id in starting:
            continue  # its job, or its run's fan-out job, is waiting in the broker
        if enqueues < 2:
            again = AccountRun.objects.filter(pk=pk, status=AccountRun.Status.QUEUED, enqueued_at=enqueued_at).update(
                enqueued_at=now, enqueues=F("enqueues") + 1
            )
            if again:
                logger.warning("account run %s: its job is not in the queue, enqueued again", pk)
                push_jobs([pk])
        elif not busy:
            reason = f"{INTERRUPTED}: {JOB_LOST}; is `manage.py qcluster` running? Run the task again to resume"
            if _fail_account_run(pk, run_id, now, reason):
                failed += 1
                logger.warning("account run %s failed: %s", pk, reason)
    return failed


def _free_orphan_tasks() -> None:
    # A task marked running with no running run (only after a manual database edit): give it the
    # status of its last run, so it can start again.
    orphans = Task.objects.filter(status=Task.Status.RUNNING).exclude(
        Exists(Run.objects.filter(task_id=OuterRef("pk"), status=Run.Status.RUNNING))
    )
    for task_id in list(orphans.values_list("pk", flat=True)):
        last = Run.objects.filter(task_id=task_id).newest_first().values_list("status", flat=True).first()
        Task.objects.filter(pk=task_id, status=Task.Status.RUNNING).exclude(
            Exists(Run.objects.filter(task_id=OuterRef("pk"), status=Run.Status.RUNNING))
        ).update(status=last or Task.Status.IDLE)
