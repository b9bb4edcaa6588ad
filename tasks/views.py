"""The operator's pages for endpoints, tasks and accounts (HTML; the JSON API is in api.py)."""

from __future__ import annotations

import base64
import csv
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, ProtectedError, Q, QuerySet, Subquery, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from imapcopier import crypto
from tasks import csv_import
from tasks.forms import (
    AccountForm,
    CsvUploadForm,
    EndpointForm,
    FolderMappingForm,
    TaskForm,
)
from tasks.models import Account, Endpoint, Task
from tasks.services_probe import probe_endpoint
from tasks.wording import plural


def _posted(request: HttpRequest, files: bool = False) -> tuple:
    """Form data for a POST (even an empty one, so the form is bound and validated); none for a GET."""
    if request.method != "POST":
        return (None, None) if files else (None,)
    return (request.POST, request.FILES) if files else (request.POST,)


# ---------------------------------------------------------------- endpoints


@require_GET
@login_required
def endpoint_list(request: HttpRequest) -> HttpResponse:
    endpoints = Endpoint.objects.annotate(
        source_count=Count("source_tasks", distinct=True),
        destination_count=Count("destination_tasks", distinct=True),
    )
    return render(
        request,
        "tasks/endpoint_list.html",
        {"endpoints": endpoints, "nav": "endpoints"},
    )


