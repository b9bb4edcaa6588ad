"""Scale-out: several `qcluster` processes share one PostgreSQL and one Redis broker.

The subject is the production set-up (PostgreSQL + Redis). When the suite runs on SQLite, the test runs
itself again in a pytest subprocess on a PostgreSQL database of its own (created and dropped by
pytest-django), at TEST_DATABASE_URL's server or 127.0.0.1:5432 as bin/test uses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection

from runs.models import AccountRun, Run
from tests.e2e.conftest import (
    fill_user,
    forget_redis_site,
    mail_hashes,
    manage,
    redis_queue_length,
    site_env,
    wait_until,
    worker_pid,
)
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.cluster, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

ACCOUNTS = 20


def run_on_postgresql(nodeid: str) -> None:
    """Run one test of this module in a pytest subprocess whose database is PostgreSQL."""
    server = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/imapcopier").rsplit("/", 1)[0]
    env = {**os.environ, "DATABASE_URL": f"{server}/ic_scaleout_{uuid.uuid4().hex[:8]}"}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", nodeid, "-q", "-rA"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "1 passed" in done.stdout, (
        f"the scale-out test needs PostgreSQL ({server}); on it, it said:\n{output[-8000:]}"
    )


def _accounts_by_cluster(run: Run, *clusters) -> list[set[int]]:
    """For each cluster, the account runs one of its processes worked on."""
    found = [set() for _ in clusters]
    for pk, worker in run.account_runs.values_list("pk", "worker"):
        pid = worker_pid(worker)
        for i, cluster in enumerate(clusters):
            if pid in cluster.children():
                found[i].add(pk)
    return found


def _start(env: dict[str, str], task_id: int) -> Run:
    before = set(Run.objects.filter(task_id=task_id).values_list("pk", flat=True))
    manage(env, "runtask", str(task_id))
    return Run.objects.filter(task_id=task_id).exclude(pk__in=before).get()


def _finished(run: Run) -> Run | None:
    run.refresh_from_db()
    return None if run.is_running else run


@pytest.mark.timeout(420)
def test_two_clusters_share_the_work_and_a_lost_cluster_is_reaped_and_resumed(request, clusters):
    if connection.vendor != "postgresql":
        run_on_postgresql(request.node.nodeid)
        return
    imap_server = request.getfixturevalue("imap_server")
    imap_task = request.getfixturevalue("imap_task")
    env = site_env(redis=True, workers=2)
    request.addfinalizer(lambda: forget_redis_site(env))
    with (
        FaultProxy(imap_server.imap_port) as to_source,
        FaultProxy(imap_server.imap_port) as to_destination,
    ):
        task, users = imap_task(
            pairs=ACCOUNTS, source_port=to_source.port, destination_port=to_destination.port, max_connections=20
        )
        for source, _ in users:
            fill_user(imap_server, source, {"INBOX": 10, "Archive": 5})
        first, second = clusters(env), clusters(env)

        # One run, both clusters take jobs from the shared Redis queue, every message lands once.
        run = _start(env, task.pk)
        run = wait_until(lambda: _finished(run), 120, "the first run", first, second)
        assert run.status == Run.Status.DONE, run.reason
        assert (run.copied, run.errors) == (ACCOUNTS * 15, 0)
        assert Run.objects.filter(task=task).count() == 1
        assert set(run.account_runs.values_list("attempt", flat=True)) == {1}
        by_first, by_second = _accounts_by_cluster(run, first, second)
        assert by_first and by_second, (by_first, by_second)
        assert len(by_first | by_second) == ACCOUNTS and not by_first & by_second
        for source, destination in users:
            assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)

        # New mail, slower servers: the second run is caught while the first cluster copies.
        for source, _ in users:
            fill_user(imap_server, source, {"INBOX": 20}, seed="second", size=1000)
        to_source.delay = to_destination.delay = 0.02
        run = _start(env, task.pk)

        def first_is_copying() -> list[int]:
            pids = first.children()
            running = run.account_runs.filter(status=AccountRun.Status.RUNNING).values_list("worker", flat=True)
            return [w for w in running if worker_pid(w) in pids]

        wait_until(first_is_copying, 60, "the first cluster copying", first, second)
        first.signal_group(signal.SIGKILL)
        first.wait_exit(10)
        wait_until(lambda: not first.group_alive(), 10, "the first cluster's end", first)
        killed = {
            pk
            for pk, worker in run.account_runs.filter(status=AccountRun.Status.RUNNING).values_list("pk", "worker")
            if worker_pid(worker) in first.children()
        }
        assert killed

        def second_is_idle() -> bool:
            pids = second.children()
            busy = [
                w
                for w in run.account_runs.filter(status=AccountRun.Status.RUNNING).values_list("worker", flat=True)
                if worker_pid(w) in pids
            ]
            return redis_queue_length(env) == 0 and not busy

        idle_since: list[float] = []

        def second_stays_idle() -> bool:
            # An empty Redis list is not enough: a job the cluster's pusher has just taken from Redis waits
            # in the cluster's own queue for a moment before a worker claims it. Idle means idle for 3 s on end.
            if not second_is_idle():
                idle_since.clear()
                return False
            idle_since[:] = idle_since or [time.monotonic()]
            return time.monotonic() - idle_since[0] >= 3

        # The survivor finishes every job it can get; the killed cluster's jobs are left running.
        wait_until(second_stays_idle, 120, "the second cluster to finish its jobs", second)
        _, by_second = _accounts_by_cluster(run, first, second)
        statuses = dict(run.account_runs.values_list("pk", "status"))
        assert by_second and all(statuses[pk] == AccountRun.Status.DONE for pk in by_second - killed)
        assert all(statuses[pk] == AccountRun.Status.RUNNING for pk in killed)
        run.refresh_from_db()
        assert run.is_running

        # The tick's reaper, once the heartbeat lease (and the lost-job grace) has run out: the killed
        # jobs end interrupted, jobs the dead cluster had taken from Redis are enqueued again.
        manage(
            env,
            "shell",
            "-c",
            "from datetime import timedelta; from django.utils import timezone; from runs import orchestrator; "
            "print('reaped', orchestrator.reap_stale(timezone.now() + "
            "timedelta(seconds=orchestrator.LOST_JOB_GRACE_SECONDS + 1)))",
        )
        run = wait_until(lambda: _finished(run), 120, "the second run", second)
        assert run.status == Run.Status.FAILED and run.reason.startswith("interrupted"), run.reason
        interrupted = set(
            run.account_runs.filter(status=AccountRun.Status.FAILED, last_error__startswith="interrupted").values_list(
                "pk", flat=True
            )
        )
        assert interrupted == killed
        assert set(run.account_runs.exclude(pk__in=killed).values_list("status", flat=True)) == {AccountRun.Status.DONE}
        task.refresh_from_db()
        assert not task.broken

        # The next run completes what the killed jobs left: nothing lost, nothing twice.
        to_source.delay = to_destination.delay = 0
        run = _start(env, task.pk)
        run = wait_until(lambda: _finished(run), 120, "the third run", second)
        assert run.status == Run.Status.DONE, run.reason
        assert run.errors == 0 and run.copied > 0
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
