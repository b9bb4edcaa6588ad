"""Composing and delivering notifications: a plain-text e-mail and a signed JSON webhook.

The webhook body is JSON (UTF-8); its header `X-Imapcopier-Signature: sha256=<hex>` is
HMAC-SHA256(NOTIFY_WEBHOOK_SECRET, raw body) (RFC 2104 with SHA-256), the scheme GitHub uses for its
webhooks, so a receiver recomputes it over the bytes it got and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from django.core.mail import EmailMessage

from tasks.wording import plural

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Imapcopier-Signature"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Notice:
    """One notification, ready to send: e-mail subject and body, webhook payload (a JSON-able dict)."""

    subject: str
    body: str
    payload: dict = field(default_factory=dict)


def clean_text(text: str, limit: int = 2000) -> str:
    """Outside text (server words, task and folder names) made safe for a mail: no control characters, bounded."""
    text = _CONTROL.sub(" ", text or "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int = 200) -> str:
    """Text for a mail header: one line (a newline would be header injection), bounded."""
    return " ".join(clean_text(text, limit).split())


def compose(
    *,
    notice_id: str,
    event: str,
    task: dict,
    run: dict | None,
    detail: str,
    site_url: str,
    now: datetime,
) -> Notice:
    """Build the notice of `event` (scheduling.notifications.events.Event values).

    `task`: {"id", "name"}; `run`: {"id", "trigger", "status", "started_at", "finished_at", "copied",
    "skipped", "errors", "bytes", "reason", "failed_accounts"} or None; `now` is the sending time (UTC).
    No password is ever among the inputs, so none can reach a message.
    """
    name = clean_text(task["name"], 200)
    task_link = f"{site_url}/tasks/{task['id']}/" if site_url else ""
    if event == "task.broken":
        headline = f"{name}: the schedule is switched off (broken)"
        lead = (
            f"Scheduled run {run['id']} ended with {plural(run['errors'], 'error')}, so the breaker switched the "
            "schedule of this task off. It stays off until someone looks at the run report and turns it on again."
        )
    elif event == "run.failed":
        headline = f"{name}: run {run['id']} failed"
        lead = f"Run {run['id']} ({run['trigger']}) failed."
    elif event == "run.errors":
        headline = f"{name}: run {run['id']} ended with {plural(run['errors'], 'error')}"
        lead = (
            f"Run {run['id']} ({run['trigger']}) finished, but {plural(run['errors'], 'message')} could not be copied."
        )
    elif event == "schedule.stalled":
        headline = f"{name}: the schedule is waiting"
        lead = (
            "The schedule of this task is on but no run can start"
            + (f": {clean_text(detail, 300)}." if detail else ".")
            + " Test the accounts (or park the ones that cannot be fixed now)."
        )
    else:
        raise ValueError(f"unknown notification event {event!r}")
    lines = [lead, ""]
    if run is not None:
        lines += [
            f"Copied: {run['copied']:,}",
            f"Already there: {run['skipped']:,}",
            f"Errors: {run['errors']:,}",
            f"Accounts failed: {run['failed_accounts']:,}",
        ]
        if run.get("reason"):
            lines.append(f"Reason: {clean_text(run['reason'], 1000)}")
        if site_url:
            lines.append(f"Report: {site_url}/runs/{run['id']}/")
    if task_link:
        lines.append(f"Task: {task_link}")
    lines += ["", "-- imapcopier"]
    payload = {
        "id": notice_id,
        "event": event,
        "sent_at": now.isoformat().replace("+00:00", "Z"),
        "task": {"id": task["id"], "name": task["name"], "url": task_link or None},
        "run": run,
        "detail": detail or None,
    }
    return Notice(subject=one_line(f"[imapcopier] {headline}"), body="\n".join(lines), payload=payload)


def send_email(notice: Notice, recipients: list[str]) -> int:
    """Send the notice to `recipients` with Django's configured e-mail backend; returns messages sent (0 or 1).

    Raises whatever the backend raises (smtplib.SMTPException, OSError); the job catches it.
    """
    if not recipients:
        return 0
    return EmailMessage(subject=notice.subject, body=notice.body, to=recipients).send(fail_silently=False)


def sign(secret: str, body: bytes) -> str:
    """The signature header value: 'sha256=' + hex HMAC-SHA256 of `body` keyed with `secret` (RFC 2104)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookFailed(Exception):
    """Every attempt to deliver a webhook failed; the message names the last reason (never the URL's secrets)."""


def post_webhook(
    url: str,
    secret: str,
    payload: dict,
    *,
    attempts: int,
    backoff_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST `payload` as signed JSON to `url`; returns the attempt number that got a 2xx answer.

    A connection error, a timeout, a 5xx or a 429 is retried after backoff_seconds x 1, 4, 16...
    up to `attempts` tries; any other 4xx is final (the receiver refused this body, resending it
    will not help). Redirects are not followed. Raises WebhookFailed when no attempt succeeded.
    """
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "imapcopier-notify",
        SIGNATURE_HEADER: sign(secret, body),
        "X-Imapcopier-Event": str(payload.get("event", "")),
        "X-Imapcopier-Delivery": str(payload.get("id", "")),
    }
    opener = urllib.request.build_opener(_NoRedirect)
    host = urlsplit(url).hostname or "?"
    reason = ""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            sleep(backoff_seconds * 4 ** (attempt - 2))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=timeout_seconds) as answer:
                answer.read(1024)
                return attempt
        except urllib.error.HTTPError as error:
            reason = f"HTTP {error.code}"
            if 400 <= error.code < 500 and error.code != 429:
                raise WebhookFailed(f"webhook at {host} refused the notification: {reason}") from None
        except (OSError, ValueError) as error:
            reason = type(error).__name__ if not str(error) else f"{type(error).__name__}: {error}"
        logger.warning("webhook at %s: attempt %s of %s failed (%s)", host, attempt, attempts, one_line(reason))
    raise WebhookFailed(f"webhook at {host} failed {attempts} times; last: {one_line(reason)}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
