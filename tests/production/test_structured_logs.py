"""Structured log lines: one per run and per account at start and finish, with counts and reason, never a password."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from django.conf import settings

from imapcopier.logging import JsonFormatter, KeyValueFormatter, fields_of
from runs import orchestrator
from runs.jobs import copy_account_job
from runs.models import Run
from tests.production.conftest import fill_user


def _record(message: str, *args: object, exc: BaseException | None = None, **fields: object) -> logging.LogRecord:
    record = logging.getLogger("runs.test").makeRecord(
        "runs.test",
        logging.INFO,
        __file__,
        1,
        message,
        args,
        (type(exc), exc, exc.__traceback__) if exc else None,
        extra=fields,
    )
    return record


def test_key_value_lines_append_the_fields_and_quote_what_needs_it():
    line = KeyValueFormatter().format(
        _record("run %s finished", 7, event="run.finished", run_id=7, reason="2 of 3 accounts failed", empty="")
    )
    assert line.endswith(
        ' INFO runs.test run 7 finished event=run.finished run_id=7 reason="2 of 3 accounts failed" empty=""'
    )


def test_a_traceback_stays_below_the_key_value_line():
    try:
        raise ValueError("boom")
    except ValueError as exc:
        line = KeyValueFormatter().format(_record("account run 3 failed", exc=exc, event="account.failed"))
    first, *rest = line.splitlines()
    assert first.endswith("account run 3 failed event=account.failed")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_json_lines_carry_message_fields_and_exception():
    try:
        raise ValueError("boom")
    except ValueError as exc:
        line = JsonFormatter().format(_record("run %s finished", 7, exc=exc, event="run.finished", copied=12))
    entry = json.loads(line)
    assert entry["message"] == "run 7 finished" and entry["level"] == "INFO" and entry["logger"] == "runs.test"
    assert (entry["event"], entry["copied"]) == ("run.finished", 12)
    assert entry["time"].endswith("+00:00") and "ValueError: boom" in entry["exception"]


def test_plain_lines_stay_plain():
    record = _record("hello")
    assert fields_of(record) == {}
    assert KeyValueFormatter().format(record).endswith(" INFO runs.test hello")


def _shell(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_log_format_json_makes_every_process_log_json_and_a_typo_is_refused():
    code = "import logging; logging.getLogger('runs.orchestrator').info('run 1 finished', extra={'event': 'run.finished', 'copied': 3})"
    done = _shell(code, LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stderr.strip().splitlines()[-1])
    assert (entry["message"], entry["event"], entry["copied"]) == ("run 1 finished", "run.finished", 3)
    done = _shell(code, LOG_FORMAT="text")
    assert done.stderr.strip().splitlines()[-1].endswith("run 1 finished event=run.finished copied=3")
    done = _shell(code, LOG_FORMAT="yaml")
    assert done.returncode != 0 and "LOG_FORMAT" in done.stderr


@pytest.mark.imap
@pytest.mark.django_db
def test_a_run_logs_start_and_finish_of_the_run_and_of_each_account(
    imap_server, imap_task, pushed, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO)
    task, users = imap_task(pairs=2)
    fill_user(imap_server, users[0][0], {"INBOX": 3, "Archive": 2})
    fill_user(imap_server, users[1][0], {"INBOX": 4})
    imap_server.set_password(users[1][0], "changed-on-the-server")  # the second account's login fails
    with django_capture_on_commit_callbacks(execute=True):
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    assert len(pushed) == 2
    for pk in pushed:
        copy_account_job(pk)
    run.refresh_from_db()

    events: dict[str, list[dict]] = {}
    for record in caplog.records:
        fields = fields_of(record)
        if "event" in fields:
            events.setdefault(fields["event"], []).append(fields)
    (started,) = events["run.started"]
    assert started | {"run_id": run.pk, "task_id": task.pk, "trigger": "manual", "accounts": 2} == started
    (finished,) = events["run.finished"]
    assert finished["run_id"] == run.pk and finished["status"] == Run.Status.FAILED
    assert (finished["copied"], finished["errors"]) == (5, run.errors)
    assert finished["reason"] == run.reason and "1 of 2 accounts failed" in finished["reason"]
    assert sorted(f["source_user"] for f in events["account.started"]) == sorted(u.username for u, _ in users)
    by_user = {f["source_user"]: f for f in events["account.finished"]}
    ok, refused = by_user[users[0][0].username], by_user[users[1][0].username]
    assert (ok["status"], ok["copied"], ok["reason"]) == ("done", 5, "")
    assert refused["status"] == "failed" and refused["reason"] and refused["copied"] == 0
    assert all(f["run_id"] == run.pk and f["account_run_id"] in pushed for f in events["account.finished"])

    passwords = [u.password for pair in users for u in pair]
    text = "\n".join(KeyValueFormatter().format(r) + JsonFormatter().format(r) for r in caplog.records)
    assert "account.finished" in text
    assert not [p for p in passwords if p in text]
