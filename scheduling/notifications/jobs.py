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
    """Send the notification by e-mail to the task's recipients and to the site's webhook.

    Never raises (a raising job would be delivered again, and a mail server that is down must not
    turn into an error anywhere else): each channel's failure is logged and named in the summary it
    returns, which django-q2 stores as the job's result.
    """
    task = Task.objects.filter(pk=task_id).values("id", "name", "notify_emails").first()
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
        try:
            attempt = post_webhook(
                settings.NOTIFY_WEBHOOK_URL,
                settings.NOTIFY_WEBHOOK_SECRET,
                notice.payload,
                attempts=settings.NOTIFY_WEBHOOK_ATTEMPTS,
                backoff_seconds=settings.NOTIFY_WEBHOOK_BACKOFF_SECONDS,
                timeout_seconds=settings.NOTIFY_WEBHOOK_TIMEOUT_SECONDS,
            )
            outcome.append(f"webhook: delivered (attempt {attempt})")
        except WebhookFailed as error:
            logger.warning("task %s: the %s webhook was not delivered: %s", task_id, event, error)
            outcome.append("webhook: failed")
        except Exception as error:
            logger.warning("task %s: the %s webhook failed (%s)", task_id, event, type(error).__name__)
            outcome.append("webhook: failed")
    summary = f"{event} task {task_id}: " + ("; ".join(outcome) or "nobody to tell")
    logger.info(summary, extra={"event": "notification", "task_id": task_id, "run_id": run_id, "kind": event})
    return summary


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
