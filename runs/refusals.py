"""Known-refused messages: the operator accepts that a message the destination refuses for good is
not copied (issue 11, "Known-refused messages and the breaker").

An accepted refusal is not attempted by later runs and not counted as an error, so a scheduled
task is no longer broken by it on every run; it is counted and listed "accepted as not copied".
Accepting is recorded with who and when; un-accepting deletes the record, and the next run tries
the message again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from runs.engine.types import NotCopied
from runs.models import AcceptedRefusal, AccountRun, FolderState

logger = logging.getLogger(__name__)


def refused_messages(run_id: int, *, account_run_id: int | None = None) -> list[dict[str, Any]]:
    """The run's per-message errors that the destination refused (what can be accepted).

    Each: account_run_id, account_id, and the stored error (folder, uid, subject, size, reason).
    Errors of another kind (unreadable at the source, ...) are not the destination's refusal and
    are left out.
    """
    rows = AccountRun.objects.filter(run_id=run_id)
    if account_run_id is not None:
        rows = rows.filter(pk=account_run_id)
    out = []
    for pk, account_id, errors in rows.values_list("pk", "account_id", "message_errors"):
        for error in errors or []:
            if error.get("kind", NotCopied.REFUSED.value) == NotCopied.REFUSED.value:
                out.append({**error, "account_run_id": pk, "account_id": account_id})
    return out


def accept_refusals(
    run_id: int,
    *,
    by: Any,
    now: datetime,
    account_run_id: int | None = None,
    folder: str | None = None,
    uid: int | None = None,
) -> int:
    """Accept the refused messages of a run: one (account run, folder and UID), one account run's,
    or all of the run. Returns how many were newly accepted.

    A refusal is bound to its source folder's current UIDVALIDITY (from the account's folder
    state); a message whose folder has no state any more cannot be named safely and is skipped.
    """
    wanted = [
        e
        for e in refused_messages(run_id, account_run_id=account_run_id)
        if (folder is None or e.get("folder") == folder) and (uid is None or e.get("uid") == uid)
    ]
    if not wanted:
        return 0
    validity = {
        (account_id, source_folder): uidvalidity
        for account_id, source_folder, uidvalidity in FolderState.objects.filter(
            account_id__in={e["account_id"] for e in wanted}
        ).values_list("account_id", "source_folder", "uidvalidity")
    }
    name = getattr(by, "get_username", lambda: "")() if by is not None else ""
    rows = []
    for error in wanted:
        key = (error["account_id"], error.get("folder", ""))
        if key not in validity:
            continue
        rows.append(
            AcceptedRefusal(
                account_id=error["account_id"],
                source_folder=error.get("folder", ""),
                uidvalidity=validity[key],
                uid=int(error["uid"]),
                subject=str(error.get("subject", ""))[:300],
                size=int(error.get("size") or 0),
                reason=str(error.get("reason", "")),
                accepted_by=by if getattr(by, "pk", None) else None,
                accepted_by_name=name[:150],
                accepted_at=now,
            )
        )
    before = AcceptedRefusal.objects.filter(account_id__in={r.account_id for r in rows}).count()
    AcceptedRefusal.objects.bulk_create(rows, ignore_conflicts=True)
    added = AcceptedRefusal.objects.filter(account_id__in={r.account_id for r in rows}).count() - before
    logger.info(
        "run %s: %s refused message(s) accepted as not copied by %s",
        run_id,
        added,
        name or "?",
        extra={"event": "refusals.accepted", "run_id": run_id, "accepted": added, "user": name},
    )
    return added


def accept_from_form(run_id: int, form: Any, *, by: Any, now: datetime) -> int:
    """accept_refusals() with the report's form fields (account_run, folder, uid; each optional).

    Raises ValueError when a number is not a number.
    """
    account_run = form.get("account_run") or None
    uid = form.get("uid") or None
    return accept_refusals(
        run_id,
        by=by,
        now=now,
        account_run_id=int(account_run) if account_run is not None else None,
        folder=form.get("folder") or None,
        uid=int(uid) if uid is not None else None,
    )


def unaccept(accepted_id: int, *, by: Any) -> bool:
    """Withdraw one acceptance: the next run tries the message again. False when it did not exist."""
    row = AcceptedRefusal.objects.filter(pk=accepted_id).values("account_id", "source_folder").first()
    if row is None:
        return False
    with transaction.atomic():
        deleted, _ = AcceptedRefusal.objects.filter(pk=accepted_id).delete()
        # The folder's HIGHESTMODSEQ was recorded with the message counted as accepted: without it,
        # the next run reads the folder again instead of taking it as complete.
        FolderState.objects.filter(account_id=row["account_id"], source_folder=row["source_folder"]).update(
            highest_modseq=None
        )
    if deleted:
        logger.info(
            "accepted refusal %s withdrawn by %s",
            accepted_id,
            getattr(by, "get_username", lambda: "")() if by is not None else "?",
            extra={"event": "refusals.unaccepted", "accepted_id": accepted_id},
        )
    return bool(deleted)


def accepted_for_run(run_id: int) -> QuerySet[AcceptedRefusal]:
    """The acceptances in force for the accounts of a run (what its report lists as accepted)."""
    account_ids = AccountRun.objects.filter(run_id=run_id).values("account_id")
    return (
        AcceptedRefusal.objects.filter(account_id__in=account_ids)
        .select_related("account")
        .only(*_LISTED, "account__source_user", "account__destination_user")  # never the passwords
    )


_LISTED = (
    "account_id",
    "source_folder",
    "uidvalidity",
    "uid",
    "subject",
    "size",
    "reason",
    "accepted_by_name",
    "accepted_at",
)


def accepted_uids(account_id: int) -> dict[tuple[str, int], list[int]]:
    """Accepted source UIDs of an account by (source folder, UIDVALIDITY), for the copy engine."""
    out: dict[tuple[str, int], list[int]] = {}
    for folder, validity, uid in AcceptedRefusal.objects.filter(account_id=account_id).values_list(
        "source_folder", "uidvalidity", "uid"
    ):
        out.setdefault((folder, validity), []).append(uid)
    return out
