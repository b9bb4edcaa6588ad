"""Per-folder results of an account run (issue 12 item 8): the account-run page, the per-folder CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import Run
from runs.reports import folder_rows
from tests.support.factories import AccountFactory, AccountRunFactory, RunFactory

pytestmark = pytest.mark.django_db

EVIL = '=HYPERLINK("http://x")<script>alert(1)</script>'


def _folder(source, destination, src, dst, copied, skipped=0, *, errors=0, nbytes=0, altered=0, **not_copied):
    return {
        "source": source,
        "destination": destination,
        "source_messages": src,
        "destination_messages": dst,
        "copied": copied,
        "skipped": skipped,
        "altered": altered,
        "errors": errors,
        "bytes": nbytes,
        "not_copied": not_copied,
    }


def make_run_with_folders():
    """alice: INBOX and Sent complete, a refused message in an evil-named folder, Trash left out;
    bob: failed at login (no folder read); carol: recorded before bytes and errors were kept per folder."""
    run = RunFactory(status=Run.Status.DONE, finished_at=timezone.now())
    alice = AccountFactory(
        task=run.task, source_user="alice@old", destination_user="alice@new", source_password="pw-never-shown"
    )
    AccountRunFactory(
        run=run,
        account=alice,
        status="done",
        copied=11,
        skipped=3,
        errors=1,
        bytes=120_000,
        folder_totals=[
            _folder("INBOX", "INBOX", 10, 10, 7, 3, nbytes=70_000),
            _folder("Sent", "Sent Items", 4, 4, 4, nbytes=48_000),
            _folder(EVIL, EVIL, 1, 0, 0, errors=1, **{"refused by the destination": 1}),
            _folder("Trash", None, 5, None, 0),
        ],
    )
    bob = AccountFactory(task=run.task, source_user="bob@old")
    AccountRunFactory(run=run, account=bob, status="failed", errors=1, last_error="login refused")
    carol = AccountFactory(task=run.task, source_user="carol@old")
    old_entry = _folder("INBOX", "INBOX", 2, 2, 2)
    del old_entry["bytes"], old_entry["errors"]
    AccountRunFactory(run=run, account=carol, status="done", copied=2, folder_totals=[old_entry])
    return run, alice, bob, carol


@pytest.fixture
def run_with_folders():
    return make_run_with_folders()


def _rows(html: str) -> dict[str, str]:
    """The folder table's rows by their data-folder attribute (HTML-escaped source folder name)."""
    table = html[html.index("data-folder-results") :]
    table = table[: table.index("</table>")]
    rows = {}
    for chunk in table.split("<tr data-folder=")[1:]:
        name, _, rest = chunk.partition(">")
        rows[name.strip('"')] = rest[: rest.index("</tr>")]
    return rows


def test_the_report_links_each_account_to_its_results_per_folder(admin_client, run_with_folders):
    run, alice, _bob, _carol = run_with_folders
    html = admin_client.get(reverse("runs:report", args=[run.pk])).content.decode()
    link = reverse("runs:account_run", args=[run.pk, alice.pk])
    assert f'href="{link}"' in html
    assert f'href="{reverse("runs:folders_csv", args=[run.pk])}?result=&amp;sort="' in html
    # The evil folder's shortfall row links to alice's folders too.
    assert f'href="{link}#folders"' in html


def test_the_task_page_links_a_finished_account_to_its_folders(admin_client, run_with_folders):
    run, alice, _bob, _carol = run_with_folders
    html = admin_client.get(reverse("tasks:detail", args=[run.task_id])).content.decode()
    assert f'href="{reverse("runs:account_run", args=[run.pk, alice.pk])}"' in html


