"""Scheduling rules shared by the pages, the JSON API and the tick: plain functions, `now` passed in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, IntegerField, Max, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from runs.models import Run
from scheduling.jobs import last_tick_at
from scheduling.notifications.events import Event, announce
from scheduling.timing import next_run_at
from tasks.models import Account, ScheduleInterval, Task
from tasks.wording import plural

logger = logging.getLogger(__name__)

SCHEDULE_REFUSED_MESSAGE = "all accounts must pass connection tests before scheduling"
# The tick runs about every 30 s; this long without one means nothing drives it.
TICK_STALE_SECONDS = 150


class ScheduleRefused(Exception):
    """Enabling a schedule was refused; the message is meant for the operator."""

    def __init__(self, message: str = SCHEDULE_REFUSED_MESSAGE) -> None:
        super().__init__(message)
        self.message = message
        self.blocking = 0  # active accounts that need a test
        self.detail = ""  # "10 of 500 active accounts need a test"


def is_preset(seconds: object) -> bool:
    """Whether `seconds` is one of the six schedule presets (bools are not numbers here)."""
    return isinstance(seconds, int) and not isinstance(seconds, bool) and seconds in ScheduleInterval.values


def presets_phrase() -> str:
    """The presets in words for an error message: "0, 3600, 10800, 21600, 43200 or 86400" (from the choices)."""
    values = [str(v) for v in ScheduleInterval.values]
    return ", ".join(values[:-1]) + " or " + values[-1]


def accounts_ready(task_id: int) -> bool:
    """At least one active (not parked) account, and every active account tested ok on both sides."""
    accounts = Account.objects.filter(task_id=task_id).active()
    return accounts.exists() and not accounts.blocking().exists()


def refusal(task_id: int) -> ScheduleRefused:
    """The refusal of enabling the schedule, naming how many active accounts block it."""
    active = Account.objects.filter(task_id=task_id).active()
    blocking, total = active.blocking().count(), active.count()
    if not total:
        detail = "the task has no active accounts" if Account.objects.filter(task_id=task_id).exists() else ""
    else:
        detail = f"{blocking} of {plural(total, 'active account')} need a test"
    refused = ScheduleRefused()
    refused.blocking, refused.detail = blocking, detail
    return refused


def set_schedule(task: Task, seconds: int, *, now: datetime) -> Task:
    """Set the task's schedule to a preset (0 = off) and return the task as saved.

    Enabling needs at least one account and every account tested ok on both sides, otherwise it
    raises ScheduleRefused and changes nothing. Enabling stamps the anchor (the first scheduled run is
    one interval later); any explicit change clears `broken` and the waiting mark; switching off is
    always allowed. ValueError for a value that is not a preset.
    """
    if not is_preset(seconds):
        raise ValueError(f"not a schedule preset: {seconds!r}")
    with transaction.atomic():
        fields: dict[str, object] = {
            "schedule_interval_seconds": seconds,
            "broken": False,
            "schedule_waiting_accounts": None,
        }
        if seconds > 0:
            if not accounts_ready(task.pk):
                raise refusal(task.pk)
            fields["schedule_anchor"] = now
        Task.objects.filter(pk=task.pk).update(**fields)
    for name, value in fields.items():
        setattr(task, name, value)
    return task


def with_last_finished(queryset: QuerySet[Task]) -> QuerySet[Task]:
    """Annotate each task with `last_finished_at`, its latest finished run, in the same query."""
    return queryset.annotate(last_finished_at=Max("runs__finished_at"))


def with_schedule_facts(queryset: QuerySet[Task]) -> QuerySet[Task]:
    """Annotate tasks with what schedule_state() needs: `last_finished_at`, `account_count`, `blocking_count`.

    Subqueries, so a list of tasks costs one query whatever its length.
    """

    def count(accounts: QuerySet[Account]) -> Coalesce:
        counted = accounts.filter(task=OuterRef("pk")).order_by().values("task").annotate(n=Count("pk")).values("n")
        return Coalesce(Subquery(counted, output_field=IntegerField()), 0)

    return with_last_finished(queryset).annotate(
        account_count=count(Account.objects.active()),
        blocking_count=count(Account.objects.blocking()),
    )


def next_run_for(task: Task) -> datetime | None:
    """The task's next scheduled start, or None. Uses `last_finished_at` when annotated."""
    if not task.schedule_on or task.is_running:
        return None
    # A list view annotates last_finished_at (with_last_finished) to save a query per task.
    annotated = hasattr(task, "last_finished_at")
    last_finished = task.last_finished_at if annotated else last_finished_at(task.pk)
    return next_run_at(
        interval_seconds=task.schedule_interval_seconds,
        anchor=task.schedule_anchor,
        last_finished_at=last_finished,
        running=task.is_running,
        broken=task.broken,
    )


