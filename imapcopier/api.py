"""The JSON API: tasks, their schedules and runs, and the plumbing its views share.

Authentication: the browser's session (unsafe methods then need the CSRF token, as for any form), or
HTTP Basic with a Django user's name and password for scripts (no cookie, so no CSRF token either).
Failed Basic logins count towards the login lockout like failed form logins. Errors are JSON:
{"error": "..."} with 400, 401, 403, 404, 405 or 409. No answer ever contains a password.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_not_required
from django.db import models
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from runs import orchestrator
from runs.models import Run
from scheduling.services import (
    ScheduleRefused,
    is_preset,
    presets_phrase,
    runs_newest_first,
    schedule_state,
    set_schedule,
    with_schedule_facts,
)
from scheduling.timing import rfc3339
from tasks.models import Account, Endpoint, Task

View = Callable[..., HttpResponse]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiError(Exception):
    """Raised inside an API view to answer {"error": message} with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        username, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    return (username, password) if sep else ("", "")


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda _request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, lambda _request: HttpResponse(), (), {})


def api_view(*methods: str) -> Callable[[View], View]:
    """Wrap a JSON view: allowed methods, authentication (session + CSRF, or HTTP Basic), JSON errors."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"method {request.method} not allowed")
                response["Allow"] = ", ".join(methods)
                return response
            credentials = _basic_credentials(request)
            if credentials is not None:
                user = authenticate(request, username=credentials[0], password=credentials[1])
                if user is None or not user.is_active:
                    response = error(401, "invalid credentials")
                    response["WWW-Authenticate"] = 'Basic realm="imapcopier", charset="UTF-8"'
                    return response
                request.user = user
            elif not request.user.is_authenticated:
                response = error(401, "authentication required")
                response["WWW-Authenticate"] = 'Basic realm="imapcopier", charset="UTF-8"'
                return response
            elif request.method not in SAFE_METHODS and _csrf_failure(request) is not None:
                return error(403, "CSRF token missing or incorrect")
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.status, exc.message)

        return csrf_exempt(login_not_required(never_cache(wrapper)))

    return decorate


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or ApiError 400."""
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def get_or_404(queryset: models.QuerySet, pk: int, what: str) -> Any:
    try:
        return queryset.get(pk=pk)
    except queryset.model.DoesNotExist:
        raise ApiError(404, f"{what} {pk} not found") from None


def endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.pk,
        "label": endpoint.label,
        "host": endpoint.host,
        "port": endpoint.port,
        "security": endpoint.security,
        "verify_tls": endpoint.verify_tls,
        "max_connections": endpoint.max_connections,
    }


def account_json(account: Account) -> dict[str, Any]:
    # Listed field by field: a password can only get in here by someone writing it in.
    return {
        "id": account.pk,
        "source_user": account.source_user,
        "destination_user": account.destination_user,
        "source_test_status": account.source_test_status,
        "source_test_message": account.source_test_message,
        "source_tested_at": rfc3339(account.source_tested_at),
        "destination_test_status": account.destination_test_status,
        "destination_test_message": account.destination_test_message,
        "destination_tested_at": rfc3339(account.destination_tested_at),
    }


def task_json(task: Task) -> dict[str, Any]:
    schedule = schedule_state(task)
    return {
        "id": task.pk,
        "name": task.name,
        "status": task.status,
        "source": endpoint_json(task.source),
        "destination": endpoint_json(task.destination),
        "folder_mapping": task.folder_mapping,
        "schedule_interval_seconds": task.schedule_interval_seconds,
        "broken": task.broken,
        "schedule_state": schedule.state,
        "schedule_note": schedule.note,
        "next_run_at": rfc3339(schedule.next_run),
        "accounts": [account_json(a) for a in task.accounts.all()],
    }


def run_json(run: Any) -> dict[str, Any]:
    return {
        "id": run.pk,
        "task_id": run.task_id,
        "status": run.status,
        "trigger": run.trigger,
        "started_at": rfc3339(run.started_at),
        "finished_at": rfc3339(run.finished_at),
        "total_copied": run.copied,
        "total_skipped": run.skipped,
        "total_errors": run.errors,
    }


@api_view("GET")
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    tasks = with_schedule_facts(Task.objects.select_related("source", "destination").prefetch_related("accounts"))
    return JsonResponse(task_json(get_or_404(tasks, pk, "task")))


@api_view("PUT")
def task_schedule(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_or_404(Task.objects.all(), pk, "task")
    seconds = json_body(request).get("interval_seconds")
    if not is_preset(seconds):
        raise ApiError(400, f"interval_seconds must be one of {presets_phrase()}")
    try:
        set_schedule(task, seconds, now=timezone.now())
    except ScheduleRefused as refusal:
        raise ApiError(409, refusal.message) from None
    return HttpResponse(status=204)


@api_view("GET")
def task_runs(request: HttpRequest, pk: int) -> HttpResponse:
    get_or_404(Task.objects.all(), pk, "task")
    return JsonResponse([run_json(r) for r in runs_newest_first(pk)], safe=False)


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
