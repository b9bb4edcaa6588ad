"""The status badge of a run or an account run: the one place the pages draw it."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from runs.models import AccountRun, Run

register = template.Library()

INTERRUPTED_TITLE = "Stopped without finishing for the worker's sake (stopped, died, job lost, time limit): run the task again to resume."


def shows_interrupted(status: str, interrupted: bool) -> bool:
    """Whether a run or account run ended "interrupted" (README: SIGTERM to the workers, a lost job, the
    time limit): recorded as failed with `interrupted` set. Its status stays "failed" (the breaker and
    the filters read it); the pages call it Interrupted instead."""
    return bool(interrupted) and status == Run.Status.FAILED


@register.simple_tag
def status_badge(item: object) -> SafeString:
    """{% status_badge run %}: the badge of a Run, an AccountRun or a runs.progress.AccountProgress.

    Its status label in the status's colour (CSS `.badge.<status>`); an interrupted one
    (shows_interrupted) says "Interrupted" in amber (`.badge.warn`), not a red "Failed". Reads only
    the object's attributes: never queries.
    """
    status = str(getattr(item, "status", ""))
    if shows_interrupted(status, getattr(item, "interrupted", False)):
        return format_html(
            '<span class="badge warn interrupted" data-status="{}" data-interrupted title="{}">Interrupted</span>',
            status,
            INTERRUPTED_TITLE,
        )
    try:
        label = AccountRun.Status(status).label  # the account run's statuses include the run's, same labels
    except ValueError:
        label = status
    return format_html('<span class="badge {}" data-status="{}">{}</span>', status, status, label)
