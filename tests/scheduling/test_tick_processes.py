"""Ticks in separate processes at the same moment (as two clusters would tick) start each due task once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from runs.models import AccountRun, Run
from scheduling.services import set_schedule
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]

TICKER = """
import json, os, sys, time
import django
django.setup()
from datetime import datetime
from scheduling.ticker import tick
now, go = datetime.fromisoformat(sys.argv[1]), sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
report = tick(now)
print(json.dumps({"started": report.started, "skipped": report.skipped, "refused": report.refused}), flush=True)
"""


def database_url() -> str:
    """A DATABASE_URL for the database pytest-django created for this session."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgresql://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def test_ticks_in_four_processes_at_once_start_each_due_task_once(tmp_path):
    now = timezone.now()
    tasks = []
    for index in range(4):
        task = TaskFactory(name=f"due {index}")
        AccountFactory(task=task, tested=True)
        AccountFactory(task=task, tested=True)
        set_schedule(task, 3600, now=now - timedelta(hours=2))
        tasks.append(task)

    go = tmp_path / "go"
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "imapcopier.settings"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TICKER, now.isoformat(), str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
        go.touch()  # all four tick from here on, at the same moment
        reports = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for task in tasks:
        runs = list(Run.objects.filter(task=task))
        assert len(runs) == 1, runs
        assert runs[0].trigger == Run.Trigger.SCHEDULED
        assert AccountRun.objects.filter(run=runs[0]).count() == 2
    assert sorted(pk for r in reports for pk in r["started"]) == sorted(Run.objects.values_list("pk", flat=True))
    assert all(r["refused"] == [] for r in reports), reports
