"""The log formats (imapcopier/logging.py): key=value and JSON lines."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from django.conf import settings

from imapcopier.logging import JsonFormatter, KeyValueFormatter, fields_of


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
