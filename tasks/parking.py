"""Parking accounts (issue 12, item 1): a paused account is skipped by runs, tests and the gates.

An operator parks the accounts that cannot be fixed now (a wrong password nobody knows yet) so the
others can run and be scheduled; the reason is shown next to the account until it is resumed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from tasks.models import Account, Task

MAX_REASON_LENGTH = 500


class ParkRefused(Exception):
    """The accounts cannot be parked; the message is meant for the user."""


def park_accounts(task: Task, account_ids: Iterable[int], *, reason: str, now: datetime) -> int:
    """Pause the task's accounts with these ids (others are ignored); returns how many changed.

    `reason` is required (what the operator is waiting for), trimmed to 500 characters. Parking
    also applies while the task runs: the run in progress goes on, later runs skip the account.
    Raises ParkRefused when the reason is empty.
    """
    reason = " ".join((reason or "").split())[:MAX_REASON_LENGTH]
    if not reason:
        raise ParkRefused("Say why the account is parked (for example “waiting for the new password”).")
    return Account.objects.filter(task=task, pk__in=list(account_ids), paused=False).update(
        paused=True, paused_reason=reason, paused_at=now
    )


def resume_accounts(task: Task, account_ids: Iterable[int]) -> int:
    """Make the task's parked accounts with these ids active again; returns how many changed."""
    return Account.objects.filter(task=task, pk__in=list(account_ids), paused=True).update(
        paused=False, paused_reason="", paused_at=None
    )


def failed_targets(task: Task) -> list[Account]:
    """What "Park the failed…" parks: the task's active accounts whose login test failed on either side
    (only their ids and source users are loaded, never a password)."""
    return list(task.accounts.active().failed().only("pk", "source_user").order_by("source_user"))
