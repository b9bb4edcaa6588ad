"""A task's own webhook (issue 12 item 4): sent in addition to the site's, signed with its own secret,
retried the same way; the secret encrypted at rest and never shown back. A real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from runs.engine.types import AccountResult
from runs.models import Run
from scheduling.notifications import events
from scheduling.notifications.events import Event
from scheduling.notifications.jobs import send_notification_job
from scheduling.notifications.services import SIGNATURE_HEADER
from tasks.models import Task
from tests.scheduling.notifications.test_notifications import WEBHOOK_SECRET, Receiver, _finished_run, closed_port
from tests.support.factories import AccountFactory, EndpointFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db

TASK_SECRET = "the-task-own-secret-0123456789"


def signed_with(secret: str, headers: dict, body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers[SIGNATURE_HEADER])


@pytest.fixture
def task_receiver():
    server = Receiver()
    yield server
    server.close()


def _task(url: str, **kwargs) -> Task:
    task = TaskFactory(name="Acme", notify_webhook_url=url, notify_webhook_secret=TASK_SECRET, **kwargs)
    AccountFactory(task=task, tested=True, source_password="s3cret-source-pw")
    return task


def test_the_task_webhook_is_sent_in_addition_to_the_site_webhook(sync_jobs, settings, receiver, task_receiver):
    settings.NOTIFY_WEBHOOK_URL = receiver.url
    settings.NOTIFY_WEBHOOK_SECRET = WEBHOOK_SECRET
    task = _task(task_receiver.url)
    run = RunFactory(task=task, status=Run.Status.FAILED, finished_at=timezone.now())
    summary = send_notification_job("run.failed", task.pk, run.pk, "", "id-7")
    assert summary == (
        f"run.failed task {task.pk}: webhook: delivered (attempt 1); task webhook: delivered (attempt 1)"
    )
    [(site_headers, site_body)] = receiver.received
    [(task_headers, task_body)] = task_receiver.received
    assert task_body == site_body  # the same notification, the same delivery id
    assert signed_with(TASK_SECRET, task_headers, task_body) and not signed_with(
        WEBHOOK_SECRET, task_headers, task_body
    )
    assert signed_with(WEBHOOK_SECRET, site_headers, site_body)
    payload = json.loads(task_body)
    assert (payload["id"], payload["event"], payload["run"]["id"]) == ("id-7", "run.failed", run.pk)
    assert TASK_SECRET not in task_body.decode() and "s3cret" not in task_body.decode()


def test_a_task_webhook_alone_is_reason_enough_to_announce(
    sync_jobs, task_receiver, django_capture_on_commit_callbacks
):
    task = _task(task_receiver.url)  # no e-mail recipients, no site webhook (sync_jobs clears it)
    assert events.wanted(task.pk)
    run = _finished_run(
        task,
        trigger=Run.Trigger.MANUAL,
        result=AccountResult.failed("LOGIN failed"),
        capture=django_capture_on_commit_callbacks,
    )
    [(headers, body)] = task_receiver.received
    assert signed_with(TASK_SECRET, headers, body)
    assert json.loads(body)["run"]["id"] == run.pk
    assert headers["X-Imapcopier-Event"] == "run.failed"


def test_the_task_webhook_is_retried_like_the_site_webhook(sync_jobs, settings, task_receiver):
    settings.NOTIFY_WEBHOOK_ATTEMPTS = 3
    settings.NOTIFY_WEBHOOK_BACKOFF_SECONDS = 0
    task_receiver.answers = [503, 500]
    task = _task(task_receiver.url)
    summary = send_notification_job(str(Event.SCHEDULE_STALLED), task.pk, None, "2 accounts need a test", "id-8")
    assert summary.endswith("task webhook: delivered (attempt 3)")
    assert len(task_receiver.received) == 3 and len({body for _h, body in task_receiver.received}) == 1


def test_a_dead_task_webhook_is_logged_without_its_url_or_secret(sync_jobs, settings, receiver, caplog):
    settings.NOTIFY_WEBHOOK_URL = receiver.url
    settings.NOTIFY_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.NOTIFY_WEBHOOK_ATTEMPTS = 2
    settings.NOTIFY_WEBHOOK_BACKOFF_SECONDS = 0
    task = _task(f"http://127.0.0.1:{closed_port()}/hook?token=task-url-token")
    run = RunFactory(task=task, status=Run.Status.FAILED, finished_at=timezone.now())
    with caplog.at_level(logging.INFO):
        summary = send_notification_job("run.failed", task.pk, run.pk, "", "id-9")
    assert summary.endswith("webhook: delivered (attempt 1); task webhook: failed")
    assert len(receiver.received) == 1  # the site's webhook still went
    assert "not delivered" in caplog.text
    assert "task-url-token" not in caplog.text and TASK_SECRET not in caplog.text


def test_a_task_webhook_without_a_secret_is_never_sent_unsigned(sync_jobs, task_receiver):
    task = TaskFactory(notify_webhook_url=task_receiver.url, notify_webhook_secret="")
    summary = send_notification_job(str(Event.SCHEDULE_STALLED), task.pk, None, "", "id-10")
    assert summary.endswith("task webhook: no secret")
    assert task_receiver.received == []


def test_the_task_webhook_secret_is_encrypted_at_rest():
    task = TaskFactory(notify_webhook_url="https://hooks.example.com/x", notify_webhook_secret=TASK_SECRET)
    with connection.cursor() as cursor:
        cursor.execute("SELECT notify_webhook_secret FROM tasks_task WHERE id = %s", [task.pk])
        [stored] = cursor.fetchone()
    assert stored and TASK_SECRET not in stored
    assert Task.objects.get(pk=task.pk).notify_webhook_secret == TASK_SECRET


# --- the task form: write-only secret ---------------------------------------------------------------


def _form_data(task: Task, **changes) -> dict:
    return {
        "name": task.name,
        "source": task.source_id,
        "destination": task.destination_id,
        "notify_emails": "",
        "notify_webhook_url": task.notify_webhook_url,
        "notify_webhook_secret": "",
        **changes,
    }


def test_the_edit_page_never_shows_the_secret_back(admin_client):
    task = TaskFactory(notify_webhook_url="https://hooks.example.com/x", notify_webhook_secret=TASK_SECRET)
    html = admin_client.get(reverse("tasks:edit", args=[task.pk])).content.decode()
    assert "https://hooks.example.com/x" in html
    assert TASK_SECRET not in html
    assert "A secret is stored" in html
    admin_html = admin_client.get(reverse("admin:tasks_task_change", args=[task.pk])).content.decode()
    assert TASK_SECRET not in admin_html
    assert TASK_SECRET not in admin_client.get(f"/api/tasks/{task.pk}").content.decode()


def test_saving_the_form_with_a_blank_secret_keeps_the_stored_one(admin_client):
    task = TaskFactory(notify_webhook_url="https://hooks.example.com/x", notify_webhook_secret=TASK_SECRET)
    response = admin_client.post(
        reverse("tasks:edit", args=[task.pk]), _form_data(task, notify_webhook_url="https://hooks.example.com/y")
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert (task.notify_webhook_url, task.notify_webhook_secret) == ("https://hooks.example.com/y", TASK_SECRET)
    admin_client.post(
        reverse("tasks:edit", args=[task.pk]), _form_data(task, notify_webhook_secret="a-new-secret-of-enough-length")
    )
    task.refresh_from_db()
    assert task.notify_webhook_secret == "a-new-secret-of-enough-length"


def test_clearing_the_webhook_url_forgets_its_secret(admin_client):
    task = TaskFactory(notify_webhook_url="https://hooks.example.com/x", notify_webhook_secret=TASK_SECRET)
    admin_client.post(reverse("tasks:edit", args=[task.pk]), _form_data(task, notify_webhook_url=""))
    task.refresh_from_db()
    assert (task.notify_webhook_url, task.notify_webhook_secret) == ("", "")


def test_a_webhook_needs_a_long_enough_secret_and_an_http_url(admin_client):
    source, destination = EndpointFactory(), EndpointFactory()
    data = {"name": "T", "source": source.pk, "destination": destination.pk, "notify_emails": ""}
    url = reverse("tasks:create")
    missing = admin_client.post(url, {**data, "notify_webhook_url": "https://hooks.example.com/x"})
    assert missing.status_code == 400 and "A webhook needs a secret" in missing.content.decode()
    short = admin_client.post(
        url, {**data, "notify_webhook_url": "https://hooks.example.com/x", "notify_webhook_secret": "short"}
    )
    assert "Use 16 characters or more." in short.content.decode()
    assert "short" not in short.content.decode().split('name="notify_webhook_secret"')[1].split(">")[0]
    ftp = admin_client.post(
        url, {**data, "notify_webhook_url": "ftp://x.example.com/", "notify_webhook_secret": TASK_SECRET}
    )
    assert ftp.status_code == 400 and "Enter a valid URL." in ftp.content.decode()
    assert not Task.objects.exists()
    created = admin_client.post(
        url, {**data, "notify_webhook_url": "https://hooks.example.com/x", "notify_webhook_secret": TASK_SECRET}
    )
    assert created.status_code == 302
    assert Task.objects.get().notify_webhook_secret == TASK_SECRET
