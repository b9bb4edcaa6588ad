"""What the Cyrus and Courier test servers share: their unpacked trees, the private mount namespace each one
runs in, and the life cycle of a server process (start, wait for the greeting, stop the whole session).

`bin/install-imap-servers` unpacks Debian 12's packages into `<TESTBED_ROOT>/<server>/root` (never onto the
system: cyrus-imapd, courier-imap and dovecot-imapd declare `Conflicts: imap-server`). A server then runs as

    unshare -m --propagation private sh -c '<mounts> && exec "$@"' sh <command...>

where the mounts lay the tree over /usr (read-only overlay: the tree wins, the host's /usr fills the rest) and the
instance's own etc/ directory over /etc, so compiled-in paths (/etc/imapd.conf, /etc/courier/authdaemonrc,
/usr/lib/cyrus/bin/imapd, /run/courier/authdaemon/socket...) resolve inside the namespace while the host's /etc
stays untouched. Extra bind mounts put writable instance directories where a server insists on writing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from imapclient import IMAPClient

from runs.engine.types import Mailbox, Security
from tests.support.dovecot import ImapUser, _die_with_parent, _free_port

TESTBED_ROOT = Path(os.environ.get("IMAPCOPIER_TESTBED", "/var/cache/imapcopier-testbed"))
INSTALLER = Path(__file__).resolve().parents[2] / "bin" / "install-imap-servers"
_START_TIMEOUT = 30.0


class TestbedError(RuntimeError):
    """A test server could not be installed, started or driven; the text says why (its own words)."""

    __test__ = False  # not a pytest test class


def tree(server: str) -> Path:
    """The unpacked package tree of `server` ("cyrus" or "courier"); TestbedError when it is missing."""
    root = TESTBED_ROOT / server / "root"
    if not (TESTBED_ROOT / server / ".stamp").exists():
        raise TestbedError(f"{server} is not unpacked under {TESTBED_ROOT}: run {INSTALLER} as root (bin/test does it)")
    return root


def namespace_command(
    server_tree: Path, etc_dir: Path, command: Sequence[str], binds: Sequence[tuple[Path, str]] = ()
) -> list[str]:
    """argv that runs `command` in a private mount namespace with `server_tree`/usr over /usr, `etc_dir` over
    /etc and each (host directory, path inside) of `binds` bind-mounted (writable)."""
    mounts = [
        f"mount -t overlay overlay -o lowerdir={server_tree}/usr:/usr /usr",
        f"mount -t overlay overlay -o lowerdir={etc_dir}:/etc /etc",
        *(f"mount --bind {shlex.quote(str(source))} {shlex.quote(inside)}" for source, inside in binds),
    ]
    script = " && ".join(mounts) + ' && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *command]


def run_inside(argv: list[str], *, input_text: str | None = None, what: str) -> str:
    """Run a namespace_command() to completion; TestbedError with its output when it fails."""
    result = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise TestbedError(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
    return result.stdout


def _session_members(session_id: int) -> list[int]:
    """Live process ids whose session is `session_id` (the servers' helpers leave their parent's process group;
    a zombie is left out: it is gone, only not yet reaped by whoever inherited it)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session_id and fields[0] != "Z":  # after ")": state ppid pgrp session
                members.append(int(entry.name))
    return members


class ServerProcess:
    """One server started in its own session by start(); stop() ends every process of that session.

    Subclasses write their configuration into `self.workdir` and give the command in `_command()`.
    """

    name = "server"
    host = "127.0.0.1"
    delimiter = "."
    prefix = "INBOX."

    def __init__(self, workdir: str | os.PathLike[str] | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.imap_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write the configuration for self.imap_port (called again when a port was taken meanwhile)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the server and wait for its greeting; TestbedError with its output when it cannot."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        last = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.imap_port = _free_port()
            self._prepare()
            try:
                self._spawn()
                return
            except TestbedError as exc:
                last = str(exc)
                if "in use" not in last:
                    break
        raise TestbedError(last)

    def _spawn(self) -> None:
        output = self.workdir / "output.log"
        with output.open("wb") as out:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise TestbedError(self._failure_text(f"{self.name} exited during start-up with status {code}"))
            if self.greeting():
                return
            time.sleep(0.05)
        self.stop(remove=False)
        raise TestbedError(self._failure_text(f"{self.name} did not greet within {_START_TIMEOUT:.0f} s"))

    def greeting(self) -> bytes:
        """The server's greeting line on the plain port, b"" when it does not answer."""
        try:
            with socket.create_connection((self.host, self.imap_port), timeout=2) as sock:
                line = sock.recv(1000)
                return line if line.startswith(b"* OK") else b""
        except OSError:
            return b""

    def _failure_text(self, headline: str) -> str:
        # Neither server logs without a syslog daemon: what it printed is all there is.
        text = ""
        with contextlib.suppress(OSError):
            text = (self.workdir / "output.log").read_text(errors="replace")[-3000:]
        return f"{headline} (work directory {self.workdir})\n{text}".rstrip()

    def stop(self, remove: bool = True) -> None:
        """End every process of the server's session (by process id), then remove the work directory."""
        process, self._process = self._process, None
        if process is not None:
            session = process.pid
            for sig in (signal.SIGTERM, signal.SIGKILL):
                members = _session_members(session)
                if not members:
                    break
                for pid in members:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _session_members(session):
                    with contextlib.suppress(ChildProcessError):
                        process.poll()
                    time.sleep(0.05)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        atexit.unregister(self.stop)
        if remove and self._own_workdir:
            subprocess.run(["rm", "-rf", str(self.workdir)], check=False)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ---------------------------------------------------------------- connecting

    ca_certificate = ""  # PEM of the certificate offered with STARTTLS, where the server offers it

    def mailbox(self, user: ImapUser, security: str = "plain", timeout: float = 30.0) -> Mailbox:
        """An engine Mailbox for this user; with security "starttls" the server's certificate is verified."""
        security = Security(security)
        return Mailbox(
            host=self.host,
            port=self.imap_port,
            security=security,
            username=user.username,
            password=user.password,
            verify_tls=security != Security.PLAIN,
            ca_certificate=self.ca_certificate if security != Security.PLAIN else "",
            timeout=timeout,
        )

    def connect(self, user: ImapUser, timeout: float = 30.0) -> IMAPClient:
        """A logged-in IMAPClient."""
        client = IMAPClient(self.host, port=self.imap_port, ssl=False, timeout=timeout)
        try:
            client.login(user.username, user.password)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def folder(self, path: str) -> str:
        """The server's name for a folder given with '/' between levels ("" or "INBOX" is INBOX)."""
        if path in ("", "INBOX"):
            return "INBOX"
        return self.prefix + path.replace("/", self.delimiter)
