"""`manage.py testaccounts <task>`: LOGIN and LIST on both sides of every account of a task.

The accounts are tested in parallel, as many at once as the endpoints' max connections allow (each test
holds one connection slot at a time, tasks/slots.py, so running copies and page tests keep their share).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from tasks.models import Account, Task
from tasks.services import BACKGROUND_TEST_SLOT_WAIT_SECONDS, find_task, test_account
from tasks.wording import plural


class Command(BaseCommand):
    help = (
        "Test every account of a task (by id or name) on both servers: LOGIN and LIST, so a "
        "server that accepts the login but then refuses work counts as a failure. Stores each "
        "result with the server's words; exits with status 1 when an account failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", help="task id or name")
        parser.add_argument(
            "--account",
            action="append",
            default=[],
            metavar="SOURCE_USER",
            help="test only this account (repeatable)",
        )
        parser.add_argument(
            "--parallel",
            type=int,
            default=0,
            metavar="N",
            help="test at most N accounts at once (default: the smaller max connections of the two endpoints)",
        )
        parser.add_argument(
            "--only",
            choices=["all", "needs-test"],
            default="all",
            help="needs-test: only the active accounts not tested OK yet (untested or failed). "
            "Parked accounts are never tested.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            task = find_task(options["task"])
        except Task.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        accounts = task.accounts.active().order_by("source_user").only("pk", "source_user")
        if options["only"] == "needs-test":
            accounts = accounts.blocking()
        if options["account"]:
            accounts = accounts.filter(source_user__in=options["account"])
        ids = list(accounts.values_list("pk", flat=True))
        if not ids:
            raise CommandError(f"task {task.name!r} has no such active accounts")
        if options["parallel"] < 0:
            raise CommandError("--parallel must be 1 or more")
        cap = min(task.source.max_connections, task.destination.max_connections)
        parallel = max(1, min(options["parallel"] or cap, len(ids)))
        failed = 0
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="testaccounts") as pool:
            # map() yields in the order of `ids`, so the report reads the same however the tests interleave.
            for pk in pool.map(_test_one, ids):
                failed += not self._report(pk)
        self.stdout.write(f"{len(ids) - failed} of {plural(len(ids), 'account')} OK on both sides")
        if failed:
            raise CommandError(f"{plural(failed, 'account')} failed the test", returncode=1)

    def _report(self, pk: int) -> bool:
        """Write one account's result line; True when both sides passed."""
        row = Account.objects.values(
            "source_user",
            "destination_user",
            "source_test_status",
            "source_test_message",
            "destination_test_status",
            "destination_test_message",
        ).get(pk=pk)
        ok = Account.objects.filter(pk=pk).tested_ok().exists()
        style = self.style.SUCCESS if ok else self.style.ERROR
        self.stdout.write(
            style(
                f"{row['source_user']} -> {row['destination_user']}: "
                f"source {row['source_test_status']} ({row['source_test_message']}) · "
                f"destination {row['destination_test_status']} ({row['destination_test_message']})"
            )
        )
        return ok


def _test_one(pk: int) -> int:
    """Test one account in a pool thread; returns its pk. The thread's database connection is closed after."""
    try:
        test_account(Account(pk=pk), slot_wait_seconds=BACKGROUND_TEST_SLOT_WAIT_SECONDS)
    finally:
        connections.close_all()
    return pk
