"""JSON API for runs (DESIGN.md, "JSON API"). Authentication and errors: see tasks/api.py."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from runs import orchestrator
from runs.models import Run
from tasks.api import ApiError, api_view, get_or_404
from tasks.models import Task


@api_view("POST")
def task_run(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a manual run of the task: 202 {"run_id": N}, or 409 with the reason it cannot start."""
    get_or_404(Task.objects.all(), pk, "task")
    try:
        run = orchestrator.start_run(pk, trigger=Run.Trigger.MANUAL)
    except orchestrator.RunRefused as refusal:
        raise ApiError(409, str(refusal)) from None
    except Task.DoesNotExist:
        raise ApiError(404, f"task {pk} not found") from None
    return JsonResponse({"run_id": run.pk}, status=202)


@api_view("POST")
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask a running run to stop: 202; the run ends `cancelled` once its jobs have stopped."""
    get_or_404(Run.objects.all(), pk, "run")
    if not orchestrator.cancel_run(pk):
        raise ApiError(409, f"run {pk} is not running")
    return JsonResponse({"run_id": pk}, status=202)
