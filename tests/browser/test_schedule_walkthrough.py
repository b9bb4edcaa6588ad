"""The reference plan's end-to-end steps 2 to 5 for scheduling, in headless Chromium.

Against pytest-django's live server and the test Dovecot. No cluster runs here: the test plays the
cluster's part by calling the tick and the copy jobs directly, as they would run.

2. refused enable: the 409 message shows in the page and the select stays Off;
3. enable after the accounts pass their tests: "Next run" about an hour ahead, in local time; no run;
4. a manual run, then the run-log dialog: local times, trigger manual, status and counts;
5. a failing scheduled run while the page is open: the page reloads itself, the broken badge is on
   the page and in the task list, and the schedule is Off; choosing a schedule again clears it;
6. deleting the scheduled task removes its runs, and the tick goes on.
"""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from runs import jobs
from runs.models import AccountRun, Run
from scheduling.jobs import record_tick
from scheduling.ticker import tick
from tasks.models import Account, Task
from tests.browser.conftest import screenshot
from tests.runs.conftest import fill_user
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

pytestmark = [pytest.mark.browser, pytest.mark.imap]

BERLIN = ZoneInfo("Europe/Berlin")  # the page fixture's browser time zone


def run_jobs_of(run: Run) -> None:
    for pk in AccountRun.objects.filter(run=run).order_by("pk").values_list("pk", flat=True):
        jobs.copy_account_job(pk)


def local_hm(moment) -> str:
    return moment.astimezone(BERLIN).strftime("%H:%M")


