"""No page, partial or download of the operator's pages ever carries an IMAP password."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from runs.models import Run
from tests.support.factories import AccountFactory, AccountRunFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db

SOURCE_SECRET = "S0urce-Pa55-never-shown"
DESTINATION_SECRET = "Dest1nation-Pa55-never-shown"
CSV_SECRET = "Csv-Pa55-never-shown"


def test_no_password_in_any_page(admin_client):
    task = TaskFactory()
    account = AccountFactory(
        task=task,
        source_password=SOURCE_SECRET,
        destination_password=DESTINATION_SECRET,
        source_test_message="login ok",
    )
    run = RunFactory(task=task, status=Run.Status.DONE, finished_at=timezone.now())
    AccountRunFactory(run=run, account=account, status="done", last_error="")
    admin_client.post(
        reverse("tasks:import", args=[task.pk]),
        {"file": SimpleUploadedFile("a.csv", f"new@old,{CSV_SECRET},new@new,\n".encode())},
    )
    pages = [
        reverse("tasks:list"),
        reverse("tasks:detail", args=[task.pk]),
        reverse("tasks:edit", args=[task.pk]),
        reverse("tasks:delete", args=[task.pk]),
        reverse("tasks:account_table", args=[task.pk]),
        reverse("tasks:account_edit", args=[task.pk, account.pk]),
        reverse("tasks:account_create", args=[task.pk]),
        reverse("tasks:account_export", args=[task.pk]),
        reverse("tasks:import", args=[task.pk]),
        reverse("tasks:import_preview", args=[task.pk]),
        reverse("tasks:endpoint_list"),
        reverse("tasks:endpoint_edit", args=[task.source_id]),
        reverse("runs:report", args=[run.pk]),
        reverse("runs:report_csv", args=[run.pk]),
        reverse("runs:progress", args=[run.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        for secret in (SOURCE_SECRET, DESTINATION_SECRET, CSV_SECRET):
            assert secret not in body, url
    # a failed edit renders the form again: the typed password is not echoed back either
    response = admin_client.post(
        reverse("tasks:account_edit", args=[task.pk, account.pk]),
        {
            "source_user": "",
            "source_password": "Typed-Pa55-not-echoed",
            "destination_user": "x",
        },
    )
    assert response.status_code == 400
    assert "Typed-Pa55-not-echoed" not in response.content.decode()


def test_task_page_uses_a_fixed_number_of_queries(admin_client, django_assert_max_num_queries):
    task = TaskFactory()
    accounts = AccountFactory.create_batch(12, task=task)
    run = RunFactory(task=task)
    for account in accounts:
        AccountRunFactory(run=run, account=account, status="done")
    # 11: one more than before the accounts' filters, for their counters (last results of all accounts).
    with django_assert_max_num_queries(11):
        response = admin_client.get(reverse("tasks:detail", args=[task.pk]))
    assert response.status_code == 200
