"""The Django admin of tasks: it never bypasses the schedule rules."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tasks.models import Task
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db


def _change_form(task: Task, **changes: object) -> dict:
    data = {
        "name": task.name,
        "source": task.source_id,
        "destination": task.destination_id,
        "folder_mapping": "{}",
        "accounts-TOTAL_FORMS": "0",
        "accounts-INITIAL_FORMS": "0",
        "accounts-MIN_NUM_FORMS": "0",
        "accounts-MAX_NUM_FORMS": "1000",
    }
    return {**data, **changes}


def test_the_admin_cannot_switch_a_schedule_on(admin_client):
    # R4: the admin accepted an interval with an untested account and stamped no anchor: the task said
    # "Every 1h" and never ran.
    task = TaskFactory()
    AccountFactory(task=task)  # untested
    url = reverse("admin:tasks_task_change", args=[task.pk])

    response = admin_client.post(url, _change_form(task, name="renamed", schedule_interval_seconds=3600, broken="on"))

    assert response.status_code == 302, response.content[:2000]
    task.refresh_from_db()
    assert task.name == "renamed"  # the form was saved
    assert (task.schedule_interval_seconds, task.schedule_anchor, task.broken) == (0, None, False)


def test_the_admin_shows_the_schedule_read_only(admin_client):
    task = TaskFactory(schedule_interval_seconds=3600)
    html = admin_client.get(reverse("admin:tasks_task_change", args=[task.pk])).content.decode()
    assert 'name="schedule_interval_seconds"' not in html
    assert "Every 1h" in html
