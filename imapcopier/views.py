"""The site's pages: the ones that put several apps on one screen, and the health check.

The task list (tasks with their last run and next scheduled start) and the task page (the task, its
accounts with their last results, its run panel and its schedule) need tasks, runs and scheduling, so
they live here, above all three. Pages that need only one app stay in that app's views.py. Their URL
names stay in the `tasks` namespace (tasks:list, tasks:detail, ...): see imapcopier/urls.py.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, login_required
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from imapcopier import api, services
from tasks.models import Task
from tasks.wording import plural


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


@require_GET
@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    context = {**services.task_list(now=timezone.now()), "nav": "tasks"}
    if request.htmx:
        return render(request, "tasks/_task_table.html", context)
    return render(request, "tasks/task_list.html", context)


@require_GET
@login_required
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        context = services.task_page(
            pk, q=request.GET.get("q", ""), page=request.GET.get("page"), filters=request.GET, now=timezone.now()
        )
    except Task.DoesNotExist:
        raise Http404("no such task") from None
    return render(request, "tasks/task_detail.html", {**context, "nav": "tasks"})


@require_GET
@login_required
def account_table(request: HttpRequest, pk: int) -> HttpResponse:
    """The accounts table alone: polled while "Test all" runs (`until` = when it started)."""
    task = get_object_or_404(Task, pk=pk)
    until = None
    if request.GET.get("until"):
        try:
            until = services.parse_until(request.GET["until"])
        except ValueError:
            return HttpResponseBadRequest("until must be an ISO 8601 time with a time zone", content_type="text/plain")
    context = services.account_table(
        task,
        q=request.GET.get("q", ""),
        page=request.GET.get("page"),
        filters=request.GET,
        until=until,
        only_needing_test=request.GET.get("only") == "needs-test",
        now=timezone.now(),
    )
    return render(request, "tasks/_account_table.html", context)


@require_POST
@login_required
def account_test_all(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    context = services.test_all(
        task,
        q=request.GET.get("q", ""),
        page=request.GET.get("page"),
        only_needing_test=request.POST.get("only") == "needs-test",
        now=timezone.now(),
    )
    if request.htmx:
        return render(request, "tasks/_account_table.html", context)
    if context["tested"]:
        messages.info(
            request, f"Testing {plural(context['tested'], 'account')} in the background; reload to see the results."
        )
    else:
        messages.info(request, "No active account needs a test.")
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")


@login_not_required
def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The 404 answer (settings: handler404): JSON under /api/, like every other API answer; a page elsewhere."""
    if request.path_info.startswith("/api/"):
        return api.page_not_found(request, exception)
    return render(request, "404.html", {"path": request.path}, status=404)
