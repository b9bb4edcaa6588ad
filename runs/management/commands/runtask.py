"""`manage.py runtask <task> [--wait] [--cancel]`: start (or cancel) a run from the shell and watch it."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs import orchestrator
from runs.models import Run
from runs.progress import AccountProgress, RunProgress, run_progress
from tasks.models import Task
from tasks.services import find_task
from tasks.wording import human_bytes, plural

BAR_WIDTH = 20
MAX_LINES = 40  # accounts shown at once on a terminal; the rest are summed up


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    return str(timedelta(seconds=int(seconds)))


def _bar(percent: int | None) -> str:
    if percent is None:
        return "[" + "?" * BAR_WIDTH + "]"
    filled = BAR_WIDTH * percent // 100
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"


def account_line(a: AccountProgress, name_width: int) -> str:
    name = a.source_user[:name_width].ljust(name_width)
    if a.status == "queued":
        return f"{name} {_bar(0)}  queued"
    if a.waiting:
        return f"{name} {_bar(0)}  waiting for a free connection"
    if not a.is_active and a.percent is None:
        # Ended before the source was read (login refused, server unreachable, cancelled).
        return f"{name} {_bar(0)}  {a.status}: {a.last_error[:200]}"
    percent = f"{a.percent:3d}%" if a.percent is not None else "  ?%"
    rate = f"{a.rate:6.1f} msg/s" if a.rate is not None else "     - msg/s"
    # While running: messages dealt with; once ended: messages at the destination.
    count = a.done if a.is_active else a.arrived
    line = f"{name} {_bar(a.percent)} {percent} {count:>6}/{a.total:<6} msgs {a.megabytes:8.1f} MB {rate}"
    if a.is_active:
        line += f"  ETA {_duration(a.eta_seconds)}  {a.folder}"
    else:
        line += f"  {a.status}"
        if a.not_copied:
            line += f", {a.not_copied} not copied"
        if a.errors:
            line += f", {plural(a.errors, 'error')}"
        if a.last_error:
            line += f": {a.last_error[:200]}"
    return line


def summary_line(p: RunProgress) -> str:
    head = (
        f"run {p.run.pk} of {p.run.task.name}: {p.run.status} · "
        f"{p.summary}{f' ({p.percent}%)' if p.percent is not None and p.run.is_running else ''} · {p.copied:,} copied · "
        f"{p.skipped:,} already there · {p.not_copied:,} not copied · {plural(p.errors, 'error')} · "
        f"{human_bytes(p.bytes)}"
    )
    if p.run.finished_at:
        seconds = max((p.run.finished_at - p.run.started_at).total_seconds(), 0.001)
        return f"{head} in {_duration(seconds)} · {p.copied / seconds:.1f} msg/s, {p.megabytes / seconds:.1f} MB/s"
    rate = f"{p.rate:.1f} msg/s" if p.rate else "- msg/s"
    return f"{head} · {rate} · ETA {_duration(p.eta_seconds)}"


class Command(BaseCommand):
    help = (
        "Start a manual run of a task (by id or name). With --wait, show a progress bar per "
        "account until the run ends, and exit with status 1 if the run had errors or did not "
        "finish. With --cancel, ask the task's running run to stop. Ctrl-C while waiting "
        "cancels the run; a second Ctrl-C stops waiting."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", help="task id or name")
        parser.add_argument("--wait", action="store_true", help="watch the run until it ends")
        parser.add_argument("--cancel", action="store_true", help="cancel the task's running run")
        parser.add_argument(
            "--only",
            choices=[orchestrator.ONLY_ALL, orchestrator.ONLY_FAILED],
            default=orchestrator.ONLY_ALL,
            help="failed: run only the active accounts whose last result failed or had errors, or that never ran",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="seconds between progress updates (default 1)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            task = find_task(options["task"])
        except Task.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        if options["cancel"]:
            run = orchestrator.running_run(task.pk)
            if run is None or not orchestrator.cancel_run(run.pk):
                raise CommandError(f"task {task.name!r} is not running")
            self.stdout.write(f"run {run.pk}: cancel requested; each account stops after its current batch")
        else:
            try:
                run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, only=options["only"])
            except orchestrator.RunRefused as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"run {run.pk} of {task.name!r} started: {plural(run.account_runs.count(), 'account')}")
        if not options["wait"]:
            return
        # The last picture drawn by watch() is the final state; add why it ended, if not clean.
        final = self.watch(run, max(options["interval"], 0.1))
        if final.run.reason:
            self.stdout.write(final.run.reason)
        if final.run.status != Run.Status.DONE or final.run.errors:
            raise CommandError(
                f"run {run.pk} ended {final.run.status} with {plural(final.run.errors, 'error')}",
                returncode=1,
            )

    def watch(self, run: Run, interval: float) -> RunProgress:
        tty = self.stdout.isatty()
        ctrl_c = 0  # Ctrl-C presses so far; counted by the handler, acted on by the loop below

        def on_sigint(signum: int, frame: object) -> None:
            # A signal handler runs between two bytecodes of whatever it interrupts: here maybe a
            # database query or a write to stdout. Doing either again from the handler is a reentrant
            # call (a broken cursor, "reentrant call inside BufferedWriter"), so it only counts.
            nonlocal ctrl_c
            ctrl_c += 1
            if ctrl_c > 1:
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
        drawn = 0
        last_plain = 0.0
        started = time.monotonic()
        warned = False
        cancelling = False
        try:
            while True:
                if ctrl_c and not cancelling:
                    cancelling = True
                    orchestrator.cancel_run(run.pk)
                    self.stderr.write(
                        "\ncancelling the run (Ctrl-C again to stop waiting; the run then ends in the background)"
                    )
                p = run_progress(run.pk)
                if tty:
                    lines = self.render(p)
                    if drawn:
                        self.stdout.write(f"\x1b[{drawn}F\x1b[J", ending="")
                    self.stdout.write("\n".join(lines))
                    drawn = len(lines)
                elif not p.run.is_running or time.monotonic() - last_plain >= 10:
                    for line in self.render(p):
                        self.stdout.write(line)
                    last_plain = time.monotonic()
                if not p.run.is_running:
                    return p
                if not warned and p.queued == len(p.accounts) and time.monotonic() - started > 15:
                    self.stderr.write("no account has started yet: is `manage.py qcluster` running?")
                    warned = True
                slept = time.monotonic()
                while time.monotonic() - slept < interval and not (ctrl_c and not cancelling):
                    time.sleep(min(0.1, interval))
        except KeyboardInterrupt:
            self.stderr.write(f"stopped waiting; run {run.pk} goes on (or finishes cancelling) in the background")
            sys.exit(130)
        finally:
            signal.signal(signal.SIGINT, previous)

    def render(self, p: RunProgress) -> list[str]:
        width = max(10, min(40, max((len(a.source_user) for a in p.accounts), default=10)))
        # On a terminal, one screen line per account; in a log, whole lines.
        columns = shutil.get_terminal_size((160, 24)).columns if self.stdout.isatty() else 10_000
        shown = p.accounts
        if len(shown) > MAX_LINES:
            active = [a for a in shown if a.status == "running"]
            shown = active[:MAX_LINES]
        lines = [summary_line(p)[:columns]]
        lines += [account_line(a, width)[:columns] for a in shown]
        if len(shown) < len(p.accounts):
            lines.append(f"... {len(p.accounts) - len(shown)} more accounts ({p.queued} queued, {p.finished} finished)")
        return lines
