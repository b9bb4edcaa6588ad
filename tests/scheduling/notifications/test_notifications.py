"""Notifications (issue 12, item 4): who is told what, sent from a django-q2 job after commit.

E-mail goes through Django's locmem backend (or a real SMTP backend pointed at a closed port, for the
failing mail server); the webhook goes to a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone
from django_q.conf import Conf

from runs import orchestrator, q2
from runs.engine.types import AccountResult, Outcome
from runs.models import Run
from scheduling.notifications import events
from scheduling.notifications.events import Event, run_event
from scheduling.notifications.jobs import send_notification_job
from scheduling.notifications.services import SIGNATURE_HEADER, WebhookFailed, compose, post_webhook
from tasks.forms import TaskForm
from tasks.models import Task
from tests.support.factories import AccountFactory, EndpointFactory, RunFactory, TaskFactory

WEBHOOK_SECRET = "shared-secret-for-the-test-receiver"


# --- which runs are announced ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "errors", "broke", "expected"),
    [
        ("done", 3, True, Event.TASK_BROKEN),
        ("failed", 1, True, Event.TASK_BROKEN),
        ("failed", 0, False, Event.RUN_FAILED),
        ("done", 2, False, Event.RUN_ERRORS),
        ("done", 0, False, None),
        ("cancelled", 4, False, None),
    ],
)
def test_run_event_picks_the_one_thing_to_say(status, errors, broke, expected):
    assert run_event(status=status, errors=errors, broke=broke) == expected


# --- the webhook, against a real receiver ---------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that answers with the queued status codes (then 200) and keeps what it got."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=in-the-url"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def verify(headers: dict, body: bytes) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over the raw body and compare in constant time."""
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers[SIGNATURE_HEADER])


def test_the_webhook_posts_signed_json(receiver):
    attempt = post_webhook(
        receiver.url,
        WEBHOOK_SECRET,
        {"id": "n1", "event": "run.failed"},
        attempts=3,
        backoff_seconds=1,
        timeout_seconds=5,
    )
    assert attempt == 1
    [(headers, body)] = receiver.received
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"id": "n1", "event": "run.failed"}
    assert verify(headers, body)
    assert not verify({SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}, body + b" ")


def test_the_webhook_retries_server_errors_with_growing_waits(receiver):
    receiver.answers = [503, 500, 429]
    waits: list[float] = []
    attempt = post_webhook(
        receiver.url, WEBHOOK_SECRET, {"id": "n2"}, attempts=4, backoff_seconds=2, timeout_seconds=5, sleep=waits.append
    )
    assert attempt == 4
    assert waits == [2, 8, 32]
    bodies = {body for _headers, body in receiver.received}
    assert len(receiver.received) == 4 and len(bodies) == 1  # the same delivery each time


def test_the_webhook_gives_up_after_its_attempts_without_naming_the_url(receiver):
    receiver.answers = [502, 502, 502]
    with pytest.raises(WebhookFailed) as failure:
        post_webhook(
            receiver.url,
            WEBHOOK_SECRET,
            {"id": "n3"},
            attempts=3,
            backoff_seconds=0,
            timeout_seconds=5,
            sleep=lambda s: None,
        )
    assert len(receiver.received) == 3
    assert "HTTP 502" in str(failure.value)
    assert "in-the-url" not in str(failure.value)


def test_a_refusing_receiver_is_not_retried(receiver):
    receiver.answers = [401]
    with pytest.raises(WebhookFailed, match="HTTP 401"):
        post_webhook(receiver.url, WEBHOOK_SECRET, {"id": "n4"}, attempts=4, backoff_seconds=0, timeout_seconds=5)
    assert len(receiver.received) == 1


def test_an_unreachable_receiver_fails_after_its_attempts():
    waits: list[float] = []
    with pytest.raises(WebhookFailed, match="failed 2 times"):
        post_webhook(
            f"http://127.0.0.1:{closed_port()}/hook",
            WEBHOOK_SECRET,
            {"id": "n5"},
            attempts=2,
            backoff_seconds=1,
            timeout_seconds=2,
            sleep=waits.append,
        )
    assert waits == [1]


# --- what the message says ------------------------------------------------------------------------


def test_a_hostile_task_name_cannot_add_mail_headers():
    notice = compose(
        notice_id="x",
        event="run.errors",
        task={"id": 7, "name": "Acme\r\nBcc: victim@example.com"},
        run={"id": 3, "trigger": "manual", "errors": 1, "copied": 5, "skipped": 2, "failed_accounts": 0, "reason": ""},
        detail="",
        site_url="https://copier.example",
        now=timezone.now(),
    )
    assert "\n" not in notice.subject and "\r" not in notice.subject
    assert notice.subject == "[imapcopier] Acme Bcc: victim@example.com: run 3 ended with 1 error"
    assert "1 message could not be copied" in notice.body
    assert "Already there: 2" in notice.body
    assert "https://copier.example/runs/3/" in notice.body


