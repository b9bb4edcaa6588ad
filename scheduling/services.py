"""Scheduling rules shared by the pages, the JSON API and the tick."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Max, QuerySet

from runs.models import Run
from scheduling.timing import next_run_at
from tasks.models import Account, ScheduleInterval, Task
from tasks.wording import plural

SCHEDULE_REFUSED_MESSAGE = "all accounts must pass connection tests before scheduling"


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


def accounts_ready(task_id: int) -> bool:
    """At least one active (not parked) account, and every active account tested ok on both sides."""
    accounts = Account.objects.filter(task_id=task_id).active()
    return accounts.exists() and not accounts.needs_test().exists()


def refusal(task_id: int) -> ScheduleRefused:
    """The refusal of enabling the schedule, naming how many active accounts block it."""
    active = Account.objects.filter(task_id=task_id).active()
    blocking, total = active.needs_test().count(), active.count()
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
    one interval later); any explicit change clears `broken`; switching off is always allowed.
    """
    if not is_preset(seconds):
        raise ValueError(f"not a schedule preset: {seconds!r}")
    with transaction.atomic():
        fields: dict[str, object] = {
            "schedule_interval_seconds": seconds,
            "broken": False,
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


def next_run_for(task: Task) -> datetime | None:
    """The task's next scheduled start, or None. Uses `last_finished_at` when annotated."""
    if task.schedule_interval_seconds <= 0 or task.broken or task.is_running:
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


def last_finished_at(task_id: int) -> datetime | None:
    """When the task's latest finished run finished, or None if none has."""
    return Run.objects.filter(task_id=task_id).aggregate(last=Max("finished_at"))["last"]


def runs_newest_first(task_id: int) -> QuerySet[Run]:
    """The task's runs, newest first (the run log)."""
    return Run.objects.filter(task_id=task_id).order_by("-started_at", "-id")


def due_tasks(now: datetime) -> list[Task]:
    """Schedulable tasks whose next run is at or before `now`, oldest due first."""
    due = []
    for task in with_last_finished(Task.objects.schedulable()).order_by("pk"):
        moment = next_run_for(task)
        if moment is not None and moment <= now:
            due.append((moment, task.pk, task))
    return [task for _, _, task in sorted(due, key=lambda item: item[:2])]
