"""The site's pages: the ones that put several apps on one screen, and the health check.

The task list (tasks with their last run and next scheduled start) and the task page (the task, its
accounts with their last results, its run panel and its schedule) need tasks, runs and scheduling, so
they live here, above all three. Pages that need only one app stay in that app's views.py. Their URL
names stay in the `tasks` namespace (tasks:list, tasks:detail, ...): see imapcopier/urls.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, login_required
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from runs.jobs import enqueue_account_tests
from runs.models import AccountRun, Run
from runs.views import run_panel_context
from scheduling.services import next_run_for, with_last_finished
from tasks.models import Account, Endpoint, Task


@require_GET
@login_not_required
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 when it does not. For load balancers and container health checks."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


# ---------------------------------------------------------------- the task list and the task page


def task_rows(queryset: object | None = None) -> list[Task]:
    """Tasks with what the list shows, in a fixed number of queries (no per-row queries)."""
    last_run = Run.objects.filter(task=OuterRef("pk")).order_by("-started_at", "-id")
    finished = Run.objects.filter(task=OuterRef("pk"), finished_at__isnull=False)
    running = AccountRun.objects.filter(run__task=OuterRef("pk"), run__status=Run.Status.RUNNING).values("run__task")
    tasks = (
        (queryset if queryset is not None else Task.objects.all())
        .select_related("source", "destination")
        .annotate(
            account_count=Count("accounts", distinct=True),
            untested_count=Count(
                "accounts",
                filter=~Q(accounts__source_test_status=Account.TestStatus.OK)
                | ~Q(accounts__destination_test_status=Account.TestStatus.OK),
                distinct=True,
            ),
            last_run_id=Subquery(last_run.values("pk")[:1]),
            last_run_status=Subquery(last_run.values("status")[:1]),
            last_run_started_at=Subquery(last_run.values("started_at")[:1]),
            last_run_errors=Subquery(last_run.values("errors")[:1]),
            last_finished_at=Subquery(finished.order_by("-finished_at").values("finished_at")[:1]),
            done_messages=Subquery(running.annotate(n=Sum("copied") + Sum("skipped")).values("n")[:1]),
            total_messages=Subquery(running.annotate(n=Sum("total_messages")).values("n")[:1]),
        )
    )
    rows = list(tasks)
    for task in rows:
        task.next_run_at = next_run_for(task)  # uses the annotated last_finished_at
        total = task.total_messages or 0
        task.percent = min(100, round(100 * (task.done_messages or 0) / total)) if total else None
    return rows


@require_GET
@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    rows = task_rows()
    context = {
        "tasks": rows,
        "any_running": any(t.is_running for t in rows),
        "endpoint_count": Endpoint.objects.count(),
        "nav": "tasks",
    }
    if request.htmx:
        return render(request, "tasks/_task_table.html", context)
    return render(request, "tasks/task_list.html", context)


@require_GET
@login_required
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(with_last_finished(Task.objects.select_related("source", "destination")), pk=pk)

    context = {
        "task": task,
        **account_page(task, request),
        "nav": "tasks",
        **run_panel_context(task, timezone.now()),
    }
    return render(request, "tasks/task_detail.html", context)


# ---------------------------------------------------------------- accounts on the task page


ACCOUNTS_PER_PAGE = 100


def with_last_results(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """Annotate accounts with `last_account_run_id`, the pk of their latest AccountRun."""
    latest = AccountRun.objects.filter(account=OuterRef("pk")).order_by("-run__started_at", "-pk")
    return accounts.annotate(last_account_run_id=Subquery(latest.values("pk")[:1]))


def attach_last_results(accounts: list[Account]) -> list[Account]:
    """Set `last_result` (an AccountRun or None) on accounts annotated by with_last_results(): one query."""
    runs = AccountRun.objects.in_bulk([a.last_account_run_id for a in accounts if a.last_account_run_id])
    for account in accounts:
        account.last_result = runs.get(account.last_account_run_id)
    return accounts


def account_page(task: Task, request: HttpRequest) -> dict:
    """One page of the task's accounts (search `q`, `page`), with their last results and the task's counts."""
    q = request.GET.get("q", "").strip()
    # The passwords are not needed to list accounts: never load (or decrypt) them here.
    accounts = task.accounts.defer("source_password", "destination_password").order_by("source_user", "pk")
    if q:
        accounts = accounts.filter(Q(source_user__icontains=q) | Q(destination_user__icontains=q))
    page = Paginator(with_last_results(accounts), ACCOUNTS_PER_PAGE).get_page(request.GET.get("page"))
    ok = Q(source_test_status=Account.TestStatus.OK, destination_test_status=Account.TestStatus.OK)
    failed = Q(source_test_status=Account.TestStatus.FAIL) | Q(destination_test_status=Account.TestStatus.FAIL)
    counts = task.accounts.aggregate(total=Count("pk"), ok=Count("pk", filter=ok), failed=Count("pk", filter=failed))
    return {
        "task": task,
        "accounts": attach_last_results(list(page.object_list)),
        "page": page,
        "q": q,
        "counts": counts,
    }


@require_GET
@login_required
def account_table(request: HttpRequest, pk: int) -> HttpResponse:
    """The accounts table alone: polled while "Test all" runs."""
    task = get_object_or_404(Task, pk=pk)
    until = request.GET.get("until", "")
    since = _aware_time(until) if until else None
    if until and since is None:
        return HttpResponseBadRequest(
            "until must be an ISO 8601 time with its zone, e.g. 2026-12-01T10:00:00+00:00", content_type="text/plain"
        )
    context = account_page(task, request)
    context["until"] = until
    context["polling"] = since is not None and _tests_pending(task, since)
    return render(request, "tasks/_account_table.html", context)


def _aware_time(text: str) -> datetime | None:
    """`text` as an ISO 8601 time with a zone, or None when it is malformed or has no zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _tests_pending(task: Task, since: datetime) -> bool:
    """True while some account of the task has not been tested since `since`."""
    if timezone.now() - since > timedelta(minutes=10):
        return False  # give up polling; a reload shows whatever was recorded
    return task.accounts.filter(
        Q(source_tested_at__isnull=True)
        | Q(source_tested_at__lt=since)
        | Q(destination_tested_at__isnull=True)
        | Q(destination_tested_at__lt=since)
    ).exists()


@require_POST
@login_required
def account_test_all(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    started = timezone.now()
    enqueue_account_tests(task)
    if request.htmx:
        context = account_page(task, request)
        context["polling"] = True
        context["until"] = started.isoformat()
        return render(request, "tasks/_account_table.html", context)
    messages.info(
        request,
        f"Testing {task.accounts.count()} accounts in the background; reload to see the results.",
    )
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")
