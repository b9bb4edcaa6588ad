from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from runs import jobs, orchestrator, q2
from runs.engine.types import AccountResult, MessageError, NotCopied, Outcome
from runs.models import AccountRun, Run
from tasks import slots
from tasks.models import Account, ConnectionSlot, ScheduleInterval, Task
from tests.support.factories import AccountFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def _claim_all(run: Run) -> list[AccountRun]:
    now = timezone.now()
    return [
        orchestrator.claim_account_run(pk, worker="test:1", now=now)
        for pk in run.account_runs.values_list("pk", flat=True)
    ]


def _finish(ar: AccountRun, result: AccountResult, now=None) -> bool:
    return orchestrator.finish_account_run(ar, ar.attempt, result, now=now or timezone.now())


# --- start_run -----------------------------------------------------------------------------------


def test_start_run_creates_the_run_and_one_account_run_per_account(
    make_task, pushed, django_capture_on_commit_callbacks
):
    task = make_task(accounts=3)
    with django_capture_on_commit_callbacks(execute=True):
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    task.refresh_from_db()
    assert task.status == Task.Status.RUNNING
    assert run.status == Run.Status.RUNNING and run.trigger == Run.Trigger.MANUAL
    ars = list(run.account_runs.all())
    assert len(ars) == 3
    assert {ar.account_id for ar in ars} == set(task.accounts.values_list("pk", flat=True))
    assert all(ar.status == AccountRun.Status.QUEUED and ar.enqueues == 1 for ar in ars)
    assert sorted(pushed) == sorted(ar.pk for ar in ars)


def test_jobs_are_enqueued_only_after_commit_with_ids_only(make_task, django_capture_on_commit_callbacks):

    task = make_task(accounts=2)
    with mock.patch("django_q.tasks.async_task") as async_task:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
        assert async_task.call_count == 0
        assert len(callbacks) == 1
        callbacks[0]()
        # The start enqueues one job, whatever the number of accounts: the fan-out runs in a worker.
        assert async_task.call_count == 1
        assert async_task.call_args.args == ("runs.jobs.fan_out_run_job", run.pk)
        jobs.fan_out_run_job(run.pk)
    assert async_task.call_count == 3
    ids = set(run.account_runs.values_list("pk", flat=True))
    passwords = {a.source_password for a in task.accounts.all()} | {a.destination_password for a in task.accounts.all()}
    for call in async_task.call_args_list[1:]:
        assert call.args[0] == "runs.jobs.copy_account_job"
        assert len(call.args) == 2 and call.args[1] in ids
        assert call.kwargs["cluster"] == "imapcopier"
        assert not passwords & {str(v) for v in call.kwargs.values()}


def test_a_second_start_is_refused_as_already_running(make_task, pushed):
    task = make_task()
    orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    with pytest.raises(orchestrator.TaskAlreadyRunning) as refused:
        orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
    assert str(refused.value) == "This task is already running."
    assert Run.objects.filter(task=task).count() == 1


def test_the_running_run_constraint_backs_the_claim(make_task, pushed):
    task = make_task()
    RunFactory(task=task, status=Run.Status.RUNNING)
    # The task row says idle (say, edited by hand), but a run is running: still refused.
    assert Task.objects.get(pk=task.pk).status == Task.Status.IDLE
    with pytest.raises(orchestrator.TaskAlreadyRunning):
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    assert Task.objects.get(pk=task.pk).status == Task.Status.IDLE
    assert Run.objects.filter(task=task).count() == 1


def test_a_task_without_accounts_is_refused(pushed):
    task = TaskFactory()
    with pytest.raises(orchestrator.NoAccounts) as refused:
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    assert "no accounts" in str(refused.value)
    assert Task.objects.get(pk=task.pk).status == Task.Status.IDLE
    assert not Run.objects.exists()


