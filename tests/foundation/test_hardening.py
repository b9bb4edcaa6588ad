from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from runs.models import AccountRun, Run
from tests.factories import AccountRunFactory, TaskFactory

pytestmark = pytest.mark.django_db


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_repeated_wrong_passwords_lock_the_login_even_with_the_right_one_after(client, admin_user):
    url = reverse("login")
    for _ in range(3):
        response = client.post(url, {"username": "admin", "password": "wrong"})
        assert response.status_code in (200, 429)
    response = client.post(url, {"username": "admin", "password": "correct horse battery staple"})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_a_successful_login_before_the_limit_resets_the_count(client, admin_user):
    url = reverse("login")
    client.post(url, {"username": "admin", "password": "wrong"})
    client.post(url, {"username": "admin", "password": "wrong"})
    assert client.post(url, {"username": "admin", "password": "correct horse battery staple"}).status_code == 302


def test_metrics_report_runs_jobs_and_copied_messages(client):
    task = TaskFactory()
    run = Run.objects.create(task=task, status=Run.Status.DONE)
    AccountRunFactory(run=run, status=AccountRun.Status.DONE, copied=120, bytes=4096, errors=2)
    AccountRunFactory(
        run=Run.objects.create(task=TaskFactory(), status=Run.Status.RUNNING),
        status=AccountRun.Status.RUNNING,
        copied=5,
    )

    response = client.get("/metrics")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'imapcopier_runs{status="done"} 1.0' in body
    assert 'imapcopier_runs{status="running"} 1.0' in body
    assert "imapcopier_messages_copied_total 125.0" in body
    assert "imapcopier_bytes_copied_total 4096.0" in body
    assert "imapcopier_message_errors_total 2.0" in body
    assert 'imapcopier_account_jobs{status="running"} 1.0' in body


@override_settings(METRICS_TOKEN="s3cret-token")
def test_metrics_need_the_token_when_one_is_set(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