def test_schedule_walkthrough(live_page, live_server, imap_server, make_imap_user):
    page = live_page

    def endpoint():
        return EndpointFactory(
            host=imap_server.host,
            port=imap_server.imap_port,
            security="plain",
            verify_tls=False,
        )

    task = TaskFactory(name="Mailboxes of ACME", source=endpoint(), destination=endpoint())
    source, destination = make_imap_user(), make_imap_user()
    fill_user(imap_server, source, {"INBOX": 4})
    account = AccountFactory(
        task=task,
        source_user=source.username,
        source_password=source.password,
        destination_user=destination.username,
        destination_password=destination.password,
    )  # not tested yet
    url = f"{live_server.url}/tasks/{task.pk}/"

    # Step 2: enabling with an untested account is refused in the page; the select stays Off.
    page.goto(url)
    select = page.locator("[data-schedule-select]")
    expect(select).to_have_value("0")
    select.select_option(label="Every 1h")
    expect(page.locator("[data-schedule-error]")).to_have_text(
        "all accounts must pass connection tests before scheduling"
    )
    expect(page.locator("[data-schedule-select]")).to_have_value("0")
    expect(page.locator("[data-next-run]")).to_have_count(0)
    screenshot(page, "schedule-refused")
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0

    # Step 3: the accounts pass their tests; enabling shows the next run an hour ahead, no run starts.
    Account.objects.filter(pk=account.pk).update(
        source_test_status=Account.TestStatus.OK,
        destination_test_status=Account.TestStatus.OK,
    )
    record_tick(timezone.now())  # the control cluster is ticking (no warning on the page)
    page.reload()
    page.locator("[data-schedule-select]").select_option(label="Every 1h")
    next_run = page.locator("[data-next-run] time")
    expect(next_run).to_have_attribute("data-localised", "")
    expect(page.locator("[data-schedule-error]")).to_have_count(0)
    expect(page.locator("[data-scheduler-stale]")).to_have_count(0)
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 3600
    expected = task.schedule_anchor + timedelta(hours=1)
    assert abs(expected - timezone.now() - timedelta(hours=1)) < timedelta(minutes=2)
    expect(next_run).to_contain_text(local_hm(expected))  # the browser's local time, not UTC
    assert not Run.objects.filter(task=task).exists()
    page.reload()  # the choice is stored, not just shown
    expect(page.locator("[data-schedule-select]")).to_have_value("3600")
    screenshot(page, "schedule-enabled")

    # Step 4: run it by hand, then open the run log.
    page.get_by_role("button", name="Run now").click()
    run = Run.objects.get(task=task)
    assert run.trigger == Run.Trigger.MANUAL
    run_jobs_of(run)
    run.refresh_from_db()
    assert run.status == Run.Status.DONE and run.copied == 4
    page.reload()
    page.locator("[data-run-log-link]").click()
    dialog = page.locator("dialog.run-log[open]")
    expect(dialog).to_be_visible()
    rows = dialog.locator("tbody tr")
    expect(rows).to_have_count(1)
    cells = rows.first.locator("td")
    expect(cells.nth(0)).to_contain_text(local_hm(run.started_at))
    expect(cells.nth(1)).to_contain_text(local_hm(run.finished_at))
    expect(cells.nth(2)).to_have_text("Manual")
    expect(cells.nth(3)).to_have_text("Done")
    expect(cells.nth(4)).to_have_text("4")
    expect(cells.nth(5)).to_have_text("0")
    expect(cells.nth(6)).to_have_text("0")
    screenshot(page, "schedule-run-log")
    dialog.get_by_role("button", name="Close").click()
    expect(page.locator("dialog.run-log")).to_have_count(0)

    # Step 5: the source password changes; the next scheduled run fails while the page is open.
    Account.objects.filter(pk=account.pk).update()  # keep the row; change the stored password below
    account.refresh_from_db()
    account.source_password = "changed-on-the-server"
    account.save()
    page.reload()
    expect(page.locator("[data-next-run]")).to_be_visible()
    expect(page.locator("[data-broken-badge]")).to_have_count(0)
    report = tick(run.finished_at + timedelta(hours=1, seconds=1))
    record_tick(timezone.now())
    scheduled = Run.objects.get(pk=report.started[0])
    assert scheduled.trigger == Run.Trigger.SCHEDULED
    run_jobs_of(scheduled)
    task.refresh_from_db()
    assert task.broken and task.schedule_interval_seconds == 0

    # The page notices by itself (it polls while a schedule is on) and reloads.
    expect(
        page.locator("#task-status-badges [data-broken-badge], [data-schedule] [data-broken-badge]").first
    ).to_be_visible(timeout=25_000)
    expect(page.locator("[data-schedule-select]")).to_have_value("0")
    expect(page.locator("[data-next-run]")).to_have_count(0)
    screenshot(page, "schedule-broken")

    page.locator("[data-run-log-link]").click()
    rows = page.locator("dialog.run-log[open] tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("td").nth(2)).to_have_text("Scheduled")
    expect(rows.first.locator("td").nth(3)).to_have_text("Failed")
    expect(rows.first.locator("td").nth(6)).not_to_have_text("0")
    page.keyboard.press("Escape")

    page.goto(f"{live_server.url}/")
    row = page.locator("tr", has=page.get_by_role("link", name="Mailboxes of ACME"))
    expect(row.locator("[data-broken-badge]")).to_have_text("broken")
    screenshot(page, "schedule-broken-list")
    assert Run.objects.filter(task=task).count() == 2

    # Re-enabling clears the badge (the page reloads itself to drop the one beside the status).
    page.goto(url)
    page.locator("[data-schedule-select]").select_option(label="Every 6h")
    expect(page.locator("[data-broken-badge]")).to_have_count(0)
    expect(page.locator("[data-schedule-select]")).to_have_value("21600")
    expect(page.locator("[data-next-run]")).to_be_visible()
    task.refresh_from_db()
    assert not task.broken and task.schedule_interval_seconds == 21600

    # Step 6 of the plan: deleting the scheduled task removes its runs; the tick goes on.
    other = TaskFactory(name="Another task")
    page.goto(f"{live_server.url}/tasks/{task.pk}/delete/")
    page.get_by_role("button", name=re.compile("^Delete task")).click()
    page.wait_for_url(f"{live_server.url}/")
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not Run.objects.filter(task_id=task.pk).exists()
    assert not AccountRun.objects.filter(run__task_id=task.pk).exists()
    later = tick(timezone.now() + timedelta(days=2))
    assert later.started == [] and later.refused == []
    assert Task.objects.filter(pk=other.pk).exists()
