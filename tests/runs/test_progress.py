from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from runs.models import AccountRun, Run
from runs.progress import WAITING_FOR_SLOTS, run_progress, run_summary
from tests.support.factories import AccountFactory, AccountRunFactory, RunFactory

pytestmark = pytest.mark.django_db


def _account_run(run, user, **fields):
    return AccountRun.objects.create(run=run, account=AccountFactory(task=run.task, source_user=user), **fields)


def test_progress_takes_two_queries_whatever_the_number_of_accounts(
    django_assert_num_queries,
):
    run = RunFactory(status=Run.Status.RUNNING)
    for i in range(40):
        _account_run(run, f"user{i:02d}@example.org", status=AccountRun.Status.QUEUED)
    with django_assert_num_queries(2):
        progress = run_progress(run.pk)
    assert len(progress.accounts) == 40
    assert progress.queued == 40 and progress.eta_seconds is None


def test_progress_never_decrypts_passwords():
    run = RunFactory(status=Run.Status.RUNNING)
    _account_run(run, "a@example.org")
    with mock.patch("imapcopier.crypto.decrypt", side_effect=AssertionError("decrypted")):
        progress = run_progress(run)
    assert progress.accounts[0].source_user == "a@example.org"


def test_rate_and_eta_come_from_the_counters_and_timestamps():
    now = timezone.now()
    run = RunFactory(status=Run.Status.RUNNING, started_at=now - timedelta(seconds=60))
    _account_run(
        run,
        "b@example.org",
        status=AccountRun.Status.RUNNING,
        started_at=now - timedelta(seconds=50),
        heartbeat_at=now - timedelta(seconds=10),
        copied=80,
        skipped=20,
        errors=0,
        bytes=4_000_000,
        total_messages=300,
        current_folder="INBOX/Projects",
    )
    _account_run(
        run,
        "a@example.org",
        status=AccountRun.Status.DONE,
        started_at=now - timedelta(seconds=60),
        finished_at=now - timedelta(seconds=30),
        copied=30,
        total_messages=30,
    )
    progress = run_progress(run, now=now)
    done, running = progress.accounts  # ordered by source user
    assert running.folder == "INBOX/Projects" and not running.waiting
    assert running.rate == pytest.approx(2.0)  # 80 copied in 40 s up to the heartbeat
    assert running.byte_rate == pytest.approx(100_000)
    assert running.eta_seconds == 100  # 200 left at 2 a second
    assert running.percent == 33 and running.done == 100 and running.total == 300
    assert running.megabytes == pytest.approx(4.0)
    assert done.percent == 100 and done.eta_seconds is None
    assert done.rate == pytest.approx(1.0)
    assert (progress.copied, progress.skipped, progress.total_messages) == (
        110,
        20,
        330,
    )
    assert progress.running == 1 and progress.finished == 1 and progress.queued == 0
    assert progress.rate == pytest.approx(2.0)
    assert progress.eta_seconds == 60  # whole run, from the account rate: 1 account left at one per 60 s


def test_an_account_waiting_for_a_connection_shows_as_waiting():
    now = timezone.now()
    run = RunFactory(status=Run.Status.RUNNING)
    _account_run(
        run,
        "w@example.org",
        status=AccountRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        current_folder=WAITING_FOR_SLOTS,
    )
    (row,) = run_progress(run, now=now).accounts
    assert row.waiting and row.folder == "" and row.eta_seconds is None


def test_a_finished_run_is_re_read():
    run = RunFactory(status=Run.Status.RUNNING)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.DONE, copied=3)
    progress = run_progress(run)
    assert progress.run.status == Run.Status.DONE and progress.percent == 100


# ------------------------------------------------------------------ the report's summary (issue 11.10)


def _folder(source, src, dst, copied, skipped=0, **not_copied):
    return {
        "source": source,
        "destination": source,
        "source_messages": src,
        "destination_messages": dst,
        "copied": copied,
        "skipped": skipped,
        "not_copied": not_copied,
    }


def test_summary_claims_completeness_only_when_every_folder_arrived():
    run = RunFactory(status=Run.Status.DONE)
    _account_run(
        run,
        "a@example.org",
        status=AccountRun.Status.DONE,
        copied=3,
        skipped=2,
        source_messages=5,
        folder_totals=[_folder("INBOX", 4, 4, 2, 2), _folder("Sent", 1, 1, 1)],
    )
    summary = run_summary(run)
    assert summary.complete and (summary.arrived, summary.source_messages) == (5, 5)
    assert summary.sentence.startswith("Every message was copied or already there")


def test_messages_the_destination_stored_altered_count_as_arrived_but_never_as_complete():
    # Issue 10 item 4: a message Cyrus rewrote (8-bit header bytes to X) landed, but not as it was sent.
    run = RunFactory(status=Run.Status.DONE)
    folder = _folder("INBOX", 3, 3, 2)
    folder["altered"] = 1
    _account_run(
        run,
        "a@example.org",
        status=AccountRun.Status.DONE,
        copied=2,
        altered=1,
        source_messages=3,
        folder_totals=[folder],
    )
    summary = run_summary(run)
    assert (summary.copied, summary.altered, summary.arrived, summary.source_messages) == (2, 1, 3, 3)
    assert summary.not_copied == {} and not summary.shortfalls
    assert not summary.complete
    assert "1 of them stored altered by the destination" in summary.sentence


