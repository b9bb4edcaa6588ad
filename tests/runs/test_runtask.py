from __future__ import annotations

import io
import os
import signal
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from runs import jobs, orchestrator
from runs.models import AccountRun, Run
from tasks.models import Account
from tests.runs.conftest import fill_user
from tests.support.factories import TaskFactory


@pytest.fixture
def jobs_in_threads(monkeypatch):
    """Stand-in for the cluster: every pushed job runs in a thread of this process."""
    threads: list[threading.Thread] = []

    def push(ids):
        for pk in ids:

            def body(pk=pk):
                try:
                    jobs.copy_account_job(pk)
                finally:
                    connections.close_all()

            thread = threading.Thread(target=body, daemon=True)
            threads.append(thread)
            thread.start()

    monkeypatch.setattr(orchestrator, "push_jobs", push)
    monkeypatch.setattr(orchestrator, "push_fan_out", orchestrator.fan_out)  # the fan-out job, run at once
    yield threads
    for thread in threads:
        thread.join(60)


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_runtask_wait_shows_each_account_and_fails_when_the_run_had_errors(imap_server, imap_task, jobs_in_threads):
    task, users = imap_task(pairs=2)
    for source, _ in users:
        fill_user(imap_server, source, {"INBOX": 5})
    bad = Account.objects.get(task=task, source_user=users[0][0].username)
    bad.destination_password = "wrong"
    bad.save()
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("runtask", str(task.pk), "--wait", "--interval", "0.1", stdout=out)
    assert failed.value.returncode == 1
    run = Run.objects.get(task=task)
    assert str(failed.value) == f"run {run.pk} ended failed with 1 error"
    text = out.getvalue()
    assert f"run {run.pk} of {task.name!r} started: 2 accounts" in text
    # Not a terminal: the lines are printed now and then and once at the end; check the last.
    good_line = [line for line in text.splitlines() if line.startswith(users[1][0].username)][-1]
    assert "[####################] 100%" in good_line and "5/5" in good_line
    assert "done" in good_line and "MB" in good_line and "msg/s" in good_line
    bad_line = [line for line in text.splitlines() if line.startswith(users[0][0].username)][-1]
    assert "failed" in bad_line and "uthentication failed" in bad_line
    assert "wrong" not in bad_line.replace("wrong password", "")
    assert run.reason in text


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_runtask_wait_exits_zero_on_a_clean_run(imap_server, imap_task, jobs_in_threads):
    task, users = imap_task(pairs=1)
    fill_user(imap_server, users[0][0], {"INBOX": 3})
    out = io.StringIO()
    call_command("runtask", task.name, "--wait", "--interval", "0.1", stdout=out)
    assert "done · 1 of 1 account · 3 copied · 0 already there · 0 not copied · 0 errors" in out.getvalue()


@pytest.mark.django_db
def test_runtask_without_wait_starts_the_run_and_returns(make_task, pushed, django_capture_on_commit_callbacks):
    task = make_task(accounts=2)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("runtask", task.name, stdout=out)
    run = Run.objects.get(task=task)
    assert out.getvalue().strip() == f"run {run.pk} of {task.name!r} started: 2 accounts"
    assert len(pushed) == 2


