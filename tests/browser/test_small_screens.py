"""Every page at 390 px (a phone) and at 1280 px: nothing scrolls sideways, the key columns stay readable.

Issue 12, item 9. The page list below is every page a signed-in operator reaches from the navigation
(plus the login page and the 404 page); a page added to the product belongs in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from runs.models import Run
from tasks.models import Account, Task
from tests.browser.conftest import VIEWPORT, log_in, screenshot
from tests.support.factories import AccountFactory, AccountRunFactory, EndpointFactory, RunFactory, TaskFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}

LONG_FOLDER = "Archive/2024/Projects/Customer-Onboarding-And-Very-Long-Folder-Names"


@pytest.fixture
def world() -> dict[str, int]:
    """A realistic task: long names, a failed account, a running run, a finished run with errors."""
    old = EndpointFactory(label="Old mail server of the company", host="imap.old-hosting-provider.example", port=993)
    new = EndpointFactory(label="New mail server", host="mail.new-host.example", port=143, security="starttls")
    task = TaskFactory(
        name="Acme Corp mailboxes (head office)", source=old, destination=new, status=Task.Status.RUNNING
    )
    TaskFactory(name="Archive 2019", source=old, destination=new, broken=True)
    accounts = [
        AccountFactory(
            task=task,
            source_user=f"{user}@acme-corporation-head-office.example",
            destination_user=f"{user}@acme.new",
            tested=True,
        )
        for user in ("alexandra.longname", "bob", "carol")
    ]
    Account.objects.filter(pk=accounts[1].pk).update(
        destination_test_status=Account.TestStatus.FAIL,
        destination_test_message="[AUTHENTICATIONFAILED] Authentication failed.",
    )
    start = timezone.now() - timedelta(minutes=5)
    previous = RunFactory(
        task=task,
        status=Run.Status.DONE,
        started_at=start - timedelta(days=1),
        finished_at=start - timedelta(days=1) + timedelta(minutes=9),
        copied=5120,
        skipped=310,
        errors=2,
        bytes=412_000_000,
    )
    for account in accounts:
        AccountRunFactory(
            run=previous,
            account=account,
            status="done",
            copied=1706,
            skipped=103,
            errors=1,
            bytes=137_000_000,
            folder_totals=[
                {
                    "source": "INBOX",
                    "destination": "INBOX",
                    "source_messages": 1500,
                    "destination_messages": 1500,
                    "copied": 1400,
                    "skipped": 100,
                    "altered": 0,
                    "errors": 0,
                    "bytes": 120_000_000,
                    "not_copied": {},
                },
                {
                    "source": LONG_FOLDER,
                    "destination": LONG_FOLDER,
                    "source_messages": 310,
                    "destination_messages": 309,
                    "copied": 306,
                    "skipped": 3,
                    "altered": 0,
                    "errors": 1,
                    "bytes": 17_000_000,
                    "not_copied": {"refused by the destination": 1},
                },
            ],
            message_errors=[
                {
                    "folder": LONG_FOLDER,
                    "uid": 4411,
                    "subject": "Scans (52 MB)",
                    "size": 52_000_000,
                    "reason": "[LIMIT] too large",
                }
            ],
        )
    running = RunFactory(task=task, status=Run.Status.RUNNING, started_at=start)
    for account, status in zip(accounts, ("running", "failed", "queued"), strict=True):
        AccountRunFactory(
            run=running,
            account=account,
            status=status,
            copied=430 if status == "running" else 0,
            total_messages=1200 if status == "running" else 0,
            current_folder=LONG_FOLDER if status == "running" else "",
            bytes=38_000_000 if status == "running" else 0,
            started_at=start if status != "queued" else None,
            heartbeat_at=timezone.now(),
            last_error="Login failed on the destination: [AUTHENTICATIONFAILED] Authentication failed."
            if status == "failed"
            else "",
        )
    return {"task": task.pk, "account": accounts[0].pk, "endpoint": old.pk, "run": previous.pk}


def pages(ids: dict[str, int]) -> list[tuple[str, str]]:
    """(name, path) of every page of a signed-in operator."""
    task, account, endpoint, run = ids["task"], ids["account"], ids["endpoint"], ids["run"]
    return [
        ("task-list", "/"),
        ("task-new", "/tasks/new/"),
        ("task-page", f"/tasks/{task}/"),
        ("task-edit", f"/tasks/{task}/edit/"),
        ("task-delete", f"/tasks/{task}/delete/"),
        ("folder-mapping", f"/tasks/{task}/folders/"),
        ("account-new", f"/tasks/{task}/accounts/new/"),
        ("account-edit", f"/tasks/{task}/accounts/{account}/edit/"),
        ("account-import", f"/tasks/{task}/accounts/import/"),
        ("run-log", f"/tasks/{task}/runs/log/"),
        ("run-report", f"/runs/{run}/"),
        ("account-run", f"/runs/{run}/accounts/{account}/"),
        ("endpoint-list", "/endpoints/"),
        ("endpoint-new", "/endpoints/new/"),
        ("endpoint-edit", f"/endpoints/{endpoint}/edit/"),
        ("endpoint-delete", f"/endpoints/{endpoint}/delete/"),
        ("not-found", "/tasks/999999/"),
    ]


def sideways_overflow(page: object) -> int:
    """How many CSS pixels the page is wider than the window (0 = no horizontal scroll)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.fixture
