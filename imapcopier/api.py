"""The JSON API: tasks, their schedules and runs, and the plumbing its views share.

Authentication (imapcopier.apitokens.auth): an API token for scripts (`Authorization: Bearer <token>`, no CSRF token
needed), or the browser's session, whose state-changing requests need the CSRF token and are refused when
the browser says they come from another site. HTTP Basic is not accepted, and no answer asks for it.
Errors are JSON: {"error": "..."} with 400, 401, 403, 404, 405, 409 or 413. No answer ever contains a
password or a token.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.db import models
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views import defaults as django_defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from imapcopier.apitokens.auth import BEARER_CHALLENGE, bearer_token, foreign_origin
from imapcopier.apitokens.services import user_for_token
from runs import orchestrator, reports, selection
from runs.jobs import enqueue_account_tests
from runs.models import Run
from runs.progress import run_summary
from runs.refusals import accepted_for_run
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


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda _request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, lambda _request: HttpResponse(), (), {})


def _unauthorized(message: str) -> JsonResponse:
    response = error(401, message)
    # RFC 9110 §15.5.2 wants a challenge with a 401; a Bearer one never makes a browser prompt.
    response["WWW-Authenticate"] = BEARER_CHALLENGE
    return response


def _authenticate(request: HttpRequest) -> HttpResponse | None:
    """Set request.user from the API token, or check the session request; the refusal, or None."""
    token = bearer_token(request)
    if token is not None:
        user = user_for_token(token, now=timezone.now())
        if user is None:
            return _unauthorized("invalid or revoked API token")
        request.user = user
        return None
    if not request.user.is_authenticated:
        return _unauthorized("authentication required: send an API token (Authorization: Bearer <token>)")
    if request.method in SAFE_METHODS:
        return None
    if foreign_origin(request) is not None:
        return error(403, "cross-site request refused: a request from another site needs an API token")
    if _csrf_failure(request) is not None:
        return error(403, "CSRF token missing or incorrect")
    return None


def api_view(*methods: str) -> Callable[[View], View]:
    """Wrap a JSON view: allowed methods, authentication (API token, or session + same site + CSRF), JSON errors."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"method {request.method} not allowed")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                refusal = _authenticate(request)
                if refusal is not None:
                    return refusal
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.status, exc.message)
            except RequestDataTooBig:
                return error(413, "request body is too large")

        return csrf_exempt(login_not_required(never_cache(wrapper)))

    return decorate


def _under_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: JSON under /api/ (a disallowed Host, a body too large to read), Django's page elsewhere."""
    if _under_api(request):
        return error(400, "bad request")
    return django_defaults.bad_request(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 404 answer under /api/ (imapcopier.views.not_found, handler404, sends those here); Django's page elsewhere."""
    if _under_api(request):
        return error(404, "not found: no such API path or object")
    return django_defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: JSON under /api/ (the details are in the log, never in the answer), Django's page elsewhere."""
    if _under_api(request):
        return error(500, "internal error")
    return django_defaults.server_error(request)


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or ApiError 400."""
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "request body is not valid JSON") from None
    except RecursionError:
        # json.loads recurses once per nesting level: thousands of "[" exhaust the stack.
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def optional_body(request: HttpRequest) -> dict[str, Any]:
    """A JSON object body when one is sent (Content-Type application/json, not empty), else {}; ApiError 400 if malformed."""
    if request.content_type != "application/json" or not request.body.strip():
        return {}
    return json_body(request)


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
        # null: each account's password; else how the endpoint signs in with OAuth 2.0 (Endpoint.AuthMethod).
        "oauth": endpoint.auth_method if endpoint.uses_oauth else None,
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
        "paused": account.paused,
        "paused_reason": account.paused_reason,
        # Set when the queryset was annotated by runs.selection.with_last_result (task detail).
        "last_result": getattr(account, "last_outcome", None),
    }


ACCOUNTS_PER_PAGE = 500
MAX_ACCOUNTS_PER_PAGE = 5000


def positive_int_param(request: HttpRequest, name: str, default: int, maximum: int) -> int:
    """A positive integer query parameter (at most `maximum`), or ApiError 400."""
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"{name} must be between 1 and {maximum}")
    return value


def account_page_json(task: Task, request: HttpRequest) -> dict[str, Any]:
    """One page of the task's accounts, oldest first: `accounts` and `accounts_page` (page, per_page,
    total, pages, next: the URL of the next page or null). Query: `page` (from 1), `per_page`."""
    per_page = positive_int_param(request, "per_page", ACCOUNTS_PER_PAGE, MAX_ACCOUNTS_PER_PAGE)
    page = positive_int_param(request, "page", 1, 10**9)
    accounts = selection.with_last_result(task.accounts.defer("source_password", "destination_password")).order_by("pk")
    total = task.accounts.count()
    pages = max(1, -(-total // per_page))
    if page > pages:
        raise ApiError(404, f"page {page} not found: the accounts fill {pages} page(s)")
    rows = accounts[(page - 1) * per_page : page * per_page]
    next_url = None
    if page < pages:
        next_url = request.build_absolute_uri(f"{request.path}?page={page + 1}&per_page={per_page}")
    return {
        "accounts": [account_json(a) for a in rows],
        "accounts_page": {"page": page, "per_page": per_page, "total": total, "pages": pages, "next": next_url},
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
        "counts": task.accounts.test_counts(),
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
        # The reference plan's name for messages already at the destination; the pages and the CSV say
        # "already there", and so does total_already_there (the same number).
        "total_skipped": run.skipped,
        "total_already_there": run.skipped,
        "total_errors": run.errors,
        "total_not_copied": run.not_copied,
        "interrupted": run.interrupted,
    }


@api_view("GET")
def task_list(request: HttpRequest) -> HttpResponse:
    """GET /api/tasks: every task with id, name, status, broken, schedule_state, next_run_at and its
    account counts (accounts, active, parked, tested OK, failed), by name."""
    answer = []
    for task in with_schedule_facts(Task.objects.order_by("name")):
        schedule = schedule_state(task)  # uses the annotations: no query
        answer.append(
            {
                "id": task.pk,
                "name": task.name,
                "status": task.status,
                "broken": task.broken,
                "schedule_interval_seconds": task.schedule_interval_seconds,
                "schedule_state": schedule.state,
                "schedule_note": schedule.note,
                "next_run_at": rfc3339(schedule.next_run),
                "counts": task.accounts.test_counts(),
            }
        )
    return JsonResponse(answer, safe=False)


@api_view("GET")
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The task and one page of its accounts (see account_page_json)."""
    task = get_or_404(with_schedule_facts(Task.objects.select_related("source", "destination")), pk, "task")
    return JsonResponse({**task_json(task), **account_page_json(task, request)})


