"""copy_account_job against the real test Dovecot, called directly (no cluster).

The job's heartbeat thread has its own database connection, so these tests commit for real
(transaction=True).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connections
from django.utils import timezone

from runs import jobs, lifeline, orchestrator, q2
from runs.engine.types import ConnectionTestResult
from runs.models import AccountRun, FolderState, Run
from runs.progress import WAITING_FOR_SLOTS
from tasks import slots
from tasks.models import Account, ConnectionSlot, Task
from tests.runs.conftest import fill_user, mail_hashes, message_count
from tests.support.factories import AccountFactory, TaskFactory
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]


def _start(task) -> tuple[Run, list[int]]:
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    return run, list(run.account_runs.order_by("pk").values_list("pk", flat=True))


def _in_thread(target, *args) -> threading.Thread:
    def body() -> None:
        try:
            target(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


class _Once:
    """Patches the job's monitor so `action()` runs once, when the first messages have landed."""

    def __init__(self, action) -> None:
        self.action = action
        self.fired = threading.Event()

    def __enter__(self):
        once = self

        class Monitor(jobs.JobMonitor):
            def on_progress(self, progress) -> None:
                super().on_progress(progress)
                if progress.copied > 0 and not once.fired.is_set():
                    once.fired.set()
                    once.action()

        self._patches = [
            mock.patch.object(jobs, "JobMonitor", Monitor),
            mock.patch.object(jobs, "HEARTBEAT_SECONDS", 0.05),
        ]
        for p in self._patches:
            p.start()
        return self

    def __exit__(self, *exc) -> None:
        for p in self._patches:
            p.stop()


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_run_copies_every_account_and_ends_done(imap_server, imap_task, pushed):
    task, users = imap_task(pairs=2)
    expected = 0
    for source, _ in users:
        expected += fill_user(imap_server, source, {"INBOX": 12, "Projects/2024": 5})
    run, ids = _start(task)
    for pk in ids:
        jobs.copy_account_job(pk)
    run.refresh_from_db()
    task.refresh_from_db()
    assert run.status == Run.Status.DONE, run.reason
    assert (run.copied, run.skipped, run.errors) == (expected, 0, 0)
    assert run.bytes > 0 and run.finished_at is not None and run.reason == ""
    assert task.status == Task.Status.DONE
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
    for ar in run.account_runs.all():
        assert ar.status == AccountRun.Status.DONE
        assert ar.copied == 17 and ar.total_messages == 17
        assert ar.worker == f"{socket.gethostname()}:{os.getpid()}"
        assert ar.attempt == 1 and ar.heartbeat_at is not None
        states = {s.source_folder: s for s in FolderState.objects.filter(account=ar.account)}
        assert set(states) >= {"INBOX", "Projects/2024"}
        assert states["INBOX"].copied_uids == "1:12"
    assert not ConnectionSlot.objects.exclude(holder="").exists()
    # A second run copies nothing new.
    run2, ids = _start(task)
    for pk in ids:
        jobs.copy_account_job(pk)
    run2.refresh_from_db()
    assert run2.status == Run.Status.DONE
    assert (run2.copied, run2.errors) == (0, 0)
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)


def test_a_wrong_password_fails_that_account_and_the_others_complete(imap_server, imap_task, pushed):
    task, users = imap_task(pairs=3)
    for source, _ in users:
        fill_user(imap_server, source, {"INBOX": 4})
    bad = Account.objects.get(task=task, source_user=users[1][0].username)
    bad.source_password = "not-the-password"
    bad.save()
    run, ids = _start(task)
    for pk in ids:
        jobs.copy_account_job(pk)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.copied == 8 and run.errors == 1
    failed = run.account_runs.get(account=bad)
    assert failed.status == AccountRun.Status.FAILED
    assert "authentication failed" in failed.last_error.lower()
    assert "not-the-password" not in failed.last_error
    assert run.reason.startswith(f"1 of 3 accounts failed: {bad.source_user}: ")
    for source, destination in (users[0], users[2]):
        assert run.account_runs.get(account__source_user=source.username).status == "done"
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
    assert message_count(imap_server, users[1][1]) == 0
    assert Task.objects.get(pk=task.pk).status == Task.Status.FAILED


