"""Untrusted text in pages (issue 15, item 8): folder names, subjects, task and endpoint names carrying
script and HTML reach the operator's pages escaped, and nothing of them runs in a real browser.

A Dovecot mailbox whose folder names and subjects carry payloads is copied by the real product (subprocesses,
django-q2 cluster); one message is over the destination's size limit, so the run report lists it with its
subject among the messages not copied. Every payload sets `window.__pwned` and opens a dialog when it runs:
the flag must stay undefined, no dialog may open and the payload text must be visible as text.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.support.dovecot import fill, make_message

pytestmark = [pytest.mark.browser, pytest.mark.imap]

FOLDER_IMG = "<img src=x onerror=\"window.__pwned='folder-img';alert(1)\">"
FOLDER_SVG = '"><svg onload="window.__pwned=\'folder-svg\';alert(2)">'
SUBJECT_SCRIPT = "\"><script>window.__pwned='subject-script';alert(3)</script>"
SUBJECT_IMG = "<img src=x onerror=\"window.__pwned='subject-img';alert(4)\">"
TASK_NAME = "<script>window.__pwned='task';alert(5)</script> migration"
ENDPOINT_LABEL = "<img src=x onerror=\"window.__pwned='endpoint';alert(6)\">"
SIZE_LIMIT = 40_000


def _fill_hostile_mailbox(imap_server, user) -> None:
    client = imap_server.connect(user)
    try:
        fill(client, "INBOX", [(make_message(subject=SUBJECT_SCRIPT, seed="s1"), (), None)])
        fill(client, FOLDER_IMG, [(make_message(subject=SUBJECT_IMG, seed="s2"), (), None)])
        # Over the destination's limit: refused, and listed in the report with its subject.
        fill(
            client,
            FOLDER_SVG,
            [(make_message(subject=SUBJECT_IMG, seed="s3", attachment_size=SIZE_LIMIT * 2), (), None)],
        )
    finally:
        client.logout()


def _set_up(product, imap_server, source, destination) -> int:
    """The endpoints, the task and its account in the product's database; returns the task id."""
    code = f"""
from tasks.models import Account, Endpoint, Task
data = {json.dumps({"label": ENDPOINT_LABEL, "task": TASK_NAME, "port": imap_server.imap_port})}
src = Endpoint.objects.create(label=data["label"], host="127.0.0.1", port=data["port"], security="plain")
dst = Endpoint.objects.create(label=data["label"] + " new", host="127.0.0.1", port=data["port"], security="plain")
task = Task.objects.create(name=data["task"], source=src, destination=dst)
Account.objects.create(
    task=task,
    source_user={source.username!r}, source_password={source.password!r},
    destination_user={destination.username!r}, destination_password={destination.password!r},
    source_test_status="ok", destination_test_status="ok",
)
print(task.pk)
"""
    return int(product.manage("shell", "-c", code).strip().splitlines()[-1])


def _assert_inert(page, dialogs: list[str], where: str) -> None:
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.__pwned") == "undefined", f"a payload ran on {where}"
    assert dialogs == [], f"a payload opened a dialog on {where}: {dialogs}"


def test_script_in_folder_names_and_subjects_never_runs(logged_in_page, product, imap_server, make_imap_user):
    page = logged_in_page
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=SIZE_LIMIT)
    _fill_hostile_mailbox(imap_server, source)
    task_id = _set_up(product, imap_server, source, destination)
    task_url = f"{product.url}/tasks/{task_id}/"

    # The task list and the task page show the task's name as text.
    page.goto(f"{product.url}/")
    expect(page.locator("tbody")).to_contain_text(TASK_NAME)
    _assert_inert(page, dialogs, "the task list")
    page.goto(f"{product.url}/endpoints/")
    expect(page.locator("tbody")).to_contain_text(ENDPOINT_LABEL)
    _assert_inert(page, dialogs, "the endpoint list")

    # The folder mapping lists the source folders by name, as text.
    page.goto(f"{product.url}/tasks/{task_id}/folders/")
    table = page.locator("table")
    expect(table).to_contain_text(FOLDER_IMG)
    expect(table).to_contain_text(FOLDER_SVG)
    _assert_inert(page, dialogs, "the folder mapping")
    screenshot(page, "40-hostile-folder-mapping")

    # A run: two messages copied, the oversize one refused.
    page.goto(task_url)
    expect(page.locator("h1")).to_contain_text(TASK_NAME)
    page.click("button:has-text('Run now')")
    progress = page.locator("#run-progress")
    expect(progress).not_to_have_attribute("data-status", "running", timeout=120_000)
    _assert_inert(page, dialogs, "the task page after the run")
    screenshot(page, "41-hostile-task")

    # The report lists the refused message with its subject and folder, as text.
    page.click("#run-progress >> text=Report")
    expect(page.locator("h1")).to_contain_text("Run report")
    expect(page.locator("body")).to_contain_text(SUBJECT_IMG)
    expect(page.locator("body")).to_contain_text(FOLDER_SVG)
    copied = page.locator(".stat").filter(has=page.locator(".label", has_text=re.compile(r"^Copied$")))
    expect(copied.locator(".value")).to_have_text("2")
    _assert_inert(page, dialogs, "the run report")
    screenshot(page, "42-hostile-report")

    # The account's results per folder name the hostile folders, as text.
    page.click("#accounts [data-folders-link]")
    folders = page.locator("[data-folder-results]")
    expect(folders).to_contain_text(FOLDER_IMG)
    expect(folders).to_contain_text(FOLDER_SVG)
    _assert_inert(page, dialogs, "the account's folder results")
    screenshot(page, "43-hostile-account-folders")

    # No element the payloads would have created exists anywhere in the pages visited last.
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("svg[onload]").count() == 0

    # The copied messages arrived under their hostile folder names, exactly.
    client = imap_server.connect(destination)
    try:
        names = {name for _flags, _delim, name in client.list_folders()}
    finally:
        client.logout()
    assert FOLDER_IMG in names
