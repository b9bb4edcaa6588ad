"""Per-folder results of a real copy (issue 12 item 8): the test Dovecot, copy_account_job called
directly, the account-run JSON read back. Committed for real (the job's heartbeat thread has its own
database connection)."""

from __future__ import annotations

import csv
import io

import pytest

from runs import jobs, orchestrator
from runs.models import Run
from tests.runs.conftest import fill_user

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]


def _source_bytes(server, user, folder: str) -> int:
    """The sum of RFC822.SIZE over a source folder: what copying every message of it sends."""
    client = server.connect(user)
    try:
        client.select_folder(folder, readonly=True)
        return sum(item[b"RFC822.SIZE"] for item in client.fetch(client.search("ALL"), ["RFC822.SIZE"]).values())
    finally:
        client.logout()


def _run_once(task, admin_client) -> dict[str, dict]:
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    for pk in run.account_runs.values_list("pk", flat=True):
        jobs.copy_account_job(pk)
    account_id = run.account_runs.get().account_id
    body = admin_client.get(f"/api/runs/{run.pk}/accounts/{account_id}").json()
    assert body["status"] == "done", body["reason"]
    assert sum(f["bytes"] for f in body["folders"]) == body["bytes"]  # the folders add up to the account
    return {f["source_folder"]: f for f in body["folders"]}


def test_a_real_copy_reports_counts_and_bytes_per_folder(imap_server, imap_task, pushed, admin_client):
    task, [(source, _destination)] = imap_task(pairs=1)
    fill_user(imap_server, source, {"INBOX": 3, "Sent": 2}, size=2_000)
    inbox_bytes, sent_bytes = (_source_bytes(imap_server, source, f) for f in ("INBOX", "Sent"))

    first = _run_once(task, admin_client)
    assert (first["Sent"]["copied"], first["Sent"]["already_there"], first["Sent"]["errors"]) == (2, 0, 0)
    assert (first["INBOX"]["copied"], first["INBOX"]["already_there"]) == (3, 0)
    assert first["Sent"]["bytes"] == sent_bytes > 4_000
    assert first["INBOX"]["bytes"] == inbox_bytes
    assert first["Sent"]["complete"] and first["Sent"]["destination_messages"] == 2

    # One more message in Sent: the next run copies it alone, the rest is already there.
    fill_user(imap_server, source, {"Sent": 1}, seed="later")
    second = _run_once(task, admin_client)
    assert (second["Sent"]["copied"], second["Sent"]["already_there"]) == (1, 2)
    assert 0 < second["Sent"]["bytes"] < sent_bytes
    assert (second["INBOX"]["copied"], second["INBOX"]["already_there"], second["INBOX"]["bytes"]) == (0, 3, 0)
    assert second["Sent"]["complete"] and second["Sent"]["destination_messages"] == 3


def test_messages_deleted_at_the_destination_are_reported_not_copied_again(
    imap_server, imap_task, pushed, admin_client
):
    task, [(source, destination)] = imap_task(pairs=1)
    fill_user(imap_server, source, {"INBOX": 5})
    _run_once(task, admin_client)
    client = imap_server.connect(destination)
    try:
        client.select_folder("INBOX")
        client.delete_messages(client.search("ALL")[:2])
        client.expunge()
    finally:
        client.logout()

    # Re-run as it is (the source unchanged: CONDSTORE's fast path), then with one new source message.
    inbox = _run_once(task, admin_client)["INBOX"]
    assert (inbox["copied"], inbox["already_there"], inbox["deleted_at_destination"]) == (0, 3, 2)
    assert (inbox["source_messages"], inbox["destination_messages"]) == (5, 3)
    assert inbox["complete"] and inbox["not_copied"] == 0
    fill_user(imap_server, source, {"INBOX": 1}, seed="later")
    inbox = _run_once(task, admin_client)["INBOX"]
    assert (inbox["copied"], inbox["already_there"], inbox["deleted_at_destination"]) == (1, 3, 2)
    assert (inbox["source_messages"], inbox["destination_messages"]) == (6, 4)
    assert inbox["complete"] and inbox["not_copied"] == 0

    run = Run.objects.latest("pk")
    summary = admin_client.get(f"/api/runs/{run.pk}/not-copied").json()
    assert summary["deleted_at_destination"] == 2 and summary["already_there"] == 3
    assert "4 of 6 source messages are at the destination" in summary["summary"]
    assert "2 messages deleted at the destination after they were copied (not copied again)" in summary["summary"]
    report_page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert "4 of 6 source messages are at the destination; 2 messages deleted at the destination" in report_page
    assert "Folders not complete" not in report_page
    page = admin_client.get(f"/runs/{run.pk}/accounts/{run.account_runs.get().account_id}/").content.decode()
    assert 'Complete</span><span class="small" data-deleted-note>: 2 deleted at the destination' in page
    assert "Not complete" not in page
    csv_text = admin_client.get(f"/runs/{run.pk}/folders.csv").content.decode()
    row = next(r for r in csv.DictReader(io.StringIO(csv_text)) if r["source_folder"] == "INBOX")
    assert (row["already_there"], row["deleted_at_destination"], row["complete"]) == ("3", "2", "yes")
    report = list(csv.DictReader(io.StringIO(admin_client.get(f"/runs/{run.pk}/report.csv").content.decode())))
    assert (report[0]["already_there"], report[0]["deleted_at_destination"]) == ("3", "2")


def test_a_folder_the_destination_refused_to_create_keeps_its_name_in_the_api(
    imap_server, imap_task, pushed, admin_client
):
    task, [(source, _destination)] = imap_task(pairs=1)
    fill_user(imap_server, source, {"INBOX": 1, "Projects": 2})
    task.folder_mapping = {"Projects": "~Projects"}  # Dovecot refuses names starting with '~'
    task.save()
    projects = _run_once(task, admin_client)["Projects"]
    assert (projects["destination_folder"], projects["destination_not_created"]) == ("~Projects", True)
    assert (projects["complete"], projects["not_copied_reasons"]) == (False, {"folder not created": 2})
    run = Run.objects.latest("pk")
    csv_text = admin_client.get(f"/runs/{run.pk}/folders.csv").content.decode()
    row = next(r for r in csv.DictReader(io.StringIO(csv_text)) if r["source_folder"] == "Projects")
    assert (row["destination_folder"], row["complete"]) == ("~Projects", "no")
    page = admin_client.get(f"/runs/{run.pk}/accounts/{run.account_runs.get().account_id}/").content.decode()
    assert '~Projects <span class="small muted" data-not-created>(not created)</span>' in page
