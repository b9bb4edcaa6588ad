"""manage.py copymailbox: copy one mailbox to another without a task (operators, benchmarks).

    IMAPCOPIER_SOURCE_PASSWORD=… IMAPCOPIER_DESTINATION_PASSWORD=… \\
        manage.py copymailbox --source imaps://alice@old.example.org:993 \\
                              --destination imap://alice@new.example.org:143 --starttls

Passwords come from those environment variables or a prompt, never from the command line. The
copy state lives in a JSON file (--state), so calling the command again copies only what is new.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.engine import (
    AccountResult,
    Mailbox,
    Outcome,
    Progress,
    Security,
    copy_account,
)
from runs.engine.filestate import JsonFileStateStore, StateFileError
from runs.engine.types import SignalFlag

PASSWORD_VARIABLES = {
    "source": "IMAPCOPIER_SOURCE_PASSWORD",
    "destination": "IMAPCOPIER_DESTINATION_PASSWORD",
}
_SCHEMES = {
    "imaps": (Security.SSL, 993),
    "imap": (Security.PLAIN, 143),
    "imap+starttls": (Security.STARTTLS, 143),
}


def parse_endpoint(url: str, *, starttls: bool) -> tuple[str, int, Security, str]:
    """imaps://user@host:993 → (host, port, security, user). A password in the URL is refused."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise CommandError(f"{url!r}: use imaps://, imap:// or imap+starttls:// (user@host[:port])")
    security, default_port = _SCHEMES[scheme]
    if security == Security.PLAIN and starttls:
        security = Security.STARTTLS
    userinfo, sep, hostport = parts.netloc.rpartition("@")
    if not sep or not userinfo:
        raise CommandError(f"{url!r}: the user name is missing (user@host)")
    if ":" in userinfo:
        raise CommandError(
            "passwords are not accepted on the command line: use "
            f"{PASSWORD_VARIABLES['source']} / {PASSWORD_VARIABLES['destination']} or the prompt"
        )
    host, _, port_text = hostport.partition(":")
    if hostport.startswith("["):  # [::1]:993
        host, _, rest = hostport[1:].partition("]")
        port_text = rest.lstrip(":")
    if not host:
        raise CommandError(f"{url!r}: the host is missing")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise CommandError(f"{url!r}: the port must be a number") from None
    if not 0 < port < 65536:
        raise CommandError(f"{url!r}: the port must be between 1 and 65535")
    return host, port, security, unquote(userinfo)