def test_a_folder_left_out_is_counted_as_not_copied_and_the_summary_says_so():
    # Issue 11 case 10: "3/3 msgs 100%" while a folder of 5 was left out.
    run = RunFactory(status=Run.Status.DONE)
    _account_run(
        run,
        "a@example.org",
        status=AccountRun.Status.DONE,
        copied=3,
        total_messages=8,
        source_messages=8,
        not_copied={"folder not created": 5},
        not_copied_messages=5,
        folder_totals=[_folder("INBOX", 3, 3, 3), _folder("50% off", 5, None, 0, **{"folder not created": 5})],
    )
    summary = run_summary(run)
    assert not summary.complete
    assert summary.source_messages == summary.arrived + summary.not_copied_total == 8
    assert summary.sentence == "3 of 8 source messages are at the destination; 5 not copied (5 folder not created)."
    assert [f.folder for f in summary.shortfalls] == ["50% off"]
    progress = run_progress(run)
    assert progress.accounts[0].percent == 37 and progress.percent == 37


def test_an_account_whose_login_failed_is_named_mailbox_not_read():
    run = RunFactory(status=Run.Status.FAILED)
    _account_run(
        run,
        "a@example.org",
        status=AccountRun.Status.DONE,
        copied=2,
        source_messages=2,
        folder_totals=[_folder("INBOX", 2, 2, 2)],
    )
    _account_run(run, "b@example.org", status=AccountRun.Status.FAILED, errors=1, last_error="login refused")
    summary = run_summary(run)
    assert not summary.complete and summary.unread_accounts == ["b@example.org"]
    assert "mailbox not read for 1 account: b@example.org" in summary.sentence


def test_an_interrupted_account_counts_what_it_had_not_reached_as_not_attempted():
    run = RunFactory(status=Run.Status.FAILED)
    _account_run(run, "a@example.org", status=AccountRun.Status.FAILED, copied=168, skipped=55, total_messages=300)
    summary = run_summary(run)
    assert summary.not_copied == {"not attempted": 77}
    assert summary.arrived + summary.not_copied_total == summary.source_messages == 300


def test_a_finished_account_whose_counts_do_not_add_up_is_never_called_complete():
    run = RunFactory(status=Run.Status.DONE)
    _account_run(
        run,
        "a@example.org",
        status=AccountRun.Status.DONE,
        copied=168,
        skipped=55,
        source_messages=300,
        folder_totals=[_folder("INBOX", 300, 300, 168, 55)],
    )
    summary = run_summary(run)
    assert not summary.complete and summary.not_copied == {"not accounted for": 77}


def test_the_report_page_shows_the_summary_sentence(admin_client):
    from django.urls import reverse

    run = RunFactory(status=Run.Status.DONE, finished_at=timezone.now())
    _account_run(
        run,
        "a@example.org",
        status=AccountRun.Status.DONE,
        copied=3,
        source_messages=8,
        not_copied={"folder not created": 5},
        not_copied_messages=5,
        folder_totals=[_folder("INBOX", 3, 3, 3), _folder("50% off", 5, None, 0, **{"folder not created": 5})],
    )
    html = admin_client.get(reverse("runs:report", args=[run.pk])).content.decode()
    assert "Every message was copied" not in html
    assert "3 of 8 source messages are at the destination; 5 not copied (5 folder not created)." in html
    assert 'id="folder-shortfalls"' in html and "50% off" in html


@pytest.mark.parametrize(
    ("accounts", "finished", "parts", "expected"),
    [
        (500, 132, [0.5, 0.5], 26),  # 132 done and two half-way: about a quarter, not 99 %
        (4, 0, [], 0),  # nothing known yet: 0 %, not 100 %
        (2, 1, [1.0], 99),  # a running account counts at most 0.99 until it finishes
        (3, 3, [], 100),
        (0, 0, [], None),
    ],
)
def test_the_overall_bar_is_driven_by_accounts(accounts, finished, parts, expected):
    from runs.progress import overall_percent

    assert overall_percent(accounts=accounts, finished=finished, running_parts=parts) == expected


def test_the_whole_run_eta_comes_from_the_account_rate():
    from runs.progress import run_eta_seconds

    assert run_eta_seconds(accounts=500, finished=100, elapsed_seconds=600) == 2400  # 400 left at 1 per 6 s
    assert run_eta_seconds(accounts=500, finished=0, elapsed_seconds=600) is None
    assert run_eta_seconds(accounts=5, finished=5, elapsed_seconds=600) is None


@pytest.mark.django_db
def test_a_run_says_how_many_accounts_are_done_and_running(admin_client):
    from django.urls import reverse

    start = timezone.now() - timedelta(minutes=10)
    run = RunFactory(status=Run.Status.RUNNING, started_at=start)
    AccountRunFactory(run=run, status="done", copied=10, total_messages=10, finished_at=start + timedelta(minutes=5))
    AccountRunFactory(run=run, status="running", copied=50, total_messages=100, started_at=start)
    AccountRunFactory(run=run, status="queued")
    AccountRunFactory(run=run, status="queued")
    progress = run_progress(run, now=start + timedelta(minutes=10))
    assert progress.summary == "1 of 4 accounts; 1 running; 2 waiting"
    assert progress.percent == 37  # (1 + 0.5) / 4
    assert progress.eta_seconds == 1800  # 3 accounts left at one per 10 minutes
    html = admin_client.get(reverse("runs:progress", args=[run.pk])).content.decode()
    assert "1 of 4 accounts; 1 running; 2 waiting" in html
