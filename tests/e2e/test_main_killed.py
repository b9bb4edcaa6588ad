"""SIGKILL of a cluster's main process: its sentinel and workers stop after the batch in flight
(issue 15, finding 4). runs/lifeline.py does it; before, they lived on with parent pid 1, finished the
run and took jobs beside the next cluster."""

from __future__ import annotations

import signal
import time

import pytest

from runs.models import AccountRun, FolderState, Run
from tests.e2e.conftest import fill_user, mail_hashes, site_env, wait_until, worker_pid
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.cluster, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

MESSAGES = 1250  # five batches of the engine, each several seconds long behind the slow destination


@pytest.mark.timeout(240)
def test_sigkill_of_the_main_process_stops_its_workers_and_the_run_resumes(imap_server, imap_task, clusters):
    from runs import orchestrator

    with FaultProxy(imap_server.imap_port, delay=0.5) as proxy:
        task, users = imap_task(pairs=2, destination_port=proxy.port)
        for source, _ in users:
            fill_user(imap_server, source, {"INBOX": MESSAGES}, size=3000)
        env = site_env(redis=False, workers=2)
        cluster = clusters(env)
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)

        def both_copying() -> bool:
            return run.account_runs.filter(status=AccountRun.Status.RUNNING, copied__gt=0).count() == 2

        wait_until(both_copying, 60, "two accounts mid-copy", cluster)
        workers = {worker_pid(w) for w in run.account_runs.values_list("worker", flat=True)}
        assert workers <= cluster.children()

        cluster.signal_main(signal.SIGKILL)
        assert cluster.wait_exit(10) == -signal.SIGKILL
        killed_at = time.monotonic()

        # The jobs record the stop themselves, after their batch: long before the reaper's lease.
        def recorded() -> bool:
            return set(run.account_runs.values_list("status", flat=True)) == {AccountRun.Status.FAILED}

        wait_until(recorded, 60, "the orphaned jobs to record their stop", cluster)
        # ...and then every process of the killed cluster ends by itself.
        wait_until(lambda: not cluster.group_alive(), 30, "the orphaned cluster processes to exit", cluster)
        assert time.monotonic() - killed_at < orchestrator.HEARTBEAT_LEASE_SECONDS
        for ar in run.account_runs.all():
            assert ar.last_error.startswith("interrupted: the cluster's main process died"), ar.last_error
            assert 0 < ar.copied < MESSAGES
            assert FolderState.objects.filter(account_id=ar.account_id).exclude(copied_uids="").exists()
        run.refresh_from_db()
        assert run.status == Run.Status.FAILED
        assert run.reason == (
            "interrupted: 2 of 2 accounts stopped without finishing "
            "(2 stopped because their cluster's main process died); run the task again to resume"
        )

        # A new cluster resumes: every message exactly once.
        proxy.delay = 0
        second = clusters(env)
        rerun = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
        rerun = wait_until(
            lambda: (r := Run.objects.get(pk=rerun.pk)) and not r.is_running and r, 120, "the next run", second
        )
        assert rerun.status == Run.Status.DONE, rerun.reason
        assert 0 < rerun.copied < 2 * MESSAGES
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
