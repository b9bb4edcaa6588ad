"""A known password must appear nowhere: logs (DEBUG, imapclient's too), job records, tables, pages, API, errors.

The accounts get unique passwords; the test makes a login fail (the server has another password), a
job fail with an exception, a run copy through a real cluster logging at DEBUG, then reads every page
of the task, accounts and run report, the API, the admin pages and Django's error pages, and greps
every output and every row of every table for the plaintext.
"""

from __future__ import annotations

import logging
import secrets

import pytest
from django.contrib import admin
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.urls import NoReverseMatch, reverse

from runs import orchestrator
from runs.jobs import copy_account_job
from runs.models import AccountRun, Run
from tasks.models import Account, Endpoint, Task
from tests.e2e.conftest import fill_user, site_env, wait_until
from tests.support.factories import EndpointFactory, TaskFactory

pytestmark = [pytest.mark.cluster, pytest.mark.imap, pytest.mark.django_db(transaction=True)]


def _secret(side: str) -> str:
    return f"Leak{side}{secrets.token_hex(8)}"


def _endpoint(imap_server) -> Endpoint:
    return EndpointFactory(host=imap_server.host, port=imap_server.imap_port, security="plain", verify_tls=False)


def _account(task: Task, source, destination, source_password: str, destination_password: str) -> Account:
    return Account.objects.create(
        task=task,
        source_user=source.username,
        source_password=source_password,
        destination_user=destination.username,
        destination_password=destination_password,
        source_test_status=Account.TestStatus.OK,
        destination_test_status=Account.TestStatus.OK,
    )


def _every_row_as_text() -> str:
    """Every row of every table, with django-q2's pickled job records and the sessions decoded."""
    from django_q.models import OrmQ
    from django_q.models import Task as QTask
    from django_q.signing import SignedPackage

    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            parts.extend(repr(row) for row in cursor.fetchall())
    for job in QTask.objects.all():
        parts.append(f"{job.name} {job.func} {job.args!r} {job.kwargs!r} {job.result!r}")
    for queued in OrmQ.objects.all():
        parts.append(repr(SignedPackage.loads(queued.payload)))
    for session_key in SessionStore.get_model_class().objects.values_list("session_key", flat=True):
        parts.append(repr(SessionStore(session_key=session_key).load()))
    return "\n".join(parts)


def _pages(client, tasks: list[Task]) -> dict[str, bytes]:
    """Every page and API answer about the tasks, their accounts and runs, and every admin page."""
    pages: dict[str, bytes] = {}

    def get(url: str) -> None:
        response = client.get(url)
        assert response.status_code in (200, 302), (url, response.status_code)
        pages[url] = b"".join(response) if response.streaming else response.content

    get(reverse("tasks:list"))
    get(reverse("tasks:endpoint_list"))
    for task in tasks:
        for name in ("detail", "edit", "folders", "account_table", "account_create", "import", "account_export"):
            get(reverse(f"tasks:{name}", args=[task.pk]))
        for account in task.accounts.all():
            get(reverse("tasks:account_edit", args=[task.pk, account.pk]))
        for name in ("schedule", "run_log"):
            get(reverse(f"scheduling:{name}", args=[task.pk]))
        get(reverse("api:task", args=[task.pk]))
        get(reverse("api:task_runs", args=[task.pk]))
        for run in Run.objects.filter(task=task):
            for name in ("report", "report_csv", "progress"):
                get(reverse(f"runs:{name}", args=[run.pk]))
    get("/metrics")
    get(reverse("admin:index"))
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        get(reverse("admin:{}_{}_changelist".format(*info)))
        for obj in model._default_manager.order_by("-pk")[:5]:
            try:
                get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
            except NoReverseMatch:
                continue
    return pages


