"""Run control, live progress and run reports (HTML)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runs.models import AccountRun, Run
from tasks.models import Task


@dataclass
class AccountProgress:
    """One account's line in the progress panel: counters plus what the page derives from them."""

    account_run: AccountRun
    done: int
    total: int
    percent: int | None  # None while the source is still being scanned
    rate: float | None  # messages per second
    eta_seconds: int | None

    @property
    def megabytes(self) -> float:
        return self.account_run.bytes / 1_000_000


def account_progress(account_run: AccountRun, now: datetime) -> AccountProgress:
    """Percent, rate and ETA of one account run, from its persisted counters."""
    done = account_run.copied + account_run.skipped + account_run.errors
    total = max(account_run.total_messages, done)
    finished = account_run.status in (
        AccountRun.Status.DONE,
        AccountRun.Status.FAILED,
        AccountRun.Status.CANCELLED,
    )
    percent = 100 if finished and account_run.status == AccountRun.Status.DONE else None
    if percent is None and total:
        percent = min(100, int(100 * done / total))
    rate = eta = None
    if account_run.started_at:
        end = account_run.finished_at or account_run.heartbeat_at or now
        elapsed = (end - account_run.started_at).total_seconds()
        if elapsed > 0 and account_run.copied:
            rate = account_run.copied / elapsed
        if rate and not finished and total > done:
            eta = int((total - done) / rate)
    return AccountProgress(account_run, done, total, percent, rate, eta)


@dataclass
class RunTotals:
    accounts: int
    finished: int
    copied: int
    skipped: int
    errors: int
    bytes: int
    done: int
    total: int

    @property
    def percent(self) -> int | None:
        return min(100, int(100 * self.done / self.total)) if self.total else None

    @property
    def megabytes(self) -> float:
        return self.bytes / 1_000_000


def run_totals(rows: list[AccountProgress]) -> RunTotals:
    ars = [r.account_run for r in rows]
    return RunTotals(
        accounts=len(ars),
        finished=sum(
            ar.status not in (AccountRun.Status.QUEUED, AccountRun.Status.RUNNING)
            for ar in ars
        ),
        copied=sum(ar.copied for ar in ars),
        skipped=sum(ar.skipped for ar in ars),
        errors=sum(ar.errors for ar in ars),
        bytes=sum(ar.bytes for ar in ars),
        done=sum(r.done for r in rows),
        total=sum(r.total for r in rows),
    )


def _progress_context(run: Run | None, now: datetime) -> dict:
    if run is None:
        return {"run": None, "rows": [], "totals": None}
    account_runs = run.account_runs.select_related("account").order_by(
        "account__source_user"
    )
    rows = [account_progress(ar, now) for ar in account_runs]
    return {"run": run, "rows": rows, "totals": run_totals(rows)}


def run_panel_context(task: Task, now: datetime) -> dict:
    """What the task page's run panel shows: the latest run and its accounts' progress."""
    run = task.runs.order_by("-started_at", "-id").first()
    return {
        **_progress_context(run, now),
        "recent_runs": task.runs.order_by("-started_at", "-id")[:5],
    }


@require_POST
@login_required
def run_start(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    from runs import orchestrator

    try:
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    except orchestrator.RunRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run of “{task.name}” started.")
    return redirect("tasks:detail", pk=task.pk)


@require_POST
@login_required
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("task"), pk=pk)
    from runs import orchestrator

    if not run.is_running:
        messages.info(request, "This run has already ended.")
    else:
        orchestrator.cancel_run(run.pk)
        messages.info(
            request,
            "Cancelling: each account stops after the batch it is copying.",
        )
    return redirect("tasks:detail", pk=run.task_id)


@require_GET
@login_required
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("task"), pk=pk)
    return render(
        request,
        "runs/_progress.html",
        {"task": run.task, **_progress_context(run, timezone.now())},
    )


@require_GET
@login_required
def run_report(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(
        Run.objects.select_related("task__source", "task__destination"), pk=pk
    )
    context = _progress_context(run, timezone.now())
    message_errors = [
        {**error, "account": row.account_run.account.source_user}
        for row in context["rows"]
        for error in (row.account_run.message_errors or [])
    ]
    duration = None
    if run.finished_at:
        duration = int((run.finished_at - run.started_at).total_seconds())
    return render(
        request,
        "runs/run_report.html",
        {
            **context,
            "task": run.task,
            "message_errors": message_errors,
            "duration": duration,
            "nav": "tasks",
        },
    )


@require_GET
@login_required
def run_report_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """One line per account, then one line per message error; no passwords."""
    run = get_object_or_404(Run, pk=pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "source_user",
            "destination_user",
            "status",
            "copied",
            "skipped",
            "errors",
            "bytes",
            "reason",
            "folder",
            "uid",
            "subject",
            "size",
        ]
    )
    account_runs = run.account_runs.select_related("account").order_by(
        "account__source_user"
    )
    for ar in account_runs:
        account = ar.account
        writer.writerow(
            [
                account.source_user,
                account.destination_user,
                ar.status,
                ar.copied,
                ar.skipped,
                ar.errors,
                ar.bytes,
                ar.last_error,
                "",
                "",
                "",
                "",
            ]
        )
        for error in ar.message_errors or []:
            writer.writerow(
                [
                    account.source_user,
                    account.destination_user,
                    "message error",
                    "",
                    "",
                    "",
                    "",
                    error.get("reason", ""),
                    error.get("folder", ""),
                    error.get("uid", ""),
                    error.get("subject", ""),
                    error.get("size", ""),
                ]
            )
    return response
