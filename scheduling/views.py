"""Schedule select and run-log dialog of the task page (HTMX partials, with plain fallbacks)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from scheduling.services import (
    ScheduleRefused,
    is_preset,
    panel_state,
    run_log,
    set_schedule,
    with_schedule_facts,
)
from tasks.models import ScheduleInterval, Task


def _panel(pk: int, **extra: object) -> dict:
    """The schedule panel's context: the task and what its panel shows."""
    task = get_object_or_404(with_schedule_facts(Task.objects.all()), pk=pk)
    return {"task": task, "panel": panel_state(task, now=timezone.now()), **extra}


@require_GET
@login_required
def schedule(request: HttpRequest, pk: int) -> HttpResponse:
    """The schedule panel. Polled with ?shown=<token>: 204 while nothing changed."""
    context = _panel(pk)
    shown = request.GET.get("shown")
    if shown is not None:
        if shown == context["panel"]["token"]:
            return HttpResponse(status=204)
        if context["task"].broken:
            # The breaker tripped while the page was open: reload it, so the status and the run
            # panel around this partial are current too.
            response = HttpResponse(status=200)
            response["HX-Refresh"] = "true"
            return response
    return render(request, "scheduling/_schedule.html", context)


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
                _panel(pk, refusal=refusal.message),
                status=409,
            )
        messages.error(request, f"Schedule not changed: {refusal.message}.")
        return redirect("tasks:detail", pk=pk)
    label = ScheduleInterval(seconds).label
    if request.htmx:
        response = render(request, "scheduling/_schedule.html", _panel(pk))
        if was_broken:
            response["HX-Refresh"] = "true"  # the broken badge beside the status goes too
        return response
    messages.success(request, f"Schedule set to {label.lower()}.")
    return redirect("tasks:detail", pk=pk)


@require_GET
@login_required
def run_log_view(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    context = {"task": task, **run_log(pk, page=request.GET.get("page"))}
    if request.htmx:
        return render(request, "scheduling/_run_log.html", context)
    return render(request, "scheduling/run_log.html", context)