# --- end to end: a run finishes, a job sends --------------------------------------------------------


@pytest.fixture
def sync_jobs(monkeypatch, settings):
    """django-q2 runs enqueued jobs in-process (its sync mode); mail goes to Django's locmem outbox."""
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFY_WEBHOOK_URL = ""
    settings.SITE_URL = "https://copier.example"


def _finished_run(task: Task, *, trigger: str, result: AccountResult, capture) -> Run:
    """Start a run of `task` (one account), claim its account and finish it with `result`, committing."""
    with mock.patch.object(orchestrator, "push_jobs"):
        run = orchestrator.start_run(task.pk, trigger=trigger)
    [ar] = run.account_runs.all()
    claimed = orchestrator.claim_account_run(ar.pk, worker="test:1", now=timezone.now())
    with capture(execute=True) as callbacks:
        assert orchestrator.finish_account_run(claimed, claimed.attempt, result, now=timezone.now())
    run.refresh_from_db()
    run.callbacks = callbacks
    return run


def _task(**kwargs) -> Task:
    task = TaskFactory(notify_emails="ops@example.com, lead@example.com", **kwargs)
    AccountFactory(task=task, tested=True, source_password="s3cret-source-pw", destination_password="s3cret-dest-pw")
    return task


@pytest.mark.django_db
def test_a_failed_run_mails_the_task_recipients(sync_jobs, django_capture_on_commit_callbacks):
    task = _task(name="Acme Corp")
    run = _finished_run(
        task,
        trigger=Run.Trigger.MANUAL,
        result=AccountResult.failed("LOGIN failed: [AUTHENTICATIONFAILED]"),
        capture=django_capture_on_commit_callbacks,
    )
    assert run.status == Run.Status.FAILED
    [message] = mail.outbox
    assert message.to == ["ops@example.com", "lead@example.com"]
    assert message.subject == f"[imapcopier] Acme Corp: run {run.pk} failed"
    assert "AUTHENTICATIONFAILED" in message.body
    assert f"https://copier.example/runs/{run.pk}/" in message.body
    assert "s3cret" not in message.body and "s3cret" not in message.subject


@pytest.mark.django_db
def test_a_scheduled_run_that_breaks_the_task_says_so(sync_jobs, django_capture_on_commit_callbacks):
    task = _task(schedule_interval_seconds=3600, schedule_anchor=timezone.now())
    run = _finished_run(
        task,
        trigger=Run.Trigger.SCHEDULED,
        result=AccountResult(outcome=Outcome.DONE, copied=4, errors=2),
        capture=django_capture_on_commit_callbacks,
    )
    task.refresh_from_db()
    assert task.broken
    [message] = mail.outbox
    assert message.subject.endswith("the schedule is switched off (broken)")
    assert f"Scheduled run {run.pk} ended with 2 errors" in message.body


@pytest.mark.django_db
def test_a_clean_run_sends_nothing(sync_jobs, django_capture_on_commit_callbacks):
    task = _task()
    run = _finished_run(
        task,
        trigger=Run.Trigger.MANUAL,
        result=AccountResult(outcome=Outcome.DONE, copied=4),
        capture=django_capture_on_commit_callbacks,
    )
    assert run.status == Run.Status.DONE
    assert mail.outbox == []


@pytest.mark.django_db
def test_nothing_is_enqueued_before_the_run_commits(settings, django_capture_on_commit_callbacks):
    settings.NOTIFY_WEBHOOK_URL = ""
    task = _task()
    with mock.patch.object(orchestrator, "push_jobs"):
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    [ar] = run.account_runs.all()
    claimed = orchestrator.claim_account_run(ar.pk, worker="test:1", now=timezone.now())
    with mock.patch("django_q.tasks.async_task") as async_task:  # runs.q2.enqueue calls it
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            orchestrator.finish_account_run(claimed, claimed.attempt, AccountResult.failed("boom"), now=timezone.now())
        assert async_task.call_count == 0
        for callback in callbacks:
            callback()
    [call] = async_task.call_args_list
    assert call.args[0] == q2.NOTIFY_JOB == "scheduling.notifications.jobs.send_notification_job"
    assert call.args[1:4] == ("run.failed", task.pk, run.pk)
    assert "s3cret" not in repr(call)


