"""Live progress of a run for the pages and `runtask --wait`: two queries, whatever the number of accounts.

Counters come from the AccountRun rows the jobs write about once a second; rate and ETA are
derived from them and the rows' timestamps. Account passwords are never loaded (the account
columns are read with values()).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, OuterRef, Subquery, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from runs.engine.types import NotCopied
from runs.models import AccountRun, Run
from tasks.models import Task
from tasks.wording import plural

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
    "not_copied_messages",
    "source_messages",
    "last_error",
    "worker",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "interrupted",
)


def percent(done: int, total_messages: int) -> int | None:
    """One account's progress in whole percent (rounded down): messages dealt with out of those found so far.

    `done` counts copied, skipped and not-copied messages alike (a message not copied is dealt with:
    the report says why). Rounded down, so 100 only when all of the total is done. The total grows while
    the source is scanned, so it is at least `done`. None while nothing is known. The rule for an
    account's bar and for a finished run's bar; a running run's bar counts accounts (overall_percent).
    """
    total = max(total_messages, done)
    return min(100, 100 * done // total) if total else None


def running_run_progress() -> dict[str, Subquery]:
    """Annotations for a Task queryset, about its running run (None when none runs): `run_accounts`,
    `run_finished` (accounts no longer queued or running), `running_accounts`, and `running_done` /
    `running_total`, the messages dealt with and known within the running accounts. task_percent()
    turns them into the same bar as RunProgress.percent, in SQL for the task list.
    """
    rows = AccountRun.objects.filter(run__task=OuterRef("pk"), run__status=Run.Status.RUNNING).order_by()
    running = rows.filter(status=AccountRun.Status.RUNNING)
    done = F("copied") + F("skipped") + F("not_copied_messages")

    def total(queryset: object, value: object) -> Subquery:
        return Subquery(queryset.values("run__task").annotate(n=value).values("n")[:1])

    return {
        "run_accounts": total(rows, Count("pk")),
        "run_finished": total(
            rows.exclude(status__in=[AccountRun.Status.QUEUED, AccountRun.Status.RUNNING]), Count("pk")
        ),
        "running_accounts": total(running, Count("pk")),
        "running_done": total(running, Sum(done)),
        "running_total": total(running, Sum(Greatest("total_messages", done))),
    }


def task_percent(task: object) -> int | None:
    """The running run's bar for a task annotated by running_run_progress() (overall_percent, the running
    accounts' share taken from their summed messages). None when nothing runs."""
    if not task.run_accounts:
        return None
    running = task.running_accounts or 0
    share = (task.running_done or 0) / task.running_total if task.running_total else 0.0
    return overall_percent(accounts=task.run_accounts, finished=task.run_finished or 0, running_parts=[share] * running)


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
    not_copied: int  # source messages counted as not copied (any reason)
    source_messages: int | None  # once finished: messages on the source; None: mailbox not (fully) read
    last_error: str
    worker: str
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    rate: float | None  # messages copied per second
    byte_rate: float | None  # bytes copied per second
    eta_seconds: int | None
    interrupted: bool = False  # stopped for the worker's sake (run_status.shows_interrupted)

    @property
    def arrived(self) -> int:
        """Source messages at the destination: copied now or already there."""
        return self.copied + self.skipped

    @property
    def done(self) -> int:
        """Source messages dealt with: arrived, or counted as not copied."""
        return self.arrived + self.not_copied

    @property
    def total(self) -> int:
        return max(self.total_messages, self.done)

    @property
    def percent(self) -> int | None:
        """Share of the source dealt with while running; once ended, the share that arrived.

        None while nothing is known about the source (queued, connecting, failed to log in). A
        finished account shows 100 only when every source message it found is at the destination.
        """
        if self.is_active:
            return percent(self.done, self.total_messages) if self.total_messages else None
        if not self.total:
            return 100 if self.status == AccountRun.Status.DONE else None
        return percent(self.arrived, self.total)

    @property
    def megabytes(self) -> float:
        return self.bytes / 1_000_000

    @property
    def is_active(self) -> bool:
        return self.status in (AccountRun.Status.QUEUED, AccountRun.Status.RUNNING)

    @property
    def status_display(self) -> str:
        return AccountRun.Status(self.status).label


def overall_percent(*, accounts: int, finished: int, running_parts: list[float]) -> int | None:
    """How far a run is, 0-100, driven by accounts (issue 12, item 7).

    Each finished account counts 1; each running account counts the share of its messages known so
    far that it has done (`running_parts`, each 0..1), at most 0.99 until it finishes; queued accounts
    count 0. Messages "found so far" alone would show 99 % with a quarter of the accounts done.
    None for a run without accounts.
    """
    if accounts <= 0:
        return None
    partial = sum(min(max(part, 0.0), 0.99) for part in running_parts)
    return min(100, int(100 * (finished + partial) / accounts))