@api_view("PUT")
def task_schedule(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_or_404(Task.objects.all(), pk, "task")
    seconds = json_body(request).get("interval_seconds")
    if not is_preset(seconds):
        raise ApiError(400, f"interval_seconds must be one of {presets_phrase()}")
    try:
        set_schedule(task, seconds, now=timezone.now())
    except ScheduleRefused as refusal:
        return JsonResponse(
            {"error": refusal.message, "detail": refusal.detail, "blocking": refusal.blocking}, status=409
        )
    return HttpResponse(status=204)


@api_view("GET")
def task_runs(request: HttpRequest, pk: int) -> HttpResponse:
    get_or_404(Task.objects.all(), pk, "task")
    return JsonResponse([run_json(r) for r in runs_newest_first(pk)], safe=False)


@api_view("POST")
def task_run(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a manual run of the task: 202 {"run_id": N, "accounts": N}, or 409 with the reason it cannot start.

    Optional JSON body {"only": "failed"}: only the active accounts whose last result failed or had
    errors, and those never run ("Run failed accounts"). 400 for any other "only".
    """
    get_or_404(Task.objects.all(), pk, "task")
    only = optional_body(request).get("only", orchestrator.ONLY_ALL)
    if only not in (orchestrator.ONLY_ALL, orchestrator.ONLY_FAILED):
        raise ApiError(400, 'only must be "all" or "failed"')
    try:
        run = orchestrator.start_run(pk, trigger=Run.Trigger.MANUAL, only=only)
    except orchestrator.RunRefused as refusal:
        raise ApiError(409, str(refusal)) from None
    except Task.DoesNotExist:
        raise ApiError(404, f"task {pk} not found") from None
    return JsonResponse({"run_id": run.pk, "accounts": run.account_runs.count()}, status=202)


@api_view("POST")
def task_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Test the task's active accounts in the background: 202 {"accounts": N}. Optional JSON body
    {"only": "needs-test"}: only those not tested OK yet ("Test untested and failed"). Parked accounts are never tested."""
    task = get_or_404(Task.objects.all(), pk, "task")
    only = optional_body(request).get("only", "all")
    if only not in ("all", "needs-test"):
        raise ApiError(400, 'only must be "all" or "needs-test"')
    return JsonResponse({"accounts": enqueue_account_tests(task, only_needing_test=only == "needs-test")}, status=202)


def folder_json(folder: reports.FolderRow) -> dict[str, Any]:
    """One folder of an account run (runs.reports.FolderRow): message counts, `bytes` copied (None for
    runs recorded before bytes were kept per folder), `destination_folder` None when the folder
    mapping leaves it out (it names the folder even when the destination refused to create it:
    `destination_not_created` says so), `deleted_at_destination` the messages copied by an earlier
    run and deleted at the destination since (not copied again, not in `already_there`), `complete`
    whether every source message is at the destination or was deleted there after it was copied."""
    return {
        "source_folder": folder.source,
        "destination_folder": folder.destination,
        "destination_not_created": folder.not_created,
        "source_messages": folder.source_messages,
        "destination_messages": folder.destination_messages,
        "copied": folder.copied,
        "already_there": folder.already_there,
        "deleted_at_destination": folder.deleted_at_destination,
        "altered": folder.altered,
        "errors": folder.errors,
        "not_copied": folder.not_copied_total,
        "not_copied_reasons": folder.not_copied,
        "bytes": folder.bytes,
        "complete": folder.complete,
    }


@api_view("GET")
def account_run_detail(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    """GET /api/runs/<id>/accounts/<account_id>: one account of a run, with its results per folder
    (`folders`, see folder_json), its message errors and warnings."""
    account_run = reports.account_runs_for_report().filter(run_id=pk, account_id=account_pk).first()
    if account_run is None:
        raise ApiError(404, f"account {account_pk} is not in run {pk}")
    context = reports.account_run_report(account_run)
    return JsonResponse(
        {
            **_account_result_json(account_run),
            "run_id": pk,
            "deleted_at_destination": context["deleted_at_destination"],
            "folders": [folder_json(f) for f in context["folders"]],
            "message_errors": context["message_errors"],
            "warnings": context["warnings"],
        }
    )


def _account_result_json(account_run: Any) -> dict[str, Any]:
    return {
        "account_id": account_run.account_id,
        "source_user": account_run.account.source_user,
        "destination_user": account_run.account.destination_user,
        "status": account_run.status,
        "copied": account_run.copied,
        "already_there": account_run.skipped,
        "errors": account_run.errors,
        "not_copied": account_run.not_copied_messages,
        "bytes": account_run.bytes,
        "interrupted": account_run.interrupted,
        "reason": account_run.last_error,
        "started_at": rfc3339(account_run.started_at),
        "finished_at": rfc3339(account_run.finished_at),
    }


@api_view("GET")
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """GET /api/runs/<id>: the run (as in the run list) and its accounts' results, each with its results
    per folder (`folders`, see folder_json), filtered like the report (?result=failed|errors|done|running,
    ?sort=errors)."""
    run = get_or_404(Run.objects.all(), pk, "run")
    result, sort = selection.report_filter(request.GET.get("result"), request.GET.get("sort"))
    rows = selection.report_account_runs(pk, result=result, sort=sort).values(
        "account_id",
        "account__source_user",
        "account__destination_user",
        "status",
        "copied",
        "skipped",
        "errors",
        "bytes",
        "last_error",
        "started_at",
        "finished_at",
        "folder_totals",
        "interrupted",
    )
    accounts = [
        {
            "account_id": row["account_id"],
            "source_user": row["account__source_user"],
            "destination_user": row["account__destination_user"],
            "status": row["status"],
            "copied": row["copied"],
            "already_there": row["skipped"],
            "errors": row["errors"],
            "bytes": row["bytes"],
            "interrupted": row["interrupted"],
            "reason": row["last_error"],
            "started_at": rfc3339(row["started_at"]),
            "finished_at": rfc3339(row["finished_at"]),
            "folders": [folder_json(f) for f in reports.folder_rows(row["folder_totals"])],
        }
        for row in rows
    ]
    return JsonResponse({**run_json(run), "reason": run.reason, "total_bytes": run.bytes, "accounts": accounts})


@api_view("POST")
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask a running run to stop: 202; the run ends `cancelled` once its jobs have stopped."""
    get_or_404(Run.objects.all(), pk, "run")
    if not orchestrator.cancel_run(pk):
        raise ApiError(409, f"run {pk} is not running")
    return JsonResponse({"run_id": pk}, status=202)


@api_view("GET")
def run_not_copied(request: HttpRequest, pk: int) -> HttpResponse:
    """Where every source message of a run went (runs.progress.run_summary), and the refusals the
    operator accepted as not copied for its accounts (who and when)."""
    get_or_404(Run.objects.all(), pk, "run")
    summary = run_summary(pk)
    return JsonResponse(
        {
            "run_id": pk,
            "complete": summary.complete,
            "summary": summary.sentence,
            "source_messages": summary.source_messages,
            "copied": summary.copied,
            "already_there": summary.already_there,
            "altered": summary.altered,
            "deleted_at_destination": summary.deleted_at_destination,
            "not_copied": summary.not_copied,
            "mailbox_not_read": summary.unread_accounts,
            "accepted_as_not_copied": [
                {
                    "source_user": a.account.source_user,
                    "folder": a.source_folder,
                    "uid": a.uid,
                    "subject": a.subject,
                    "size": a.size,
                    "reason": a.reason,
                    "accepted_by": a.accepted_by_name,
                    "accepted_at": rfc3339(a.accepted_at),
                }
                for a in accepted_for_run(pk)
            ],
        }
    )
