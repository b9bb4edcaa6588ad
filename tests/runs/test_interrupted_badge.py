"""An interrupted run (SIGTERM to the workers, a lost job, the time limit) is recorded failed with
`interrupted` set; every page that draws its status badge says "Interrupted" in amber, the API says
"interrupted": true, and the status stays "failed" for the breaker and the filters."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import Run
from tests.support.factories import AccountRunFactory, RunFactory

pytestmark = pytest.mark.django_db

AMBER = re.compile(
    r'<span class="badge warn interrupted" data-status="failed" data-interrupted[^>]*>Interrupted</span>'
)


@pytest.fixture
def interrupted_run():
    run = RunFactory(status=Run.Status.FAILED, interrupted=True, finished_at=timezone.now())
    account_run = AccountRunFactory(
        run=run, status="failed", interrupted=True, last_error="interrupted: the worker was stopped"
    )
    return run, account_run


def _pages(admin_client, run, account_run) -> dict[str, str]:
    task = run.task
    urls = {
        "report": reverse("runs:report", args=[run.pk]),
        "account": reverse("runs:account_run", args=[run.pk, account_run.account_id]),
        "progress": reverse("runs:progress", args=[run.pk]),
        "task": reverse("tasks:detail", args=[task.pk]),
        "run log": reverse("scheduling:run_log", args=[task.pk]),
    }
    return {name: admin_client.get(url).content.decode() for name, url in urls.items()}


def test_an_interrupted_run_shows_an_amber_interrupted_badge_everywhere(admin_client, interrupted_run):
    run, account_run = interrupted_run
    for name, html in _pages(admin_client, run, account_run).items():
        assert AMBER.search(html), name
        assert 'class="badge failed"' not in html, name


def test_a_failed_run_still_shows_a_red_failed_badge(admin_client):
    run = RunFactory(status=Run.Status.FAILED, finished_at=timezone.now())
    account_run = AccountRunFactory(run=run, status="failed", last_error="login refused")
    for name, html in _pages(admin_client, run, account_run).items():
        assert '<span class="badge failed" data-status="failed">Failed</span>' in html, name
        assert "Interrupted</span>" not in html, name


def test_the_api_says_interrupted_and_keeps_the_status(admin_client, interrupted_run):
    run, account_run = interrupted_run
    body = admin_client.get(f"/api/runs/{run.pk}").json()
    assert (body["status"], body["interrupted"]) == ("failed", True)
    assert (body["accounts"][0]["status"], body["accounts"][0]["interrupted"]) == ("failed", True)
    detail = admin_client.get(f"/api/runs/{run.pk}/accounts/{account_run.account_id}").json()
    assert (detail["status"], detail["interrupted"]) == ("failed", True)
    [listed] = admin_client.get(f"/api/tasks/{run.task_id}/runs").json()
    assert listed["interrupted"] is True