def run_eta_seconds(*, accounts: int, finished: int, elapsed_seconds: float) -> int | None:
    """Whole-run ETA from the account rate: remaining accounts / (finished accounts / elapsed).

    None until an account has finished (no rate yet) or when nothing remains.
    """
    remaining = accounts - finished
    if finished <= 0 or remaining <= 0 or elapsed_seconds <= 0:
        return None
    return int(remaining * elapsed_seconds / finished)


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
    eta_seconds: int | None  # whole run: from the account rate, or the running accounts' own ETAs
    percent: int | None = None  # while running overall_percent(); once ended, the share that arrived
    not_copied: int = 0

    @property
    def arrived(self) -> int:
        return self.copied + self.skipped

    @property
    def done(self) -> int:
        return self.arrived + self.not_copied

    @property
    def summary(self) -> str:
        """What the bar counts, in words: "132 of 500 accounts; 2 running; 366 waiting"."""
        text = f"{self.finished:,} of {plural(len(self.accounts), 'account')}"
        if self.running:
            text += f"; {self.running:,} running"
        if self.queued:
            text += f"; {self.queued:,} waiting"
        return text

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
    done = row["copied"] + row["skipped"] + row["not_copied_messages"]
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
        not_copied=row["not_copied_messages"],
        source_messages=row["source_messages"],
        last_error=row["last_error"],
        worker=row["worker"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        heartbeat_at=row["heartbeat_at"],
        rate=rate,
        byte_rate=byte_rate,
        eta_seconds=eta,
        interrupted=row["interrupted"],
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
    finished = len(accounts) - queued - len(running)
    eta = None
    if run.is_running:
        eta = run_eta_seconds(
            accounts=len(accounts), finished=finished, elapsed_seconds=(now - run.started_at).total_seconds()
        )
        if eta is None and not queued and running:
            etas = [a.eta_seconds for a in running]
            if all(e is not None for e in etas):
                eta = max(etas)
    not_copied = sum(a.not_copied for a in accounts)
    total_messages = sum(a.total for a in accounts)
    if run.is_running:
        # Driven by accounts (issue 12): messages found so far alone would say 99 % early on.
        parts = [a.done / a.total_messages if a.total_messages else 0.0 for a in running]
        overall = overall_percent(accounts=len(accounts), finished=finished, running_parts=parts)
    else:
        # Ended: the share of the source that arrived, so 100 only when every message is there (issue 11).
        arrived = sum(a.arrived for a in accounts)
        total = max(total_messages, arrived + not_copied)
        overall = percent(arrived, total) if total else (100 if run.status == Run.Status.DONE else None)
    return RunProgress(
        run=run,
        accounts=accounts,
        queued=queued,
        running=len(running),
        finished=finished,
        copied=sum(a.copied for a in accounts),
        skipped=sum(a.skipped for a in accounts),
        errors=sum(a.errors for a in accounts),
        bytes=sum(a.bytes for a in accounts),
        total_messages=total_messages,
        rate=sum(active_rates) if active_rates else None,
        byte_rate=sum(a.byte_rate for a in running if a.byte_rate) or None,
        eta_seconds=eta,
        percent=overall,
        not_copied=not_copied,
    )


# ------------------------------------------------------------------------ the report's summary

MAILBOX_NOT_READ = "mailbox not read"
DELETED_AT_DESTINATION = "deleted at the destination after they were copied (not copied again)"
UNACCOUNTED = "not accounted for"  # a finished account whose counts do not add up (never expected)


@dataclass
class FolderShortfall:
    """A folder whose destination does not hold every source message (or was not counted)."""

    account: str
    folder: str
    destination: str | None
    source_messages: int | None
    destination_messages: int | None
    arrived: int
    not_copied: dict[str, int]
    account_id: int | None = None  # links to the account-run page


@dataclass
class RunSummary:
    """Where every source message of a run ended up: the report's summary (issue 11 case 10).

    Each source message counts once: arrived (copied or already there), deleted at the destination
    after an earlier run copied it (not copied again), or not copied by reason.
    Accounts whose mailbox was not read at all are listed by name in `unread_accounts`, their
    messages being unknown. `complete` is only True when the run is done, every account was read,
    nothing was left out, nothing was stored altered, and every folder's destination count (plus its
    messages deleted at the destination) is at least its source count.
    """

    source_messages: int
    copied: int
    already_there: int
    altered: int  # landed, but stored differently from what was sent (apart from copied)
    not_copied: dict[str, int]
    unread_accounts: list[str]
    shortfalls: list[FolderShortfall]
    complete: bool
    deleted_at_destination: int = 0  # copied by an earlier run, deleted at the destination since

    @property
    def arrived(self) -> int:
        return self.copied + self.already_there + self.altered

    @property
    def deleted_sentence(self) -> str:
        """The deleted-at-destination count in words, "" when there is none."""
        if not self.deleted_at_destination:
            return ""
        return f"{plural(self.deleted_at_destination, 'message')} {DELETED_AT_DESTINATION}"

    @property
    def not_copied_total(self) -> int:
        return sum(self.not_copied.values())

    @property
    def sentence(self) -> str:
        if self.complete and not self.deleted_at_destination:
            return (
                f"Every message was copied or already there: {self.arrived} of {self.source_messages} "
                "source messages are at the destination."
            )
        parts = [f"{self.arrived} of {self.source_messages} source messages are at the destination"]
        if self.deleted_at_destination:
            parts.append(self.deleted_sentence)
        if self.altered:
            parts.append(f"{self.altered} of them stored altered by the destination (see the warnings)")
        if self.not_copied:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.not_copied.items()))
            parts.append(f"{self.not_copied_total} not copied ({reasons})")
        if self.unread_accounts:
            count = len(self.unread_accounts)
            parts.append(
                f"{MAILBOX_NOT_READ} for {count} account{'s' if count != 1 else ''}: {', '.join(self.unread_accounts[:5])}{' …' if count > 5 else ''}"
            )
        if self.shortfalls and not self.not_copied:
            parts.append(f"{len(self.shortfalls)} folder(s) hold fewer messages at the destination than at the source")
        return "; ".join(parts) + "."


