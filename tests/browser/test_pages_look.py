"""Every main page rendered in Chromium with realistic data, saved as screenshots to look at."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from runs.models import Run
from tasks.models import Account, Task
from tests.browser.conftest import screenshot
from tests.support.factories import (
    AccountFactory,
    AccountRunFactory,
    EndpointFactory,
    RunFactory,
    TaskFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def migration():
    old = EndpointFactory(label="Old mail server", host="imap.old-host.example", port=993)
    new = EndpointFactory(
        label="New mail server",
        host="mail.new-host.example",
        port=143,
        security="starttls",
        verify_tls=False,
    )
    task = TaskFactory(
        name="Acme Corp mailboxes",
        source=old,
        destination=new,
        status=Task.Status.RUNNING,
    )
    TaskFactory(name="Archive 2019", source=old, destination=new, broken=True)
    TaskFactory(name="Contractors", source=old, destination=new)
    users = ["alice", "bob", "carol", "dave", "erin"]
    accounts = [
        AccountFactory(
            task=task,
            source_user=f"{u}@acme.example",
            destination_user=f"{u}@acme.new",
            tested=True,
        )
        for u in users
    ]
    accounts[3].destination_test_status = Account.TestStatus.FAIL
    accounts[3].destination_test_message = "[AUTHENTICATIONFAILED] Authentication failed."
    accounts[3].save()
    start = timezone.now() - timedelta(minutes=4)
    previous = RunFactory(
        task=task,
        status=Run.Status.DONE,
        started_at=start - timedelta(days=1),
        finished_at=start - timedelta(days=1) + timedelta(minutes=9),
        copied=5120,
        errors=2,
    )
    for account in accounts:
        AccountRunFactory(run=previous, account=account, status="done", copied=1024, bytes=80_000_000)
    run = RunFactory(task=task, status=Run.Status.RUNNING, started_at=start)
    states = [
        ("done", 812, 812, "INBOX", 61_000_000),
        ("running", 430, 1200, "Archive/2024/Projects", 38_000_000),
        ("running", 95, 0, "INBOX", 9_000_000),
        ("failed", 0, 0, "", 0),
        ("queued", 0, 0, "", 0),
    ]
    for account, (status, copied, total, folder, size) in zip(accounts, states, strict=True):
        AccountRunFactory(
            run=run,
            account=account,
            status=status,
            copied=copied,
            total_messages=total,
            current_folder=folder,
            bytes=size,
            started_at=start if status != "queued" else None,
            heartbeat_at=timezone.now(),
            last_error="Login failed on the destination: [AUTHENTICATIONFAILED] Authentication failed."
            if status == "failed"
            else "",
            errors=1 if status == "done" else 0,
            message_errors=[
                {
                    "folder": "Sent",
                    "uid": 4411,
                    "subject": "Scans from the copier (52 MB)",
                    "size": 52_000_000,
                    "reason": "[LIMIT] Mail size is too large",
                }
            ]
            if status == "done"
            else [],
        )
    return task, previous


def test_main_pages_render_cleanly(live_page, live_server, migration):
    task, previous = migration
    page = live_page
    base = live_server.url
    page.goto(f"{base}/")
    assert page.locator("text=Acme Corp mailboxes").count() == 1
    assert page.locator(".badge.broken").count() == 1
    screenshot(page, "01-task-list")
    page.goto(f"{base}/endpoints/")
    screenshot(page, "02-endpoint-list")
    page.goto(f"{base}/endpoints/{task.destination_id}/edit/")
    assert page.locator("[data-testid=tls-warning]").is_visible()
    screenshot(page, "03-endpoint-edit")
    page.goto(f"{base}/tasks/{task.pk}/")
    screenshot(page, "04-task-running")
    page.goto(f"{base}/runs/{previous.pk}/")
    screenshot(page, "05-run-report")
    page.goto(f"{base}/tasks/{task.pk}/delete/")
    screenshot(page, "06-task-delete")
    page.goto(f"{base}/tasks/{task.pk}/accounts/{task.accounts.first().pk}/edit/")
    screenshot(page, "07-account-edit")
    # local time: the <time> elements were rewritten by app.js
    page.goto(f"{base}/")
    assert page.locator("time[data-localised]").count() >= 1


def test_first_visit_pages_guide_the_operator(page, live_server, admin_user):
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/"))
    screenshot(page, "00-login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".notice.fail")).to_be_visible()
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("button[type=submit]")
    expect(page.locator(".empty")).to_contain_text("No tasks yet")
    expect(page.locator("a.button.primary").first).to_have_text("Add an endpoint first")
    screenshot(page, "08-empty-task-list")
    page.click("text=Add an endpoint first")
    expect(page.locator("#id_port")).to_have_value("993")
    page.select_option("#id_security", "starttls")  # the default port follows the security mode
    expect(page.locator("#id_port")).to_have_value("143")
    page.fill("#id_port", "10143")
    page.select_option("#id_security", "ssl")  # a port the operator typed stays
    expect(page.locator("#id_port")).to_have_value("10143")
    page.click("button:has-text('Create endpoint')")  # empty form: errors next to the fields
    expect(page.locator("#id_label-errors")).to_contain_text("required")
    expect(page.locator("#id_host-errors")).to_contain_text("required")
    screenshot(page, "09-endpoint-form-errors")


def test_import_page_and_account_form(live_page, live_server):
    task = TaskFactory(name="Import demo")
    live_page.goto(f"{live_server.url}/tasks/{task.pk}/")
    expect(live_page.locator("#accounts .empty")).to_contain_text("No accounts yet")
    screenshot(live_page, "21-task-empty")
    live_page.goto(f"{live_server.url}/tasks/{task.pk}/accounts/import/")
    screenshot(live_page, "22-import-upload")
    live_page.goto(f"{live_server.url}/tasks/{task.pk}/accounts/new/")
    live_page.fill("#id_source_user", "someone@old.example")
    live_page.click("button:has-text('Add account')")
    expect(live_page.locator("#id_source_password-errors")).to_contain_text("needs the source password")
    screenshot(live_page, "23-account-form-errors")


def test_app_js_swaps_409_refusals_and_runs_dialogs(live_page, live_server, migration):
    task, _previous = migration
    Task.objects.filter(pk=task.pk).update(status=Task.Status.IDLE)
    Run.objects.filter(task=task, status=Run.Status.RUNNING).update(
        status=Run.Status.CANCELLED, finished_at=timezone.now()
    )
    page = live_page
    page.goto(f"{live_server.url}/tasks/{task.pk}/")
    # dave's destination login failed: enabling a schedule is refused with 409, and the refusal shows
    page.select_option("[data-schedule-select]", "3600")
    expect(page.locator("[data-schedule-error]")).to_contain_text("all accounts must pass connection tests")
    expect(page.locator("[data-schedule-select]")).to_have_value("0")
    # the run log opens as a dialog, with local times, and is removed from the page when closed
    page.click("[data-run-log-link]")
    dialog = page.locator("dialog[data-autoshow]")
    expect(dialog).to_be_visible()
    expect(dialog.locator("time[data-localised]").first).to_be_attached()
    screenshot(page, "24-run-log-dialog")
    dialog.locator("button:has-text('Close')").click()
    expect(page.locator("dialog")).to_have_count(0)
