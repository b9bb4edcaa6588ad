"""Schedule select and run-log dialog of the task page (HTMX partials, with plain fallbacks)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from scheduling.services import (
    ScheduleRefused,
    is_preset,
    runs_newest_first,
    set_schedule,
    with_last_finished,
)
from scheduling.templatetags.schedule_tags import panel_state
from tasks.models import ScheduleInterval, Task

RUN_LOG_PAGE_SIZE = 50


def _panel_task(pk: int) -> Task:
    return get_object_or_404(with_last_finished(Task.objects.all()), pk=pk)


@require_GET
@login_required
def schedule(request: HttpRequest, pk: int) -> HttpResponse:
    """The schedule panel. Polled with ?shown=<token>: 204 while nothing changed."""
    task = _panel_task(pk)
    shown = request.GET.get("shown")
    if shown is not None:
        if shown == panel_state(task)["token"]:
            return HttpResponse(status=204)
        if task.broken:
            # The breaker tripped while the page was open: reload it, so the status and the run
            # panel around this partial are current too.
            response = HttpResponse(status=200)
            response["HX-Refresh"] = "true"
            return response
    return render(request, "scheduling/_schedule.html", {"task": task})


@require_POST
@login_required
def set_schedule_view(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    was_broken = task.broken
    try:
        seconds: int | None = int(request.POST.get("interval_seconds", ""))
    except ValueError:
        seconds = None
    if not is_preset(seconds):
        return HttpResponse("interval_seconds must be one of the schedule presets", status=400)
    try:
        set_schedule(task, seconds, now=timezone.now())
    except ScheduleRefused as refusal:
        if request.htmx:
            # The panel as it is (the select back on its old value), with the reason.
            return render(
                request,
                "scheduling/_schedule.html",
                {"task": _panel_task(pk), "refusal": refusal.message},
                status=409,
            )
        messages.error(request, f"Schedule not changed: {refusal.message}.")
        return redirect("tasks:detail", pk=pk)
    label = ScheduleInterval(seconds).label
    if request.htmx:
        response = render(request, "scheduling/_schedule.html", {"task": _panel_task(pk)})
        if was_broken:
            response["HX-Refresh"] = "true"  # the broken badge beside the status goes too
        return trigger_client_event(response, "schedule-changed")
    messages.success(request, f"Schedule set to {label.lower()}.")
    return redirect("tasks:detail", pk=pk)


@require_GET
@login_required
def run_log(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    page = Paginator(runs_newest_first(pk), RUN_LOG_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"task": task, "runs": page.object_list, "page": page}
    if request.htmx:
        return render(request, "scheduling/_run_log.html", context)
    return render(request, "scheduling/run_log.html", context)
