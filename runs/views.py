"""Run control, live progress and run reports (HTML)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runs import orchestrator, refusals, reports, selection, watch
from runs import progress as run_progress_data
from runs.models import Run
from tasks.models import Task
from tasks.wording import plural


@require_POST
@login_required
def run_start(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
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
    response = render(request, "runs/_progress.html", run_progress_data.progress_context(run, timezone.now()))
    if request.htmx and not run.is_running:
        # The run ended while the page watched it: reload once, so the buttons, the status and the
        # accounts' last results follow (the reloaded page no longer polls).
        response["HX-Refresh"] = "true"
    return response


@require_GET
@login_required
def run_report(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("task__source", "task__destination"), pk=pk)
    result, sort = selection.report_filter(request.GET.get("result"), request.GET.get("sort"))
    context = reports.run_report(run, now=timezone.now(), result=result, sort=sort)
    return render(request, "runs/run_report.html", {**context, "nav": "tasks"})


@require_POST
@login_required
def run_accept_refusals(request: HttpRequest, pk: int) -> HttpResponse:
    """Accept refused messages as not copied: one (account_run, folder, uid), an account's, or the run's."""
    run = get_object_or_404(Run, pk=pk)
    try:
        added = refusals.accept_from_form(run.pk, request.POST, by=request.user, now=timezone.now())
    except ValueError:
        messages.error(request, "Nothing accepted: the form was not understood.")
    else:
        messages.success(
            request,
            f"{added} refused message{'s' if added != 1 else ''} accepted as not copied: "
            "later runs do not try them again and do not count them as errors.",
        )
    return redirect("runs:report", pk=run.pk)


@require_POST
@login_required
def run_unaccept_refusal(request: HttpRequest, pk: int, accepted_pk: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=pk)
    if refusals.unaccept(accepted_pk, by=request.user):
        messages.success(request, "No longer accepted: the next run tries the message again.")
    return redirect("runs:report", pk=run.pk)


@require_GET
@login_required
def run_report_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """One line per account, then one line per message error; no passwords. Filtered and sorted like the report."""
    return _report_csv(request, pk, "", reports.write_run_csv)


@require_GET
@login_required
def account_run_report(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    """One account of a run: its result per folder (copied, already there, errors, not copied, data)."""
    account_run = get_object_or_404(reports.account_runs_for_report(), run_id=pk, account_id=account_pk)
    return render(request, "runs/account_run_detail.html", {**reports.account_run_report(account_run), "nav": "tasks"})


@require_GET
@login_required
def run_folders_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """One line per account x folder (reports.write_folder_csv); accounts filtered and sorted like the report."""
    return _report_csv(request, pk, "-folders", reports.write_folder_csv)


def _report_csv(request: HttpRequest, pk: int, name: str, write: Callable[..., None]) -> HttpResponse:
    """A run's CSV download (run-<id><name>[-<result>].csv), filtered and sorted like the report page."""
    run = get_object_or_404(Run, pk=pk)
    result, sort = selection.report_filter(request.GET.get("result"), request.GET.get("sort"))
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}{name}{"-" + result if result else ""}.csv"'
    write(run, response, result=result, sort=sort)
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
