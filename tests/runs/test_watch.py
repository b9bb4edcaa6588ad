"""Live pages (issue 12, item 6): an open page learns that a run started or ended, whoever started it."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from runs import orchestrator
from runs.models import Run
from runs.watch import task_token, tasks_token
from scheduling.ticker import tick
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_a_run_started_by_the_scheduler_changes_the_task_pages_token(admin_client, pushed):
    task = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=timezone.now() - timezone.timedelta(hours=2))
    AccountFactory(task=task, tested=True)
    url = reverse("runs:task_watch", args=[task.pk])
    shown, listed = task_token(task.pk), tasks_token()
    assert admin_client.get(url, {"shown": shown}).status_code == 204
    assert admin_client.get(reverse("runs:tasks_watch"), {"shown": listed}).status_code == 204
    report = tick(timezone.now())  # the scheduler, not this page, starts the run
    assert len(report.started) == 1
    answer = admin_client.get(url, {"shown": shown})
    assert answer.status_code == 200 and answer["HX-Refresh"] == "true"
    assert admin_client.get(reverse("runs:tasks_watch"), {"shown": listed})["HX-Refresh"] == "true"
    # The reloaded page carries the new token: quiet again until the run ends.
    running = task_token(task.pk)
    assert admin_client.get(url, {"shown": running}).status_code == 204
    run = Run.objects.get(task=task)
    orchestrator.cancel_run(run.pk)
    assert task_token(task.pk) != running


def test_the_task_list_token_follows_schedule_changes_and_new_tasks():
    task = TaskFactory()
    before = tasks_token()
    task.__class__.objects.filter(pk=task.pk).update(broken=True)
    broken = tasks_token()
    assert broken != before
    TaskFactory()
    assert tasks_token() != broken
