from __future__ import annotations

import pytest
from django.urls import reverse

from runs.models import Run
from tasks.models import Account, Task
from tests.support.factories import (
    AccountFactory,
    EndpointFactory,
    RunFactory,
    TaskFactory,
)

pytestmark = pytest.mark.django_db


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