def test_the_same_job_delivered_twice_makes_no_second_copy(imap_server, imap_task, pushed):
    task, users = imap_task(pairs=1)
    fill_user(imap_server, users[0][0], {"INBOX": 30})
    run, (pk,) = _start(task)
    # Two deliveries at the same moment, then a third one late.
    barrier = threading.Barrier(2)

    def deliver() -> None:
        barrier.wait()
        jobs.copy_account_job(pk)

    threads = [_in_thread(deliver) for _ in range(2)]
    for t in threads:
        t.join(120)
    jobs.copy_account_job(pk)
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.DONE and ar.attempt == 1 and ar.copied == 30
    assert message_count(imap_server, users[0][1]) == 30
    assert mail_hashes(imap_server, users[0][1]) == mail_hashes(imap_server, users[0][0])


def test_cancel_mid_copy_keeps_what_was_copied_and_the_next_run_finishes(imap_server, imap_task, pushed):
    with FaultProxy(imap_server.imap_port, delay=0.01) as proxy:
        task, users = imap_task(pairs=1, source_port=proxy.port)
        source, destination = users[0]
        fill_user(imap_server, source, {"INBOX": 1500}, size=500)
        run, (pk,) = _start(task)
        with _Once(lambda: orchestrator.cancel_run(run.pk)) as once:
            jobs.copy_account_job(pk)
        assert once.fired.is_set()
    ar = AccountRun.objects.get(pk=pk)
    run.refresh_from_db()
    assert ar.status == AccountRun.Status.CANCELLED
    assert run.status == Run.Status.CANCELLED
    assert Task.objects.get(pk=task.pk).status == Task.Status.CANCELLED
    copied = message_count(imap_server, destination)
    assert 0 < copied < 1500
    assert ar.copied == copied
    state = FolderState.objects.get(account_id=ar.account_id, source_folder="INBOX")
    from runs.engine.uidset import UidSet

    assert len(UidSet.parse(state.copied_uids)) == copied
    # The next run resumes: every message exactly once.
    task.source.port = imap_server.imap_port
    task.source.save()
    run2, (pk2,) = _start(task)
    jobs.copy_account_job(pk2)
    run2.refresh_from_db()
    assert run2.status == Run.Status.DONE
    assert run2.copied == 1500 - copied
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)


def test_a_job_that_lost_its_claim_stops_and_writes_nothing_more(imap_server, imap_task, pushed):
    reaped = []

    def reap() -> None:
        # The reaper thinks the worker is dead (as after a long pause) and takes the run away.
        later = timezone.now() + timedelta(seconds=orchestrator.HEARTBEAT_LEASE_SECONDS + 5)
        reaped.append(orchestrator.reap_stale(later))

    with FaultProxy(imap_server.imap_port, delay=0.01) as proxy:
        task, users = imap_task(pairs=1, source_port=proxy.port)
        source, destination = users[0]
        fill_user(imap_server, source, {"INBOX": 1500}, size=500)
        run, (pk,) = _start(task)
        with _Once(reap):
            jobs.copy_account_job(pk)
    assert reaped == [1]
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.FAILED
    assert ar.last_error.startswith("interrupted")
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.reason.startswith("interrupted")
    assert message_count(imap_server, destination) < 1500
    # Whatever the zombie copied after losing its claim is found again by message identity
    # or is in the state: the next run ends with every message exactly once.
    run2, (pk2,) = _start(task)
    task.source.port = imap_server.imap_port
    task.source.save()
    jobs.copy_account_job(pk2)
    assert Run.objects.get(pk=run2.pk).status == Run.Status.DONE
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)


def test_the_endpoint_connection_cap_holds_on_the_server_side(imap_server, imap_task, pushed):
    with (
        FaultProxy(imap_server.imap_port) as source_proxy,
        FaultProxy(imap_server.imap_port) as destination_proxy,
    ):
        task, users = imap_task(
            pairs=4,
            max_connections=2,
            source_port=source_proxy.port,
            destination_port=destination_proxy.port,
        )
        for source, _ in users:
            fill_user(imap_server, source, {"INBOX": 40, "Archive": 40}, size=1000)
        run, ids = _start(task)
        source_proxy.reset_counters()
        destination_proxy.reset_counters()
        threads = [_in_thread(jobs.copy_account_job, pk) for pk in ids]
        # A connection test during the run counts against the same cap.
        from tasks.services import test_account

        tester = _in_thread(test_account, Account.objects.filter(task=task).first())
        waited = False
        for t in threads + [tester]:
            while t.is_alive():
                waited |= AccountRun.objects.filter(run=run, current_folder=WAITING_FOR_SLOTS).exists()
                t.join(0.1)
        assert source_proxy.max_concurrent <= 2
        assert destination_proxy.max_concurrent <= 2
        assert source_proxy.max_concurrent >= 1
        assert source_proxy.accepted >= 5  # four copies and the test went through it
    run.refresh_from_db()
    assert run.status == Run.Status.DONE and run.copied == 4 * 80
    assert waited  # some account had to wait for a free connection
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)