class ProgressBar:
    """One line on stderr, redrawn at most five times a second."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last = 0.0
        self.width = 0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        self.draw(progress)

    def draw(self, progress: Progress) -> None:
        done = progress.copied + progress.skipped + progress.not_copied
        total = max(progress.total_messages, done)
        fraction = done / total if total else 0.0
        filled = int(fraction * 24)
        line = (
            f"[{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%} "
            f"{done}/{total} messages, {progress.copied} copied, {progress.skipped} skipped, "
            f"{progress.errors} errors, {progress.bytes / 1e6:.1f} MB, {progress.rate:.0f} msg/s"
            f"  {progress.folder}"
        )
        if self.tty:
            pad = max(0, self.width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up included), or None where unknown.

    Linux: field 22 of /proc/self/stat, the start time in clock ticks since boot (proc(5)), against
    CLOCK_BOOTTIME; resolution one tick (10 ms).
    """
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22; fields[0] is field 3
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Command(BaseCommand):
    help = "Copy one IMAP mailbox to another, incrementally (state kept in a JSON file)."
    # Uses no model and no app: manage.py runs it without setting Django up (imapcopier.boot), and
    # the system checks would need the apps.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source",
            required=True,
            help="imaps://user@host:993 (or imap://, imap+starttls://)",
        )
        parser.add_argument("--destination", required=True, help="imap://user@host:143 …")
        parser.add_argument("--starttls", action="store_true", help="use STARTTLS on every imap:// side")
        parser.add_argument(
            "--insecure",
            action="store_true",
            help="do not verify TLS certificates (only for servers you control)",
        )
        parser.add_argument(
            "--ca-file",
            help="PEM file of a private CA to trust instead of the system store",
        )
        parser.add_argument(
            "--state",
            help="JSON state file (default: ./copymailbox-state/<source>--<destination>.json)",
        )
        parser.add_argument(
            "--connections",
            type=int,
            default=2,
            help="connections per side (default 2)",
        )
        parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="SOURCE=DESTINATION",
            help="folder mapping; an empty DESTINATION skips the folder (repeatable)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["connections"] < 1:
            raise CommandError("--connections must be at least 1")
        ca_certificate = ""
        if options["ca_file"]:
            try:
                ca_certificate = Path(options["ca_file"]).read_text()
            except OSError as exc:
                raise CommandError(f"cannot read --ca-file: {exc.strerror}") from None
        mailboxes = {}
        for side in ("source", "destination"):
            host, port, security, user = parse_endpoint(options[side], starttls=options["starttls"])
            mailboxes[side] = Mailbox(
                host=host,
                port=port,
                security=security,
                username=user,
                password=self._password(side, user, host),
                verify_tls=not options["insecure"],
                ca_certificate=ca_certificate,
                timeout=options["timeout"],
            )
        mapping = {}
        for item in options["map"]:
            source_folder, sep, destination_folder = item.partition("=")
            if not sep or not source_folder:
                raise CommandError(f"--map {item!r}: use SOURCE=DESTINATION")
            mapping[source_folder] = destination_folder
        state_path = Path(options["state"] or _default_state_path(mailboxes))
        store = JsonFileStateStore(state_path)
        try:
            store.load()
        except StateFileError as exc:
            raise CommandError(str(exc)) from None

        stop = SignalFlag()
        previous_handler = None
        if threading.current_thread() is threading.main_thread():

            def interrupted(signum: int, frame: object) -> None:
                # Runs between two bytecodes of whatever it interrupts, maybe the progress bar's own
                # write to stderr: a raw write() and a lock-free flag cannot re-enter either.
                stop.set()
                os.write(2, "\nstopping after the current batch…\n".encode())

            previous_handler = signal.signal(signal.SIGINT, interrupted)
        bar = None if options["no_progress"] else ProgressBar(self.stderr._out)
        startup = process_age()
        started = time.monotonic()
        try:
            result = copy_account(
                mailboxes["source"],
                mailboxes["destination"],
                state=store,
                folder_mapping=mapping or None,
                on_progress=bar,
                should_stop=stop.is_set,
                connections=options["connections"],
            )
        except StateFileError as exc:
            # Raised by a save: the copy stopped, and no APPEND went out that the file does not record.
            raise CommandError(f"{exc}; the copy stopped, and a run once the file can be written goes on") from None
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if bar is not None:
                bar.finish()
        self._summary(result, time.monotonic() - started, state_path, startup)
        if result.outcome != Outcome.DONE or result.errors:
            raise CommandError(
                f"{result.outcome}: {result.errors} error(s)" + (f" — {result.reason}" if result.reason else ""),
                returncode=1,
            )

    def _password(self, side: str, user: str, host: str) -> str:
        value = os.environ.get(PASSWORD_VARIABLES[side])
        if value:
            return value
        if not sys.stdin.isatty():
            raise CommandError(f"no password for the {side}: set {PASSWORD_VARIABLES[side]} (no terminal to prompt on)")
        return getpass.getpass(f"{side} password for {user}@{host}: ")

    def _summary(self, result: AccountResult, seconds: float, state_path: Path, startup: float | None) -> None:
        """The report; its first line gives the copy's time (`seconds`, in copy_account) and apart
        from it the start-up (`startup`: process start to the copy's start, when known)."""
        out = self.stdout
        rate = result.copied / seconds if seconds > 0 else 0.0
        out.write(
            f"{result.outcome}: {result.copied} copied, {result.skipped} already there, "
            f"{result.errors} errors, {result.bytes / 1e6:.1f} MB in {seconds:.2f} s "
            f"({rate:.0f} messages/s)" + (f"; start-up {startup:.2f} s" if startup is not None else "")
        )
        if result.reason:
            out.write(f"reason: {result.reason}")
        out.write(_accounting(result))
        for folder in result.folders:
            target = folder.destination if folder.destination is not None else "(skipped)"
            line = (
                f"  {folder.source} → {target}: {folder.copied} copied, {folder.skipped} already there, "
                f"{folder.errors} errors"
            )
            if folder.not_copied:
                line += ", not copied: " + ", ".join(f"{n} {why}" for why, n in sorted(folder.not_copied.items()))
            out.write(line)
        for error in result.message_errors:
            out.write(
                f"  error: {error.folder} UID {error.uid} ({error.size} bytes, {error.subject!r}): {error.reason}"
            )
        for warning in result.warnings:
            out.write(f"  warning: {warning}")
        out.write(f"state: {state_path}")


def _accounting(result: AccountResult) -> str:
    """Where every source message ended up, in one line (issue 11 case 10)."""
    if result.source_messages is None:
        return "source: mailbox not read to the end; the messages it holds are not known"
    arrived = result.copied + result.skipped
    text = f"source: {result.source_messages} messages, {arrived} at the destination"
    if result.deleted_at_destination:
        text += (
            f", {result.deleted_at_destination} deleted at the destination after they were copied (not copied again)"
        )
    if result.not_copied:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(result.not_copied.items()))
        text += f", {result.not_copied_total} not copied ({reasons})"
    return text


def _default_state_path(mailboxes: dict[str, Mailbox]) -> str:
    def name(m: Mailbox) -> str:
        return f"{m.username}@{m.host}:{m.port}"

    key = f"{name(mailboxes['source'])}--{name(mailboxes['destination'])}"
    safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in key)[:150]
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return os.path.join("copymailbox-state", f"{safe}-{digest}.json")
