from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import Run
from tasks.models import Account, Task
from tests.factories import (
    AccountFactory,
    AccountRunFactory,
    EndpointFactory,
    RunFactory,
    TaskFactory,
)

pytestmark = pytest.mark.django_db


def test_task_list_is_the_home_page(admin_client):
    task = TaskFactory(name="Acme to new host")
    AccountFactory.create_batch(3, task=task)
    response = admin_client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Acme to new host" in html
    assert f"{task.source.label}" in html and f"{task.destination.label}" in html
    assert "never" in html  # no run yet


def test_task_list_shows_last_run_broken_badge_and_running_progress(admin_client):
    broken = TaskFactory(name="broken one", broken=True)
    RunFactory(task=broken, status=Run.Status.DONE, errors=4, finished_at=timezone.now())
    running = TaskFactory(name="busy one", status=Task.Status.RUNNING)
    run = RunFactory(task=running, status=Run.Status.RUNNING)
    AccountRunFactory(run=run, copied=30, skipped=10, total_messages=80, status="running")
    AccountRunFactory(run=run, copied=0, total_messages=20, status="queued")
    html = admin_client.get("/").content.decode()
    assert 'class="badge broken"' in html
    assert "4 errors" in html
    assert 'aria-valuenow="40"' in html  # (30 + 10) of 100 messages
    assert 'hx-trigger="every 5s"' in html  # the list refreshes while something runs


def test_task_list_uses_a_fixed_number_of_queries(admin_client, django_assert_max_num_queries):
    for _ in range(8):
        task = TaskFactory()
        AccountFactory.create_batch(2, task=task)
        RunFactory(task=task, finished_at=timezone.now())
    with django_assert_max_num_queries(8):
        admin_client.get("/")


def test_task_list_does_not_poll_when_nothing_runs(admin_client):
    TaskFactory()
    html = admin_client.get("/").content.decode()
    # Only the watch asks (a 204 while nothing changed) whether a run started elsewhere.
    assert html.count("hx-trigger") == 1 and 'data-watch hx-get="/tasks/watch/?shown=' in html


def test_create_task(admin_client):
    source, destination = EndpointFactory(), EndpointFactory()
    response = admin_client.post(
        reverse("tasks:create"),
        {"name": "Move", "source": source.pk, "destination": destination.pk},
    )
    task = Task.objects.get(name="Move")
    assert response.status_code == 302
    assert response["Location"] == reverse("tasks:detail", args=[task.pk])


def test_create_task_without_a_source_shows_the_error_next_to_the_field(admin_client):
    destination = EndpointFactory()
    response = admin_client.post(reverse("tasks:create"), {"name": "Move", "destination": destination.pk})
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_source-errors"' in html
    assert "This field is required" in html
    assert not Task.objects.exists()


def test_edit_running_task_is_refused(admin_client):
    task = TaskFactory(status=Task.Status.RUNNING, name="old")
    response = admin_client.post(
        reverse("tasks:edit", args=[task.pk]),
        {"name": "new", "source": task.source_id, "destination": task.destination_id},
    )
    assert response.status_code == 400
    assert "This task is running" in response.content.decode()
    task.refresh_from_db()
    assert task.name == "old"


def test_edit_task(admin_client):
    task = TaskFactory(name="old")
    response = admin_client.post(
        reverse("tasks:edit", args=[task.pk]),
        {"name": "new", "source": task.source_id, "destination": task.destination_id},
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.name == "new"


def test_delete_confirmation_states_what_is_deleted(admin_client):
    task = TaskFactory()
    AccountFactory.create_batch(3, task=task)
    RunFactory.create_batch(2, task=task)
    html = admin_client.get(reverse("tasks:delete", args=[task.pk])).content.decode()
    assert "3 accounts" in html
    assert "2 runs" in html


def test_delete_task_deletes_accounts_and_runs(admin_client):
    task = TaskFactory()
    AccountFactory(task=task)
    RunFactory(task=task)
    response = admin_client.post(reverse("tasks:delete", args=[task.pk]))
    assert response.status_code == 302
    assert not Task.objects.exists()
    assert not Account.objects.exists()
    assert not Run.objects.exists()


def test_delete_running_task_is_refused(admin_client):
    task = TaskFactory(status=Task.Status.RUNNING)
    response = admin_client.post(reverse("tasks:delete", args=[task.pk]), follow=True)
    assert Task.objects.filter(pk=task.pk).exists()
    assert "Cancel the run" in response.content.decode()


def test_task_page_shows_accounts_run_panel_and_schedule(admin_client):
    task = TaskFactory()
    account = AccountFactory(task=task, source_user="alice@old.test")
    html = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "alice@old.test" in html
    assert "Run now" in html
    assert "has not run yet" in html
    assert 'name="interval_seconds"' in html  # the scheduling panel is included
    assert account.source_password not in html
    assert account.destination_password not in html


def test_task_page_of_a_running_task_polls_progress(admin_client):
    task = TaskFactory(status=Task.Status.RUNNING)
    run = RunFactory(task=task, status=Run.Status.RUNNING)
    AccountRunFactory(run=run, status="running", copied=5, total_messages=10, current_folder="Sent")
    html = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert reverse("runs:progress", args=[run.pk]) in html
    assert 'hx-trigger="every 2s"' in html
    assert "Cancel run" in html
    assert "Sent" in html


def test_unknown_task_is_404(admin_client):
    assert admin_client.get(reverse("tasks:detail", args=[999])).status_code == 404


def test_task_list_shows_the_next_scheduled_run(admin_client):
    anchor = timezone.now().replace(microsecond=0)
    TaskFactory(name="scheduled", schedule_interval_seconds=3600, schedule_anchor=anchor)
    html = admin_client.get("/").content.decode()
    expected = (anchor + timedelta(hours=1)).isoformat()
    assert f'<time datetime="{expected}">' in html


def test_task_page_says_why_a_run_would_be_refused(admin_client):
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    AccountFactory(task=task, source_test_status=Account.TestStatus.FAIL)
    AccountFactory(task=task)
    html = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "3 active accounts, 1 tested OK on both sides, 1 failed" in html
    assert "park the 1 failed" in html
    assert "Fix the failed logins" in html


def test_task_page_has_no_warning_when_every_account_passed(admin_client):
    task = TaskFactory()
    AccountFactory.create_batch(2, task=task, tested=True)
    html = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "data-untested" not in html
