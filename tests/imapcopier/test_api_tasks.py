from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from runs.models import Run
from tasks.models import Account, Task
from tests.support.factories import AccountFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def put_schedule(client: Client, task_id: int, body) -> object:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.put(f"/api/tasks/{task_id}/schedule", data=data, content_type="application/json")


def make_tested_task() -> Task:
    task = TaskFactory()
    AccountFactory(
        task=task,
        tested=True,
        source_password="src-pw-SECRET",
        destination_password="dst-pw-SECRET",
    )
    return task


def test_get_task_has_schedule_fields_and_accounts_without_passwords(admin_client):
    task = make_tested_task()
    response = admin_client.get(f"/api/tasks/{task.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == task.pk
    assert body["status"] == "idle"
    assert body["schedule_interval_seconds"] == 0
    assert body["broken"] is False
    assert body["next_run_at"] is None
    assert [a["source_user"] for a in body["accounts"]] == [task.accounts.get().source_user]
    assert b"SECRET" not in response.content
    assert b"password" not in response.content


def test_enable_via_api_then_next_run_at_is_one_hour_ahead_in_utc(admin_client):
    task = make_tested_task()
    before = timezone.now().replace(microsecond=0)
    response = put_schedule(admin_client, task.pk, {"interval_seconds": 3600})
    assert response.status_code == 204
    body = admin_client.get(f"/api/tasks/{task.pk}").json()
    assert body["schedule_interval_seconds"] == 3600
    assert body["next_run_at"].endswith("Z")

    next_run = datetime.fromisoformat(body["next_run_at"].replace("Z", "+00:00"))
    assert before + timedelta(hours=1) <= next_run <= timezone.now() + timedelta(hours=1)
    assert not Run.objects.filter(task=task).exists()  # enabling starts nothing


def test_next_run_at_is_null_when_running_or_broken(admin_client):
    now = timezone.now()
    running = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=now, status=Task.Status.RUNNING)
    broken = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=now, broken=True)
    on = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=now)
    AccountFactory(task=on, tested=True)  # without a tested account the schedule would wait
    assert admin_client.get(f"/api/tasks/{running.pk}").json()["next_run_at"] is None
    assert admin_client.get(f"/api/tasks/{broken.pk}").json()["next_run_at"] is None
    assert admin_client.get(f"/api/tasks/{on.pk}").json()["next_run_at"] is not None


def test_enabling_with_an_untested_account_is_409_and_changes_nothing(admin_client):
    task = make_tested_task()
    AccountFactory(
        task=task,
        destination_test_status=Account.TestStatus.FAIL,
        source_test_status=Account.TestStatus.OK,
    )
    response = put_schedule(admin_client, task.pk, {"interval_seconds": 3600})
    assert response.status_code == 409
    assert response.json() == {
        "error": "all accounts must pass connection tests before scheduling",
        "detail": "1 of 2 active accounts need a test",
        "blocking": 1,
    }
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0 and task.schedule_anchor is None


def test_disabling_is_always_allowed_and_clears_broken(admin_client):
    task = TaskFactory(broken=True)
    AccountFactory(task=task)  # untested
    assert put_schedule(admin_client, task.pk, {"interval_seconds": 0}).status_code == 204
    task.refresh_from_db()
    assert task.broken is False


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        b"\xff\xfe",
        "[3600]",
        {"interval_seconds": 60},
        {"interval_seconds": "3600"},
        {"interval_seconds": True},
        {"interval_seconds": None},
        {},
        {"interval_seconds": 3600.5},
    ],
)
def test_bad_json_or_interval_is_400(admin_client, body):
    task = make_tested_task()
    response = put_schedule(admin_client, task.pk, body)
    assert response.status_code == 400
    assert "error" in response.json()
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0