def phone(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2, locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_no_page_scrolls_sideways_on_a_phone(phone, live_server, admin_user, world):
    page = phone
    page.goto(f"{live_server.url}/login/")
    assert sideways_overflow(page) == 0
    screenshot(page, "phone-00-login")
    log_in(page, live_server.url, "admin", "correct horse battery staple")
    wide = {}
    for name, path in pages(world):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        overflow = sideways_overflow(page)
        if overflow:
            wide[name] = overflow
        screenshot(page, f"phone-{name}")
    assert wide == {}, f"pages wider than a 390 px phone (extra px): {wide}"


def test_the_navigation_collapses_into_a_menu_on_a_phone(phone, live_server, admin_user, world):
    page = phone
    log_in(page, live_server.url, "admin", "correct horse battery staple")
    nav = page.locator("nav[aria-label=Main]")
    toggle = page.locator("[data-nav-toggle]")
    expect(toggle).to_be_visible()
    expect(nav.get_by_role("link", name="Endpoints")).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    nav.get_by_role("link", name="Endpoints").click()
    expect(page).to_have_url(f"{live_server.url}/endpoints/")


def test_tables_keep_their_key_columns_on_a_phone(phone, live_server, admin_user, world):
    page = phone
    log_in(page, live_server.url, "admin", "correct horse battery staple")
    # The task list: each task's status and next run are on screen, labelled.
    row = page.locator("tbody tr", has_text="Archive 2019")
    expect(row.get_by_text("broken")).to_be_in_viewport()
    # The task page: the account buttons can be reached without scrolling sideways.
    page.goto(f"{live_server.url}/tasks/{world['task']}/")
    account_row = page.locator("#accounts tbody tr", has_text="bob@acme-corporation-head-office.example")
    edit = account_row.get_by_role("link", name="Edit")
    edit.scroll_into_view_if_needed()
    expect(edit).to_be_in_viewport()
    box = edit.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    # The run report: each account's numbers carry their column's name.
    page.goto(f"{live_server.url}/runs/{world['run']}/")
    cell = page.locator("td[data-label]").first
    expect(cell).to_be_visible()
    assert page.evaluate("getComputedStyle(document.querySelector('td[data-label]'), '::before').content") != "none"


def test_desktop_keeps_the_plain_tables_and_the_full_navigation(live_page, live_server, world):
    page = live_page
    assert page.viewport_size == VIEWPORT
    page.set_viewport_size(DESKTOP)
    page.goto(f"{live_server.url}/")
    expect(page.locator("[data-nav-toggle]")).to_be_hidden()
    expect(page.locator("nav[aria-label=Main]").get_by_role("link", name="Endpoints")).to_be_visible()
    expect(page.locator("thead").first).to_be_visible()
    for name, path in pages(world):
        page.goto(f"{live_server.url}{path}")
        assert sideways_overflow(page) == 0, name
        if name in {"task-list", "task-page", "run-report", "endpoint-list", "not-found"}:
            screenshot(page, f"desktop-{name}")
