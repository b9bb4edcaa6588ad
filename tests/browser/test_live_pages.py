"""Live pages in Chromium (issue 12, item 6): open pages follow runs they did not start."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from runs import orchestrator
from runs.models import Run
from scheduling.ticker import tick
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_open_pages_follow_a_run_the_scheduler_starts_and_its_end(live_page, live_server, monkeypatch):
    monkeypatch.setattr(orchestrator, "push_fan_out", lambda run_id: None)  # no cluster here
    task = TaskFactory(
        name="Scheduled task",
        schedule_interval_seconds=3600,
        schedule_anchor=timezone.now() - timezone.timedelta(hours=2),
    )
    AccountFactory(task=task, tested=True)
    page = live_page
    page.goto(f"{live_server.url}/tasks/{task.pk}/")
    expect(page.locator("#task-status-badges .badge").first).to_have_text("Idle")
    other = page.context.new_page()  # the task list, open in another tab
    other.goto(f"{live_server.url}/")
    expect(other.locator(f"tr[data-task='{task.pk}']")).to_contain_text("Idle")

    assert tick(timezone.now()).started  # the scheduler starts it, not the open pages

    # The pages ask every 5 s (runs.watch.WATCH_SECONDS), so allow three rounds.
    expect(page.locator("#task-status-badges .badge").first).to_have_text("Running", timeout=15_000)
    expect(page.locator("#run-progress")).to_contain_text("Scheduled run started")
    expect(other.locator(f"tr[data-task='{task.pk}']")).to_contain_text("Running", timeout=15_000)

    orchestrator.cancel_run(Run.objects.get(task=task).pk)  # another user cancels it
    expect(page.locator("#task-status-badges .badge").first).to_have_text("Cancelled", timeout=15_000)
    expect(other.locator(f"tr[data-task='{task.pk}']")).to_contain_text("Cancelled", timeout=15_000)
    other.close()
