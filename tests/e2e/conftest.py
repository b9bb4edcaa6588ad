"""The production harness: `manage.py qcluster` and other manage.py subprocesses on the test database.

Every subprocess gets DATABASE_URL pointing at pytest-django's test database and, with Redis, a site
name (Q_NAME) of its own on a Redis database of its own, so nothing collides with another test
session or another helper's clusters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.runs.conftest import fill_user, imap_task, mail_hashes, pushed  # noqa: F401  (fixtures and helpers)

REDIS_URL = "redis://127.0.0.1:6379/5"
ROOT = Path(settings.BASE_DIR)


def database_url() -> str:
    """A DATABASE_URL for the database pytest-django created for this session."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgresql://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def site_env(*, redis: bool, workers: int = 2, **extra: str) -> dict[str, str]:
    """The environment of one imapcopier site made of subprocesses (clusters, commands)."""
    env = {k: v for k, v in os.environ.items() if k not in ("Q_CLUSTER_NAME", "REDIS_URL", "Q_NAME")}
    env.update(DATABASE_URL=database_url(), Q_WORKERS=str(workers), PYTHONUNBUFFERED="1")
    if redis:
        env.update(REDIS_URL=REDIS_URL, Q_NAME=f"ic-prod-{uuid.uuid4().hex[:10]}")
    env.update(extra)
    return env


def redis_queue_length(env: dict[str, str]) -> int:
    import redis

    return redis.from_url(env["REDIS_URL"]).llen(f"django_q:{env['Q_NAME']}:q")


def forget_redis_site(env: dict[str, str]) -> None:
    import redis

    client = redis.from_url(env["REDIS_URL"])
    keys = list(client.scan_iter(f"django_q:{env['Q_NAME']}:*"))
    if keys:
        client.delete(*keys)


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run a manage.py command as the site would; returns its output, fails the test on an error."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def process_tree() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


class Cluster:
    """One `manage.py qcluster` in a session of its own: signals to its group reach it and nothing else."""

    def __init__(self, env: dict[str, str], log_path: Path, control: bool = False) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        if control:
            env = {**env, "Q_CLUSTER_NAME": settings.Q_CONTROL_CLUSTER}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.known: set[int] = set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> set[int]:
        """Every process below the main one now, plus every one seen before (workers recycle)."""
        parents = process_tree()
        found, frontier = set(), {self.pid}
        while frontier:
            frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
            found |= frontier
        self.known |= found
        return self.known

    def wait_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " running." in self.log():
                self.children()
                return
            assert self.alive(), f"qcluster died at start:\n{self.log()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"qcluster not running after {timeout} s:\n{self.log()[-3000:]}")

    def dump_stacks(self) -> None:
        """Have every live process of the cluster write its threads' stacks to the log (SIGUSR1, qcluster)."""
        for pid in self.group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def signal_main(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        os.killpg(self.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def group_alive(self) -> set[int]:
        """Processes of the cluster's session still alive (also orphans whose parent died)."""
        alive = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getsid(int(entry.name)) == self.pid:
                        alive.add(int(entry.name))
                except OSError:
                    continue
        return alive

    def kill(self) -> None:
        """SIGKILL to every process of the cluster (what a process manager does when its stop timeout ends)."""
        with contextlib.suppress(ProcessLookupError):
            self.signal_group(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.group_alive() and time.monotonic() < deadline:
            self.process.poll()
            time.sleep(0.1)
        self.process.poll()

    def stop(self) -> None:
        """Stop it as a process manager should (SIGTERM to the main process), then kill what is left."""
        if self.alive():
            self.signal_main(signal.SIGTERM)
            self.wait_exit(30)
        if self.group_alive():
            with contextlib.suppress(ProcessLookupError):
                self.signal_group(signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.group_alive() and time.monotonic() < deadline:
                self.process.poll()
                time.sleep(0.1)
        self.process.poll()
        self._log.close()


@pytest.fixture
def clusters(tmp_path) -> Iterator[Callable[..., Cluster]]:
    """start(env, control=False) -> a running Cluster; every one is stopped after the test."""
    started: list[Cluster] = []

    def start(env: dict[str, str], *, control: bool = False, wait: bool = True) -> Cluster:
        cluster = Cluster(env, tmp_path / f"qcluster-{len(started)}.log", control=control)
        started.append(cluster)
        if wait:
            cluster.wait_running()
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, *logs: Cluster) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    for cluster in logs:
        cluster.dump_stacks()
    if logs:
        time.sleep(1)
    tails = "\n".join(f"--- {c.log_path.name}\n{c.log()[-12000:]}" for c in logs)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tails}")


def worker_pid(worker: str) -> int | None:
    try:
        return int(worker.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None
