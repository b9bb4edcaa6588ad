"""Accounts from CSV: parse and check everything first, then save all of it or nothing.

Columns: source_user, source_password, destination_user, destination_password, and optionally
sign_in ("password" or "oauth": how the task's source signs in, checked against its endpoint). A header
line with those names is optional. An empty destination password reuses the source password. A side whose
endpoint signs in with OAuth 2.0 takes no password: a line giving one is refused (nothing is lost
silently; the operator empties the column or moves the password where it belongs).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from tasks.models import Account, Task
from tasks.spreadsheet import restore

COLUMNS = ["source_user", "source_password", "destination_user", "destination_password", "sign_in"]
SIGN_IN = ("password", "oauth")
MAX_LENGTH = {
    "source_user": Account._meta.get_field("source_user").max_length,
    "destination_user": Account._meta.get_field("destination_user").max_length,
}
# Passwords are stored encrypted in a text column; still, a 1,000-character password is a paste error.
MAX_PASSWORD_LENGTH = 1000


@dataclass
class ImportRow:
    line: int
    source_user: str
    source_password: str = field(repr=False)
    destination_user: str
    destination_password: str = field(repr=False)
    existing_id: int | None = None  # set when the row updates an account of the task

    @property
    def is_update(self) -> bool:
        return self.existing_id is not None


@dataclass
class LineError:
    line: int
    reason: str


@dataclass
class ImportPreview:
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    @property
    def to_create(self) -> list[ImportRow]:
        return [row for row in self.rows if not row.is_update]

    @property
    def to_update(self) -> list[ImportRow]:
        return [row for row in self.rows if row.is_update]

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.rows)


UPDATED_FIELDS = [
    "destination_user",
    "source_password",
    "destination_password",
    "source_test_status",
    "source_test_message",
    "source_tested_at",
    "destination_test_status",
    "destination_test_message",
    "destination_tested_at",
    "updated_at",
]


class ImportRefused(Exception):
    """apply_import() was given a preview with errors, or the task changed under it."""


def _is_header(fields: list[str]) -> bool:
    return [f.strip().lower() for f in fields[:4]] == COLUMNS[:4]


def parse_accounts_csv(task: Task, data: bytes) -> ImportPreview:
    """Read a CSV upload into rows to create or update and a list of bad lines; saves nothing."""
    preview = ImportPreview()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        preview.errors.append(
            LineError(
                line,
                "The file is not UTF-8 text (byte "
                f"0x{data[exc.start]:02x} cannot be read). Save it as CSV UTF-8 and upload it again.",
            )
        )
        return preview
    if not text.strip():
        preview.errors.append(LineError(1, "The file is empty."))
        return preview

    source_oauth, destination_oauth = task.source.uses_oauth, task.destination.uses_oauth
    existing = dict(task.accounts.values_list("source_user", "pk"))
    seen: dict[str, int] = {}
    dialect = _sniff(text)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    for record in reader:
        line = reader.line_num
        if not any(value.strip() for value in record):
            continue
        if line == 1 and _is_header(record):
            continue
        problem = _check_record(record, source_oauth=source_oauth, destination_oauth=destination_oauth)
        if problem:
            preview.errors.append(LineError(line, problem))
            continue
        # A user name our exports wrote as '=... reads back as =... (tasks/spreadsheet.py). Passwords
        # are never exported, so a leading quote in one is part of the password and stays.
        source_user, source_password, destination_user = (
            restore(record[0].strip()),
            record[1],
            restore(record[2].strip()),
        )
        destination_password = record[3] if len(record) > 3 else ""
        destination_password = destination_password or source_password
        if source_oauth:
            source_password = ""
        if destination_oauth:
            destination_password = ""
        if source_user in seen:
            preview.errors.append(
                LineError(
                    line,
                    f"Duplicate source user {source_user!r} (already on line {seen[source_user]}).",
                )
            )
            continue
        seen[source_user] = line
        preview.rows.append(
            ImportRow(
                line=line,
                source_user=source_user,
                source_password=source_password,
                destination_user=destination_user,
                destination_password=destination_password,
                existing_id=existing.get(source_user),
            )
        )
    if not preview.rows and not preview.errors:
        preview.errors.append(LineError(1, "The file has no account lines."))
    return preview


def _sniff(text: str) -> type[csv.Dialect]:
    """Comma by default; semicolon or tab files (spreadsheet exports) are read too.

    The delimiter is the one that splits the first line into 3 to 5 fields.
    """
    first = text.splitlines()[0]
    for delimiter in (",", ";", "\t"):
        fields = next(csv.reader([first], delimiter=delimiter))
        if len(fields) in (3, 4, 5):
            return type("Dialect", (csv.excel,), {"delimiter": delimiter})
    return csv.excel


def _check_record(record: list[str], *, source_oauth: bool = False, destination_oauth: bool = False) -> str:
    if len(record) > 5:
        return (
            f"{len(record)} fields; expected 4 (source_user, source_password, destination_user, destination_password)"
            " and optionally sign_in."
        )
    padded = [*record, "", "", "", "", ""][:5]
    required = ["source_user", "destination_user"]
    if not source_oauth:
        required.insert(1, "source_password")
    elif not destination_oauth:
        required.append("destination_password")  # nothing to reuse from the source
    missing = [name for name in COLUMNS if name in required and not padded[COLUMNS.index(name)].strip()]
    if missing:
        return "Missing " + ", ".join(missing) + "."
    # A password for an OAuth 2.0 side is refused, not dropped: the file may be meant for another task
    # or the operator may expect it to be reused for the destination; refusing loses nothing.
    for side, oauth, column in (("source", source_oauth, 1), ("destination", destination_oauth, 3)):
        if oauth and padded[column]:
            return f"The {side} endpoint signs in with OAuth 2.0; leave {side}_password empty."
    sign_in = padded[4].strip().lower()
    if sign_in and sign_in not in SIGN_IN:
        return f"sign_in is {padded[4].strip()!r}; use password or oauth."
    if sign_in and (sign_in == "oauth") != source_oauth:
        expected = "oauth" if source_oauth else "password"
        return f"sign_in says {sign_in}, but this task's source endpoint signs in with {expected}."
    for name, limit in MAX_LENGTH.items():
        value = padded[COLUMNS.index(name)].strip()
        if len(value) > limit:
            return f"{name} is {len(value)} characters long; at most {limit} fit."
    for name in ("source_password", "destination_password"):
        if len(padded[COLUMNS.index(name)]) > MAX_PASSWORD_LENGTH:
            return f"{name} is longer than {MAX_PASSWORD_LENGTH} characters."
    for name in ("source_user", "destination_user"):
        if any(ch in padded[COLUMNS.index(name)] for ch in "\r\n\x00"):
            return f"{name} contains a line break or NUL character."
    return ""


def apply_import(task: Task, preview: ImportPreview) -> tuple[int, int]:
    """Create and update the previewed accounts in one transaction; returns (created, updated).

    Refuses a preview with bad lines: nothing is ever half-imported.
    """
    if preview.errors:
        raise ImportRefused("The file has bad lines; nothing was imported.")
    if not preview.rows:
        raise ImportRefused("The file has no account lines.")
    now = timezone.now()
    with transaction.atomic():
        existing = {a.source_user: a for a in Account.objects.select_for_update().filter(task=task)}
        new: list[Account] = []
        changed: list[Account] = []
        for row in preview.rows:
            account = existing.get(row.source_user)
            if account is None:
                new.append(
                    Account(
                        task=task,
                        source_user=row.source_user,
                        source_password=row.source_password,
                        destination_user=row.destination_user,
                        destination_password=row.destination_password,
                    )
                )
                continue
            account.destination_user = row.destination_user
            account.source_password = row.source_password
            account.destination_password = row.destination_password
            # New credentials: the old test results no longer say anything.
            account.source_test_status = Account.TestStatus.UNTESTED
            account.source_test_message = ""
            account.source_tested_at = None
            account.destination_test_status = Account.TestStatus.UNTESTED
            account.destination_test_message = ""
            account.destination_tested_at = None
            account.updated_at = now
            changed.append(account)
        Account.objects.bulk_create(new, batch_size=500)
        Account.objects.bulk_update(changed, UPDATED_FIELDS, batch_size=500)
    return len(new), len(changed)