@pytest.mark.timeout(240)
def test_no_password_in_logs_jobs_tables_pages_or_error_pages(
    imap_server, make_imap_user, admin_client, clusters, caplog, capfd, settings, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    for name in ("imapclient", "imapclient.imaplib", "django_q", "runs", "tasks", "scheduling"):
        caplog.set_level(logging.DEBUG, logger=name)

    # good: copies; wrong: the server knows another password; broken: the job itself raises.
    good = [_secret("GoodSrc"), _secret("GoodDst")]
    wrong = [_secret("WrongSrc"), _secret("WrongDst")]
    broken = [_secret("BrokenSrc"), _secret("BrokenDst")]
    known = good + wrong + broken
    source, destination = make_imap_user(password=good[0]), make_imap_user(password=good[1])
    fill_user(imap_server, source, {"INBOX": 4, "Archive": 2})
    wrong_source = make_imap_user()  # a password other than the stored one
    wrong_destination = make_imap_user(password=wrong[1])
    broken_source, broken_destination = make_imap_user(password=broken[0]), make_imap_user(password=broken[1])
    fill_user(imap_server, broken_source, {"INBOX": 2})

    task = TaskFactory(source=_endpoint(imap_server), destination=_endpoint(imap_server))
    good_account = _account(task, source, destination, *good)
    wrong_account = _account(task, wrong_source, wrong_destination, *wrong)
    # A folder mapping of the wrong shape makes the engine raise inside the job.
    broken_task = TaskFactory(source=task.source, destination=task.destination, folder_mapping=["INBOX"])
    _account(broken_task, broken_source, broken_destination, *broken)

    # Connection tests from the pages: one login fails with the server's words.
    for account in (good_account, wrong_account):
        response = admin_client.post(reverse("tasks:account_test", args=[task.pk, account.pk]))
        assert response.status_code == 302
    wrong_account.refresh_from_db()
    assert wrong_account.source_test_status == Account.TestStatus.FAIL
    Account.objects.filter(pk=wrong_account.pk).update(source_test_status=Account.TestStatus.OK)

    # A run in this process, jobs called directly, imapclient logging at DEBUG.
    pushed: list[int] = []
    monkeypatch.setattr(orchestrator, "push_jobs", lambda pks: pushed.extend(pks))
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    for pk in pushed:
        copy_account_job(pk)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.copied == 6
    assert "imapclient" in {r.name.split(".")[0] for r in caplog.records}  # its debug log was on
    failed = AccountRun.objects.get(run=run, account=wrong_account)
    assert failed.status == AccountRun.Status.FAILED and failed.last_error
    monkeypatch.undo()

    # The same through a real cluster logging at DEBUG, and a job that raises.
    cluster = clusters(site_env(redis=False, LOG_LEVEL="DEBUG"))
    runs = [orchestrator.start_run(t.pk, trigger=Run.Trigger.MANUAL) for t in (task, broken_task)]
    for run in runs:
        wait_until(lambda run=run: not Run.objects.get(pk=run.pk).is_running, 90, "the runs", cluster)
    broken_run = AccountRun.objects.get(run=runs[1])
    assert broken_run.status == AccountRun.Status.FAILED and broken_run.last_error.startswith("internal error")
    assert "Traceback" in cluster.log() and " DEBUG " in cluster.log()

    # Django's error pages, with DEBUG on (the technical page shows local variables and POST data)
    # and off: a connection test that blows up, an account form whose save blows up.
    from tasks import forms

    def explode(*args, **kwargs):
        raise RuntimeError("simulated failure")

    admin_client.raise_request_exception = False
    error_pages = []
    for debug in (True, False):
        settings.DEBUG = debug
        with monkeypatch.context() as patch:
            patch.setattr("runs.engine.test_connection", explode)
            patch.setattr(forms.AccountForm, "save", explode)
            response = admin_client.post(reverse("tasks:account_test", args=[task.pk, good_account.pk]))
            assert response.status_code == 500
            error_pages.append(response.content)
            new_user = make_imap_user()
            response = admin_client.post(
                reverse("tasks:account_create", args=[task.pk]),
                {
                    "source_user": new_user.username,
                    "source_password": good[0],
                    "destination_user": new_user.username,
                    "destination_password": good[1],
                },
            )
            assert response.status_code == 500
            error_pages.append(response.content)
    settings.DEBUG = False
    assert b"simulated failure" in error_pages[0]  # the technical page it is

    pages = _pages(admin_client, [task, broken_task])
    captured = capfd.readouterr()
    outputs = {
        "log records": "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records),
        "caplog text": caplog.text,
        "stdout/stderr": captured.out + captured.err,
        "cluster log": cluster.log(),
        "database": _every_row_as_text(),
        "pages": "\n".join(f"{url}\n{body.decode(errors='replace')}" for url, body in pages.items()),
        "error pages": "\n".join(page.decode(errors="replace") for page in error_pages),
    }
    leaks = {where: [s for s in known if s in text] for where, text in outputs.items()}
    assert leaks == {where: [] for where in outputs}
    # The greps looked at real content: the accounts are on the pages, in the tables and the logs.
    assert good_account.source_user in outputs["pages"] and good_account.source_user in outputs["database"]
    assert f"copy account run {broken_run.pk}" in outputs["cluster log"]
    assert reverse("admin:tasks_account_change", args=[good_account.pk]) in pages
