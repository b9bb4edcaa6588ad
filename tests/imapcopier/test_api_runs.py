from __future__ import annotations

import pytest

from runs.models import Run
from tasks.models import Account, Task
from tests.support.factories import AccountFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def ready_task() -> Task:
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    return task


def test_post_run_starts_a_manual_run_202(admin_client):
    task = ready_task()
    response = admin_client.post(f"/api/tasks/{task.pk}/run")
    assert response.status_code == 202
    run = Run.objects.get(task=task)
    assert response.json() == {"run_id": run.pk, "accounts": run.account_runs.count()}
    assert run.trigger == Run.Trigger.MANUAL
    runs = admin_client.get(f"/api/tasks/{task.pk}/runs").json()
    assert runs[0]["id"] == run.pk and runs[0]["status"] == "running"


def test_post_run_while_running_is_409(admin_client):
    task = ready_task()
    admin_client.post(f"/api/tasks/{task.pk}/run")
    response = admin_client.post(f"/api/tasks/{task.pk}/run")
    assert response.status_code == 409
    assert response.json() == {"error": "This task is already running."}
    assert Run.objects.filter(task=task).count() == 1


def test_post_run_with_untested_accounts_or_none_is_409(admin_client):
    untested = TaskFactory()
    AccountFactory(task=untested, source_test_status=Account.TestStatus.FAIL)
    response = admin_client.post(f"/api/tasks/{untested.pk}/run")
    assert response.status_code == 409
    assert "connection test" in response.json()["error"]
    empty = TaskFactory()
    assert admin_client.post(f"/api/tasks/{empty.pk}/run").status_code == 409
    assert not Run.objects.exists()
    untested.refresh_from_db()
    assert untested.status == Task.Status.IDLE


def test_post_run_unknown_task_is_404(admin_client):
    assert admin_client.post("/api/tasks/424242/run").status_code == 404


def test_cancel_a_running_run_202_then_409(admin_client):
    task = ready_task()
    run_id = admin_client.post(f"/api/tasks/{task.pk}/run").json()["run_id"]
    response = admin_client.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 202
    run = Run.objects.get(pk=run_id)
    # The only account was still queued, so the run ends cancelled at once.
    assert run.cancel_requested and run.status == Run.Status.CANCELLED
    assert admin_client.post(f"/api/runs/{run_id}/cancel").status_code == 409


def test_cancel_unknown_or_finished_run(admin_client):
    assert admin_client.post("/api/runs/424242/cancel").status_code == 404
    done = RunFactory(status=Run.Status.DONE)
    assert admin_client.post(f"/api/runs/{done.pk}/cancel").status_code == 409


def test_run_endpoints_need_authentication_and_post(client, admin_client):
    task = ready_task()
    assert client.post(f"/api/tasks/{task.pk}/run").status_code == 401
    assert admin_client.get(f"/api/tasks/{task.pk}/run").status_code == 405
    assert not Run.objects.exists()