def test_did_sent_arrive_for_alice_is_one_click(admin_client, run_with_folders):
    run, alice, _bob, _carol = run_with_folders
    response = admin_client.get(reverse("runs:account_run", args=[run.pk, alice.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    rows = _rows(html)
    sent = rows["Sent"]
    assert "Sent Items" in sent and ">4<" in sent and "48.0 kB" in sent and "Complete" in sent
    inbox = rows["INBOX"]
    assert ">7<" in inbox and ">3<" in inbox and "70.0 kB" in inbox
    assert "left out by the folder mapping" in rows["Trash"]
    assert "pw-never-shown" not in html


def test_a_folder_name_is_shown_as_text_never_markup(admin_client, run_with_folders):
    run, alice, _bob, _carol = run_with_folders
    html = admin_client.get(reverse("runs:account_run", args=[run.pk, alice.pk])).content.decode()
    assert "<script>alert(1)" not in html
    evil = _rows(html)["=HYPERLINK(&quot;http://x&quot;)&lt;script&gt;alert(1)&lt;/script&gt;"]
    assert "Not complete" in evil and "1 refused by the destination" in evil
    assert '<span class="error">1</span>' in evil


def test_an_account_that_failed_before_reading_a_folder_says_so(admin_client, run_with_folders):
    run, _alice, bob, _carol = run_with_folders
    html = admin_client.get(reverse("runs:account_run", args=[run.pk, bob.pk])).content.decode()
    assert "data-no-folders" in html and "No folder was read: login refused." in html


def test_a_run_recorded_before_bytes_per_folder_shows_a_dash_not_zero(admin_client, run_with_folders):
    run, _alice, _bob, carol = run_with_folders
    html = admin_client.get(reverse("runs:account_run", args=[run.pk, carol.pk])).content.decode()
    inbox = _rows(html)["INBOX"]
    assert "0 B" not in inbox and "—" in inbox


def test_an_account_still_copying_says_its_folders_come_at_the_end(admin_client):
    run = RunFactory(status=Run.Status.RUNNING)
    running = AccountRunFactory(run=run, status="running", copied=3)
    html = admin_client.get(reverse("runs:account_run", args=[run.pk, running.account_id])).content.decode()
    assert "Folder results are written when the account finishes." in html


def test_an_account_not_in_the_run_is_404(admin_client, run_with_folders):
    run, _alice, _bob, _carol = run_with_folders
    stranger = AccountFactory()
    assert admin_client.get(reverse("runs:account_run", args=[run.pk, stranger.pk])).status_code == 404
    assert admin_client.get(reverse("runs:account_run", args=[run.pk + 100, stranger.pk])).status_code == 404


def test_the_account_run_page_needs_a_login(client, run_with_folders):
    run, alice, _bob, _carol = run_with_folders
    response = client.get(reverse("runs:account_run", args=[run.pk, alice.pk]))
    assert response.status_code == 302 and "login" in response["Location"]
    assert client.get(reverse("runs:folders_csv", args=[run.pk])).status_code == 302


def test_the_folder_csv_has_one_line_per_account_and_folder(admin_client, run_with_folders):
    run, _alice, _bob, _carol = run_with_folders
    response = admin_client.get(reverse("runs:folders_csv", args=[run.pk]))
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-folders.csv"'
    body = response.content.decode()
    assert "pw-never-shown" not in body
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["source_user"], r["source_folder"]) for r in rows] == [
        ("alice@old", "INBOX"),  # INBOX first, then by name
        ("alice@old", "'" + EVIL),  # neutralised: a spreadsheet does not run it
        ("alice@old", "Sent"),
        ("alice@old", "Trash"),
        ("bob@old", ""),
        ("carol@old", "INBOX"),
    ]
    sent = rows[2]
    assert sent["destination_folder"] == "Sent Items"
    assert (sent["copied"], sent["already_there"], sent["errors"], sent["bytes"], sent["complete"]) == (
        "4",
        "0",
        "0",
        "48000",
        "yes",
    )
    assert rows[1]["errors"] == "1" and rows[1]["not_copied"] == "1" and rows[1]["complete"] == "no"
    assert rows[1]["not_copied_reasons"] == "1 refused by the destination"
    assert rows[3]["destination_folder"] == "" and rows[3]["complete"] == "left out by the folder mapping"
    assert rows[4]["account_status"] == "failed"
    assert rows[5]["bytes"] == "" and rows[5]["errors"] == ""  # not recorded, not zero
    # Every line has the same shape: summing a column over the file sums folders, never an account twice.
    assert sum(int(r["copied"] or 0) for r in rows) == 7 + 4 + 2
    assert "skipped" not in body.splitlines()[0]


def test_the_folder_csv_follows_the_report_filter(admin_client, run_with_folders):
    run, _alice, _bob, _carol = run_with_folders
    response = admin_client.get(reverse("runs:folders_csv", args=[run.pk]), {"result": "failed"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["source_user"] for r in rows] == ["bob@old"]
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-folders-failed.csv"'


def test_a_folder_not_created_without_a_destination_name_is_not_called_left_out():
    [row] = folder_rows([_folder("a//b", None, 4, None, 0, errors=1, **{"folder not created": 4})])
    assert row.not_created and not row.left_out and not row.complete
    [skipped] = folder_rows([_folder("Trash", None, None, None, 0)])
    assert skipped.left_out and not skipped.not_created and skipped.complete


def test_a_run_recorded_before_deletions_were_counted_reads_as_before():
    [row] = folder_rows([_folder("INBOX", "INBOX", 5, 5, 0, 5)])
    assert (row.already_there, row.deleted_at_destination, row.deleted_note, row.complete) == (5, 0, "", True)
