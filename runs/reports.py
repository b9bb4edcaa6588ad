"""The report of a finished (or running) run: the page's details and the CSV download."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from runs.engine.types import NotCopied
from runs.models import Run
from runs.progress import progress_context, run_summary
from runs.refusals import accepted_for_run
from tasks.spreadsheet import write_csv


def run_report(run: Run, *, now: datetime) -> dict[str, Any]:
    """What the run report page shows: the progress panel, `task`, `message_errors` (each with its
    `account` and `account_run_id`), `summary` (progress.RunSummary: where every source message went),
    `accepted` (the refusals accepted as not copied), `warnings` by account run id, and `duration` in
    whole seconds (None while running)."""
    details = run.account_runs.order_by("account__source_user", "pk").values_list(
        "pk", "account__source_user", "message_errors", "warnings"
    )
    message_errors = [
        {**error, "account": user, "account_run_id": pk}
        for pk, user, errors, _warnings in details
        for error in (errors or [])
    ]
    warnings = {pk: w for pk, _user, _errors, w in details if w}
    duration = None
    if run.finished_at:
        duration = int((run.finished_at - run.started_at).total_seconds())
    return {
        **progress_context(run, now),
        "task": run.task,
        "message_errors": message_errors,
        "summary": run_summary(run),
        "accepted": accepted_for_run(run.pk),
        "warnings": warnings,
        "duration": duration,
    }


def write_run_csv(run: Run, out: TextIO) -> None:
    """One line per account, then one line per message error, then the refusals accepted as not copied;
    no passwords. Cells that come from outside (subjects, folder names, server words) are neutralised by
    the one CSV writer (tasks/spreadsheet.py)."""
    write_csv(out, RUN_CSV_COLUMNS, _run_csv_rows(run))


RUN_CSV_COLUMNS = [
    "source_user",
    "destination_user",
    "status",
    "copied",
    "skipped",
    "errors",
    "bytes",
    "reason",
    "folder",
    "uid",
    "subject",
    "size",
    "source_messages",
    "not_copied",
]


def _run_csv_rows(run: Run) -> Iterator[list[object]]:
    account_runs = run.account_runs.select_related("account").order_by("account__source_user")
    for ar in account_runs:
        account = ar.account
        yield [
            account.source_user,
            account.destination_user,
            ar.status,
            ar.copied,
            ar.skipped,
            ar.errors,
            ar.bytes,
            ar.last_error,
            "",
            "",
            "",
            "",
            "" if ar.source_messages is None else ar.source_messages,
            "; ".join(f"{n} {why}" for why, n in sorted((ar.not_copied or {}).items())),
        ]
        for error in ar.message_errors or []:
            yield [
                account.source_user,
                account.destination_user,
                "message error",
                "",
                "",
                "",
                "",
                error.get("reason", ""),
                error.get("folder", ""),
                error.get("uid", ""),
                error.get("subject", ""),
                error.get("size", ""),
                "",
                error.get("kind", ""),
            ]
    for accepted in accepted_for_run(run.pk):
        yield [
            accepted.account.source_user,
            accepted.account.destination_user,
            NotCopied.ACCEPTED.value,
            "",
            "",
            "",
            "",
            f"{accepted.reason} (accepted by {accepted.accepted_by_name or '?'} at {accepted.accepted_at:%Y-%m-%d %H:%M} UTC)",
            accepted.source_folder,
            accepted.uid,
            accepted.subject,
            accepted.size,
            "",
            NotCopied.ACCEPTED.value,
        ]
