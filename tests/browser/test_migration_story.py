"""The many-accounts migration of issue 12, in Chromium against the real product, cluster and Dovecot.

A task imported from CSV with some wrong passwords: test all, park the failures, run the rest, fix
two passwords, test only those, run only the failed and new accounts, filter, export. The issue's
story has 500 accounts and 10 wrong passwords; STORY_ACCOUNTS sets the size (default 24, with 4 wrong,
so the suite stays quick on a small machine): `STORY_ACCOUNTS=500 pytest tests/browser/test_migration_story.py`.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.support.dovecot import fill, make_message

pytestmark = [pytest.mark.browser, pytest.mark.imap]

ACCOUNTS = int(os.environ.get("STORY_ACCOUNTS", "24"))
WRONG = max(4, ACCOUNTS // 50)
MESSAGES = 6


def _fill(imap_server, user) -> None:
    client = imap_server.connect(user)
    try:
        fill(
            client,
            "INBOX",
            [(make_message(subject=f"m{n}", seed=f"{user.username}-{n}"), (), None) for n in range(MESSAGES)],
        )
    finally:
        client.logout()


def test_park_run_fix_retry_filter_export(logged_in_page, product, imap_server, make_imap_user, tmp_path):
    page = logged_in_page
    pairs = [(make_imap_user(), make_imap_user()) for _ in range(ACCOUNTS)]
    for source, _destination in pairs:
        _fill(imap_server, source)
    wrong = pairs[:WRONG]  # their CSV lines carry a wrong source password
    product.manage(
        "shell",
        "-c",
        "from tasks.models import Endpoint, Task; "
        f"s = Endpoint.objects.create(label='Old', host='127.0.0.1', port={imap_server.imap_port}, security='plain', verify_tls=False); "
        f"d = Endpoint.objects.create(label='New', host='127.0.0.1', port={imap_server.imap_port}, security='plain', verify_tls=False, max_connections=20); "
        "Task.objects.create(name='Big migration', source=s, destination=d)",
    )
    page.goto(f"{product.url}/")
    page.click("text=Big migration")
    task_url = page.url.split("#")[0]

    sheet = tmp_path / "accounts.csv"
    sheet.write_text(
        "".join(
            f"{s.username},{'wrong-' + s.password if (s, d) in wrong else s.password},{d.username},{d.password}\n"
            for s, d in pairs
        )
    )
    page.click("text=Import CSV")
    page.set_input_files("#id_file", str(sheet))
    page.click("button:has-text('Upload and preview')")
    page.click(f"button:has-text('Import {ACCOUNTS} accounts')")
    expect(page.locator(".message.success")).to_contain_text(f"{ACCOUNTS} accounts added")

    # Test all: the wrong passwords fail, and they block "Run now".
    page.click("#run-panel button:has-text('Test all accounts')")
    counts = page.locator("#account-counts")
    expect(counts).to_contain_text(f"{ACCOUNTS - WRONG} of {ACCOUNTS} active tested OK", timeout=180_000)
    expect(counts).to_contain_text(f"{WRONG} failed")
    page.click("button:has-text('Run now')")
    expect(page.locator(".message.error")).to_contain_text(f"{WRONG} of {ACCOUNTS} active accounts have not passed")

    # The failed counter leads to them; park them all with a reason.
    page.click("[data-filter-link=failed]")
    expect(page.locator("#account-table tbody tr")).to_have_count(WRONG)
    page.click("[data-park-failed]")
    expect(page.locator("[data-park-targets] li")).to_have_count(min(WRONG, 20))
    page.fill("#park-reason", "waiting for the right passwords")
    page.click("button:has-text('Park')")
    expect(page.locator(".message.success")).to_contain_text(f"{WRONG} accounts parked")
    screenshot(page, "story-1-parked")

    # Run the rest.
    page.click("button:has-text('Run now')")
    progress = page.locator("#run-progress")
    expect(progress).to_have_attribute("data-status", "done", timeout=300_000)
    expect(page.locator("[data-run-summary]")).to_have_count(0)  # the bar is gone once it ended
    expect(progress.locator(".stat", has_text="Accounts done")).to_contain_text(
        f"{ACCOUNTS - WRONG} / {ACCOUNTS - WRONG}"
    )

    # Two passwords are fixed: edit them (the test resets), resume them, test only what needs it.
    for source, _destination in wrong[:2]:
        page.goto(f"{task_url}?parked=yes#accounts")
        row = page.locator("#account-table tbody tr", has_text=source.username)
        row.get_by_role("link", name="Edit").click()
        page.fill("#id_source_password", source.password)
        page.click("button:has-text('Save')")
        page.goto(f"{task_url}?parked=yes#accounts")
        page.locator("#account-table tbody tr", has_text=source.username).get_by_role("button", name="Resume").click()
        expect(page.locator(".message.success")).to_contain_text("active again")
    page.goto(task_url)
    page.click("[data-test-needed]")
    expect(counts).to_contain_text(f"{ACCOUNTS - WRONG + 2} of {ACCOUNTS - WRONG + 2} active tested OK", timeout=60_000)

    # Run only the failed and new ones: the two fixed accounts.
    page.goto(task_url)
    page.click("[data-run-failed]")
    expect(page.locator(".message.success")).to_contain_text("started for 2 failed or new accounts")
    expect(progress).to_have_attribute("data-status", "done", timeout=120_000)
    expect(progress.locator(".stat", has_text="Accounts done")).to_contain_text("2 / 2")
    screenshot(page, "story-2-retried")

    # Filters: the parked ones never ran; everything else is done.
    page.goto(f"{task_url}?result=never#accounts")
    expect(page.locator("#account-table tbody tr")).to_have_count(WRONG - 2)
    page.goto(f"{task_url}?result=done#accounts")
    expect(page.locator("#account-table tbody tr")).to_have_count(min(ACCOUNTS - WRONG + 2, 100))

    # The report of the retry, filtered, exported.
    page.click("#run-progress >> text=Report")
    page.click("[data-report-filters] [data-result=done]")
    with page.expect_download() as download:
        page.click("[data-report-csv]")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:6] == ["source_user", "destination_user", "status", "copied", "already_there", "errors"]
    assert sorted(r[0] for r in rows[1:]) == sorted(s.username for s, _d in wrong[:2])
    assert all(r[2] == "done" and r[3] == str(MESSAGES) for r in rows[1:])
    for _source, destination in wrong[:2]:
        client = imap_server.connect(destination)
        try:
            assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == MESSAGES
        finally:
            client.logout()
    screenshot(page, "story-3-report-filtered")

    # Did INBOX arrive for this account? One click from the report to its folders, and the per-folder CSV.
    with page.expect_download() as download:
        page.click("[data-folders-csv]")
    folder_rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    inboxes = [r for r in folder_rows if r["source_folder"] == "INBOX"]
    assert sorted((r["source_user"], r["copied"]) for r in inboxes) == sorted(
        (s.username, str(MESSAGES)) for s, _d in wrong[:2]
    )
    assert all(int(r["bytes"]) > 0 for r in inboxes)
    assert {r["source_user"] for r in folder_rows} == {s.username for s, _d in wrong[:2]}
    assert all(r["complete"] == "yes" for r in folder_rows)  # the empty default folders too
    page.click(f"[data-folders-link] >> text={wrong[0][0].username}")
    inbox = page.locator("[data-folder-results] tr[data-folder='INBOX']")
    expect(inbox).to_contain_text(str(MESSAGES))
    expect(inbox).to_contain_text("Complete")
    screenshot(page, "story-4-account-folders")
