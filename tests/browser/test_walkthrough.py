"""An operator's first migration, in a real browser against the real product and a real Dovecot.

Endpoints (with the connection test), a task, accounts from CSV, the login tests, the folder
mapping, a run watched live until it is done, and the report. Screenshots of each page are saved
to test-artifacts/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.support.dovecot import fill, make_message

pytestmark = [pytest.mark.browser, pytest.mark.imap]

FOLDERS = {"INBOX": 12, "Sent": 6, "Archive/2024": 8, "Entwürfe/Ärger": 4}


def _fill_source(imap_server, user, seed: str) -> int:
    client = imap_server.connect(user)
    try:
        total = 0
        for folder, count in FOLDERS.items():
            messages = [
                (
                    make_message(
                        subject=f"{folder} message {n}",
                        seed=f"{seed}-{folder}-{n}",
                        date=dt.datetime(2024, 3, 1 + n, 9, 30, tzinfo=dt.UTC),
                    ),
                    (b"\\Seen",) if n % 2 else (),
                    dt.datetime(2024, 3, 1 + n, 9, 30, tzinfo=dt.UTC),
                )
                for n in range(count)
            ]
            fill(client, folder, messages)
            total += count
        return total
    finally:
        client.logout()


def _create_endpoint(page, product, label, port, security, *, verify, ca=""):
    page.goto(f"{product.url}/endpoints/new/")
    page.fill("#id_label", label)
    page.fill("#id_host", "127.0.0.1")
    page.fill("#id_port", str(port))
    page.select_option("#id_security", security)
    if not verify:
        page.uncheck("#id_verify_tls")
        expect(page.locator("[data-testid=tls-warning]")).to_be_visible()
    page.fill("#id_ca_certificate", ca)
    page.click("button:has-text('Create endpoint')")
    expect(page.locator("h1")).to_have_text(label)


def test_first_migration_end_to_end(logged_in_page, product, imap_server, make_imap_user, tmp_path):
    page = logged_in_page
    sources = [make_imap_user() for _ in range(2)]
    destinations = [make_imap_user() for _ in range(2)]
    expected = sum(_fill_source(imap_server, user, user.username) for user in sources)

    # Endpoints: the source over STARTTLS trusting the test CA, the destination over implicit TLS
    # without verification (the warning shows), and one that cannot verify the certificate.
    _create_endpoint(
        page,
        product,
        "Old server",
        imap_server.imap_port,
        "starttls",
        verify=True,
        ca=imap_server.ca_certificate,
    )
    page.click("button:has-text('Test connection')")
    caps = page.locator("ul.caps")
    expect(caps).to_be_visible()
    expect(caps.locator("li.yes", has_text="IMAP4rev1")).to_have_count(1)
    expect(page.locator(".notice.ok")).to_contain_text("Connected over TLS")
    expect(page.locator("#endpoint-test")).to_contain_text("announced before login")
    source_endpoint_url = page.url

    _create_endpoint(page, product, "Untrusted", imap_server.imaps_port, "ssl", verify=True)
    page.click("button:has-text('Test connection')")
    expect(page.locator(".notice.fail")).to_contain_text("self-signed certificate")
    screenshot(page, "11-endpoint-certificate-problem")

    _create_endpoint(page, product, "New server", imap_server.imaps_port, "ssl", verify=False)
    page.goto(f"{product.url}/endpoints/")
    expect(page.locator("tbody tr")).to_have_count(3)
    screenshot(page, "12-endpoints")

    # A task.
    page.goto(f"{product.url}/")
    page.click("text=New task")
    page.fill("#id_name", "Walkthrough migration")
    page.select_option("#id_source", label=f"Old server (127.0.0.1:{imap_server.imap_port})")
    page.select_option("#id_destination", label=f"New server (127.0.0.1:{imap_server.imaps_port})")
    page.click("button:has-text('Create task')")
    expect(page.locator("h1")).to_contain_text("Walkthrough migration")
    task_url = page.url

    # Accounts from CSV: one bad line first (nothing is imported), then the right file.
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"{sources[0].username},{sources[0].password},{destinations[0].username},{destinations[0].password}\n"
        f",nopassword,{destinations[1].username},\n"
    )
    page.click("text=Import CSV")
    page.set_input_files("#id_file", str(bad))
    page.click("button:has-text('Upload and preview')")
    expect(page.locator("#import-errors")).to_contain_text("Missing source_user")
    expect(page.get_by_role("button", name=re.compile(r"^Import \d"))).to_have_count(0)
    screenshot(page, "13-import-bad-lines")
    good = tmp_path / "accounts.csv"
    good.write_text(
        "source_user,source_password,destination_user,destination_password\n"
        + "".join(
            f"{s.username},{s.password},{d.username},{d.password}\n" for s, d in zip(sources, destinations, strict=True)
        )
    )
    page.click("text=Upload a corrected file")
    page.set_input_files("#id_file", str(good))
    page.click("button:has-text('Upload and preview')")
    expect(page.locator("h1")).to_have_text("Import preview")
    for user in sources + destinations:
        assert user.password not in page.content()
    screenshot(page, "14-import-preview")
    page.click("button:has-text('Import 2 accounts')")
    expect(page.locator(".message.success")).to_contain_text("2 accounts added")
    for user in sources + destinations:
        assert user.password not in page.content()

    # Test all: the rows turn OK as the background tests report.
    page.click("#run-panel button:has-text('Test all accounts')")
    rows = page.locator("#account-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#account-table .badge.ok")).to_have_count(4, timeout=60_000)
    expect(page.locator("#account-table[hx-trigger]")).to_have_count(0, timeout=10_000)
    screenshot(page, "15-task-tested")

    # With an account the operator picks, the endpoint test logs in and shows the full capability list.
    page.goto(source_endpoint_url)
    page.select_option("#probe-account", label=f"{sources[0].username} (Walkthrough migration, source)")
    page.click("button:has-text('Test connection')")
    expect(page.locator("#endpoint-test")).to_contain_text(f"after logging in as {sources[0].username}")
    expect(page.locator("ul.caps li.yes", has_text="UIDPLUS")).to_have_count(1)
    expect(page.locator("ul.caps li.yes", has_text="SPECIAL-USE")).to_have_count(1)
    screenshot(page, "10-endpoint-tested")
    page.goto(task_url)

    # Folder mapping: the source folders with counts, non-ASCII names decoded.
    page.click("text=Folder mapping")
    expect(page.locator("table")).to_contain_text("Entwürfe/Ärger")
    expect(page.locator("table")).to_contain_text("Archive/2024")
    screenshot(page, "16-folder-mapping")

    # Run, and watch the progress until it is done.
    page.goto(task_url)
    page.click("button:has-text('Run now')")
    expect(page.locator(".message.success")).to_contain_text("started")
    progress = page.locator("#run-progress")
    screenshot(page, "17-run-in-progress")
    expect(progress).to_have_attribute("data-status", "done", timeout=120_000)
    expect(progress.locator("tr[data-status=done]")).to_have_count(2)
    # When the run ends the page reloads once: status, buttons and last results follow, polling stops.
    expect(page.locator("#task-status-badges")).to_contain_text("Done")
    expect(page.locator("button:has-text('Run now')")).to_be_visible()
    expect(page.locator("#account-table .badge.done")).to_have_count(2)
    expect(page.locator("[hx-trigger^=every]")).to_have_count(0)
    screenshot(page, "18-run-done")

    # The report.
    page.click("#run-progress >> text=Report")
    expect(page.locator("h1")).to_contain_text("Run report")
    # The "Copied" figure, not "Not copied" beside it.
    copied = page.locator(".stat", has=page.locator(".label", has_text=re.compile(r"^Copied$"))).locator(".value")
    expect(copied).to_have_text(str(expected))
    screenshot(page, "19-run-report")

    # The mail is really there.
    client = imap_server.connect(destinations[0])
    try:
        counts = {folder: client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"] for folder in FOLDERS}
    finally:
        client.logout()
    assert counts == FOLDERS

    # The task list shows the finished run.
    page.goto(f"{product.url}/")
    expect(page.locator("tbody tr", has_text="Walkthrough migration")).to_contain_text("Done")
    screenshot(page, "20-task-list")