def test_untested_accounts_are_refused_with_their_names(make_task, pushed):
    task = make_task(accounts=2)
    AccountFactory(task=task, source_user="never-tested@example.org")
    AccountFactory(
        task=task,
        source_user="half-tested@example.org",
        source_test_status=Account.TestStatus.OK,
        destination_test_status=Account.TestStatus.FAIL,
    )
    with pytest.raises(orchestrator.AccountsNotTested) as refused:
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    message = str(refused.value)
    assert message.startswith("2 of 4 active accounts have not passed the connection test")
    assert "never-tested@example.org" in message and "half-tested@example.org" in message
    assert isinstance(refused.value, orchestrator.RunRefused)
    assert Task.objects.get(pk=task.pk).status == Task.Status.IDLE
    assert not pushed


def test_an_unknown_task_is_does_not_exist(pushed):
    with pytest.raises(Task.DoesNotExist):
        orchestrator.start_run(987654, trigger=Run.Trigger.MANUAL)


def test_start_run_does_not_decrypt_passwords(make_task, pushed):
    task = make_task(accounts=2)
    with mock.patch("imapcopier.crypto.decrypt", side_effect=AssertionError("decrypted")):
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)


def test_a_failed_push_is_logged_not_raised(make_task, django_capture_on_commit_callbacks, caplog):
    task = make_task(accounts=1)
    with mock.patch("django_q.tasks.async_task", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
        assert run.account_runs.get().status == AccountRun.Status.QUEUED
        assert "the reaper will enqueue its accounts" in caplog.text  # the fan-out job
        orchestrator.fan_out(run.pk)
        assert "the reaper will retry" in caplog.text  # a copy job
    assert run.account_runs.get().status == AccountRun.Status.QUEUED


# --- claim and finish ----------------------------------------------------------------------------


def test_claim_bumps_attempt_and_a_second_claim_gets_nothing(make_task, pushed):
    task = make_task(accounts=1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    pk = run.account_runs.get().pk
    first = orchestrator.claim_account_run(pk, worker="host-a:11", now=timezone.now())
    assert first.status == AccountRun.Status.RUNNING
    assert first.attempt == 1 and first.worker == "host-a:11"
    assert orchestrator.claim_account_run(pk, worker="host-b:22", now=timezone.now()) is None
    assert orchestrator.claim_account_run(424242, worker="x:1", now=timezone.now()) is None
    assert AccountRun.objects.get(pk=pk).worker == "host-a:11"


def test_the_last_account_to_finish_finalises_the_run(make_task, pushed):
    task = make_task(accounts=2)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    a, b = _claim_all(run)
    assert _finish(a, AccountResult(outcome=Outcome.DONE, copied=5, skipped=1, bytes=500))
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING and run.finished_at is None
    errors = [MessageError(folder="INBOX", uid=7, size=10, subject="s", reason="NO too big")]
    assert _finish(
        b,
        AccountResult(
            outcome=Outcome.DONE,
            copied=3,
            errors=1,
            bytes=300,
            message_errors=errors,
            source_messages=4,
            not_copied={NotCopied.REFUSED: 1},
        ),
    )
    run.refresh_from_db()
    task.refresh_from_db()
    assert run.status == Run.Status.DONE
    assert (run.copied, run.skipped, run.errors, run.bytes) == (8, 1, 1, 800)
    assert run.finished_at is not None
    assert run.reason == "1 message not copied" and run.not_copied == 1
    assert task.status == Task.Status.DONE
    stored = AccountRun.objects.get(pk=b.pk)
    assert (stored.source_messages, stored.not_copied) == (4, {"refused by the destination": 1})
    assert stored.not_copied_messages == 1
    assert stored.message_errors == [
        {
            "folder": "INBOX",
            "uid": 7,
            "size": 10,
            "subject": "s",
            "reason": "NO too big",
            "permanent": True,
            "kind": "refused by the destination",
        }
    ]


def test_an_account_that_failed_as_a_whole_fails_the_run(make_task, pushed):
    task = make_task(accounts=3)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    a, b, c = _claim_all(run)
    _finish(a, AccountResult(outcome=Outcome.DONE, copied=1))
    _finish(b, AccountResult.failed("[AUTHENTICATIONFAILED] Authentication failed."))
    _finish(c, AccountResult(outcome=Outcome.DONE, copied=2))
    run.refresh_from_db()
    task.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.errors == 1 and run.copied == 3
    user = Account.objects.get(pk=b.account_id).source_user
    assert run.reason == f"1 of 3 accounts failed: {user}: [AUTHENTICATIONFAILED] Authentication failed."
    assert task.status == Task.Status.FAILED
    assert AccountRun.objects.get(pk=b.pk).last_error.startswith("[AUTHENTICATIONFAILED]")


def test_a_finish_with_a_stale_attempt_writes_nothing(make_task, pushed):
    task = make_task(accounts=1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    (ar,) = _claim_all(run)
    assert not orchestrator.finish_account_run(
        ar,
        ar.attempt + 1,
        AccountResult(outcome=Outcome.DONE, copied=9),
        now=timezone.now(),
    )
    ar.refresh_from_db()
    assert ar.status == AccountRun.Status.RUNNING and ar.copied == 0


def test_finishing_twice_finalises_once(make_task, pushed):
    task = make_task(accounts=1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
    (ar,) = _claim_all(run)
    with mock.patch("scheduling.breaker.after_run") as after_run:
        assert _finish(ar, AccountResult(outcome=Outcome.DONE, copied=1))
        assert not _finish(ar, AccountResult(outcome=Outcome.DONE, copied=1))
    assert after_run.call_count == 1


def test_a_scheduled_run_with_errors_trips_the_breaker_when_it_finishes(make_task, pushed):
    task = make_task(accounts=1, schedule_interval_seconds=ScheduleInterval.HOUR_1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
    (ar,) = _claim_all(run)
    _finish(ar, AccountResult(outcome=Outcome.DONE, copied=4, errors=1))
    task.refresh_from_db()
    assert task.broken is True
    assert task.schedule_interval_seconds == ScheduleInterval.OFF
    assert task.status == Task.Status.DONE


def test_a_manual_run_with_errors_does_not_trip_the_breaker(make_task, pushed):
    task = make_task(accounts=1, schedule_interval_seconds=ScheduleInterval.HOUR_1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    (ar,) = _claim_all(run)
    _finish(ar, AccountResult.failed("wrong password"))
    task.refresh_from_db()
    assert not task.broken and task.schedule_interval_seconds == ScheduleInterval.HOUR_1


def test_a_broken_breaker_does_not_keep_the_run_running(make_task, pushed, caplog):
    task = make_task(accounts=1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
    (ar,) = _claim_all(run)
    with mock.patch("scheduling.breaker.after_run", side_effect=RuntimeError("bug")):
        assert _finish(ar, AccountResult(outcome=Outcome.DONE, copied=1))
    run.refresh_from_db()
    assert run.status == Run.Status.DONE
    assert "breaker failed" in caplog.text


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_ends_queued_accounts_at_once_and_running_ones_when_they_stop(make_task, pushed):
    task = make_task(accounts=2)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    first_pk = run.account_runs.order_by("pk").first().pk
    running = orchestrator.claim_account_run(first_pk, worker="w:1", now=timezone.now())
    assert orchestrator.cancel_run(run.pk)
    run.refresh_from_db()
    assert run.cancel_requested and run.status == Run.Status.RUNNING
    queued = run.account_runs.exclude(pk=first_pk).get()
    assert queued.status == AccountRun.Status.CANCELLED
    assert queued.last_error == "cancelled before it started"
    # The queued job, delivered later, does nothing.
    assert orchestrator.claim_account_run(queued.pk, worker="w:2", now=timezone.now()) is None
    _finish(running, AccountResult(outcome=Outcome.CANCELLED, copied=7, reason="cancelled"))
    run.refresh_from_db()
    task.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.copied == 7
    assert run.reason == "cancelled by the operator"
    assert task.status == Task.Status.CANCELLED
    assert not orchestrator.cancel_run(run.pk)


def test_cancelling_a_run_with_nothing_started_ends_it_at_once(make_task, pushed):
    task = make_task(accounts=2)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    assert orchestrator.cancel_run(run.pk)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.finished_at is not None
    assert Task.objects.get(pk=task.pk).status == Task.Status.CANCELLED
    # ... and the task can start again.
    orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)


# --- reap_stale ----------------------------------------------------------------------------------


def test_reap_marks_a_silent_account_run_interrupted_and_frees_the_task(make_task, pushed):
    task = make_task(accounts=2, schedule_interval_seconds=ScheduleInterval.HOUR_1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
    a, b = _claim_all(run)
    AccountRun.objects.filter(pk=a.pk).update(errors=2, copied=10)
    assert slots.try_acquire(
        {task.source_id: 1},
        slots.account_run_holder(a.pk, a.attempt),
        now=timezone.now(),
    )
    _finish(b, AccountResult(outcome=Outcome.DONE, copied=3))
    now = timezone.now()
    assert orchestrator.reap_stale(now) == 0  # the heartbeat is fresh
    later = now + timedelta(seconds=orchestrator.HEARTBEAT_LEASE_SECONDS + 1)
    assert orchestrator.reap_stale(later) == 1
    a.refresh_from_db()
    run.refresh_from_db()
    task.refresh_from_db()
    assert a.status == AccountRun.Status.FAILED and a.interrupted
    assert a.last_error.startswith("interrupted: the worker test:1 stopped answering since ")
    assert run.status == Run.Status.FAILED and run.finished_at == later and run.interrupted
    assert run.reason == (
        "interrupted: 1 of 2 accounts stopped without finishing "
        "(1 lost their worker (it died or hung: no heartbeat)); run the task again to resume"
    )
    assert run.errors == 2 and run.copied == 13
    assert task.status == Task.Status.FAILED
    # Interrupted, not judged: the breaker stays put even though the run counted errors.
    assert not task.broken and task.schedule_interval_seconds == ScheduleInterval.HOUR_1
    assert not ConnectionSlot.objects.exclude(holder="").exists()
    # The late worker's result is dropped.
    assert not _finish(a, AccountResult(outcome=Outcome.DONE, copied=99))
    assert orchestrator.reap_stale(later) == 0
    orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)


def test_reap_re_enqueues_a_lost_job_once_then_fails_it(make_task, pushed):
    task = make_task(accounts=1)
    start = timezone.now()
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, now=start)
    ar = run.account_runs.get()
    pushed.clear()
    grace = timedelta(seconds=orchestrator.LOST_JOB_GRACE_SECONDS + 1)
    with mock.patch.object(q2, "pending_job_ids", return_value=set()):
        assert orchestrator.reap_stale(start + grace / 2) == 0
        assert pushed == []
        assert orchestrator.reap_stale(start + grace) == 0
        assert pushed == [ar.pk]
        ar.refresh_from_db()
        assert ar.status == AccountRun.Status.QUEUED and ar.enqueues == 2
        assert orchestrator.reap_stale(start + grace + grace) == 1
    ar.refresh_from_db()
    run.refresh_from_db()
    assert ar.status == AccountRun.Status.FAILED
    assert "the job queue lost this account's job twice" in ar.last_error
    assert ar.last_error.startswith("interrupted") and ar.interrupted
    assert run.status == Run.Status.FAILED
    assert run.reason == (
        "interrupted: 1 of 1 account stopped without finishing "
        "(1 never started: the job queue lost their jobs); run the task again to resume"
    )
    assert Task.objects.get(pk=task.pk).status == Task.Status.FAILED


def test_reap_leaves_a_job_that_is_in_the_broker_alone(make_task, pushed):
    task = make_task(accounts=1)
    start = timezone.now()
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, now=start)
    ar = run.account_runs.get()
    from django_q.tasks import async_task

    async_task(q2.COPY_ACCOUNT_JOB, ar.pk, cluster=q2.copy_queue())
    assert q2.pending_job_ids() == {ar.pk}
    later = start + timedelta(seconds=10 * orchestrator.LOST_JOB_GRACE_SECONDS)
    assert orchestrator.reap_stale(later) == 0
    ar.refresh_from_db()
    assert ar.status == AccountRun.Status.QUEUED and ar.enqueues == 1


def test_reap_does_not_fail_lost_jobs_while_workers_are_busy(make_task, pushed):
    task = make_task(accounts=2)
    start = timezone.now()
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, now=start)
    busy, waiting = run.account_runs.order_by("pk")
    AccountRun.objects.filter(pk=waiting.pk).update(enqueues=2)
    later = start + timedelta(seconds=orchestrator.LOST_JOB_GRACE_SECONDS + 1)
    orchestrator.claim_account_run(busy.pk, worker="w:1", now=later)
    with mock.patch.object(q2, "pending_job_ids", return_value=set()):
        assert orchestrator.reap_stale(later) == 0
    assert AccountRun.objects.get(pk=waiting.pk).status == AccountRun.Status.QUEUED


def test_reap_decides_nothing_when_the_broker_cannot_be_read(make_task, pushed):
    task = make_task(accounts=1)
    start = timezone.now()
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, now=start)
    AccountRun.objects.filter(run=run).update(enqueues=5)
    with mock.patch.object(q2, "pending_job_ids", return_value=None):
        assert orchestrator.reap_stale(start + timedelta(days=1)) == 0
    assert run.account_runs.get().status == AccountRun.Status.QUEUED


def test_reap_finalises_a_run_left_running_with_nothing_active(pushed):
    task = TaskFactory(status=Task.Status.RUNNING)
    run = RunFactory(task=task, status=Run.Status.RUNNING)
    AccountRun.objects.create(
        run=run,
        account=AccountFactory(task=task),
        status=AccountRun.Status.DONE,
        copied=4,
    )
    orchestrator.reap_stale(timezone.now())
    run.refresh_from_db()
    assert run.status == Run.Status.DONE and run.copied == 4
    assert Task.objects.get(pk=task.pk).status == Task.Status.DONE


def test_reap_frees_a_task_marked_running_without_a_run(pushed):
    task = TaskFactory(status=Task.Status.RUNNING)
    RunFactory(
        task=task,
        status=Run.Status.CANCELLED,
        started_at=timezone.now() - timedelta(days=1),
    )
    orchestrator.reap_stale(timezone.now())
    assert Task.objects.get(pk=task.pk).status == Task.Status.CANCELLED
    lonely = TaskFactory(status=Task.Status.RUNNING)
    orchestrator.reap_stale(timezone.now())
    assert Task.objects.get(pk=lonely.pk).status == Task.Status.IDLE


def test_a_job_deleted_from_the_orm_broker_is_enqueued_again(make_task, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    task = make_task(accounts=2)
    start = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, now=start)
    assert q2.pending_fan_out_run_ids() == {run.pk}
    # A worker takes the fan-out job from the broker and runs it.
    OrmQ.objects.filter(
        pk__in=[row.pk for row in OrmQ.objects.all() if row.task["func"] == q2.FAN_OUT_RUN_JOB]
    ).delete()
    jobs.fan_out_run_job(run.pk)
    assert q2.pending_fan_out_run_ids() == set()
    lost, kept = run.account_runs.order_by("pk")
    assert q2.pending_job_ids() == {lost.pk, kept.pk}
    # The broker loses one job (a flushed queue, a payload whose signature no longer checks out).
    for row in OrmQ.objects.all():
        if row.task["args"] == (lost.pk,):
            row.delete()
    assert q2.pending_job_ids() == {kept.pk}
    later = start + timedelta(seconds=orchestrator.LOST_JOB_GRACE_SECONDS + 1)
    assert orchestrator.reap_stale(later) == 0
    assert q2.pending_job_ids() == {lost.pk, kept.pk}
    lost.refresh_from_db()
    assert lost.enqueues == 2 and lost.enqueued_at == later
    assert AccountRun.objects.get(pk=kept.pk).enqueues == 1