@dataclass(frozen=True)
class ScheduleState:
    """What a task's schedule is doing, for the task list, the task page and the API.

    `state`: "off", "broken" (the breaker switched it off), "waiting" (on, but it cannot start: some
    accounts need a connection test, or there are none), or "on". `next_run`: the next scheduled start
    (UTC) while on and not running. `waiting_accounts`: while waiting, how many active accounts need a
    test; `account_count`: the task's active (not parked) accounts.
    """

    state: str
    next_run: datetime | None = None
    waiting_accounts: int | None = None
    account_count: int = 0

    OFF = "off"
    BROKEN = "broken"
    WAITING = "waiting"
    ON = "on"

    @property
    def note(self) -> str:
        """The waiting reason in words ("waiting: 2 accounts need a test"), or ""."""
        if self.state != self.WAITING:
            return ""
        if not self.account_count:
            return "waiting: the task has no active accounts"
        n = self.waiting_accounts
        return f"waiting: {n} account{'s' if n != 1 else ''} need{'s' if n == 1 else ''} a test"

    @property
    def starts_when(self) -> str:
        """What lets a waiting schedule start, in words for the control log, or ""."""
        if self.state != self.WAITING:
            return ""
        if not self.account_count:
            return "it starts once the task has an active account that passes its connection test"
        return "it starts once they pass"


def schedule_state(task: Task) -> ScheduleState:
    """The state of the task's schedule. Uses the annotations of with_schedule_facts() when present.

    Waiting is decided here and nowhere else: the schedule is on, and the task has no accounts or
    some of them are not tested OK on both sides (Account.objects.blocking()).
    """
    if task.broken:
        return ScheduleState(ScheduleState.BROKEN)
    if not task.schedule_on:
        return ScheduleState(ScheduleState.OFF)
    if hasattr(task, "blocking_count"):
        accounts, blocking = task.account_count, task.blocking_count
    else:
        accounts = Account.objects.filter(task=task).active().count()
        blocking = Account.objects.filter(task=task).blocking().count()
    if not accounts or blocking:
        return ScheduleState(ScheduleState.WAITING, waiting_accounts=blocking, account_count=accounts)
    return ScheduleState(ScheduleState.ON, next_run=next_run_for(task), account_count=accounts)


def record_waiting(task: Task, state: ScheduleState) -> bool:
    """Store whether the task's schedule waits (and for how many accounts); log it once per change.

    Returns True when this call changed it. Two ticks at once change (and log) it once: the UPDATE
    is conditional on the value read.
    """
    waiting = state.waiting_accounts if state.state == ScheduleState.WAITING else None
    was = task.schedule_waiting_accounts
    if waiting == was:
        return False
    changed = Task.objects.filter(pk=task.pk, schedule_waiting_accounts=task.schedule_waiting_accounts).update(
        schedule_waiting_accounts=waiting
    )
    task.schedule_waiting_accounts = waiting
    if changed:
        if waiting is None:
            logger.info("schedule of task %s no longer waiting: its accounts are tested OK", task.pk)
        else:
            logger.warning("schedule of task %s is %s; %s", task.pk, state.note, state.starts_when)
        if was is None and waiting is not None:
            # Once per stall, not per tick and not when the count changes while it waits.
            announce(Event.SCHEDULE_STALLED, task_id=task.pk, detail=state.note.removeprefix("waiting: "))
    return bool(changed)


def last_finished_at(task_id: int) -> datetime | None:
    """When the task's latest finished run finished, or None if none has."""
    return Run.objects.filter(task_id=task_id).aggregate(last=Max("finished_at"))["last"]


def runs_newest_first(task_id: int) -> QuerySet[Run]:
    """The task's runs, newest first (the run log)."""
    return Run.objects.filter(task_id=task_id).newest_first()


RUN_LOG_PAGE_SIZE = 50


def run_log(task_id: int, *, page: str | int | None = None) -> dict[str, Any]:
    """One page of the task's run log, newest first: `runs` (at most RUN_LOG_PAGE_SIZE) and `page` (a
    Django Page: numbers, previous and next). A page number out of range gives the last page."""
    shown = Paginator(runs_newest_first(task_id), RUN_LOG_PAGE_SIZE).get_page(page)
    return {"runs": shown.object_list, "page": shown}


def due_tasks(now: datetime) -> list[Task]:
    """Schedulable tasks whose next run is at or before `now`, oldest due first.

    Schedules that wait for account tests are not due; their waiting is recorded (record_waiting).
    """
    due = []
    for task in with_schedule_facts(Task.objects.schedulable()).order_by("pk"):
        state = schedule_state(task)
        record_waiting(task, state)
        if state.next_run is not None and state.next_run <= now:
            due.append((state.next_run, task.pk, task))
    return [task for _, _, task in sorted(due, key=lambda item: item[:2])]


def panel_state(task: Task, *, now: datetime) -> dict[str, Any]:
    """What the task page's schedule panel shows for `task`, and a token that changes when any of it does."""
    state = schedule_state(task)
    polling = task.schedule_on
    last_tick = last_tick_at() if polling else None
    stale = polling and (last_tick is None or now - last_tick > timedelta(seconds=TICK_STALE_SECONDS))
    next_run = state.next_run
    return {
        "state": state,
        "next_run": next_run,
        "presets": ScheduleInterval.choices,
        "polling": polling,
        "scheduler_stale": stale,
        "last_tick": last_tick,
        "token": (
            f"{task.schedule_interval_seconds}-{int(task.broken)}-{task.status}-"
            f"{next_run.isoformat() if next_run else 'none'}-{int(stale)}-{state.note}"
        ),
    }
