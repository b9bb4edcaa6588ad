"""Runs through real django-q2 clusters (`manage.py qcluster` subprocesses) on the test database.

The cluster and the other subprocesses get DATABASE_URL pointing at pytest-django's test database;
with Redis, also a site name (Q_NAME) of their own, so nothing collides with another session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from runs import orchestrator, q2
from runs.models import AccountRun, Run
from tasks.models import Task
from tests.runs.conftest import fill_user, mail_hashes
from tests.support.faultproxy import FaultProxy

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.imap,
    pytest.mark.django_db(transaction=True),
]

REDIS_URL = "redis://127.0.0.1:6379/0"


def _test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _env(redis: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("Q_CLUSTER_NAME", None)
    env.update(DATABASE_URL=_test_database_url(), Q_WORKERS="2", PYTHONUNBUFFERED="1")
    if redis:
        # A site name of our own: the queue is a Redis key shared by everyone on this Redis.
        env.update(REDIS_URL=REDIS_URL, Q_NAME=f"ic-test-{uuid.uuid4().hex[:10]}")
    else:
        # The ORM queue lives in this session's private test database; jobs are enqueued from
        # this process, so the site name (the signing salt) must be the same as ours.
        env.pop("REDIS_URL", None)
        env.pop("Q_NAME", None)
    return env


class Cluster:
    """A `manage.py qcluster` in its own session; stop() ends it (and only it)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="qcluster-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> set[int]:
        """Every process below the cluster's main process."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = set(), {self.process.pid}
        while frontier:
            frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
            found |= frontier
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only its processes
                self.process.wait(10)
        self._log.close()


@pytest.fixture
def cluster_factory():
    started: list[Cluster] = []

    def start(env: dict[str, str]) -> Cluster:
        cluster = Cluster(env)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
        cluster.log_path.unlink(missing_ok=True)


def _wait_for_run(run: Run, cluster: Cluster, timeout: float = 120.0) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if not run.is_running:
            return run
        assert cluster.process.poll() is None, f"qcluster died:\n{cluster.log()[-3000:]}"
        time.sleep(0.25)
    raise AssertionError(f"run still running after {timeout} s:\n{cluster.log()[-3000:]}")


def _three_accounts(imap_server, imap_task):
    task, users = imap_task(pairs=3)
    total = 0
    for i, (source, _) in enumerate(users):
        total += fill_user(imap_server, source, {"INBOX": 10 + i, "Archive": 5})
    return task, users, total


def test_a_run_completes_through_a_cluster_with_the_orm_broker(imap_server, imap_task, cluster_factory):
    task, users, total = _three_accounts(imap_server, imap_task)
    cluster = cluster_factory(_env(redis=False))
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    run = _wait_for_run(run, cluster)
    assert run.status == Run.Status.DONE, run.reason
    assert (run.copied, run.errors) == (total, 0)
    assert Task.objects.get(pk=task.pk).status == Task.Status.DONE
    workers = set(run.account_runs.values_list("worker", flat=True))
    assert all(int(w.rsplit(":", 1)[1]) in cluster.children() for w in workers)
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
    # django-q2 keeps no successful results (save_limit -1: our rows are the record), and no password
    # reached the cluster's log (the jobs carry ids only: runs.q2.enqueue).
    from django_q.models import Task as QTask

    assert not QTask.objects.filter(func=q2.COPY_ACCOUNT_JOB).exists()
    secrets = [u.password for pair in users for u in pair]
    assert not [s for s in secrets if s in cluster.log()]


def test_runtask_wait_completes_through_a_cluster_with_the_redis_broker(imap_server, imap_task, cluster_factory):
    import redis

    task, users, total = _three_accounts(imap_server, imap_task)
    env = _env(redis=True)
    cluster = cluster_factory(env)
    command = subprocess.run(
        [sys.executable, "manage.py", "runtask", task.name, "--wait", "--interval", "0.5"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert command.returncode == 0, command.stdout + command.stderr + cluster.log()[-3000:]
    run = Run.objects.get(task=task)
    assert run.status == Run.Status.DONE
    assert (run.copied, run.errors) == (total, 0)
    for source, _ in users:
        assert source.username in command.stdout
    assert f"run {run.pk} of {task.name}: done" in command.stdout
    # The cluster talks to this session's Redis site (its status is kept there, under our name).
    assert redis.from_url(REDIS_URL).keys(f"django_q:{env['Q_NAME']}:cluster*")
    for source, destination in users:
        assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
    # The jobs went through this session's own Redis queue, which is empty now.
    assert redis.from_url(REDIS_URL).llen(f"django_q:{env['Q_NAME']}:q") == 0


def test_a_worker_killed_mid_copy_is_reaped_and_the_next_run_completes_exactly_once(
    imap_server, imap_task, cluster_factory
):
    with FaultProxy(imap_server.imap_port, delay=0.03) as proxy:
        task, users = imap_task(pairs=1, source_port=proxy.port)
        source, destination = users[0]
        fill_user(imap_server, source, {"INBOX": 1500, "Archive": 300}, size=500)
        cluster = cluster_factory(_env(redis=False))
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
        ar = run.account_runs.get()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ar.refresh_from_db()
            if ar.copied > 0:
                break
            time.sleep(0.05)
        assert 0 < ar.copied < 1800, f"not caught mid-copy ({ar.copied}):\n{cluster.log()[-3000:]}"
        worker_pid = int(ar.worker.rsplit(":", 1)[1])
        assert worker_pid in cluster.children()
        os.kill(worker_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{worker_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # The tick's reaper, once the lease has run out.
        later = timezone.now() + timedelta(seconds=orchestrator.HEARTBEAT_LEASE_SECONDS + 1)
        assert orchestrator.reap_stale(later) == 1
    ar.refresh_from_db()
    run.refresh_from_db()
    task.refresh_from_db()
    assert ar.status == AccountRun.Status.FAILED and ar.last_error.startswith("interrupted")
    assert run.status == Run.Status.FAILED and run.reason.startswith("interrupted")
    assert task.status == Task.Status.FAILED
    assert not task.broken  # an interrupted scheduled run does not trip the breaker
    # The next run resumes from the folder state: every message exactly once.
    task.source.port = imap_server.imap_port
    task.source.save()
    run2 = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    run2 = _wait_for_run(run2, cluster)
    assert run2.status == Run.Status.DONE, run2.reason
    assert run2.copied < 1800
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
