"""django-q2 entry point that sends one notification. Arguments are ids and words, never a secret."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from runs.models import AccountRun, Run
from scheduling.notifications.services import WebhookFailed, compose, post_webhook, send_email
from tasks.models import Task, parse_recipients

logger = logging.getLogger(__name__)


def send_notification_job(event: str, task_id: int, run_id: int | None, detail: str, notice_id: str) -> str:
    """Send the notification by e-mail to the task's recipients, to the site's webhook and to the
    task's own webhook (each signed with its own secret, retried the same way).

    Never raises (a raising job would be delivered again, and a mail server that is down must not
    turn into an error anywhere else): each channel's failure is logged and named in the summary it
    returns, which django-q2 stores as the job's result.
    """
    task = (
        Task.objects.filter(pk=task_id)
        .values("id", "name", "notify_emails", "notify_webhook_url", "notify_webhook_secret")
        .first()
    )
    if task is None:
        return "task deleted: nothing sent"
    run = _run_facts(run_id) if run_id else None
    if run_id and run is None:
        return "run deleted: nothing sent"
    notice = compose(
        notice_id=notice_id,
        event=event,
        task={"id": task["id"], "name": task["name"]},
        run=run,
        detail=detail,
        site_url=settings.SITE_URL,
        now=timezone.now(),
    )
    outcome = []
    try:
        recipients = parse_recipients(task["notify_emails"])
    except ValidationError:
        recipients = []
        logger.warning("task %s: its notification recipients are not valid addresses; no e-mail sent", task_id)
        outcome.append("e-mail: bad recipients")
    if recipients:
        try:
            send_email(notice, recipients)
            outcome.append(f"e-mail: sent to {len(recipients)}")
        except Exception as error:
            logger.warning("task %s: the %s e-mail could not be sent (%s)", task_id, event, type(error).__name__)
            outcome.append(f"e-mail: failed ({type(error).__name__})")
    if settings.NOTIFY_WEBHOOK_URL:
        outcome.append(
            "webhook: "
            + _deliver(settings.NOTIFY_WEBHOOK_URL, settings.NOTIFY_WEBHOOK_SECRET, notice.payload, task_id, event)
        )
    if task["notify_webhook_url"]:
        if task["notify_webhook_secret"]:
            outcome.append(
                "task webhook: "
                + _deliver(
                    task["notify_webhook_url"], task["notify_webhook_secret"], notice.payload, task_id, f"{event} task"
                )
            )
        else:  # the form refuses a URL without a secret; a row written otherwise is not sent unsigned
            logger.warning("task %s: its webhook has no secret; not sent", task_id)
            outcome.append("task webhook: no secret")
    summary = f"{event} task {task_id}: " + ("; ".join(outcome) or "nobody to tell")
    logger.info(summary, extra={"event": "notification", "task_id": task_id, "run_id": run_id, "kind": event})
    return summary


def _deliver(url: str, secret: str, payload: dict, task_id: int, what: str) -> str:
    """POST the signed payload with the site's retry settings; the outcome in words. Never raises, and
    never logs the URL (it may carry a token) or the secret: only the host, in WebhookFailed's message."""
    try:
        attempt = post_webhook(
            url,
            secret,
            payload,
            attempts=settings.NOTIFY_WEBHOOK_ATTEMPTS,
            backoff_seconds=settings.NOTIFY_WEBHOOK_BACKOFF_SECONDS,
            timeout_seconds=settings.NOTIFY_WEBHOOK_TIMEOUT_SECONDS,
        )
    except WebhookFailed as error:
        logger.warning("task %s: the %s webhook was not delivered: %s", task_id, what, error)
        return "failed"
    except Exception as error:
        logger.warning("task %s: the %s webhook failed (%s)", task_id, what, type(error).__name__)
        return "failed"
    return f"delivered (attempt {attempt})"


def _run_facts(run_id: int) -> dict | None:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return None
    failed = AccountRun.objects.filter(run_id=run_id, status=AccountRun.Status.FAILED).count()
    return {
        "id": run.pk,
        "trigger": run.trigger,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "copied": run.copied,
        "skipped": run.skipped,
        "errors": run.errors,
        "bytes": run.bytes,
        "reason": run.reason,
        "failed_accounts": failed,
    }


def _iso(moment: object) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
