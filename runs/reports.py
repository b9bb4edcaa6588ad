"""The report of a finished (or running) run: the page's details and the CSV download."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from runs import selection
from runs.engine.types import NotCopied
from runs.models import Run
from runs.progress import progress_context, run_summary
from runs.refusals import accepted_for_run
from tasks.spreadsheet import write_csv


def run_report(run: Run, *, now: datetime, result: str = "", sort: str = "") -> dict[str, Any]:
    """What the run report page shows: the progress panel, `task`, `accounts` (those with `result`, a
    selection.RUN_RESULTS key or "" for all, sorted by account or with sort="errors" most errors first),
    their `message_errors` (each with its `account` and `account_run_id`), `summary`
    (progress.RunSummary: where every source message went, over the whole run), `shortfalls` (its
    incomplete folders of the accounts listed), `accepted` (the
    refusals accepted as not copied), `warnings` by account run id, `duration` in whole seconds (None
    while running), and the filter: `result`, `sort`, `results`, `counts` per result."""
    context = progress_context(run, now)
    listed = selection.report_account_runs(run.pk, result=result, sort=sort)
    by_id = {a.account_run_id: a for a in context["progress"].accounts}
    accounts = [by_id[pk] for pk in listed.values_list("pk", flat=True) if pk in by_id]
    details = listed.values_list("pk", "account__source_user", "message_errors", "warnings")
    message_errors = [
        {**error, "account": user, "account_run_id": pk}
        for pk, user, errors, _warnings in details
        for error in (errors or [])
    ]
    warnings = {pk: w for pk, _user, _errors, w in details if w}
    summary = run_summary(run)  # the whole run, whatever the filter
    users = {user for _pk, user, _errors, _warnings in details}
    duration = None
    if run.finished_at:
        duration = int((run.finished_at - run.started_at).total_seconds())
    return {
        **context,
        "task": run.task,
        "accounts": accounts,
        "message_errors": message_errors,
        "summary": summary,
        "shortfalls": [f for f in summary.shortfalls if f.account in users],  # of the accounts listed
        "accepted": accepted_for_run(run.pk),
        "warnings": warnings,
        "duration": duration,
        "result": result,
        "sort": sort,
        "results": selection.LAST_RESULTS,
        "counts": selection.report_counts(run.pk),
    }


def write_run_csv(run: Run, out: TextIO, *, result: str = "", sort: str = "") -> None:
    """One line per account, then one line per message error, then the refusals accepted as not copied;
    no passwords. Filtered and sorted like the report (run_report's `result` and `sort`). Cells that come from outside (subjects, folder names, server words) are neutralised by
    the one CSV writer (tasks/spreadsheet.py)."""
    write_csv(out, RUN_CSV_COLUMNS, _run_csv_rows(run, result=result, sort=sort))


RUN_CSV_COLUMNS = [
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
    "source_messages",
    "not_copied",
]


def _run_csv_rows(run: Run, *, result: str, sort: str) -> Iterator[list[object]]:
    account_runs = selection.report_account_runs(run.pk, result=result, sort=sort).select_related("account")
    listed: set[int] = set()
    for ar in account_runs:
        account = ar.account
        listed.add(account.pk)
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
        if accepted.account_id not in listed:
            continue  # an account the filter leaves out
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
