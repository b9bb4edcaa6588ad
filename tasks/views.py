"""The operator's pages that show nothing but endpoints, tasks and accounts (HTML).

The task list and the task page show runs and schedules too: they are the site's (imapcopier/views.py).
"""

from __future__ import annotations

import base64

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from imapcopier import crypto
from tasks import csv_import, oauth, parking, services
from tasks.folders import folder_overview
from tasks.forms import (
    ENDPOINT_SECRETS,
    AccountForm,
    CsvUploadForm,
    EndpointForm,
    FolderMappingForm,
    TaskForm,
)
from tasks.models import Account, Endpoint, Task
from tasks.services_probe import probe_accounts, probe_endpoint
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
    return render(request, "tasks/endpoint_list.html", {"endpoints": services.endpoint_list(), "nav": "endpoints"})


@require_http_methods(["GET", "POST"])
@login_required
@sensitive_post_parameters(*ENDPOINT_SECRETS)
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
@sensitive_post_parameters(*ENDPOINT_SECRETS)
def endpoint_edit(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(Endpoint, pk=pk)
    form = EndpointForm(*_posted(request), instance=endpoint)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Endpoint “{endpoint.label}” saved.")
        return redirect("tasks:endpoint_list")
    return render(
        request,
        "tasks/endpoint_form.html",
        {
            "form": form,
            "endpoint": endpoint,
            "tasks": services.tasks_using(endpoint),
            "probe_accounts": probe_accounts(endpoint),
            "nav": "endpoints",
        },
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def endpoint_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(Endpoint, pk=pk)
    if request.method == "POST":
        users = services.delete_endpoint(endpoint)
        if users:
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
        {"endpoint": endpoint, "users": services.tasks_using(endpoint), "nav": "endpoints"},
    )


def _tasks_phrase(tasks: object) -> str:
    names = [f"“{t.name}”" for t in tasks]
    return ("task " if len(names) == 1 else "tasks ") + ", ".join(names)


@require_POST
@login_required
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(Endpoint, pk=pk)
    account = request.POST.get("account", "")
    result = probe_endpoint(endpoint, int(account) if account.isdigit() else None)
    context = {"endpoint": endpoint, "result": result}
    if request.htmx:
        return render(request, "tasks/_endpoint_test.html", context)
    return render(
        request,
        "tasks/endpoint_form.html",
        {
            **context,
            "form": EndpointForm(instance=endpoint),
            "tasks": services.tasks_using(endpoint),
            "probe_accounts": probe_accounts(endpoint),
            "nav": "endpoints",
        },
    )


# ---------------------------------------------------------------- tasks


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
        name = task.name
        try:
            services.delete_task(task)
        except services.TaskIsRunning:
            messages.error(
                request,
                f"“{task.name}” is running. Cancel the run and wait for it to stop before deleting the task.",
            )
            return redirect("tasks:delete", pk=task.pk)
        messages.success(request, f"Task “{name}” deleted.")
        return redirect("tasks:list")
    return render(
        request,
        "tasks/task_delete.html",
        {"task": task, **services.deletion_summary(task), "nav": "tasks"},
    )


# ---------------------------------------------------------------- accounts


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
    account = get_object_or_404(
        Account.objects.select_related("task__source", "task__destination"), pk=account_pk, task_id=pk
    )
    form = AccountForm(*_posted(request), instance=account, task=account.task)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Account {account.source_user} saved.")
        return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")
    consent = [
        (side, request.build_absolute_uri(path), bool(getattr(account, f"{side}_refresh_token")))
        for side, path in oauth.consent_links(account).items()
    ]
    return render(
        request,
        "tasks/account_form.html",
        {"form": form, "task": account.task, "account": account, "consent": consent, "nav": "tasks"},
        status=400 if form.errors else 200,
    )


@require_POST
@login_required
def account_delete(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    account = get_object_or_404(Account.objects.select_related("task"), pk=account_pk, task_id=pk)
    try:
        services.remove_account(account)
    except services.TaskIsRunning:
        messages.error(request, "The task is running: accounts cannot be removed until it ends.")
    else:
        messages.success(request, f"Account {account.source_user} removed.")
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")


@require_GET
@login_required
def account_export(request: HttpRequest, pk: int) -> HttpResponse:
    """The account list as CSV, without passwords (the import columns minus the secrets)."""
    task = get_object_or_404(Task.objects.select_related("source", "destination"), pk=pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="task-{task.pk}-accounts.csv"'
    services.write_accounts_csv(task, response, absolute_url=request.build_absolute_uri)
    return response


@require_POST
@login_required
def account_test(request: HttpRequest, pk: int, account_pk: int) -> HttpResponse:
    account = get_object_or_404(
        Account.objects.select_related("task__source", "task__destination"),
        pk=account_pk,
        task_id=pk,
    )
    account = services.test_account(account)
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
    account = services.first_account(task)
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
            services.save_folder_mapping(task, {plan.source for plan in overview.plans}, form.mapping())
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
    """Park one account with a reason (GET: the form), or (account_pk 0: the park-failed URL) every
    active account whose test failed."""
    task = get_object_or_404(Task, pk=pk)
    account = (
        get_object_or_404(Account.objects.only("pk", "source_user", "task"), pk=account_pk, task=task)
        if account_pk
        else None
    )
    targets = [account] if account else parking.failed_targets(task)
    error = ""
    if request.method == "POST":
        try:
            parked = parking.park_accounts(
                task, [a.pk for a in targets], reason=request.POST.get("reason", ""), now=timezone.now()
            )
        except parking.ParkRefused as refusal:
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
    task = get_object_or_404(Task, pk=pk)
    account = get_object_or_404(Account.objects.only("pk", "source_user", "task"), pk=account_pk, task=task)
    if parking.resume_accounts(task, [account.pk]):
        messages.success(request, f"{account.source_user} is active again: test it, then run the failed accounts.")
    return redirect(reverse("tasks:detail", args=[pk]) + "#accounts")
