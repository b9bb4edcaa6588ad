"""Structured log lines: one per run and per account at start and finish, with counts and reason, never a password."""

from __future__ import annotations

import logging

import pytest

from imapcopier.logging import JsonFormatter, KeyValueFormatter, fields_of
from runs import orchestrator
from runs.jobs import copy_account_job
from runs.models import Run
from tests.e2e.conftest import fill_user


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