def test_unknown_task_is_404_json(admin_client):
    assert put_schedule(admin_client, 999999, {"interval_seconds": 0}).status_code == 404
    response = admin_client.get("/api/tasks/999999")
    assert response.status_code == 404
    assert response.json() == {"error": "task 999999 not found"}
    assert admin_client.get("/api/tasks/999999/runs").status_code == 404


def test_wrong_method_is_405_json(admin_client):
    task = TaskFactory()
    response = admin_client.post(f"/api/tasks/{task.pk}/schedule")
    assert response.status_code == 405
    assert response["Allow"] == "PUT"


def test_runs_newest_first_with_totals(admin_client):
    task = TaskFactory()
    now = timezone.now()
    old = RunFactory(
        task=task,
        started_at=now - timedelta(hours=3),
        finished_at=now - timedelta(hours=2),
        copied=10,
        skipped=2,
        errors=1,
        not_copied=1,
        status=Run.Status.DONE,
    )
    new = RunFactory(
        task=task,
        trigger=Run.Trigger.SCHEDULED,
        status=Run.Status.RUNNING,
        started_at=now,
    )
    body = admin_client.get(f"/api/tasks/{task.pk}/runs").json()
    assert [r["id"] for r in body] == [new.pk, old.pk]
    assert body[0] == {
        "id": new.pk,
        "task_id": task.pk,
        "status": "running",
        "trigger": "scheduled",
        "started_at": body[0]["started_at"],
        "finished_at": None,
        "total_copied": 0,
        "total_skipped": 0,
        "total_already_there": 0,
        "total_errors": 0,
        "total_not_copied": 0,
        "interrupted": False,
    }
    assert body[1]["total_copied"] == 10 and body[1]["total_skipped"] == 2 and body[1]["total_errors"] == 1
    assert body[1]["total_not_copied"] == 1
    assert body[1]["finished_at"].endswith("Z")


def test_anonymous_requests_get_401_json_not_a_login_page(client):
    task = TaskFactory()
    response = client.get(f"/api/tasks/{task.pk}")
    assert response.status_code == 401
    assert response.json() == {"error": "authentication required: send an API token (Authorization: Bearer <token>)"}
    # A Basic challenge makes a browser prompt and then send the login by itself, cross-site too.
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert put_schedule(client, task.pk, {"interval_seconds": 0}).status_code == 401


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_http_basic_is_not_accepted_even_with_the_right_password(admin_user):
    task = make_tested_task()
    client = Client(enforce_csrf_checks=True)
    response = client.put(
        f"/api/tasks/{task.pk}/schedule",
        data='{"interval_seconds": 10800}',
        content_type="application/json",
        headers={"Authorization": basic("admin", PASSWORD)},
    )
    assert response.status_code == 401
    assert "Basic" not in response["WWW-Authenticate"]
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0


def test_session_requests_that_change_state_need_the_csrf_token(admin_user):
    task = make_tested_task()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = put_schedule(client, task.pk, {"interval_seconds": 3600})
    assert response.status_code == 403
    assert response.json() == {"error": "CSRF token missing or incorrect"}
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0

    client.get(f"/api/tasks/{task.pk}")  # GET needs no token
    token = client.get("/login/").cookies["csrftoken"].value
    response = client.put(
        f"/api/tasks/{task.pk}/schedule",
        data='{"interval_seconds": 3600}',
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 204


def test_the_api_says_when_a_schedule_waits_for_account_tests(admin_client):
    task = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=timezone.now())
    AccountFactory(task=task)  # untested
    body = admin_client.get(f"/api/tasks/{task.pk}").json()
    assert (body["schedule_state"], body["schedule_note"]) == ("waiting", "waiting: 1 account needs a test")
    assert body["next_run_at"] is None


def test_a_schedule_that_is_on_says_on(admin_client):
    task = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=timezone.now())
    AccountFactory(task=task, tested=True)
    body = admin_client.get(f"/api/tasks/{task.pk}").json()
    assert (body["schedule_state"], body["schedule_note"]) == ("on", "")