def test_an_unexpected_error_fails_the_account_and_the_job_returns(imap_task, pushed, caplog):
    task, _ = imap_task(pairs=1)
    run, (pk,) = _start(task)
    with mock.patch("runs.engine.copy_account", side_effect=RuntimeError("boom")):
        jobs.copy_account_job(pk)
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.FAILED
    assert ar.last_error == "internal error: RuntimeError: boom"
    assert Run.objects.get(pk=run.pk).status == Run.Status.FAILED
    assert "account run" in caplog.text
    assert not ConnectionSlot.objects.exclude(holder="").exists()


def test_one_server_with_a_single_connection_cannot_be_both_sides(imap_server, pushed):
    from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

    endpoint = EndpointFactory(
        host=imap_server.host,
        port=imap_server.imap_port,
        security="plain",
        max_connections=1,
    )
    task = TaskFactory(source=endpoint, destination=endpoint)
    AccountFactory(task=task, tested=True)
    run, (pk,) = _start(task)
    jobs.copy_account_job(pk)
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.FAILED
    assert "needs two connections at once" in ar.last_error


def test_a_job_waiting_for_a_connection_heartbeats_and_can_be_cancelled(imap_task, pushed):
    task, _ = imap_task(pairs=1, max_connections=2)
    assert slots.try_acquire({task.source_id: 2}, "someone-else", now=timezone.now())
    run, (pk,) = _start(task)
    with mock.patch.object(jobs, "HEARTBEAT_SECONDS", 0.1):
        thread = _in_thread(jobs.copy_account_job, pk)
        _wait_for(lambda: AccountRun.objects.get(pk=pk).current_folder == WAITING_FOR_SLOTS)
        first = AccountRun.objects.get(pk=pk).heartbeat_at
        _wait_for(lambda: AccountRun.objects.get(pk=pk).heartbeat_at > first)
        orchestrator.cancel_run(run.pk)
        thread.join(30)
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.CANCELLED
    assert ar.last_error == "cancelled before it started"
    assert Run.objects.get(pk=run.pk).status == Run.Status.CANCELLED


def test_sigterm_ends_the_copy_as_interrupted_and_the_next_run_resumes(imap_server, imap_task, pushed):
    received: list[int] = []
    # A safety net: if the job's handler were missing, SIGTERM would end the test session.
    previous = signal.signal(signal.SIGTERM, lambda *args: received.append(1))
    try:
        with FaultProxy(imap_server.imap_port, delay=0.01) as proxy:
            task, users = imap_task(pairs=1, source_port=proxy.port)
            source, destination = users[0]
            fill_user(imap_server, source, {"INBOX": 1500}, size=500)
            run, (pk,) = _start(task)
            with _Once(lambda: os.kill(os.getpid(), signal.SIGTERM)) as once:
                jobs.copy_account_job(pk)
            assert once.fired.is_set()
        assert received == []  # the job's own handler took it ...
        # ... and gave ours back afterwards:
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [1]
    finally:
        signal.signal(signal.SIGTERM, previous)
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.FAILED
    assert ar.last_error.startswith("interrupted: the worker was stopped (SIGTERM)") and ar.interrupted
    # The run says what happened: a clean stop, not a dead worker.
    assert Run.objects.get(pk=run.pk).reason == (
        "interrupted: 1 of 1 account stopped without finishing "
        "(1 stopped cleanly with their worker (SIGTERM)); run the task again to resume"
    )
    assert 0 < message_count(imap_server, destination) < 1500
    # A worker process that got SIGTERM starts no other copy (tests/e2e/test_graceful_stop.py);
    # this test process goes on.
    assert jobs.worker_stopping()
    jobs._SIGTERM_RECEIVED.clear()
    task.source.port = imap_server.imap_port
    task.source.save()
    run2, (pk2,) = _start(task)
    jobs.copy_account_job(pk2)
    assert Run.objects.get(pk=run2.pk).status == Run.Status.DONE
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)


