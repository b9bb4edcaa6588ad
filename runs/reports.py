"""The report of a finished (or running) run: the page's details and the CSV download."""

from __future__ import annotations

import csv
from datetime import datetime
from typing import Any, TextIO

from runs import selection
from runs.models import Run
from runs.progress import progress_context


def run_report(run: Run, *, now: datetime, result: str = "", sort: str = "") -> dict[str, Any]:
    """What the run report page shows: the progress panel, `task`, `accounts` (those with `result`, a
    selection.RUN_RESULTS key or "" for all, sorted by account or with sort="errors" most errors first),
    their `message_errors` (each with its `account`), `warnings` by account run id, `duration` in whole
    seconds (None while running), and the filter: `result`, `sort`, `results`, `counts` per result."""
    context = progress_context(run, now)
    listed = selection.report_account_runs(run.pk, result=result, sort=sort)
    by_id = {a.account_run_id: a for a in context["progress"].accounts}
    accounts = [by_id[pk] for pk in listed.values_list("pk", flat=True) if pk in by_id]
    details = listed.values_list("pk", "account__source_user", "message_errors", "warnings")
    message_errors = [
        {**error, "account": user} for _pk, user, errors, _warnings in details for error in (errors or [])
    ]
    warnings = {pk: w for pk, _user, _errors, w in details if w}
    duration = None
    if run.finished_at:
        duration = int((run.finished_at - run.started_at).total_seconds())
    return {
        **context,
        "task": run.task,
        "accounts": accounts,
        "message_errors": message_errors,
        "warnings": warnings,
        "duration": duration,
        "result": result,
        "sort": sort,
        "results": selection.LAST_RESULTS,
        "counts": selection.report_counts(run.pk),
    }


def write_run_csv(run: Run, out: TextIO, *, result: str = "", sort: str = "") -> None:
    """One line per account, then one line per message error; no passwords. Filtered and sorted like
    the report (run_report's `result` and `sort`)."""
    writer = csv.writer(out)
    writer.writerow(
        [
            "source_user",
            "destination_user",
            "status",
            "copied",
            "already_there",
            "errors",
            "bytes",
            "reason",
            "folder",
            "uid",
            "subject",
            "size",
        ]
    )
    account_runs = selection.report_account_runs(run.pk, result=result, sort=sort).select_related("account")
    for ar in account_runs:
        account = ar.account
        writer.writerow(
            [
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
            ]
        )
        for error in ar.message_errors or []:
            writer.writerow(
                [
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
                ]
            )
