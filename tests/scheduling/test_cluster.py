"""The tick as a real django-q2 cluster runs it (`Q_CLUSTER_NAME=control manage.py qcluster`).

These tests start qcluster subprocesses against the test database and measure when ticks really
happen, from the job records django-q2 itself keeps.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.models import Task as QTask

from runs.models import Run
from scheduling.jobs import TICK_FUNC, TICK_SCHEDULES, install_tick_schedules
from scheduling.models import Ticker
from scheduling.services import set_schedule
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """A DATABASE_URL for the database pytest-django created for this session."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgresql://{auth}@{host}:{port}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


@contextmanager
def qcluster(name: str | None, log: Path, *, hard_stop: bool = False, **env: str):
    environment = {**os.environ, "DATABASE_URL": test_database_url(), **env}
    if name:
        environment["Q_CLUSTER_NAME"] = name
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop exactly what we started
        )
        try:
            yield process
        finally:
            # A cluster stops after its running jobs; one that sleeps on purpose is killed outright.
            signals = ((signal.SIGKILL, 10),) if hard_stop else ((signal.SIGTERM, 30), (signal.SIGKILL, 10))
            for sig, wait in signals:
                if process.poll() is not None:
                    break
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue


def tick_starts() -> list:
    return list(QTask.objects.filter(func=TICK_FUNC).order_by("started").values_list("started", flat=True))


def wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; cluster log:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.mark.timeout(480)
def test_the_control_cluster_ticks_about_every_30_seconds_while_the_copy_cluster_is_busy(tmp_path, capsys):
    now = timezone.now()
    # The cluster was down for six hours: both tick schedules are long overdue.
    install_tick_schedules(Schedule, now - timedelta(hours=6))
    assert Schedule.objects.filter(name__in=list(TICK_SCHEDULES), cluster="control").count() == 2
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    set_schedule(task, 3600, now=now - timedelta(hours=6))  # due five hours ago

    # Saturate the copy cluster: its only worker sleeps, and more work waits behind it.
    from django_q.tasks import async_task

    for _ in range(5):
        async_task("time.sleep", 600, cluster=settings.Q_CLUSTER["name"])

    control_log, copy_log = tmp_path / "control.log", tmp_path / "copy.log"
    with (
        qcluster(None, copy_log, hard_stop=True, Q_WORKERS="1"),
        qcluster("control", control_log),
    ):
        wait_for(lambda: len(tick_starts()) >= 5, 300, "5 ticks", control_log)

    starts = tick_starts()
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    with capsys.disabled():
        print(f"\ntick starts: {[s.strftime('%H:%M:%S.%f')[:-4] for s in starts]}")
        print(f"gaps between ticks (s): {[round(g, 1) for g in gaps]}")

    # Downtime: the first scheduler pass ran each overdue schedule once, not once per missed minute,
    # and the overdue task started once.
    assert gaps[0] < 5, gaps  # the two overdue schedules, in the same scheduler pass
    runs = list(Run.objects.filter(task=task))
    assert len(runs) == 1 and runs[0].trigger == Run.Trigger.SCHEDULED
    # Its copy jobs went to the copy cluster's queue, never to the control cluster's.
    assert not OrmQ.objects.filter(key="control").exists()
    assert OrmQ.objects.filter(key=settings.Q_CLUSTER["name"]).count() >= 5

    # After that, one tick about every 30 s, although the copy cluster never had a free worker.
    steady = gaps[1:]
    assert 20 <= statistics.median(steady) <= 40, steady
    assert max(steady) < 75, steady
    assert QTask.objects.filter(func=TICK_FUNC, success=True).count() == len(starts)
    # The tick leaves its own trace too (the schedule panel warns when it gets old).
    assert abs(Ticker.objects.get().last_tick_at - starts[-1]) < timedelta(seconds=5)
