"""A private Courier-IMAP 5.0 (Debian 12's package) on loopback, for tests.

`Courier()` runs, in a private mount namespace (see tests/support/testbed.py), Courier's authdaemond (with
only the userdb module) and couriertcpd handing connections to imaplogin and imapd, configured as Debian ships
it (`/etc/courier/imapd`: IMAP_CAPABILITY without LITERAL+ or UNSELECT) except for the port. The instance's
/etc/courier and /run are its own directories, bind-mounted. Users are lines of /etc/courier/userdb compiled by
`makeuserdb`, mail in a Maildir owned by the dedicated mail user; a user added at any time can log in at once.

What the engine meets (see shared/PITFALLS.md section 7): personal namespace "INBOX." with "." (and
"#shared."), no LITERAL+, no UNSELECT, no CONDSTORE, no SPECIAL-USE, no MULTIAPPEND, no APPENDLIMIT; APPEND into
a folder this session has open with EXAMINE is refused ("Current box is selected READ-ONLY"); CREATE of an
existing folder answers a bare NO; '/' is refused in names; 20 connections per address unless told otherwise.

Pitfall met: without gamin (unpacked with it by bin/install-imap-servers) every login shows an [ALERT] and each
APPEND takes 1.2 s. Nothing is logged without a syslog daemon: failures are read from its output and answers.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import pwd
import secrets
import shutil
import threading
from pathlib import Path

from tests.support.dovecot import ImapUser, ensure_mail_system_user, make_self_signed_certificate
from tests.support.testbed import ServerProcess, TestbedError, namespace_command, run_inside, tree

# Started by sh inside the namespace: authdaemond and couriertcpd side by side, both ended with the shell.
_RUN_SCRIPT = """\
set -a
. /etc/courier/imapd-ssl
. /etc/courier/imapd
. /etc/courier/imapd.local
IMAP_STARTTLS=$IMAPDSTARTTLS
/usr/lib/courier/courier-authlib/authdaemond & AUTH=$!
/usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=$MAXDAEMONS -maxperip=$MAXPERIP -nodnslookup -noidentlookup \\
  "$IMAPCOPIER_PORT" /usr/lib/courier/courier/imaplogin /usr/bin/imapd Maildir & TCPD=$!
