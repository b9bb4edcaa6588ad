"""The report of a finished (or running) run: the page's details and the CSV download."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from django.db.models import QuerySet

from runs import selection
from runs.engine.types import NotCopied
from runs.models import AccountRun, Run
from runs.orchestrator import ACTIVE
from runs.progress import (
    DELETED_AT_DESTINATION,
    folder_arrived,
    folder_deleted,
    folder_is_short,
    progress_context,
    run_summary,
)
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
    no passwords. An account line's last column counts its messages deleted at the destination after
    they were copied (folder_deleted, over its folders). Filtered and sorted like the report (run_report's `result` and `sort`). Cells that come from outside (subjects, folder names, server words) are neutralised by
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
    "deleted_at_destination",
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
            sum(folder_deleted(f) for f in ar.folder_totals or []),
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
                "",
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
            "",
        ]


@dataclass(frozen=True)
class FolderRow:
    """One source folder of an account run, as the report, the per-folder CSV and the API show it.

    Counts are messages; `already_there` is the product's one name for messages skipped because the
    destination already held them. `bytes` is the size of the messages this run copied into the
    folder (bytes, as sent by APPEND; decimal units on the pages). `errors` and `bytes` are None for
    runs recorded before they were kept per folder (issue 12). `source` and `destination` are folder
    names from the servers: untrusted text. `destination` None: the folder mapping leaves it out
    (or no destination name could be made for it: then `not_created`). `deleted_at_destination`:
    copied by an earlier run, deleted at the destination since, not copied again (counted neither as
    already there nor as not copied; 0 for runs recorded before it was counted).
    """

    source: str
    destination: str | None
    source_messages: int | None
    destination_messages: int | None
    copied: int
    already_there: int
    altered: int
    errors: int | None
    not_copied: dict[str, int]
    bytes: int | None
    complete: bool
    deleted_at_destination: int = 0

    @property
    def not_copied_total(self) -> int:
        return sum(self.not_copied.values())

    @property
    def not_created(self) -> bool:
        """The destination folder does not exist: the destination refused to create it, or cannot
        hold its name (NotCopied.FOLDER_NOT_CREATED). `destination` still names it when known."""
        return NotCopied.FOLDER_NOT_CREATED.value in self.not_copied

    @property
    def left_out(self) -> bool:
        """The folder mapping leaves the folder out (nothing was meant to be copied)."""
        return self.destination is None and not self.not_created

    @property
    def deleted_note(self) -> str:
        """The folder's messages deleted at the destination after they were copied, in words, or ""."""
        if not self.deleted_at_destination:
            return ""
        return f"{self.deleted_at_destination:,} {DELETED_AT_DESTINATION}"


def folder_rows(folder_totals: Iterable[dict] | None) -> list[FolderRow]:
    """AccountRun.folder_totals (as runs.orchestrator.finish_account_run writes it) as FolderRows,
    INBOX first, then by name (case-insensitive), so a reader finds "Sent" where they look for it.
    Completeness is runs.progress.folder_is_short's rule."""
    rows = []
    for folder in folder_totals or []:
        destination = folder.get("destination")
        rows.append(
            FolderRow(
                source=folder.get("source", ""),
                destination=destination,
                source_messages=folder.get("source_messages"),
                destination_messages=folder.get("destination_messages"),
                copied=folder.get("copied", 0),
                already_there=folder.get("skipped", 0),
                altered=folder.get("altered", 0),
                errors=folder.get("errors"),
                not_copied={str(k): int(v) for k, v in (folder.get("not_copied") or {}).items()},
                bytes=folder.get("bytes"),
                complete=(destination is None and not folder.get("not_copied")) or not folder_is_short(folder),
                deleted_at_destination=folder_deleted(folder),
            )
        )
    return sorted(rows, key=lambda row: (row.source.upper() != "INBOX", row.source.casefold(), row.source))


def account_runs_for_report() -> QuerySet[AccountRun]:
    """AccountRuns with what account_run_report needs loaded (run, task, endpoints, account), never a password."""
    return AccountRun.objects.select_related("run__task__source", "run__task__destination", "account").defer(
        "account__source_password", "account__destination_password"
    )


def account_run_report(account_run: AccountRun) -> dict[str, Any]:
    """What the account-run page shows: `account_run` (with its account, run and task loaded; never
    a password), `folders` (FolderRows), its `message_errors` and `warnings`, and `arrived` (messages
    at the destination after the run, over its folders), `deleted_at_destination` (copied earlier,
    deleted at the destination since, over its folders), `active` (queued or running: no folder
    results yet)."""
    folders = folder_rows(account_run.folder_totals)
    return {
        "account_run": account_run,
        "run": account_run.run,
        "task": account_run.run.task,
        "folders": folders,
        "arrived": sum(folder_arrived(f) for f in account_run.folder_totals or []),
        "deleted_at_destination": sum(f.deleted_at_destination for f in folders),
        "message_errors": account_run.message_errors or [],
        "warnings": account_run.warnings or [],
        "active": account_run.status in ACTIVE,
    }


FOLDER_CSV_COLUMNS = [
    "source_user",
    "destination_user",
    "account_status",
    "source_folder",
    "destination_folder",
    "source_messages",
    "destination_messages",
    "copied",
    "already_there",
    "altered",
    "errors",
    "not_copied",
    "not_copied_reasons",
    "bytes",
    "complete",
    "deleted_at_destination",
]


def write_folder_csv(run: Run, out: TextIO, *, result: str = "", sort: str = "") -> None:
    """One line per account x source folder, every line the same shape (so a spreadsheet can sum,
    filter and pivot the columns); accounts filtered and sorted like the report (run_report's `result`
    and `sort`), folders in the order they were copied. An account that has no folder results (login
    failed, queued when cancelled) gets one line with an empty folder. Folder names are outside text:
    the one CSV writer (tasks/spreadsheet.py) neutralises them. No passwords."""
    write_csv(out, FOLDER_CSV_COLUMNS, _folder_csv_rows(run, result=result, sort=sort))


def _folder_csv_rows(run: Run, *, result: str, sort: str) -> Iterator[list[object]]:
    rows = selection.report_account_runs(run.pk, result=result, sort=sort).values_list(
        "account__source_user", "account__destination_user", "status", "folder_totals"
    )
    for source_user, destination_user, status, totals in rows:
        folders = folder_rows(totals)
        if not folders:
            yield [source_user, destination_user, status] + [""] * (len(FOLDER_CSV_COLUMNS) - 3)
            continue
        for f in folders:
            yield [
                source_user,
                destination_user,
                status,
                f.source,
                f.destination or "",
                _blank(f.source_messages),
                _blank(f.destination_messages),
                f.copied,
                f.already_there,
                f.altered,
                _blank(f.errors),
                f.not_copied_total,
                "; ".join(f"{n} {why}" for why, n in sorted(f.not_copied.items())),
                _blank(f.bytes),
                "left out by the folder mapping" if f.left_out else ("yes" if f.complete else "no"),
                f.deleted_at_destination,
            ]


def _blank(value: int | None) -> object:
    return "" if value is None else value
