from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import Run
from tasks.models import Task
from tests.support.factories import AccountFactory, AccountRunFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_progress_polls_while_the_run_is_going(admin_client):
    run = RunFactory(status=Run.Status.RUNNING)
    AccountRunFactory(
        run=run,
        status="running",
        copied=20,
        skipped=5,
        total_messages=50,
        bytes=3_000_000,
        current_folder="Archive/2024",
    )
    response = admin_client.get(reverse("runs:progress", args=[run.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in html
    assert "Archive/2024" in html
    assert "25/50" in html
    assert "3.0 MB" in html


def test_progress_stops_polling_once_the_run_is_done(admin_client):
    run = RunFactory(status=Run.Status.DONE, finished_at=timezone.now())
    AccountRunFactory(run=run, status="done", copied=10, total_messages=10)
    response = admin_client.get(reverse("runs:progress", args=[run.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b"hx-trigger" not in response.content
    assert b'data-status="done"' in response.content


def test_run_report_shows_totals_accounts_and_message_errors(admin_client):
    start = timezone.now() - timedelta(minutes=3, seconds=5)
    run = RunFactory(
        status=Run.Status.DONE,
        started_at=start,
        finished_at=start + timedelta(minutes=3, seconds=5),
        copied=12,
        errors=1,
        trigger=Run.Trigger.SCHEDULED,
    )
    AccountRunFactory(
        run=run,
        status="done",
        copied=12,
        errors=1,
        message_errors=[
            {
                "folder": "Sent",
                "uid": 77,
                "subject": "Quarterly figures",
                "size": 52_000_000,
                "reason": "[LIMIT] Message too large",
            }
        ],
    )
    AccountRunFactory(
        run=run,
        status="failed",
        last_error="Login failed: [AUTHENTICATIONFAILED] Authentication failed.",
    )
    html = admin_client.get(reverse("runs:report", args=[run.pk])).content.decode()
    assert "Scheduled" in html
    assert "3 min 5 s" in html
    assert "[LIMIT] Message too large" in html
    assert "Quarterly figures" in html
    assert "[AUTHENTICATIONFAILED]" in html


def test_run_report_csv(admin_client):
    run = RunFactory()
    account = AccountFactory(task=run.task, source_user="a@old", source_password="pw-never-shown")
    AccountRunFactory(
        run=run,
        account=account,
        status="done",
        copied=3,
        source_messages=4,
        not_copied={"refused by the destination": 1},
        not_copied_messages=1,
        message_errors=[
            {
                "folder": "INBOX",
                "uid": 9,
                "subject": "Hi, there",
                "size": 10,
                "reason": "refused",
            }
        ],
    )
    response = admin_client.get(reverse("runs:report_csv", args=[run.pk]))
    body = response.content.decode()
    lines = body.splitlines()
    assert lines[0].startswith("source_user,destination_user,status,copied")
    assert lines[1].startswith("a@old,")
    assert ',INBOX,9,"Hi, there",10' in lines[2]
    assert lines[0].endswith(",source_messages,not_copied,deleted_at_destination")
    assert lines[1].endswith(",4,1 refused by the destination,0")
    assert "pw-never-shown" not in body


def test_run_start_refused_without_accounts_says_why(admin_client):
    task = TaskFactory()
    response = admin_client.post(reverse("runs:start", args=[task.pk]), follow=True)
    assert "no accounts" in response.content.decode()
    assert not Run.objects.exists()
    task.refresh_from_db()
    assert task.status == Task.Status.IDLE


def test_run_start_refused_with_untested_accounts_says_why(admin_client):
    task = TaskFactory()
    AccountFactory(task=task, source_user="u@old")
    response = admin_client.post(reverse("runs:start", args=[task.pk]), follow=True)
    assert "have not passed the connection test" in response.content.decode()
    assert not Run.objects.exists()


def test_run_start_creates_the_run(admin_client, django_capture_on_commit_callbacks, monkeypatch):
    pushed = []
    monkeypatch.setattr("runs.orchestrator.push_fan_out", lambda run_id: pushed.append(run_id))
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("runs:start", args=[task.pk]))
    assert response.status_code == 302
    run = Run.objects.get(task=task)
    assert run.trigger == Run.Trigger.MANUAL and run.is_running
    assert pushed == [run.pk]  # the run's fan-out job; the copy jobs are enqueued by it


def test_run_start_needs_post(admin_client):
    task = TaskFactory()
    assert admin_client.get(reverse("runs:start", args=[task.pk])).status_code == 405


def test_cancel_running_run(admin_client):
    task = TaskFactory(status=Task.Status.RUNNING)
    run = RunFactory(task=task, status=Run.Status.RUNNING)
    AccountRunFactory(run=run, status="running")
    response = admin_client.post(reverse("runs:cancel", args=[run.pk]), follow=True)
    run.refresh_from_db()
    assert run.cancel_requested
    assert "Cancelling" in response.content.decode()


def test_cancel_finished_run_is_refused(admin_client):
    run = RunFactory(status=Run.Status.DONE, finished_at=timezone.now())
    response = admin_client.post(reverse("runs:cancel", args=[run.pk]), follow=True)
    run.refresh_from_db()
    assert not run.cancel_requested
    assert "already ended" in response.content.decode()


def test_polling_a_run_that_just_ended_reloads_the_page_once(admin_client):
    run = RunFactory(status=Run.Status.DONE, finished_at=timezone.now())
    polled = admin_client.get(reverse("runs:progress", args=[run.pk]), headers={"HX-Request": "true"})
    assert polled["HX-Refresh"] == "true"
    plain = admin_client.get(reverse("runs:progress", args=[run.pk]))
    assert "HX-Refresh" not in plain


def test_polling_a_running_run_does_not_reload(admin_client):
    run = RunFactory(status=Run.Status.RUNNING)
    polled = admin_client.get(reverse("runs:progress", args=[run.pk]), headers={"HX-Request": "true"})
    assert "HX-Refresh" not in polled


def test_progress_of_a_big_run_lists_only_running_and_failed_accounts(admin_client):
    run = RunFactory(status=Run.Status.RUNNING)
    for n in range(60):
        status = "running" if n < 3 else "failed" if n == 3 else "done" if n < 40 else "queued"
        account = AccountFactory(task=run.task, source_user=f"u{n:02d}@old")
        AccountRunFactory(run=run, account=account, status=status)
    html = admin_client.get(reverse("runs:progress", args=[run.pk])).content.decode()
    assert html.count("data-account-run=") == 4
    assert "56 other accounts (20 queued) are in the" in html
    assert 'Accounts done</div><div class="value">37 / 60' in html


def test_skipped_messages_have_one_name_in_the_report_and_its_csv(admin_client):
    run = RunFactory(status=Run.Status.DONE, finished_at=timezone.now(), skipped=4)
    AccountRunFactory(run=run, status="done", skipped=4)
    html = admin_client.get(reverse("runs:report", args=[run.pk])).content.decode()
    assert "Already there" in html and "Skipped" not in html
    header = admin_client.get(reverse("runs:report_csv", args=[run.pk])).content.decode().splitlines()[0]
    assert ",already_there," in header and "skipped" not in header


def test_a_failed_run_report_does_not_claim_every_message_arrived(admin_client):
    run = RunFactory(status=Run.Status.FAILED, finished_at=timezone.now(), reason="1 of 1 account failed: a@old: login")
    AccountRunFactory(run=run, status="failed", last_error="login refused")
    html = admin_client.get(reverse("runs:report", args=[run.pk])).content.decode()
    assert "Every message was copied" not in html
    assert "the run failed: see the accounts above" in html
    done = RunFactory(status=Run.Status.DONE, finished_at=timezone.now())
    assert (
        "Every message was copied or already there"
        in admin_client.get(reverse("runs:report", args=[done.pk])).content.decode()
    )


def _report_run():
    run = RunFactory(status=Run.Status.FAILED, finished_at=timezone.now())
    for user, status, errors in [
        ("a-done@x", "done", 0),
        ("b-errors@x", "done", 2),
        ("c-failed@x", "failed", 1),
        ("d-errors@x", "done", 7),
    ]:
        AccountRunFactory(run=run, account__source_user=user, status=status, errors=errors)
    return run


def test_the_run_report_filters_by_result_and_sorts_by_errors(admin_client):
    run = _report_run()
    url = reverse("runs:report", args=[run.pk])
    html = admin_client.get(url).content.decode()
    assert "All 4" in html and "Failed 1" in html and "Done with errors 2" in html and "Done 1" in html
    filtered = admin_client.get(url, {"result": "errors"}).content.decode()
    assert "b-errors@x" in filtered and "d-errors@x" in filtered
    listed = filtered[filtered.index('id="accounts"') :]  # the summary above it speaks of the whole run
    assert "a-done@x" not in listed and "c-failed@x" not in listed
    sorted_html = admin_client.get(url, {"result": "errors", "sort": "errors"}).content.decode()
    assert sorted_html.index("d-errors@x") < sorted_html.index("b-errors@x")
    assert f"{reverse('runs:report_csv', args=[run.pk])}?result=errors&amp;sort=errors" in sorted_html
    anything = admin_client.get(url, {"result": "<script>", "sort": "bogus"})
    assert anything.status_code == 200 and b"c-failed@x" in anything.content


def test_the_report_csv_exports_what_the_filter_shows(admin_client):
    run = _report_run()
    response = admin_client.get(reverse("runs:report_csv", args=[run.pk]), {"result": "errors", "sort": "errors"})
    lines = response.content.decode().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["d-errors@x", "b-errors@x"]
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-errors.csv"'
