"""`manage.py demo`: a private Dovecot with sample mailboxes, and a task ready to copy them.

Starts Dovecot on free loopback ports (the test bed's tests/support/dovecot.py, so it needs Debian's
dovecot-imapd and root, as the test suite does), fills three source mailboxes (a few hundred
messages over a dozen folders, non-ASCII names included), leaves their destinations empty, and
creates two endpoints, the task "Demo migration" and its accounts. Dovecot runs until Ctrl-C.

Run it next to the product, with the product's environment (same data directory and keys):

    bin/start                                   # terminal 1: web + workers
    bin/manage demo                             # terminal 2

An earlier "Demo migration" is kept under a new name, with its runs (it says so).

then open the printed task page and press "Run now" (the accounts are already tested).
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tasks.models import Account, Endpoint, ScheduleInterval, Task
from tasks.services import test_accounts
from tasks.wording import plural

TASK_NAME = "Demo migration"
SOURCE_LABEL = "Demo source (Dovecot)"
DESTINATION_LABEL = "Demo destination (Dovecot)"

# A dozen folders; the weights share out the messages of each mailbox.
FOLDERS = [
    ("INBOX", 30),
    ("Sent", 14),
    ("Drafts", 3),
    ("Trash", 4),
    ("Archive", 2),
    ("Archive/2023", 12),
    ("Archive/2024", 14),
    ("Projekte/Größenplanung", 6),
    ("Clients/Société Générale", 5),
    ("Receipts", 4),
    ("Newsletters", 8),
    ("日本語フォルダ", 2),
]
MAILBOXES = [("alice", 320), ("bob", 150), ("carol", 60)]
SUBJECTS = [
    "Quarterly figures",
    "Re: Lunch on Thursday?",
    "Invoice {n} for October",
    "Meeting notes – product review",
    "Fwd: Travel plans",
    "Überweisung bestätigt",
    "Réunion de lundi",
    "Your order has shipped",
    "Weekly newsletter #{n}",
    "Contract draft v{n}",
]
SENDERS = [
    "Alice Example <alice@example.org>",
    "Bob Builder <bob@example.net>",
    "Jürgen Müller <juergen@beispiel.de>",
    "Chloé Dupont <chloe@exemple.fr>",
    "Billing <billing@shop.example>",
]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Start a local Dovecot with sample mailboxes and create a demo task that copies them (Ctrl-C stops it)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--skip-tests",
            action="store_true",
            help="Do not test the accounts' logins (by default they are tested, so “Run now” works at once).",
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="Set everything up, then stop Dovecot and exit (for checks; the task will not connect).",
        )

    kept: Task | None = None

    def handle(
        self,
        *args: Any,
        no_wait: bool = False,
        skip_tests: bool = False,
        **options: Any,
    ) -> None:
        try:
            # The test bed is in the source checkout only (not in the image): imported when the demo starts.
            from tests.support.dovecot import Dovecot, DovecotError
        except ImportError as exc:
            raise CommandError(
                "the demo uses tests/support/dovecot.py from the source checkout: run it from the project directory"
            ) from exc
        existing = Task.objects.filter(name=TASK_NAME).first()
        if existing and existing.is_running:
            raise CommandError(f"“{TASK_NAME}” is running: cancel its run first, then start the demo again.")

        self.stdout.write("Starting Dovecot on 127.0.0.1…")
        try:
            dovecot = Dovecot()
        except (DovecotError, OSError) as exc:
            raise CommandError(f"Dovecot could not start: {exc}") from exc
        try:
            pairs = self._fill(dovecot)
            task = self._create_task(dovecot, pairs)
            if not skip_tests:
                self.stdout.write("Testing the accounts' logins…")
                test_accounts(task)
            total = sum(count for _name, count in MAILBOXES)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Ready: task “{task.name}” (id {task.pk}) with {len(pairs)} accounts, "
                    f"{total} messages over {len(FOLDERS)} folders per mailbox on the source side."
                )
            )
            if self.kept is not None:
                self.stdout.write(
                    f"The earlier demo task is kept as “{self.kept.name}” with its "
                    f"{plural(self.kept.runs.count(), 'run')} (schedule off; its mailboxes went with the earlier Dovecot)."
                )
            self.stdout.write(
                f"Open /tasks/{task.pk}/ in imapcopier and press “Run now”"
                f"{' (after “Test all accounts”)' if skip_tests else ''}.\n"
                f"Dovecot: STARTTLS on port {dovecot.imap_port}, SSL/TLS on port {dovecot.imaps_port} "
                f"(log: {dovecot.log_path})."
            )
            if no_wait:
                return
            self.stdout.write("Dovecot keeps running until you press Ctrl-C.")
            # A service manager stops with SIGTERM: take Dovecot down the same way as on Ctrl-C.
            signal.signal(signal.SIGTERM, _interrupt)
            while dovecot.running:
                time.sleep(1)
            raise CommandError(f"Dovecot stopped:\n{dovecot.log_tail()}")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping Dovecot.")
        finally:
            dovecot.stop()

    def _fill(self, dovecot: Any) -> list[tuple[Any, Any, int]]:
        from tests.support.dovecot import fill, make_message  # the checkout's test bed, as above

        rng = random.Random(7)
        weight_sum = sum(w for _f, w in FOLDERS)
        pairs = []
        for name, count in MAILBOXES:
            source = dovecot.add_user(f"{name}.old")
            destination = dovecot.add_user(f"{name}.new")
            client = dovecot.connect(source)
            try:
                left = count
                for index, (folder, weight) in enumerate(FOLDERS):
                    share = left if index == len(FOLDERS) - 1 else round(count * weight / weight_sum)
                    share = min(share, left)
                    left -= share
                    items = []
                    for n in range(share):
                        when = dt.datetime(2023, 1, 1, 8, tzinfo=dt.UTC) + dt.timedelta(
                            hours=rng.randrange(0, 2 * 365 * 24)
                        )
                        subject = rng.choice(SUBJECTS).format(n=n + 1)
                        message = make_message(
                            subject=subject,
                            from_=rng.choice(SENDERS),
                            to=f"{name.title()} <{name}@example.com>",
                            date=when,
                            attachment_size=rng.choice([0, 0, 0, 2_000, 40_000, 250_000]),
                            eight_bit=rng.random() < 0.2,
                            seed=f"{name}-{folder}-{n}",
                        )
                        flags = [b"\\Seen"] if rng.random() < 0.7 else []
                        if rng.random() < 0.1:
                            flags.append(b"\\Flagged")
                        items.append((message, flags, when))
                    fill(client, folder, items)
                    self.stdout.write(f"  {name}: {folder} ({plural(share, 'message')})")
            finally:
                client.logout()
            pairs.append((source, destination, count))
        return pairs

    def _keep_earlier_demo(self) -> Task | None:
        """Rename an earlier demo task (its runs and reports stay readable) and switch its schedule off.

        Its mailboxes went with the earlier Dovecot, so it cannot copy again; deleting it would lose
        the runs an operator may still want to compare with.
        """
        earlier = Task.objects.filter(name=TASK_NAME).first()
        if earlier is None:
            return None
        stamp = earlier.created_at.strftime("%Y-%m-%d %H:%M:%S")
        earlier.name = f"{TASK_NAME} (earlier, made {stamp} UTC)"
        suffix = 2
        while Task.objects.filter(name=earlier.name).exists():
            earlier.name = f"{TASK_NAME} (earlier, made {stamp} UTC, {suffix})"
            suffix += 1
        earlier.schedule_interval_seconds = ScheduleInterval.OFF
        earlier.save(update_fields=["name", "schedule_interval_seconds", "updated_at"])
        return earlier

    @transaction.atomic
    def _create_task(self, dovecot: Any, pairs: list[tuple[Any, Any, int]]) -> Task:
        source, _ = Endpoint.objects.update_or_create(
            label=SOURCE_LABEL,
            defaults={
                "host": dovecot.host,
                "port": dovecot.imap_port,
                "security": Endpoint.Security.STARTTLS,
                "verify_tls": True,
                "ca_certificate": dovecot.ca_certificate,
                "max_connections": 10,
            },
        )
        destination, _ = Endpoint.objects.update_or_create(
            label=DESTINATION_LABEL,
            defaults={
                "host": dovecot.host,
                "port": dovecot.imaps_port,
                "security": Endpoint.Security.SSL,
                "verify_tls": True,
                "ca_certificate": dovecot.ca_certificate,
                "max_connections": 10,
            },
        )
        self.kept = self._keep_earlier_demo()
        task = Task.objects.create(name=TASK_NAME, source=source, destination=destination)
        for src, dst, _count in pairs:
            Account.objects.create(
                task=task,
                source_user=src.username,
                source_password=src.password,
                destination_user=dst.username,
                destination_password=dst.password,
            )
        return task
