"""Run control, live progress and run reports (HTML)."""

from __future__ import annotations

import csv
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runs import progress as run_progress_data
from runs import selection, watch
from runs.models import AccountRun, Run
from tasks.models import Task
from tasks.wording import plural

# A big run lists only the accounts worth watching (running, failed) in the live panel.
PANEL_ALL_ACCOUNTS_UP_TO = 50
PANEL_MAX_ROWS = 200


def _progress_context(run: Run | None, now: datetime) -> dict:
    if run is None:
        return {"run": None, "progress": None}
    progress = run_progress_data.run_progress(run, now=now)
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
    recent = list(task.runs.order_by("-started_at", "-id")[:6])
    return {
        **_progress_context(recent[0] if recent else None, now),
        "recent_runs": recent[1:],
    }


@require_POST
@login_required
def run_start(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    from runs import orchestrator

    try:
        only = orchestrator.ONLY_FAILED if request.POST.get("only") == "failed" else orchestrator.ONLY_ALL
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, only=only)
    except orchestrator.RunRefused as exc:
        messages.error(request, str(exc))
    else:
        if only == orchestrator.ONLY_FAILED:
            taken = plural(run.account_runs.count(), "failed or new account")
            messages.success(request, f"Run of “{task.name}” started for {taken}.")
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
    response = render(request, "runs/_progress.html", _progress_context(run, timezone.now()))
    if request.htmx and not run.is_running:
        # The run ended while the page watched it: reload once, so the buttons, the status and the
        # accounts' last results follow (the reloaded page no longer polls).
        response["HX-Refresh"] = "true"
    return response


@require_GET
@login_required
def run_report(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("task__source", "task__destination"), pk=pk)
    context = _progress_context(run, timezone.now())
    result, sort = selection.report_filter(request.GET.get("result"), request.GET.get("sort"))
    listed = selection.report_account_runs(run.pk, result=result, sort=sort)
    by_id = {a.account_run_id: a for a in context["progress"].accounts}
    accounts = [by_id[pk] for pk in listed.values_list("pk", flat=True) if pk in by_id]
    details = listed.values_list("pk", "account__source_user", "message_errors", "warnings")
    message_errors = [
        {**error, "account": user} for _pk, user, errors, _warnings in details for error in (errors or [])
    ]
    warnings = {pk: w for pk, _user, _errors, w in details if w}
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
            "warnings": warnings,
            "duration": duration,
            "accounts": accounts,
            "result": result,
            "sort": sort,
            "results": selection.LAST_RESULTS,
            "counts": selection.report_counts(run.pk),
            "nav": "tasks",
        },
    )


@require_GET
@login_required
def run_report_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """One line per account, then one line per message error; no passwords. Filtered and sorted like the report."""
    run = get_object_or_404(Run, pk=pk)
    result, sort = selection.report_filter(request.GET.get("result"), request.GET.get("sort"))
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}{"-" + result if result else ""}.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "source_user",
            "destination_user",
            "status",
            "copied",
            "already_there",
            "errors",
            "bytes",
            "reason",
            "folder",
            "uid",
            "subject",
            "size",
        ]
    )
    account_runs = selection.report_account_runs(run.pk, result=result, sort=sort).select_related("account")
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


def _unchanged_or_refresh(shown: str | None, token: str) -> HttpResponse:
    if shown == token:
        return HttpResponse(status=204)
    # Something changed under the open page (a run started by the scheduler or another user, or one
    # ended): reload it, so every part of it (status, buttons, panels) is current together.
    response = HttpResponse(status=200)
    response["HX-Refresh"] = "true"
    return response


@require_GET
@login_required
def task_watch(request: HttpRequest, pk: int) -> HttpResponse:
    """Polled by an open task page with ?shown=<token>: 204 while its runs are as shown, else a reload."""
    return _unchanged_or_refresh(request.GET.get("shown"), watch.task_token(pk))


@require_GET
@login_required
def tasks_watch(request: HttpRequest) -> HttpResponse:
    """Polled by the open task list with ?shown=<token>: 204 while nothing it shows changed, else a reload."""
    return _unchanged_or_refresh(request.GET.get("shown"), watch.tasks_token())
