"""`manage.py importaccounts <task> <file.csv>`: add or update a task's accounts from a CSV file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks.csv_import import ImportRefused, apply_import, parse_accounts_csv
from tasks.models import Task
from tasks.services import find_task


class Command(BaseCommand):
    help = (
        "Import accounts into a task (by id or name) from a CSV file ('-' reads standard input). "
        "Columns: source_user, source_password, destination_user, destination_password, optionally "
        "sign_in (password or oauth); a header line is optional; a side that signs in with OAuth 2.0 takes "
        "no password (a line with one is refused). Every line is checked first: a file with a bad line imports nothing. "
        "An account whose source user already exists in the task is updated (and must be "
        "tested again)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", help="task id or name")
        parser.add_argument("file", help="CSV file, or - for standard input")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check the file and say what would change, change nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            task = find_task(options["task"])
        except Task.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        if options["file"] == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                data = Path(options["file"]).read_bytes()
            except OSError as exc:
                raise CommandError(f"cannot read {options['file']}: {exc.strerror}") from None
        preview = parse_accounts_csv(task, data)
        for error in preview.errors:
            self.stderr.write(f"line {error.line}: {error.reason}")
        if preview.errors:
            raise CommandError(f"{len(preview.errors)} bad lines: nothing was imported", returncode=1)
        if not preview.rows:
            raise CommandError("the file has no account lines: nothing was imported")
        create, update = len(preview.to_create), len(preview.to_update)
        if options["dry_run"]:
            self.stdout.write(f"would create {create} and update {update} accounts of {task.name!r}")
            return
        try:
            created, updated = apply_import(task, preview)
        except ImportRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"{created} accounts created, {updated} updated in {task.name!r}; "
                f"test them with `manage.py testaccounts {task.pk}`"
            )
        )
