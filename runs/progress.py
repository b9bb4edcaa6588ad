"""Live progress of a run for the pages and `runtask --wait`: two queries, whatever the number of accounts.

Counters come from the AccountRun rows the jobs write about once a second; rate and ETA are
derived from them and the rows' timestamps. Account passwords are never loaded (the account
columns are read with values()).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from runs.models import AccountRun, Run
from tasks.models import Task

WAITING_FOR_SLOTS = "waiting for a free connection"  # runs.jobs writes it as the folder

_FIELDS = (
    "pk",
    "account_id",
    "account__source_user",
    "account__destination_user",
    "status",
    "current_folder",
    "copied",
    "skipped",
    "errors",
    "bytes",
    "total_messages",
    "total_bytes",
    "last_error",
    "worker",
    "started_at",
    "finished_at",
    "heartbeat_at",
)


def percent(done: int, total_messages: int) -> int | None:
    """Progress in whole percent (rounded down): messages dealt with out of those found so far.

    `done` counts copied, skipped and failed messages alike (a failed message is dealt with: it is in
    the report). The total grows while the source is scanned, so it is at least `done`. None while
    nothing is known. The one rule for every progress bar: task list, task page, run report.
    """
    total = max(total_messages, done)
    return min(100, 100 * done // total) if total else None


def running_run_progress() -> dict[str, Subquery]:
    """Annotations for a Task queryset: `done_messages` and `total_messages` of its running run (or None).

    The same sums as RunProgress (done and total per account, then summed), in SQL, for the task list.
    """
    running = (
        AccountRun.objects.filter(run__task=OuterRef("pk"), run__status=Run.Status.RUNNING)
        .order_by()
        .values("run__task")
    )
    done = F("copied") + F("skipped") + F("errors")
    return {
        "done_messages": Subquery(running.annotate(n=Sum(done)).values("n")[:1]),
        "total_messages": Subquery(running.annotate(n=Sum(Greatest("total_messages", done))).values("n")[:1]),
    }


@dataclass
class AccountProgress:
    account_run_id: int
    account_id: int
    source_user: str
    destination_user: str
    status: str
    folder: str
    waiting: bool  # running, waiting for a connection slot
    copied: int
    skipped: int
    errors: int
    bytes: int
    total_messages: int  # found on the source so far; grows while folders are scanned
    total_bytes: int
    last_error: str
    worker: str
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    rate: float | None  # messages copied per second
    byte_rate: float | None  # bytes copied per second
    eta_seconds: int | None

    @property
    def done(self) -> int:
        return self.copied + self.skipped + self.errors

    @property
    def total(self) -> int:
        return max(self.total_messages, self.done)

    @property
    def percent(self) -> int | None:
        """None while nothing is known about the source (queued, connecting, failed to log in)."""
        if self.status == AccountRun.Status.DONE:
            return 100
        if not self.total_messages:
            return None
        return percent(self.done, self.total_messages)

    @property
    def megabytes(self) -> float:
        return self.bytes / 1_000_000

    @property
    def is_active(self) -> bool:
        return self.status in (AccountRun.Status.QUEUED, AccountRun.Status.RUNNING)

    @property
    def status_display(self) -> str:
        return AccountRun.Status(self.status).label


@dataclass
class RunProgress:
    run: Run
    accounts: list[AccountProgress]
    queued: int
    running: int
    finished: int
    copied: int
    skipped: int
    errors: int
    bytes: int
    total_messages: int
    rate: float | None
    byte_rate: float | None
    eta_seconds: int | None  # None while accounts wait in the queue (their size is unknown)

    @property
    def done(self) -> int:
        return self.copied + self.skipped + self.errors

    @property
    def percent(self) -> int | None:
        if not self.run.is_running and self.run.status == Run.Status.DONE:
            return 100
        return percent(self.done, self.total_messages)

    @property
    def megabytes(self) -> float:
        return self.bytes / 1_000_000


def _rates(row: dict, now: datetime) -> tuple[float | None, float | None]:
    started = row["started_at"]
    if started is None:
        return None, None
    end = row["finished_at"] or row["heartbeat_at"] or now
    elapsed = (end - started).total_seconds()
    if elapsed <= 0:
        return None, None
    return row["copied"] / elapsed, row["bytes"] / elapsed


def _account(row: dict, now: datetime) -> AccountProgress:
    rate, byte_rate = _rates(row, now)
    running = row["status"] == AccountRun.Status.RUNNING
    waiting = running and row["current_folder"] == WAITING_FOR_SLOTS
    done = row["copied"] + row["skipped"] + row["errors"]
    eta = None
    if running and not waiting and rate:
        eta = int(max(row["total_messages"] - done, 0) / rate)
    return AccountProgress(
        account_run_id=row["pk"],
        account_id=row["account_id"],
        source_user=row["account__source_user"],
        destination_user=row["account__destination_user"],
        status=row["status"],
        folder="" if waiting else row["current_folder"],
        waiting=waiting,
        copied=row["copied"],
        skipped=row["skipped"],
        errors=row["errors"],
        bytes=row["bytes"],
        total_messages=row["total_messages"],
        total_bytes=row["total_bytes"],
        last_error=row["last_error"],
        worker=row["worker"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        heartbeat_at=row["heartbeat_at"],
        rate=rate,
        byte_rate=byte_rate,
        eta_seconds=eta,
    )


def run_progress(run: Run | int, *, now: datetime | None = None) -> RunProgress:
    """Counters, current folder, rate and ETA of every account of a run, and the run's totals.

    Two queries: the run (re-read, so a finished run shows its final state) and its account runs.
    """
    now = now or timezone.now()
    run_id = run.pk if isinstance(run, Run) else run
    run = Run.objects.select_related("task").get(pk=run_id)
    rows = AccountRun.objects.filter(run_id=run_id).order_by("account__source_user", "pk").values(*_FIELDS)
    accounts = [_account(row, now) for row in rows]
    running = [a for a in accounts if a.status == AccountRun.Status.RUNNING]
    queued = sum(a.status == AccountRun.Status.QUEUED for a in accounts)
    active_rates = [a.rate for a in running if a.rate]
    eta = None
    if run.is_running and not queued and running:
        etas = [a.eta_seconds for a in running]
        if all(e is not None for e in etas):
            eta = max(etas)
    return RunProgress(
        run=run,
        accounts=accounts,
        queued=queued,
        running=len(running),
        finished=len(accounts) - queued - len(running),
        copied=sum(a.copied for a in accounts),
        skipped=sum(a.skipped for a in accounts),
        errors=sum(a.errors for a in accounts),
        bytes=sum(a.bytes for a in accounts),
        total_messages=sum(a.total for a in accounts),
        rate=sum(active_rates) if active_rates else None,
        byte_rate=sum(a.byte_rate for a in running if a.byte_rate) or None,
        eta_seconds=eta,
    )


# A big run lists only the accounts worth watching (running, failed) in the live panel.
PANEL_ALL_ACCOUNTS_UP_TO = 50
PANEL_MAX_ROWS = 200


def progress_context(run: Run | None, now: datetime) -> dict:
    """What the live progress panel of a run shows: the run, its progress, the accounts worth listing."""
    if run is None:
        return {"run": None, "progress": None}
    progress = run_progress(run, now=now)
    shown = progress.accounts
    if len(shown) > PANEL_ALL_ACCOUNTS_UP_TO:
        watch = (AccountRun.Status.RUNNING, AccountRun.Status.FAILED, AccountRun.Status.CANCELLED)
        shown = [a for a in shown if a.status in watch][:PANEL_MAX_ROWS]
    return {
        "run": progress.run,
        "progress": progress,
        "shown_accounts": shown,
        "hidden_accounts": len(progress.accounts) - len(shown),
    }


def run_panel_context(task: Task, now: datetime) -> dict:
    """What the task page's run panel shows: the latest run, its accounts' progress, earlier runs."""
    recent = list(Run.objects.filter(task=task).newest_first()[:6])
    return {
        **progress_context(recent[0] if recent else None, now),
        "recent_runs": recent[1:],
    }