trap 'kill $AUTH $TCPD 2>/dev/null; wait; exit 0' TERM INT HUP
wait $TCPD
kill $AUTH 2>/dev/null
"""


class Courier(ServerProcess):
    """A private Courier-IMAP instance on 127.0.0.1 (plain IMAP). Use as a context manager or call stop().

    STARTTLS is offered with a self-signed certificate for localhost/127.0.0.1 (`ca_certificate`, PEM);
    tls_required makes Courier announce LOGINDISABLED until STARTTLS (IMAP_TLS_REQUIRED=1).
    max_per_ip: connections allowed from one address (Courier's default is 20); extra_env: more lines for
    the imapd environment, e.g. {"IMAP_CAPABILITY": "IMAP4rev1"} to take capabilities away.
    """

    name = "courier"
    delimiter = "."
    prefix = "INBOX."

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        max_per_ip: int = 200,
        tls_required: bool = False,
        extra_env: dict[str, str] | None = None,
        start: bool = True,
    ) -> None:
        super().__init__(workdir)
        self.tree = tree("courier")
        self.max_per_ip = max_per_ip
        self.tls_required = tls_required
        self.extra_env = dict(extra_env or {})
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._users: dict[str, str] = {}  # username -> userdb line
        if start:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise

    @property
    def etc(self) -> Path:
        return self.workdir / "etc"

    @property
    def _courier_etc(self) -> Path:
        return self.etc / "courier"

    def _binds(self) -> list[tuple[Path, str]]:
        return [(self._courier_etc, "/etc/courier"), (self.workdir / "run", "/run")]

    def _prepare(self) -> None:
        try:
            # imaplogin switches to this user before it starts couriertls (STARTTLS).
            pwd.getpwnam("courier")
        except KeyError:
            raise TestbedError(
                "the system user 'courier' is missing (Courier's STARTTLS needs it): run bin/install-imap-servers"
            ) from None
        self.uid, self.gid = ensure_mail_system_user()
        w = self.workdir
        if not self._courier_etc.exists():
            shutil.copytree(self.tree / "etc" / "courier", self._courier_etc)
        (w / "run" / "courier" / "authdaemon").mkdir(parents=True, exist_ok=True)
        (w / "home").mkdir(exist_ok=True)
        os.chmod(w / "home", 0o755)
        rc = self._courier_etc / "authdaemonrc"
        rc.write_text(
            "".join(
                'authmodulelist="authuserdb"\n' if line.startswith("authmodulelist=") else line + "\n"
                for line in rc.read_text().splitlines()
            )
        )
        cert_pem, key_pem = make_self_signed_certificate()
        self.ca_certificate = cert_pem
        # couriertls does not run as root: it must read the (throwaway) key and write its session cache.
        (self._courier_etc / "imapd.pem").write_text(key_pem + cert_pem)
        os.chmod(self._courier_etc / "imapd.pem", 0o644)
        cache = w / "run" / "courier" / "tlscache"
        cache.touch()
        os.chmod(cache, 0o666)
        env = {
            "MAXDAEMONS": "200",
            "MAXPERIP": str(self.max_per_ip),
            "IMAPCOPIER_PORT": str(self.imap_port),
            "TLS_CERTFILE": "/etc/courier/imapd.pem",
            "TLS_DHPARAMS": "",
            "TLS_CACHEFILE": "/run/courier/tlscache",
            "IMAP_TLS_REQUIRED": "1" if self.tls_required else "0",
        }
        env.update(self.extra_env)
        (self._courier_etc / "imapd.local").write_text(
            "".join(f"{key}={_sh_quote(value)}\n" for key, value in env.items())
        )
        (w / "run.sh").write_text(_RUN_SCRIPT)
        userdb = self._courier_etc / "userdb"
        if not userdb.exists():
            userdb.touch(mode=0o600)
            self._make_userdb()

    def _command(self) -> list[str]:
        return namespace_command(self.tree, self.etc, ["sh", str(self.workdir / "run.sh")], self._binds())

    def _make_userdb(self) -> None:
        userdb = self._courier_etc / "userdb"
        userdb.write_text("".join(line + "\n" for line in self._users.values()))
        os.chmod(userdb, 0o600)  # makeuserdb refuses a userdb others can read
        run_inside(
            namespace_command(self.tree, self.etc, ["/usr/sbin/makeuserdb"], self._binds()),
            what="makeuserdb",
        )

    def add_user(self, username: str | None = None, password: str | None = None) -> ImapUser:
        """Create a user with an empty Maildir that can log in at once."""
        with self._lock:
            if username is None:
                username = f"user{next(self._counter)}-{secrets.token_hex(3)}"
            if password is None:
                password = secrets.token_urlsafe(12)
            if username in self._users:
                raise ValueError(f"user {username!r} exists already")
            if not username or any(c in username for c in "|=:/ \r\n\t") or any(c in password for c in "\r\n"):
                raise ValueError("user name must be non-empty and hold no '|', '=', ':', '/' or spaces")
            home = self.workdir / "home" / username
            for sub in ("cur", "new", "tmp"):
                (home / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
            for path in (home, *home.rglob("*")):
                os.chown(path, self.uid, self.gid)
            self._users[username] = self._line(username, password, home)
            self._make_userdb()
        return ImapUser(username, password)

    def set_password(self, user: ImapUser | str, password: str) -> ImapUser:
        """Change a user's password; the next login uses it."""
        username = user if isinstance(user, str) else user.username
        with self._lock:
            self._users[username] = self._line(username, password, self.workdir / "home" / username)
            self._make_userdb()
        return ImapUser(username, password)

    def _line(self, username: str, password: str, home: Path) -> str:
        digest = base64.b64encode(hashlib.sha256(password.encode()).digest()).decode()
        fields = f"uid={self.uid}|gid={self.gid}|home={home}|mail={home}/Maildir|systempw={{SHA256}}{digest}"
        return f"{username}\t{fields}"


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