@pytest.mark.django_db
def test_a_task_nobody_watches_enqueues_nothing(settings, django_capture_on_commit_callbacks):
    settings.NOTIFY_WEBHOOK_URL = ""
    task = TaskFactory(notify_emails="")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert events.announce(Event.RUN_FAILED, task_id=task.pk, run_id=None) is None
    assert callbacks == []


@pytest.mark.django_db
def test_a_failing_mail_server_never_breaks_a_run(sync_jobs, settings, django_capture_on_commit_callbacks, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    task = _task()
    run = _finished_run(
        task,
        trigger=Run.Trigger.MANUAL,
        result=AccountResult.failed("unreachable"),
        capture=django_capture_on_commit_callbacks,
    )
    assert run.status == Run.Status.FAILED and run.finished_at is not None
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert "could not be sent (ConnectionRefusedError)" in caplog.text
    summary = send_notification_job("run.failed", task.pk, run.pk, "", "again")
    assert summary.endswith("e-mail: failed (ConnectionRefusedError)")


@pytest.mark.django_db
def test_the_job_posts_the_webhook_and_mails(sync_jobs, settings, receiver):
    settings.NOTIFY_WEBHOOK_URL = receiver.url
    settings.NOTIFY_WEBHOOK_SECRET = WEBHOOK_SECRET
    task = _task(name="Acme Corp")
    run = RunFactory(task=task, status=Run.Status.DONE, errors=3, copied=10, skipped=4, finished_at=timezone.now())
    summary = send_notification_job("run.errors", task.pk, run.pk, "", "id-1")
    assert summary == f"run.errors task {task.pk}: e-mail: sent to 2; webhook: delivered (attempt 1)"
    [(headers, body)] = receiver.received
    assert verify(headers, body)
    payload = json.loads(body)
    assert payload["id"] == "id-1" and payload["event"] == "run.errors"
    assert payload["task"] == {"id": task.pk, "name": "Acme Corp", "url": f"https://copier.example/tasks/{task.pk}/"}
    assert payload["run"]["errors"] == 3 and payload["run"]["skipped"] == 4
    assert "s3cret" not in body.decode()
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_dead_webhook_is_logged_and_the_mail_still_goes(sync_jobs, settings):
    settings.NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{closed_port()}/hook"
    settings.NOTIFY_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.NOTIFY_WEBHOOK_ATTEMPTS = 2
    settings.NOTIFY_WEBHOOK_BACKOFF_SECONDS = 0
    task = _task()
    run = RunFactory(task=task, status=Run.Status.FAILED, finished_at=timezone.now())
    summary = send_notification_job("run.failed", task.pk, run.pk, "", "id-2")
    assert summary.endswith("e-mail: sent to 2; webhook: failed")
    assert len(mail.outbox) == 1


# --- who gets them: the task form ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_task_form_keeps_a_clean_list_of_recipients():
    source, destination = EndpointFactory(), EndpointFactory()
    data = {"name": "T", "source": source.pk, "destination": destination.pk}
    form = TaskForm(data={**data, "notify_emails": "ops@example.com;\nlead@example.com ops@example.com"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["notify_emails"] == "ops@example.com, lead@example.com"
    form = TaskForm(data={**data, "notify_emails": "ops@example.com, not-an-address"})
    assert not form.is_valid()
    assert form.errors["notify_emails"] == ["Enter e-mail addresses separated by commas or new lines."]


@pytest.mark.django_db
def test_a_stalled_schedule_is_announced_once_not_every_tick(sync_jobs, django_capture_on_commit_callbacks):
    from scheduling.ticker import tick

    task = TaskFactory(
        name="Acme",
        notify_emails="ops@example.com",
        schedule_interval_seconds=3600,
        schedule_anchor=timezone.now() - timezone.timedelta(hours=2),
    )
    AccountFactory(task=task, tested=True)
    AccountFactory(task=task)  # its password was edited: untested, so the schedule waits
    for _ in range(3):  # three ticks, 30 s apart in real life
        with django_capture_on_commit_callbacks(execute=True):
            report = tick(timezone.now())
        assert report.started == []
    [message] = mail.outbox
    assert message.subject == "[imapcopier] Acme: the schedule is waiting"
    assert "1 account needs a test" in message.body
    # Tested again, it runs; a later stall is a new one and is announced again.
    task.accounts.update(source_test_status="ok", destination_test_status="ok")
    with mock.patch.object(orchestrator, "push_fan_out"), django_capture_on_commit_callbacks(execute=True):
        assert tick(timezone.now()).started
    assert len(mail.outbox) == 1
