"""Stopping a worker machine: SIGTERM to `qcluster` leaves every account run recorded and the run resumable.

A process manager either signals the main process only (docker stop, systemd KillMode=mixed) or the
whole process group (systemd's default KillMode=control-group, supervisor stopasgroup). Either way
the copy in flight stops after its batch, its progress is kept (FolderState), its AccountRun ends
"interrupted" (the breaker ignores it), jobs the cluster had taken but not started go back to the
queue, and the next run copies the rest: nothing lost, nothing twice.
"""

from __future__ import annotations

import signal

import pytest

from runs.models import AccountRun, FolderState, Run
from tasks.models import Task
from tests.e2e.conftest import fill_user, mail_hashes, site_env, wait_until, worker_pid
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.cluster, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

MESSAGES = 1250  # five batches of the engine, each a few seconds long behind the slow destination


@pytest.mark.timeout(240)
@pytest.mark.parametrize("target", ["main process", "process group"])
def test_sigterm_stops_copies_cleanly_and_the_run_resumes_exactly_once(target, imap_server, imap_task, clusters):
    from runs import orchestrator

    with FaultProxy(imap_server.imap_port, delay=0.2) as proxy:
        task, users = imap_task(pairs=3, destination_port=proxy.port)
        for source, _ in users:
            fill_user(imap_server, source, {"INBOX": MESSAGES}, size=3000)
        env = site_env(redis=False, workers=2)
        cluster = clusters(env)
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)

        def both_workers_copying() -> bool:
            rows = run.account_runs.filter(status=AccountRun.Status.RUNNING, copied__gt=0)
            return rows.count() == 2

        wait_until(both_workers_copying, 60, "two accounts mid-copy", cluster)
        in_flight = {
            pk: worker_pid(worker)
            for pk, worker in run.account_runs.filter(status=AccountRun.Status.RUNNING).values_list("pk", "worker")
        }
        waiting = set(run.account_runs.exclude(pk__in=in_flight).values_list("pk", flat=True))
        assert len(in_flight) == 2 and len(waiting) == 1
        assert set(in_flight.values()) <= cluster.children()

        if target == "main process":
            cluster.signal_main(signal.SIGTERM)
            # The cluster stops by itself, long before the copies would have finished.
            assert cluster.wait_exit(60) == 0, cluster.log()[-3000:]
            assert not cluster.group_alive()
        else:
            cluster.signal_group(signal.SIGTERM)

        def recorded() -> bool:
            statuses = set(AccountRun.objects.filter(pk__in=in_flight).values_list("status", flat=True))
            return statuses == {AccountRun.Status.FAILED}

        # The jobs themselves record the stop: no reaper involved.
        wait_until(recorded, 60, "the stopped jobs to record their state", cluster)
        if target == "process group":
            # django-q2's main process does not get over its sentinel's death: the process manager's
            # final SIGKILL ends what is left, after its stop timeout (README, "Production").
            cluster.kill()
        for ar in AccountRun.objects.filter(pk__in=in_flight):
            assert ar.last_error.startswith("interrupted") and "SIGTERM" in ar.last_error, ar.last_error
            assert 0 < ar.copied < MESSAGES
            assert FolderState.objects.filter(account_id=ar.account_id).exclude(copied_uids="").exists()
        assert set(AccountRun.objects.filter(pk__in=waiting).values_list("status", flat=True)) == {
            AccountRun.Status.QUEUED
        }
        run.refresh_from_db()
        assert run.is_running  # waits for its last account

        # The job the cluster had taken but not started went back to the queue: a new worker takes
        # it (with the ORM broker it would otherwise wait for `retry`, hours), and the run ends.
        proxy.delay = 0
        second = clusters(env)
        run = wait_until(
            lambda: (r := Run.objects.get(pk=run.pk)) and not r.is_running and r, 90, "the run's end", second
        )
        assert run.status == Run.Status.FAILED and run.reason.startswith("interrupted"), run.reason
        task.refresh_from_db()
        assert not task.broken and task.schedule_interval_seconds == 0  # not tripped (it was off anyway)
        assert task.status == Task.Status.FAILED

        # The next run copies what the stopped jobs left: every message exactly once.
        rerun = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
        rerun = wait_until(
            lambda: (r := Run.objects.get(pk=rerun.pk)) and not r.is_running and r, 90, "the next run", second
        )
        assert rerun.status == Run.Status.DONE, rerun.reason
        assert 0 < rerun.copied < 2 * MESSAGES
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
