"""The API of issue 12: the task list, parked accounts, retry only failures, test only what needs it, run reports."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from runs import orchestrator
from runs.models import AccountRun, Run
from tasks.models import Account
from tasks.parking import park_accounts
from tests.runs.test_folder_results import make_run_with_folders
from tests.support.factories import AccountFactory, AccountRunFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def post_json(client, url, body=None):
    return client.post(url, data=json.dumps(body) if body is not None else "", content_type="application/json")


def test_get_tasks_lists_every_task_with_its_state_and_counts(admin_client):
    ready = TaskFactory(name="b ready")
    AccountFactory(task=ready, tested=True)
    parked = AccountFactory(task=ready)
    park_accounts(ready, [parked.pk], reason="later", now=timezone.now())
    waiting = TaskFactory(name="a waiting", schedule_interval_seconds=3600, schedule_anchor=timezone.now())
    AccountFactory(task=waiting, source_test_status=Account.TestStatus.FAIL)
    body = admin_client.get("/api/tasks").json()
    assert [t["name"] for t in body] == ["a waiting", "b ready"]
    assert body[0]["schedule_state"] == "waiting" and body[0]["schedule_note"] == "waiting: 1 account needs a test"
    assert body[1]["counts"] == {"total": 2, "active": 1, "parked": 1, "ok": 1, "failed": 0}
    assert set(body[1]) == {
        "id",
        "name",
        "status",
        "broken",
        "schedule_interval_seconds",
        "schedule_state",
        "schedule_note",
        "next_run_at",
        "counts",
    }
    assert "password" not in json.dumps(body)


def test_get_tasks_needs_authentication(client):
    response = client.get("/api/tasks")
    assert response.status_code == 401 and response.json()["error"].startswith("authentication required")


def test_task_detail_shows_parked_accounts_and_last_results(admin_client):
    task = TaskFactory()
    account = AccountFactory(task=task, tested=True, source_password="never-in-json")
    AccountRunFactory(run=RunFactory(task=task), account=account, status=AccountRun.Status.DONE, errors=2)
    park_accounts(task, [account.pk], reason="mailbox closed", now=timezone.now())
    body = admin_client.get(f"/api/tasks/{task.pk}").json()
    [row] = body["accounts"]
    assert row["paused"] is True and row["paused_reason"] == "mailbox closed" and row["last_result"] == "errors"
    assert "never-in-json" not in json.dumps(body)


def test_run_only_failed_accounts_through_the_api(admin_client, monkeypatch):
    monkeypatch.setattr(orchestrator, "push_fan_out", lambda run_id: None)
    task = TaskFactory()
    done, failed = AccountFactory(task=task, tested=True), AccountFactory(task=task, tested=True)
    earlier = RunFactory(task=task)
    AccountRunFactory(run=earlier, account=done, status=AccountRun.Status.DONE)
    AccountRunFactory(run=earlier, account=failed, status=AccountRun.Status.FAILED)
    assert post_json(admin_client, f"/api/tasks/{task.pk}/run", {"only": "sometimes"}).status_code == 400
    response = post_json(admin_client, f"/api/tasks/{task.pk}/run", {"only": "failed"})
    assert response.status_code == 202 and response.json()["accounts"] == 1
    run = Run.objects.get(pk=response.json()["run_id"])
    assert list(run.account_runs.values_list("account_id", flat=True)) == [failed.pk]


def test_a_blocked_run_and_schedule_say_how_many_accounts_block(admin_client):
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    AccountFactory.create_batch(2, task=task)
    run = post_json(admin_client, f"/api/tasks/{task.pk}/run")
    assert run.status_code == 409 and run.json()["error"].startswith("2 of 3 active accounts have not passed")
    schedule = admin_client.put(
        f"/api/tasks/{task.pk}/schedule", data=json.dumps({"interval_seconds": 3600}), content_type="application/json"
    )
    assert schedule.status_code == 409
    assert schedule.json() == {
        "error": "all accounts must pass connection tests before scheduling",
        "detail": "2 of 3 active accounts need a test",
        "blocking": 2,
    }


def test_test_only_what_needs_a_test_through_the_api(admin_client, monkeypatch):
    from django_q import tasks as q_tasks

    from runs import jobs, q2

    enqueued = []

    def fake_async_task(func, *args, **kw):  # runs the fan-out job at once, as a worker would
        if func == q2.FAN_OUT_TESTS_JOB:
            jobs.fan_out_tests_job(*args)
        else:
            enqueued.append(args[0])

    monkeypatch.setattr(q_tasks, "async_task", fake_async_task)
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    failed = AccountFactory(task=task, destination_test_status=Account.TestStatus.FAIL)
    parked = AccountFactory(task=task)
    park_accounts(task, [parked.pk], reason="later", now=timezone.now())
    response = post_json(admin_client, f"/api/tasks/{task.pk}/test", {"only": "needs-test"})
    assert response.status_code == 202 and response.json() == {"accounts": 1}
    assert enqueued == [failed.pk]
    enqueued.clear()
    assert post_json(admin_client, f"/api/tasks/{task.pk}/test").json() == {"accounts": 2}
    assert parked.pk not in enqueued


def test_run_report_json_with_its_filter(admin_client):
    run = RunFactory(status=Run.Status.FAILED, finished_at=timezone.now(), skipped=3)
    AccountRunFactory(run=run, account__source_user="a@x", status="done", skipped=3)
    AccountRunFactory(run=run, account__source_user="b@x", status="failed", last_error="login refused")
    body = admin_client.get(f"/api/runs/{run.pk}").json()
    assert body["total_already_there"] == body["total_skipped"] == 3
    assert [a["source_user"] for a in body["accounts"]] == ["a@x", "b@x"]
    assert body["accounts"][0]["already_there"] == 3
    failed = admin_client.get(f"/api/runs/{run.pk}", {"result": "failed"}).json()
    assert [(a["source_user"], a["reason"]) for a in failed["accounts"]] == [("b@x", "login refused")]
    assert admin_client.get("/api/runs/999999").status_code == 404


def test_run_report_json_gives_each_account_its_folders(admin_client):
    run, alice, bob, _carol = make_run_with_folders()
    body = admin_client.get(f"/api/runs/{run.pk}").json()
    accounts = {a["source_user"]: a for a in body["accounts"]}
    sent = next(f for f in accounts["alice@old"]["folders"] if f["source_folder"] == "Sent")
    assert sent == {
        "source_folder": "Sent",
        "destination_folder": "Sent Items",
        "destination_not_created": False,
        "source_messages": 4,
        "destination_messages": 4,
        "copied": 4,
        "already_there": 0,
        "deleted_at_destination": 0,
        "altered": 0,
        "errors": 0,
        "not_copied": 0,
        "not_copied_reasons": {},
        "bytes": 48_000,
        "complete": True,
    }
    assert accounts["bob@old"]["folders"] == []
    carol_inbox = accounts["carol@old"]["folders"][0]
    assert carol_inbox["bytes"] is None and carol_inbox["errors"] is None  # not recorded, not zero
    assert "pw-never-shown" not in json.dumps(body)


def test_account_run_json_answers_did_sent_arrive_in_one_call(admin_client):
    run, alice, _bob, _carol = make_run_with_folders()
    response = admin_client.get(f"/api/runs/{run.pk}/accounts/{alice.pk}")
    assert response.status_code == 200
    body = response.json()
    assert (body["run_id"], body["account_id"], body["source_user"], body["status"]) == (
        run.pk,
        alice.pk,
        "alice@old",
        "done",
    )
    assert (body["copied"], body["already_there"], body["errors"], body["bytes"]) == (11, 3, 1, 120_000)
    folders = {f["source_folder"]: f for f in body["folders"]}
    assert folders["Sent"]["complete"] and folders["Sent"]["bytes"] == 48_000
    assert folders["INBOX"]["already_there"] == 3
    assert folders["Trash"]["destination_folder"] is None
    evil = folders['=HYPERLINK("http://x")<script>alert(1)</script>']  # JSON carries the name as it is
    assert (evil["errors"], evil["not_copied_reasons"], evil["complete"]) == (
        1,
        {"refused by the destination": 1},
        False,
    )
    assert "pw-never-shown" not in response.content.decode()


def test_account_run_json_of_an_account_not_in_the_run_is_a_json_404(admin_client):
    run, _alice, _bob, _carol = make_run_with_folders()
    stranger = AccountFactory()
    response = admin_client.get(f"/api/runs/{run.pk}/accounts/{stranger.pk}")
    assert response.status_code == 404
    assert response.json() == {"error": f"account {stranger.pk} is not in run {run.pk}"}
    assert admin_client.get(f"/api/runs/999999/accounts/{stranger.pk}").status_code == 404


def test_account_run_json_needs_authentication(client):
    run, alice, _bob, _carol = make_run_with_folders()
    assert client.get(f"/api/runs/{run.pk}/accounts/{alice.pk}").status_code == 401