def folder_arrived(folder: dict) -> int:
    """Messages of one AccountRun.folder_totals entry that are at the destination after the run:
    copied, already there, and landed altered."""
    return folder.get("copied", 0) + folder.get("skipped", 0) + folder.get("altered", 0)


def folder_deleted(folder: dict) -> int:
    """Messages of one AccountRun.folder_totals entry that an earlier run copied and someone deleted
    at the destination since (not copied again; 0 in entries written before this was counted)."""
    return int(folder.get("deleted_at_destination") or 0)


def folder_is_short(folder: dict) -> bool:
    """Whether one AccountRun.folder_totals entry (of a folder the mapping copies) is not complete:
    the source was not read or the destination not counted, the destination holds fewer messages
    than the source, or fewer messages arrived than the source holds. Messages deleted at the
    destination after they were copied (folder_deleted) count as dealt with: a one-way copy does
    not bring them back."""
    src, dst = folder.get("source_messages"), folder.get("destination_messages")
    deleted = folder_deleted(folder)
    return src is None or dst is None or dst + deleted < src or folder_arrived(folder) + deleted < src


_SUMMARY_FIELDS = (
    "account_id",
    "account__source_user",
    "status",
    "copied",
    "skipped",
    "altered",
    "total_messages",
    "source_messages",
    "not_copied",
    "not_copied_messages",
    "folder_totals",
)


def run_summary(run: Run | int) -> RunSummary:
    """Account for every source message of a run (one query). Never loads a password."""
    run_id = run.pk if isinstance(run, Run) else run
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).get()
    rows = AccountRun.objects.filter(run_id=run_id).order_by("account__source_user", "pk").values(*_SUMMARY_FIELDS)
    source = copied = skipped = altered = deleted = 0
    not_copied: dict[str, int] = {}
    unread: list[str] = []
    shortfalls: list[FolderShortfall] = []

    def add(reason: str, count: int) -> None:
        if count > 0:
            not_copied[reason] = not_copied.get(reason, 0) + count

    for row in rows:
        user = row["account__source_user"]
        arrived = row["copied"] + row["skipped"] + row["altered"]
        altered += row["altered"]
        copied += row["copied"]
        skipped += row["skipped"]
        for reason, count in (row["not_copied"] or {}).items():
            add(reason, int(count))
        gone = sum(folder_deleted(f) for f in row["folder_totals"] or [])
        deleted += gone
        counted = arrived + gone + row["not_copied_messages"]
        known = row["source_messages"]
        if known is None:
            # Not read to the end (login refused, interrupted, failed midway, queued when cancelled):
            # what was found so far is known, the rest of the mailbox is not.
            known = max(row["total_messages"], counted)
            if row["status"] != AccountRun.Status.DONE:  # a done account without the count ran before it was kept
                unread.append(user)
            add(NotCopied.NOT_ATTEMPTED.value, known - counted)
        else:
            add(UNACCOUNTED, known - counted)
        source += known
        for folder in row["folder_totals"] or []:
            if folder.get("destination") is None:
                continue  # skipped by the folder mapping
            if folder_is_short(folder):
                shortfalls.append(
                    FolderShortfall(
                        account=user,
                        folder=folder.get("source", ""),
                        destination=folder.get("destination"),
                        source_messages=folder.get("source_messages"),
                        destination_messages=folder.get("destination_messages"),
                        arrived=folder_arrived(folder),
                        not_copied=folder.get("not_copied") or {},
                        account_id=row["account_id"],
                    )
                )
    complete = status == Run.Status.DONE and not unread and not not_copied and not shortfalls and not altered
    return RunSummary(
        source_messages=source,
        copied=copied,
        already_there=skipped,
        altered=altered,
        not_copied=not_copied,
        unread_accounts=unread,
        shortfalls=shortfalls,
        complete=complete,
        deleted_at_destination=deleted,
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