@pytest.mark.parametrize(
    ("sender", "reason"),
    [("a process manager", orchestrator.STOPPED_BY_SIGTERM), ("the lifeline", orchestrator.MAIN_PROCESS_DIED)],
)
def test_with_the_main_process_gone_the_record_says_who_stopped_the_copy(
    sender, reason, imap_server, imap_task, pushed
):
    # CI on 2026-12-02: SIGTERM to the whole process group; the cluster's main process died of it too, and the
    # worker, having seen that, blamed the main process's death although a process manager had stopped it.
    previous = signal.signal(signal.SIGTERM, lambda *args: None)

    def stop() -> None:
        lifeline._main_gone.set()  # what this worker's lifeline thread notes when the main process dies
        if sender == "the lifeline":
            lifeline._signalled_itself.set()  # ... and what it does when the sentinel dies too
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        with FaultProxy(imap_server.imap_port, delay=0.01) as proxy:
            task, users = imap_task(pairs=1, source_port=proxy.port)
            fill_user(imap_server, users[0][0], {"INBOX": 1500}, size=500)
            run, (pk,) = _start(task)
            with _Once(stop) as once:
                jobs.copy_account_job(pk)
            assert once.fired.is_set()
    finally:
        signal.signal(signal.SIGTERM, previous)
        jobs._SIGTERM_RECEIVED.clear()
        lifeline._main_gone.clear()
        lifeline._signalled_itself.clear()
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.FAILED and ar.interrupted
    assert ar.last_error.startswith(f"interrupted: {reason}"), ar.last_error


@pytest.mark.parametrize("moment", ["claim", "record"])
def test_a_sigterm_outside_the_copy_is_held_until_the_account_run_is_recorded(moment, imap_server, imap_task, pushed):
    # CI on 2026-12-01: with the whole process group signalled, the sentinel dies at once and runs/lifeline.py
    # sends each worker SIGTERM every second. One landed after the copy had stopped and before its result was
    # written, when the process's own disposition (SIG_DFL, the sentinel's) was back: the worker died with the
    # account run claimed and unrecorded. The job now holds SIGTERM from its first line to its last.
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *args: received.append(1))  # the process's own disposition
    target = {"claim": "claim_account_run", "record": "finish_account_run"}[moment]
    real = getattr(orchestrator, target)

    def signalled_first(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    task, users = imap_task(pairs=1)
    fill_user(imap_server, users[0][0], {"INBOX": 3}, size=500)
    run, (pk,) = _start(task)
    try:
        with mock.patch.object(orchestrator, target, signalled_first):
            jobs.copy_account_job(pk)
        assert received == [], "SIGTERM reached the process's own handler while the job held a claim"
    finally:
        signal.signal(signal.SIGTERM, previous)
        stopping = jobs.worker_stopping()
        jobs._SIGTERM_RECEIVED.clear()
    assert stopping  # the job took it: this worker starts no other copy
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status != AccountRun.Status.RUNNING and ar.finished_at is not None
    if moment == "claim":
        # Told to stop before it copied anything: the copy does not start, and says why.
        assert ar.status == AccountRun.Status.FAILED and ar.interrupted and ar.copied == 0, ar.last_error
    else:
        assert ar.status == AccountRun.Status.DONE and ar.copied == 3  # it had finished: the record stands


def test_a_copy_that_reaches_the_time_limit_stops_resumably(imap_server, imap_task, pushed, monkeypatch):
    monkeypatch.setattr(jobs, "time_limit_seconds", lambda: 0.3)
    with FaultProxy(imap_server.imap_port, delay=0.01) as proxy:
        task, users = imap_task(pairs=1, source_port=proxy.port)
        source, destination = users[0]
        fill_user(imap_server, source, {"INBOX": 1500}, size=500)
        run, (pk,) = _start(task)
        jobs.copy_account_job(pk)
    ar = AccountRun.objects.get(pk=pk)
    assert ar.status == AccountRun.Status.FAILED
    assert ar.last_error.startswith("interrupted: the copy reached the job time limit") and ar.interrupted
    assert message_count(imap_server, destination) < 1500
    monkeypatch.undo()
    task.source.port = imap_server.imap_port
    task.source.save()
    run2, (pk2,) = _start(task)
    jobs.copy_account_job(pk2)
    assert Run.objects.get(pk=run2.pk).status == Run.Status.DONE
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)