@require_http_methods(["GET", "POST"])
@login_required
def endpoint_create(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(*_posted(request))
    if request.method == "POST" and form.is_valid():
        endpoint = form.save()
        messages.success(request, f"Endpoint “{endpoint.label}” created.")
        return redirect("tasks:endpoint_edit", pk=endpoint.pk)
    return render(
        request,
        "tasks/endpoint_form.html",
        {"form": form, "nav": "endpoints"},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def endpoint_edit(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(Endpoint, pk=pk)
    form = EndpointForm(*_posted(request), instance=endpoint)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Endpoint “{endpoint.label}” saved.")
        return redirect("tasks:endpoint_list")
    tasks = Task.objects.filter(Q(source=endpoint) | Q(destination=endpoint))
    return render(
        request,
        "tasks/endpoint_form.html",
        {"form": form, "endpoint": endpoint, "tasks": tasks, "nav": "endpoints"},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def endpoint_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(Endpoint, pk=pk)
    users = Task.objects.filter(Q(source=endpoint) | Q(destination=endpoint))
    if request.method == "POST":
        try:
            endpoint.delete()
        except ProtectedError:
            messages.error(
                request,
                f"“{endpoint.label}” is used by {_tasks_phrase(users)} and cannot be deleted. "
                "Delete those tasks or point them at another endpoint first.",
            )
            return redirect("tasks:endpoint_delete", pk=endpoint.pk)
        messages.success(request, f"Endpoint “{endpoint.label}” deleted.")
        return redirect("tasks:endpoint_list")
    return render(
        request,
        "tasks/endpoint_delete.html",
        {"endpoint": endpoint, "users": users, "nav": "endpoints"},
    )


def _tasks_phrase(tasks: object) -> str:
    names = [f"“{t.name}”" for t in tasks]
    return ("task " if len(names) == 1 else "tasks ") + ", ".join(names)


@require_POST
@login_required
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(Endpoint, pk=pk)
    result = probe_endpoint(endpoint)
    context = {"endpoint": endpoint, "result": result}
    if request.htmx:
        return render(request, "tasks/_endpoint_test.html", context)
    return render(
        request,
        "tasks/endpoint_form.html",
        {
            **context,
            "form": EndpointForm(instance=endpoint),
            "tasks": Task.objects.filter(Q(source=endpoint) | Q(destination=endpoint)),
            "nav": "endpoints",
        },
    )


# ---------------------------------------------------------------- tasks


def task_rows(queryset: object | None = None) -> list[Task]:
    """Tasks with what the list shows, in a fixed number of queries (no per-row queries)."""
    # The list shows runs and schedules, which build on tasks: imported here, not at the top.
    from runs.models import AccountRun, Run
    from scheduling.services import next_run_for

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
    from runs.watch import tasks_token  # the list notices runs it did not start

    context = {
        "tasks": rows,
        "watch_token": tasks_token(),
        "any_running": any(t.is_running for t in rows),
        "endpoint_count": Endpoint.objects.count(),
        "nav": "tasks",
    }
    if request.htmx:
        return render(request, "tasks/_task_table.html", context)
    return render(request, "tasks/task_list.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def task_create(request: HttpRequest) -> HttpResponse:
    form = TaskForm(*_posted(request))
    if request.method == "POST" and form.is_valid():
        task = form.save()
        messages.success(request, f"Task “{task.name}” created. Now add its accounts.")
        return redirect("tasks:detail", pk=task.pk)
    return render(
        request,
        "tasks/task_form.html",
        {"form": form, "nav": "tasks"},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def task_edit(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    form = TaskForm(*_posted(request), instance=task)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Task “{task.name}” saved.")
        return redirect("tasks:detail", pk=task.pk)
    return render(
        request,
        "tasks/task_form.html",
        {"form": form, "task": task, "nav": "tasks"},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def task_delete(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    if request.method == "POST":
        if task.is_running:
            messages.error(
                request,
                f"“{task.name}” is running. Cancel the run and wait for it to stop before deleting the task.",
            )
            return redirect("tasks:delete", pk=task.pk)
        name = task.name
        task.delete()
        messages.success(request, f"Task “{name}” deleted.")
        return redirect("tasks:list")
    return render(
        request,
        "tasks/task_delete.html",
        {
            "task": task,
            "account_count": task.accounts.count(),
            "run_count": task.runs.count(),
            "nav": "tasks",
        },
    )


@require_GET
@login_required
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    from runs.views import run_panel_context  # the task page shows its run panel
    from runs.watch import token_of
    from scheduling.services import with_last_finished

    task = get_object_or_404(with_last_finished(Task.objects.select_related("source", "destination")), pk=pk)

    context = {
        "task": task,
        **account_page(task, request),
        "nav": "tasks",
        **run_panel_context(task, timezone.now()),
    }
    latest = context["run"]  # the watch token from what the page shows: no extra query
    context["watch_token"] = token_of(task.status, latest.pk if latest else None, latest.status if latest else None)
    return render(request, "tasks/task_detail.html", context)


# ---------------------------------------------------------------- accounts


ACCOUNTS_PER_PAGE = 100


def with_last_results(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """Annotate accounts with `last_account_run_id`, the pk of their latest AccountRun."""
    from runs.models import AccountRun

    latest = AccountRun.objects.filter(account=OuterRef("pk")).order_by("-run__started_at", "-pk")
    return accounts.annotate(last_account_run_id=Subquery(latest.values("pk")[:1]))


def attach_last_results(accounts: list[Account]) -> list[Account]:
    """Set `last_result` (an AccountRun or None) on accounts annotated by with_last_results(): one query."""
    from runs.models import AccountRun

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
    from runs import selection  # the last result of each account comes from its runs

    chosen = selection.account_filter(request.GET)
    page = Paginator(selection.filter_accounts(accounts, chosen), ACCOUNTS_PER_PAGE).get_page(request.GET.get("page"))
    ok = Q(source_test_status=Account.TestStatus.OK, destination_test_status=Account.TestStatus.OK)
    failed = Q(source_test_status=Account.TestStatus.FAIL) | Q(destination_test_status=Account.TestStatus.FAIL)
    active = Q(paused=False)
    counts = task.accounts.aggregate(
        total=Count("pk"),
        active=Count("pk", filter=active),
        parked=Count("pk", filter=~active),
        ok=Count("pk", filter=ok & active),
        failed=Count("pk", filter=failed & active),
    )
    return {
        "task": task,
        "accounts": attach_last_results(list(page.object_list)),
        "page": page,
        "q": q,
        "counts": counts,
        "chosen": chosen,
        "test_links": [
            ("ok", "OK", counts["ok"]),
            ("failed", "Failed", counts["failed"]),
            ("untested", "Not tested", counts["active"] - counts["ok"] - counts["failed"]),
        ],
        "filter_query": urlencode(chosen),
        "result_counts": selection.last_result_counts(task.pk),
        "results": selection.LAST_RESULTS,
    }


@require_GET
@login_required
def account_table(request: HttpRequest, pk: int) -> HttpResponse:
    """The accounts table alone: polled while "Test all" runs."""
    task = get_object_or_404(Task, pk=pk)
    context = account_page(task, request)
    context["until"] = request.GET.get("until", "")
    context["only"] = "needs-test" if request.GET.get("only") == "needs-test" else ""
    context["polling"] = bool(context["until"]) and _tests_pending(task, context["until"], bool(context["only"]))
    return render(request, "tasks/_account_table.html", context)


def _tests_pending(task: Task, started: str, only_needing_test: bool = False) -> bool:
    """True while some active account of the task has not been tested since `started` (ISO time);
    with only_needing_test, accounts already tested OK before are not waited for."""
    since = datetime.fromisoformat(started)
    if timezone.now() - since > timedelta(minutes=10):
        return False  # give up polling; a reload shows whatever was recorded
    accounts = task.accounts.active()
    if only_needing_test:
        accounts = accounts.exclude(
            source_test_status=Account.TestStatus.OK, destination_test_status=Account.TestStatus.OK
        )
    return accounts.filter(
        Q(source_tested_at__isnull=True)
        | Q(source_tested_at__lt=since)
        | Q(destination_tested_at__isnull=True)
        | Q(destination_tested_at__lt=since)
    ).exists()


@require_http_methods(["GET", "POST"])
@login_required
@sensitive_post_parameters("source_password", "destination_password")
def account_create(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    form = AccountForm(*_posted(request), task=task)
    if request.method == "POST" and form.is_valid():
        account = form.save()
        messages.success(request, f"Account {account.source_user} added.")
        return redirect(reverse("tasks:detail", args=[task.pk]) + "#accounts")
    return render(
        request,
        "tasks/account_form.html",
        {"form": form, "task": task, "nav": "tasks"},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
@sensitive_post_parameters("source_password", "destination_password")
def account_edit(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    account = get_object_or_404(Account.objects.select_related("task"), pk=account_pk, task_id=pk)
    form = AccountForm(*_posted(request), instance=account, task=account.task)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Account {account.source_user} saved.")
        return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")
    return render(
        request,
        "tasks/account_form.html",
        {"form": form, "task": account.task, "account": account, "nav": "tasks"},
        status=400 if form.errors else 200,
    )


@require_POST
@login_required
def account_delete(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    account = get_object_or_404(Account.objects.select_related("task"), pk=account_pk, task_id=pk)
    if account.task.is_running:
        messages.error(request, "The task is running: accounts cannot be removed until it ends.")
    else:
        account.delete()
        messages.success(request, f"Account {account.source_user} removed.")
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")


@require_GET
@login_required
def account_export(request: HttpRequest, pk: int) -> HttpResponse:
    """The account list as CSV, without passwords (the import columns minus the secrets)."""
    task = get_object_or_404(Task, pk=pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="task-{task.pk}-accounts.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "source_user",
            "destination_user",
            "source_test",
            "source_message",
            "destination_test",
            "destination_message",
        ]
    )
    # values_list: the export has no passwords, so it never decrypts them either.
    for row in task.accounts.values_list(
        "source_user",
        "destination_user",
        "source_test_status",
        "source_test_message",
        "destination_test_status",
        "destination_test_message",
    ):
        writer.writerow(list(row))
    return response


@require_POST
@login_required
def account_test(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    account = get_object_or_404(
        Account.objects.select_related("task__source", "task__destination"),
        pk=account_pk,
        task_id=pk,
    )
    from tasks.services import test_account

    test_account(account)
    account.refresh_from_db()
    if request.htmx:
        response = render(
            request,
            "tasks/_account_row.html",
            {"account": account, "task": account.task},
        )
        # The table's counters ("2 of 3 tested OK", the filters) refresh on this event.
        return trigger_client_event(response, "accounts-changed")
    if account.tested_ok:
        messages.success(request, f"{account.source_user}: both logins work.")
    else:
        messages.warning(request, f"{account.source_user}: a login test failed.")
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")


@require_POST
@login_required
def account_test_all(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    from tasks.services import test_accounts

    started = timezone.now()
    only = "needs-test" if request.POST.get("only") == "needs-test" else ""
    count = test_accounts(task, background=True, only_needing_test=bool(only))
    if request.htmx:
        context = account_page(task, request)
        context["polling"] = bool(count)
        context["until"] = started.isoformat()
        context["only"] = only
        context["testing"] = count
        return render(request, "tasks/_account_table.html", context)
    messages.info(
        request,
        f"Testing {plural(count, 'account')} in the background; reload to see the results."
        if count
        else "No active account needs a test.",
    )
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")


# ---------------------------------------------------------------- CSV import

_PENDING_KEY = "csv-import-{}"


def _store_pending(request: HttpRequest, task: Task, data: bytes) -> None:
    # The upload waits in the session (stored in the database, so any web process can
    # finish the import), encrypted like the passwords it contains. The preview page
    # never carries a password.
    request.session[_PENDING_KEY.format(task.pk)] = crypto.encrypt(base64.b64encode(data).decode("ascii"))


def _load_pending(request: HttpRequest, task: Task) -> bytes | None:
    token = request.session.get(_PENDING_KEY.format(task.pk))
    return base64.b64decode(crypto.decrypt(token)) if token else None


@require_http_methods(["GET", "POST"])
@login_required
def account_import(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    form = CsvUploadForm(*_posted(request, files=True))
    if request.method == "POST" and form.is_valid():
        _store_pending(request, task, form.cleaned_data["file"].read())
        return redirect("tasks:import_preview", pk=task.pk)
    return render(
        request,
        "tasks/import_upload.html",
        {"form": form, "task": task, "nav": "tasks"},
        status=400 if form.errors else 200,
    )


@require_GET
@login_required
def import_preview(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    data = _load_pending(request, task)
    if data is None:
        messages.info(request, "Upload a CSV file first.")
        return redirect("tasks:import", pk=task.pk)
    preview = csv_import.parse_accounts_csv(task, data)
    return render(
        request,
        "tasks/import_preview.html",
        {"task": task, "preview": preview, "nav": "tasks"},
    )


@require_POST
@login_required
def import_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    data = _load_pending(request, task)
    if data is None:
        messages.error(request, "The upload has expired. Upload the file again.")
        return redirect("tasks:import", pk=task.pk)
    # Parse again: the task's accounts may have changed since the preview.
    preview = csv_import.parse_accounts_csv(task, data)
    try:
        created, updated = csv_import.apply_import(task, preview)
    except csv_import.ImportRefused as exc:
        messages.error(request, str(exc))
        return redirect("tasks:import_preview", pk=task.pk)
    request.session.pop(_PENDING_KEY.format(task.pk), None)
    messages.success(
        request,
        f"Imported: {created} account{'s' if created != 1 else ''} added, {updated} updated. Test them before the first run.",
    )
    return redirect(reverse("tasks:detail", args=[task.pk]) + "#accounts")


@require_POST
@login_required
def import_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk)
    request.session.pop(_PENDING_KEY.format(task.pk), None)
    messages.info(request, "Import cancelled; nothing was saved.")
    return redirect("tasks:detail", pk=task.pk)


# ---------------------------------------------------------------- folder mapping


@require_http_methods(["GET", "POST"])
@login_required
def folder_mapping(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task.objects.select_related("source", "destination"), pk=pk)
    from tasks.folders import folder_overview

    account = task.accounts.first()
    overview = folder_overview(task, account) if account else None
    form = None
    if overview and overview.ok:
        form = FolderMappingForm(
            *_posted(request),
            plans=overview.plans,
            mapping=task.folder_mapping,
            infos=overview.infos,
        )
        if request.method == "POST" and form.is_valid():
            listed = {plan.source for plan in overview.plans}
            kept = {k: v for k, v in task.folder_mapping.items() if k not in listed}
            task.folder_mapping = {**kept, **form.mapping()}
            task.save(update_fields=["folder_mapping", "updated_at"])
            messages.success(request, "Folder mapping saved.")
            return redirect("tasks:folders", pk=task.pk)
    return render(
        request,
        "tasks/folder_mapping.html",
        {
            "task": task,
            "account": account,
            "overview": overview,
            "form": form,
            "nav": "tasks",
        },
    )


# ---------------------------------------------------------------- parking (issue 12, item 1)


@require_http_methods(["GET", "POST"])
@login_required
def account_park(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    """Park one account with a reason (GET: the form), or, with ?failed=1, every active account whose test failed."""
    from tasks.parking import ParkRefused, park_accounts

    task = get_object_or_404(Task, pk=pk)
    account = (
        get_object_or_404(Account.objects.defer("source_password", "destination_password"), pk=account_pk, task=task)
        if account_pk
        else None
    )
    targets = [account] if account else list(task.accounts.active().with_test_state("failed").only("pk", "source_user"))
    error = ""
    if request.method == "POST":
        try:
            parked = park_accounts(
                task, [a.pk for a in targets], reason=request.POST.get("reason", ""), now=timezone.now()
            )
        except ParkRefused as refusal:
            error = str(refusal)
        else:
            messages.success(request, f"{plural(parked, 'account')} parked: runs, tests and the schedule skip them.")
            return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")
    return render(
        request,
        "tasks/account_park.html",
        {"task": task, "account": account, "targets": targets, "error": error, "nav": "tasks"},
        status=400 if error else 200,
    )


@require_POST
@login_required
def account_resume(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    from tasks.parking import resume_accounts

    task = get_object_or_404(Task, pk=pk)
    account = get_object_or_404(Account.objects.only("pk", "source_user", "task"), pk=account_pk, task=task)
    if resume_accounts(task, [account.pk]):
        messages.success(request, f"{account.source_user} is active again: test it, then run the failed accounts.")
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")