@pytest.mark.django_db
def test_runtask_refusals_are_clear(make_task, pushed):
    with pytest.raises(CommandError, match="no task with id or name 'nope'"):
        call_command("runtask", "nope")
    empty = TaskFactory(name="empty")
    with pytest.raises(CommandError, match="no accounts"):
        call_command("runtask", "empty")
    task = make_task(accounts=1)
    call_command("runtask", str(task.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="already running"):
        call_command("runtask", str(task.pk))
    with pytest.raises(CommandError, match="is not running"):
        call_command("runtask", str(empty.pk), "--cancel")


@pytest.mark.django_db
def test_runtask_cancel_stops_the_running_run(make_task, pushed):
    task = make_task(accounts=2)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    out = io.StringIO()
    with pytest.raises(CommandError) as ended:
        call_command("runtask", task.name, "--cancel", "--wait", stdout=out)
    assert ended.value.returncode == 1
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert f"run {run.pk}: cancel requested" in out.getvalue()
    assert set(run.account_runs.values_list("status", flat=True)) == {AccountRun.Status.CANCELLED}


@pytest.mark.django_db
def test_runtask_only_failed_runs_the_accounts_to_retry(make_task, pushed):
    from runs.models import AccountRun
    from tests.support.factories import AccountRunFactory, RunFactory

    task = make_task(accounts=3)
    ok, failed, errors = task.accounts.order_by("source_user")
    earlier = RunFactory(task=task)
    AccountRunFactory(run=earlier, account=ok, status=AccountRun.Status.DONE)
    AccountRunFactory(run=earlier, account=failed, status=AccountRun.Status.FAILED)
    AccountRunFactory(run=earlier, account=errors, status=AccountRun.Status.DONE, errors=2)
    out = io.StringIO()
    call_command("runtask", task.name, "--only", "failed", stdout=out)
    run = Run.objects.filter(task=task).exclude(pk=earlier.pk).get()
    assert set(run.account_runs.values_list("account_id", flat=True)) == {failed.pk, errors.pk}
    assert out.getvalue().strip() == f"run {run.pk} of {task.name!r} started: 2 accounts"
    Run.objects.filter(pk=run.pk).update(status=Run.Status.DONE)
    task.__class__.objects.filter(pk=task.pk).update(status="done")
    AccountRun.objects.filter(run=run).update(status=AccountRun.Status.DONE, errors=0)
    with pytest.raises(CommandError, match="nothing to retry"):
        call_command("runtask", task.name, "--only", "failed")


@pytest.mark.django_db
def test_runtask_wait_ctrl_c_cancels_the_run_then_a_second_stops_waiting(make_task, pushed):
    """Ctrl-C while watching: the first cancels the run (its queued accounts end cancelled), a second
    stops waiting. The handler only counts; the watch loop acts, so a Ctrl-C that lands in the middle
    of a database query or a screen write breaks neither."""
    task = make_task(accounts=2)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a job started in the background
    presses = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    presses.start()
    out, err = io.StringIO(), io.StringIO()
    try:
        with pytest.raises(CommandError) as ended:
            call_command("runtask", str(task.pk), "--wait", "--interval", "5", stdout=out, stderr=err)
    finally:
        presses.cancel()
    run = Run.objects.get(task=task)
    assert run.status == Run.Status.CANCELLED
    assert ended.value.returncode == 1
    assert "cancelling the run" in err.getvalue()
    assert set(run.account_runs.values_list("status", flat=True)) == {AccountRun.Status.CANCELLED}
    # The handler from before the watch is back (Python's KeyboardInterrupt, in a terminal).
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.django_db
def test_runtask_wait_second_ctrl_c_stops_waiting_with_status_130(make_task, pushed, monkeypatch):
    task = make_task(accounts=1)
    # The cancel is asked but never finishes (a copy in flight would end after its batch).
    monkeypatch.setattr(orchestrator, "cancel_run", lambda pk: None)
    timers = [threading.Timer(t, lambda: os.kill(os.getpid(), signal.SIGINT)) for t in (0.3, 1.0)]
    for timer in timers:
        timer.start()
    err = io.StringIO()
    try:
        with pytest.raises(SystemExit) as stopped:
            call_command("runtask", str(task.pk), "--wait", "--interval", "0.2", stdout=io.StringIO(), stderr=err)
    finally:
        for timer in timers:
            timer.cancel()
    assert stopped.value.code == 130
    run = Run.objects.get(task=task)
    assert f"stopped waiting; run {run.pk} goes on" in err.getvalue()
    assert run.is_running