def test_the_time_limit_stays_inside_the_django_q2_timeout():
    from django.conf import settings

    timeout = settings.Q_CLUSTER["timeout"]
    assert 0 < timeout - jobs.time_limit_seconds() <= 600


@pytest.mark.django_db
def test_test_all_in_the_background_enqueues_ids_only():
    task = TaskFactory()
    accounts = [AccountFactory(task=task) for _ in range(2)]
    with mock.patch("django_q.tasks.async_task") as async_task:
        assert jobs.enqueue_account_tests(task) == 2
        # The request enqueues one job, whatever the number of accounts; a worker fans out.
        assert [c.args for c in async_task.call_args_list] == [(q2.FAN_OUT_TESTS_JOB, task.pk, False)]
        jobs.fan_out_tests_job(*async_task.call_args.args[1:])
    assert [c.args for c in async_task.call_args_list[1:]] == [
        (q2.TEST_ACCOUNT_JOB, a.pk) for a in sorted(accounts, key=lambda a: a.source_user)
    ]
    passwords = {a.source_password for a in accounts} | {a.destination_password for a in accounts}
    for call in async_task.call_args_list:
        assert not passwords & {str(v) for v in call.kwargs.values()}
    assert not Account.objects.filter(source_test_status="ok").exists()


@pytest.mark.django_db
def test_test_untested_and_failed_fans_out_only_the_active_accounts_not_tested_ok():
    task = TaskFactory()
    untested = AccountFactory(task=task, source_user="a@example.org")
    AccountFactory(task=task, source_user="b@example.org", tested=True)
    AccountFactory(task=task, source_user="c@example.org", paused=True)  # parked: never tested
    with mock.patch("django_q.tasks.async_task") as async_task:
        assert jobs.enqueue_account_tests(task, only_needing_test=True) == 1
        assert [c.args for c in async_task.call_args_list] == [(q2.FAN_OUT_TESTS_JOB, task.pk, True)]
        jobs.fan_out_tests_job(*async_task.call_args.args[1:])
    assert [c.args for c in async_task.call_args_list[1:]] == [(q2.TEST_ACCOUNT_JOB, untested.pk)]


@pytest.mark.django_db
def test_the_background_job_tests_the_account_and_never_raises(caplog):
    account = AccountFactory()
    with mock.patch("runs.engine.test_connection") as test_connection:
        test_connection.return_value = ConnectionTestResult(
            ok=False, kind="auth", message="[AUTHENTICATIONFAILED] Authentication failed."
        )
        jobs.test_account_job(account.pk)
        jobs.test_account_job(987654)
        test_connection.side_effect = RuntimeError("boom")
        jobs.test_account_job(account.pk)
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.FAIL
    assert account.source_test_message == "[AUTHENTICATIONFAILED] Authentication failed."
    assert "account 987654: gone before its test ran" in caplog.text
    assert "connection test failed" in caplog.text


def test_the_sigterm_handler_takes_no_lock_the_interrupted_job_may_hold():
    """A signal handler runs in the main thread between two bytecodes of what it interrupts. The job's
    thread sets the monitor's events (should_stop) at the moment a stopping cluster is seen, which is the
    moment a group SIGTERM arrives: a handler that took an event's lock there hung the worker for ever
    (CI, tests/e2e/test_graceful_stop.py[process group], one account run never recorded)."""
    monitor = jobs.JobMonitor(1, 1, 1, "holder")
    held = [monitor.terminated._cond, monitor.cancelled._cond, monitor.lost._cond, monitor.timed_out._cond]
    for lock in held:
        lock.acquire()
    try:
        handler = threading.Thread(target=jobs.on_sigterm, args=(signal.SIGTERM, None), daemon=True)
        handler.start()
        handler.join(5)
        assert not handler.is_alive(), "the SIGTERM handler blocked on a lock held by the interrupted code"
    finally:
        for lock in held:
            lock.release()
    try:
        # The job's own thread turns the flag into a stop after the batch, and says why.
        assert jobs.worker_stopping() and monitor.should_stop() and monitor.terminated.is_set()
    finally:
        jobs._SIGTERM_RECEIVED.clear()
