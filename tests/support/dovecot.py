"""A private Dovecot 2.3 on loopback for tests and benchmarks, plus helpers to fill and read mailboxes.

`Dovecot()` starts `/usr/sbin/dovecot -F` (as root, as Debian installs it) with its whole configuration
under a temporary directory: base_dir, state_dir, log, instance_name, a self-signed certificate for
localhost/127.0.0.1, a passwd-file per user (added at any time), and mail stored as a dedicated system user.

Two layouts:
  - `Dovecot()` (default): hierarchy delimiter '/', no personal prefix, sdbox storage.
  - `Dovecot(layout="dotted")`: delimiter '.', personal prefix "INBOX.", Maildir++ storage (Courier style).

Both advertise IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS CONDSTORE QRESYNC SPECIAL-USE QUOTA and
APPENDLIMIT (per user, via `max_message_bytes`). Per-user quota and maximum message size are userdb extra
fields written into the user's passwd-file (`userdb_quota_rule`, `userdb_quota_max_mail_size`), so a destination
can be made to refuse messages with Dovecot's own words.

Message helpers: `make_message()` builds realistic RFC 5322 bytes; `fill()` APPENDs them byte-exact
(MULTIAPPEND, whose raw literals are not rewritten; IMAPClient.append() goes through imaplib, which turns
bare LF into CRLF; Dovecot itself serves every stored line with CRLF, see `as_served()`);
`read()` reads them back with BODY.PEEK[] and aware INTERNALDATEs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import grp
import hashlib
import ipaddress
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import _literal, seq_to_parenstr
from imapclient.util import to_bytes

from runs.engine.types import Mailbox, Security

DOVECOT_BINARY = "/usr/sbin/dovecot"
DOVEADM_BINARY = "/usr/bin/doveadm"
MAIL_SYSTEM_USER = "imapcopier-mail"
SPECIAL_USE_FOLDERS = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
}
_START_TIMEOUT = 20.0


# The checkpassword script runs as Dovecot's auth user, who cannot reach a Python under /root (pyenv).
_SYSTEM_PYTHON = "/usr/bin/python3"


class DovecotError(RuntimeError):
    """Dovecot could not be started (or stopped); the message carries the tail of its own log."""


class AppendRefused(IMAPClientError):
    """The server answered NO to an APPEND made by fill(); `words` is what it said."""

    def __init__(self, message: str, words: str) -> None:
        super().__init__(message)
        self.words = words


@dataclass(frozen=True)
class ImapUser:
    username: str
    password: str = ""

    def __repr__(self) -> str:  # the password stays out of test output
        return f"ImapUser(username={self.username!r})"


@dataclass(frozen=True)
class StoredMessage:
    """One message as the server holds it."""

    uid: int
    sha256: str  # of BODY[]
    size: int  # len(BODY[])
    flags: tuple[str, ...]  # sorted, without \Recent
    internaldate: dt.datetime  # aware, with the offset the server reports
    message_id: str | None  # the Message-ID header value, stripped; None when absent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process (thread) that started us dies, even by SIGKILL,
    so a killed test session leaves no Dovecot behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def ensure_mail_system_user(name: str = MAIL_SYSTEM_USER) -> tuple[int, int]:
    """Return (uid, gid) of the dedicated system user that owns test mail, creating it if missing."""
    for attempt in range(20):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode not in (
            0,
            9,
        ):  # 9 = already exists (a parallel session won the race)
            if attempt == 19:
                raise DovecotError(f"cannot create system user {name!r}: {result.stderr.strip()}")
            time.sleep(0.2)  # /etc/passwd locked by a concurrent useradd
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def make_self_signed_certificate(
    common_name: str = "localhost",
) -> tuple[str, str]:
    """Return (certificate PEM, private key PEM) for CN=localhost, SAN localhost + 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return cert_pem, key_pem


class Dovecot:
    """A private Dovecot instance on 127.0.0.1. Use as a context manager or call stop().

    layout: "slash" ('/' delimiter, no prefix, sdbox) or "dotted" ('.', "INBOX." prefix, Maildir++).
    special_use: {folder name: "\\Sent", ...} (names without the prefix); autocreate_special_use
    creates and subscribes them for every user. extra_config is appended to dovecot.conf, e.g.
    'protocol imap {\n imap_capability = IMAP4rev1 UIDPLUS\n}' for a server without LITERAL+ or
    MULTIAPPEND.
    oauth2_introspection_url: also accept OAuth 2.0 bearer tokens (SASL XOAUTH2 and OAUTHBEARER, RFC 7628)
    checked against that introspection endpoint, which answers {"active": true, "username": <login name>}
    (see _oauth2_passdb); passwords work too.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        layout: str = "slash",
        *,
        special_use: dict[str, str] | None = None,
        autocreate_special_use: bool = True,
        workdir: str | os.PathLike[str] | None = None,
        process_limit: int = 200,
        extra_config: str = "",
        oauth2_introspection_url: str = "",
        start: bool = True,
    ) -> None:
        if layout not in ("slash", "dotted"):
            raise ValueError(f"layout must be 'slash' or 'dotted', not {layout!r}")
        self.layout = layout
        self.delimiter = "/" if layout == "slash" else "."
        self.prefix = "" if layout == "slash" else "INBOX."
        self.special_use = dict(SPECIAL_USE_FOLDERS if special_use is None else special_use)
        self.autocreate_special_use = autocreate_special_use
        self.process_limit = process_limit
        self.extra_config = extra_config
        self.oauth2_introspection_url = oauth2_introspection_url
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"dovecot-{layout}-"))
        self.instance_name = f"imapcopier-test-{os.getpid()}-{secrets.token_hex(3)}"
        self.config_path = self.workdir / "dovecot.conf"
        self.passwd_dir = self.workdir / "passwd.d"
        self.log_path = self.workdir / "dovecot.log"
        self.imap_port = 0
        self.imaps_port = 0
        self.ca_certificate = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._users: dict[str, str] = {}  # username -> passwd-file line
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._passwd_stamp = 1_000_000_000
        if start:
            try:
                self.start()
            except BaseException:
                self.stop()  # no half-started Dovecot or temporary directory left behind
                raise

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configuration and start Dovecot; raise DovecotError with its log on failure."""
        if not Path(DOVECOT_BINARY).exists():
            raise DovecotError(f"{DOVECOT_BINARY} not found: install Debian's dovecot-imapd package")
        self.uid, self.gid = ensure_mail_system_user()
        # Mail processes run as the mail user and login processes as dovenull: both must traverse.
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        for parent in self.workdir.resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                raise DovecotError(
                    f"{parent} is not searchable by other users (mode {os.stat(parent).st_mode & 0o777:o}):"
                    " Dovecot's auth and mail processes could not reach the work directory"
                )
        for sub in ("run", "state", "home"):
            (self.workdir / sub).mkdir(exist_ok=True)
        os.chown(self.workdir / "home", self.uid, self.gid)
        cert_pem, key_pem = make_self_signed_certificate()
        self.ca_certificate = cert_pem
        (self.workdir / "cert.pem").write_text(cert_pem)
        key_file = self.workdir / "key.pem"
        key_file.touch(mode=0o600)
        key_file.write_text(key_pem)
        try:
            self._auth_gid = grp.getgrnam("dovecot").gr_gid
        except KeyError:
            self._auth_gid = 0
        self.passwd_dir.mkdir(exist_ok=True)
        os.chown(self.passwd_dir, 0, self._auth_gid)
        os.chmod(self.passwd_dir, 0o750 if self._auth_gid else 0o755)
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.imap_port, self.imaps_port = _free_port(), _free_port()
            while self.imaps_port == self.imap_port:
                self.imaps_port = _free_port()
            self.config_path.write_text(self._config())
            try:
                self._spawn()
                return
            except DovecotError as exc:
                last_error = str(exc)
                if "Address already in use" not in last_error:
                    break
        raise DovecotError(last_error)

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(b"--- starting\n")
        stderr_path = self.workdir / "stderr.log"
        with stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(
                [DOVECOT_BINARY, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in pytest does not kill it before stop()
                preexec_fn=_die_with_parent,
            )
        # Never leave an orphan Dovecot behind, even when the caller forgets stop().
        atexit.register(self.stop)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise DovecotError(self._failure_text("Dovecot exited during start-up"))
            if self._greets(self.imap_port) and self._greets(self.imaps_port, tls=True):
                return
            time.sleep(0.05)
        self._terminate()
        raise DovecotError(self._failure_text(f"Dovecot did not answer within {_START_TIMEOUT:.0f} s"))

    def _greets(self, port: int, tls: bool = False) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=2) as raw:
                if tls:
                    context = ssl.create_default_context(cadata=self.ca_certificate)
                    with context.wrap_socket(raw, server_hostname="localhost") as sock:
                        return sock.recv(100).startswith(b"* OK")
                return raw.recv(100).startswith(b"* OK")
        except OSError:
            return False

    def _failure_text(self, headline: str) -> str:
        parts = [headline, f"(config {self.config_path})"]
        for path in (self.workdir / "stderr.log", self.log_path):
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-25:]
                if tail:
                    parts.append(f"--- {path.name}:\n" + "\n".join(tail))
        return "\n".join(parts)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def stop(self) -> None:
        """Stop Dovecot (its master takes the children down) and remove the temporary directory."""
        self._terminate()
        atexit.unregister(self.stop)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def pid(self) -> int:
        """The Dovecot master's process id (0 when not running)."""
        return self._process.pid if self._process is not None else 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------- configuration

    def _config(self) -> str:
        w = self.workdir
        mail_location = "sdbox:~/mail" if self.layout == "slash" else "maildir:~/Maildir"
        mailboxes = []
        for name, use in self.special_use.items():
            auto = "subscribe" if self.autocreate_special_use else "no"
            # Names in a namespace's mailbox blocks are relative to its prefix.
            mailboxes.append(f'  mailbox "{name}" {{\n    special_use = {use}\n    auto = {auto}\n  }}')
        mailbox_block = "\n".join(mailboxes)
        return f"""\
# Generated by tests/support/dovecot.py for one test session. Nothing here is read from /etc/dovecot.
instance_name = {self.instance_name}
base_dir = {w}/run
state_dir = {w}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
ssl = yes
ssl_cert = <{w}/cert.pem
ssl_key = <{w}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
login_trusted_networks = 127.0.0.0/8
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection_url else ""}
auth_cache_size = 0
auth_verbose = yes
auth_failure_delay = 0
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
first_valid_gid = {self.gid}
last_valid_gid = {self.gid}
mail_location = {mail_location}
mail_fsync = never
mail_plugins = $mail_plugins quota
mailbox_list_index = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
{self._oauth2_passdb()}userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={w}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = {self.delimiter}
  prefix = {self.prefix}
{mailbox_block}
}}
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=0
}}
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
  mail_max_userip_connections = 1000
  imap_idle_notify_interval = 2 mins
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
  process_min_avail = 2
  service_count = 0
  vsz_limit = 256M
}}
service imap {{
  process_limit = {self.process_limit}
}}
service anvil {{
  # Tests try wrong passwords on purpose: no growing per-IP delay (documented way to disable it).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
default_process_limit = {self.process_limit}
default_client_limit = {self.process_limit * 10}
{self.extra_config}
"""

    def _oauth2_passdb(self) -> str:
        """Two passdbs after the passwd-file, for the SASL XOAUTH2/OAUTHBEARER token (Dovecot hands it
        on as the password):

        - Dovecot's own oauth2 passdb, asking the introspection endpoint about the token alone
          (GET, the token as a Bearer header); it accepts tokens issued to one user (a service account's token for
          its subject, a user's consent), answered {"active": true, "username": <user>}.
        - a checkpassword script asking the same endpoint with the login name too, for application
          tokens (Microsoft client credentials), which name no user: the provider answers for the
          mailboxes the application may open, as Exchange checks its mailbox permission at login.
          Dovecot 2.3.19 cannot do this itself: any %variable in tokeninfo_url or introspection_url, and
          introspection_mode = post, make its auth process panic (http-client-request.c, lines 546/597).
        """
        if not self.oauth2_introspection_url:
            return ""
        conf = self.workdir / "dovecot-oauth2.conf.ext"
        conf.write_text(
            f"""\
introspection_mode = auth
introspection_url = {self.oauth2_introspection_url}
force_introspection = yes
username_attribute = username
username_format = %u
active_attribute = active
active_value = true
"""
        )
        os.chmod(conf, 0o644)
        script = self.workdir / "checkpassword-oauth2"
        script.write_text(
            f"""#!{_SYSTEM_PYTHON}
import json, os, sys, urllib.parse, urllib.request
data = os.read(3, 4096).split(b"\\0")
user, token = data[0].decode(), data[1].decode()
url = {self.oauth2_introspection_url!r} + "/" + urllib.parse.quote(user, safe="") + "/" + urllib.parse.quote(token, safe="")
try:
    answer = json.load(urllib.request.urlopen(url, timeout=10))
except OSError:
    sys.exit(111)
if answer.get("active") is not True or answer.get("username") != user:
    sys.exit(1)
os.environ["USER"] = user
os.execv(sys.argv[1], sys.argv[1:])
"""
        )
        os.chmod(script, 0o755)
        return (
            f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {conf}\n}}\n"
            f"passdb {{\n  driver = checkpassword\n  mechanisms = xoauth2 oauthbearer\n  args = {script}\n}}\n"
        )

    # --------------------------------------------------------------------- users

    def add_user(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        quota_bytes: int | None = None,
        max_message_bytes: int | None = None,
        advertise_appendlimit: bool = True,
    ) -> ImapUser:
        """Create a user that can log in at once; quota and maximum message size are per user.

        max_message_bytes is enforced by the quota plugin (quota_max_mail_size: APPEND answers
        "NO [LIMIT] Mail size is too large"). Dovecot 2.3 has no APPENDLIMIT of its own, so with
        advertise_appendlimit the limit is also announced as APPENDLIMIT=<n> in this user's
        post-login CAPABILITY (a per-user imap_capability override).
        """
        with self._lock:
            if username is None:
                username = f"user{next(self._counter)}-{secrets.token_hex(3)}"
            if password is None:
                password = secrets.token_urlsafe(12)
            for value, what in ((username, "user name"), (password, "password")):
                if not value or any(c in value for c in ":/\\%\r\n\t ") or value[0] == ".":
                    raise ValueError(
                        f"{what} must be non-empty, not start with '.', and hold no ':', '/',"
                        " '\\', '%', spaces or line breaks"
                    )
            if username in self._users:
                raise ValueError(f"user {username!r} exists already")
            extra = []
            if quota_bytes is not None:
                extra.append(f"userdb_quota_rule=*:storage={int(quota_bytes)}B")
            if max_message_bytes is not None:
                extra.append(f"userdb_quota_max_mail_size={int(max_message_bytes)}B")
                if advertise_appendlimit:
                    extra.append(f"userdb_imap_capability=+APPENDLIMIT={int(max_message_bytes)}")
            # passwd-file: user:password:uid:gid:gecos:home:shell:extra fields
            self._users[username] = f"{username}:{{PLAIN}}{password}::::::{' '.join(extra)}"
            self._write_passwd(username)
        return ImapUser(username, password)

    def set_password(self, user: ImapUser | str, password: str) -> ImapUser:
        """Change a user's password (the auth cache is off, so it applies to the next login)."""
        username = user if isinstance(user, str) else user.username
        with self._lock:
            line = self._users[username]
            name, _old, rest = line.split(":", 2)
            self._users[username] = f"{name}:{{PLAIN}}{password}:{rest}"
            self._write_passwd(username)
        # The file may have been checked in this very second: wait for the next one (see above).
        time.sleep(1.05 - (time.time() % 1.0))
        return ImapUser(username, password)

    def set_quota(self, user: ImapUser | str, quota_bytes: int) -> None:
        """Change a user's storage quota (bytes), from their next login on (the auth cache is off).
        Raise it rather than drop it: a user without a rule of their own still had the old limit
        applied in a test (bench/reliability.py raises it to 100 MB)."""
        username = user if isinstance(user, str) else user.username
        with self._lock:
            head, extra = self._users[username].rsplit(":", 1)
            fields = [f for f in extra.split() if not f.startswith("userdb_quota_rule=")]
            fields.append(f"userdb_quota_rule=*:storage={int(quota_bytes)}B")
            self._users[username] = f"{head}:{' '.join(fields)}"
            self._write_passwd(username)
        # The file may have been checked in this very second: wait for the next one (see set_password).
        time.sleep(1.05 - (time.time() % 1.0))

    def _write_passwd(self, username: str) -> None:
        # One passwd-file per user (passdb args use %u): Dovecot re-reads a passwd-file at most once
        # a second, so a user appended to a shared file right after another login would be
        # "unknown" for up to a second. A new file is read at its first lookup.
        path = self.passwd_dir / username
        tmp = self.passwd_dir / f".{username}.tmp"
        tmp.write_text(self._users[username] + "\n")
        # The auth process reads it as Dovecot's internal user.
        os.chown(tmp, 0, self._auth_gid)
        os.chmod(tmp, 0o640 if self._auth_gid else 0o644)
        # Give every version its own mtime, so a same-size rewrite is noticed too.
        self._passwd_stamp += 1
        os.utime(tmp, (self._passwd_stamp, self._passwd_stamp))
        os.replace(tmp, path)

    # ---------------------------------------------------------------- connecting

    def port_for(self, security: str) -> int:
        return self.imaps_port if security == Security.SSL else self.imap_port

    def mailbox(
        self,
        user: ImapUser,
        security: str = "plain",
        verify_tls: bool = False,
        ca_certificate: str = "",
        timeout: float = 30.0,
    ) -> Mailbox:
        """An engine Mailbox for this user; the port follows the security mode."""
        security = Security(security)
        return Mailbox(
            host=self.host,
            port=self.port_for(security),
            security=security,
            username=user.username,
            password=user.password,
            verify_tls=verify_tls,
            ca_certificate=ca_certificate,
            timeout=timeout,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this server's certificate."""
        return ssl.create_default_context(cadata=self.ca_certificate)

    def connect(self, user: ImapUser, security: str = "plain", timeout: float = 30.0) -> IMAPClient:
        """A logged-in IMAPClient (TLS verified against this server's certificate)."""
        security = Security(security)
        client = IMAPClient(
            self.host,
            port=self.port_for(security),
            ssl=security == Security.SSL,
            ssl_context=self.ssl_context(),
            timeout=timeout,
        )
        try:
            if security == Security.STARTTLS:
                client.starttls(self.ssl_context())
            if (user.username + user.password).isascii():
                client.login(user.username, user.password)
            else:  # imaplib's LOGIN sends ASCII only; AUTHENTICATE PLAIN is UTF-8 (RFC 4616)
                client.plain_login(user.username, user.password)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def doveadm(self, *args: str) -> str:
        result = subprocess.run(
            [DOVEADM_BINARY, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def connection_count(self, username: str | None = None) -> int:
        """Logged-in IMAP connections the server counts now (anvil via `doveadm who -1`)."""
        args = ["who", "-1"]
        if username is not None:
            args.append(username)
        count = 0
        for line in self.doveadm(*args).splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1] == "imap" and fields[0] != "username":
                count += 1
        return count

    def set_uidvalidity(self, user: ImapUser | str, folder: str, uidvalidity: int) -> None:
        """Give `folder` a new UIDVALIDITY (UIDs stay as they are), as a server restore would."""
        username = user if isinstance(user, str) else user.username
        self.doveadm("mailbox", "update", "-u", username, "--uid-validity", str(uidvalidity), folder)

    def recreate_mailbox(self, user: ImapUser, folders: Iterable[str]) -> None:
        """Delete the user's whole mailbox and create it again with `folders`, each with a UIDVALIDITY other
        than before (Dovecot takes the time as UIDVALIDITY: a folder re-created within the same second as
        the one it replaces would otherwise keep the old value, which no real deletion would show)."""
        with self.connect(user) as client:
            old = {name: int(client.folder_status(name, ["UIDVALIDITY"])[b"UIDVALIDITY"]) for name in folders}
        shutil.rmtree(self.workdir / "home" / user.username)
        with self.connect(user) as client:
            for name in old:
                if not client.folder_exists(name):
                    client.create_folder(name)
        for name, uidvalidity in old.items():
            self.set_uidvalidity(user, name, uidvalidity + 1000)

    def quota(self, user: ImapUser | str) -> str:
        username = user if isinstance(user, str) else user.username
        return self.doveadm("quota", "get", "-u", username)


# -------------------------------------------------------------------- messages

_DEFAULT_DATE = dt.datetime(2021, 3, 14, 15, 9, 26, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def make_message(
    *,
    subject: str = "Quarterly figures",
    from_: str = "Alice Example <alice@example.org>",
    to: str = "Bob Example <bob@example.net>",
    date: dt.datetime | None = None,
    message_id: str | None = "",
    body: str | bytes | None = None,
    attachment_size: int = 0,
    attachment_name: str = "report.bin",
    charset: str = "utf-8",
    eight_bit: bool = False,
    bare_lf: bool = False,
    long_line: int = 0,
    extra_headers: Sequence[tuple[str, str]] = (),
    seed: int | str = 0,
) -> bytes:
    """Build a realistic RFC 5322 message as bytes.

    message_id: "" = a generated unique one, None = no Message-ID header, else used as given
    (with or without angle brackets). eight_bit: raw UTF-8 (or `charset`) in headers and body with
    Content-Transfer-Encoding: 8bit. bare_lf: LF line endings instead of CRLF. long_line: add one
    body line of that many characters. attachment_size: a base64 attachment of that many raw bytes
    (deterministic for the same seed).
    """
    date = date or _DEFAULT_DATE
    if message_id == "":
        message_id = (
            f"<{hashlib.sha1(f'{seed}|{subject}|{date}'.encode()).hexdigest()[:20]}.{secrets.token_hex(6)}@example.org>"
        )
    elif message_id is not None and not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    boundary = f"=_{hashlib.sha1(str(seed).encode()).hexdigest()[:16]}"
    if body is None:
        body = (
            "Hello Bob,\n\nplease find the figures below. Nothing urgent, but I would like to "
            "hear back before Friday.\n\nRegards,\nAlice\n"
        )
        if eight_bit:
            body += "Grüße aus Köln, Ünïcödé — привет, 日本語.\n"
    body_bytes = body if isinstance(body, bytes) else body.encode(charset)
    if long_line:
        body_bytes += (b"x" * long_line) + b"\n"
    headers: list[tuple[str, str]] = [
        ("Return-Path", "<alice@example.org>"),
        (
            "Received",
            "from mail.example.org (mail.example.org [192.0.2.10]) by mx.example.net "
            f"with ESMTPS id {hashlib.sha1(str(seed).encode()).hexdigest()[:12]}; "
            f"{date.strftime('%a, %d %b %Y %H:%M:%S %z')}",
        ),
        ("Date", date.strftime("%a, %d %b %Y %H:%M:%S %z")),
        ("From", from_),
        ("To", to),
        ("Subject", subject),
    ]
    if message_id is not None:
        headers.append(("Message-ID", message_id))
    headers.append(("MIME-Version", "1.0"))
    headers.extend(extra_headers)
    cte = "8bit" if eight_bit or long_line else "7bit"
    text_part_headers = [
        ("Content-Type", f"text/plain; charset={charset}; format=flowed"),
        ("Content-Transfer-Encoding", cte),
    ]

    def encode_headers(items: Iterable[tuple[str, str]]) -> bytes:
        return b"".join(
            name.encode("ascii") + b": " + value.encode(charset if eight_bit else "utf-8") + b"\n"
            for name, value in items
        )

    if attachment_size:
        import base64
        import random

        rng = random.Random(f"attachment|{seed}|{attachment_size}")
        raw = rng.randbytes(attachment_size)
        encoded = base64.b64encode(raw)
        lines = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        message = (
            encode_headers(headers)
            + f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'.encode()
            + b"This is a multi-part message in MIME format.\n\n"
            + f"--{boundary}\n".encode()
            + encode_headers(text_part_headers)
            + b"\n"
            + body_bytes
            + f"\n--{boundary}\n".encode()
            + f'Content-Type: application/octet-stream; name="{attachment_name}"\n'.encode()
            + b"Content-Transfer-Encoding: base64\n"
            + f'Content-Disposition: attachment; filename="{attachment_name}"\n\n'.encode()
            + lines
            + f"\n--{boundary}--\n".encode()
        )
    else:
        message = encode_headers(headers + text_part_headers) + b"\n" + body_bytes
    if not bare_lf:
        message = message.replace(b"\n", b"\r\n")
    return message


FillItem = tuple[bytes, Sequence[bytes | str], dt.datetime | None]


def _flag_text(flag: bytes | str) -> str:
    return flag.decode("ascii") if isinstance(flag, bytes) else flag


def ensure_folder(client: IMAPClient, folder: str) -> None:
    """CREATE (and subscribe) `folder` unless it exists as a real folder. A parent that exists only
    as hierarchy (\\Noselect / \\NonExistent) is made a real folder too. Existence is asked with LIST first:
    Cyrus and Courier refuse a CREATE of an existing folder without the ALREADYEXISTS code."""
    for flags, _delimiter, name in client.list_folders("", folder):
        lowered = {_flag_text(f).lower() for f in flags}
        if name == folder and not lowered & {"\\noselect", "\\nonexistent"}:
            return
    try:
        client.create_folder(folder)
    except IMAPClientError as exc:
        if "ALREADYEXISTS" not in str(exc):
            raise
        return
    with contextlib.suppress(IMAPClientError):
        client.subscribe_folder(folder)


def fill(
    client: IMAPClient,
    folder: str,
    messages: Iterable[FillItem],
    *,
    batch_bytes: int = 8 * 1024 * 1024,
) -> list[int]:
    """Create `folder` if missing and APPEND the messages byte-exact with flags and INTERNALDATE.

    Each item is (bytes, flags, internaldate). Uses MULTIAPPEND (RFC 3502) in batches of about
    `batch_bytes` (one message per APPEND when the server lacks MULTIAPPEND), through IMAPClient's raw
    literals, which are sent as they are, whereas IMAPClient.append() passes through imaplib, which
    rewrites bare CR/LF to CRLF. Returns the new UIDs (from APPENDUID) in order.
    """
    ensure_folder(client, folder)
    if not client.has_capability("MULTIAPPEND"):
        batch_bytes = 0
    uids: list[int] = []
    batch: list[dict[str, object]] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if not batch:
            return
        # What IMAPClient.multiappend() does, without its MULTIAPPEND requirement. It returns
        # ("NO", [text]) instead of raising: checked here.
        args: list[bytes] = [client._normalise_folder(folder)]
        for item in batch:
            args.append(to_bytes(seq_to_parenstr(item["flags"])))
            if "date" in item:
                args.append(f'"{datetime_to_INTERNALDATE(item["date"])}"'.encode())
            args.append(_literal(item["msg"]))
        response = client._raw_command(b"APPEND", args, uid=False)
        if isinstance(response, tuple):
            typ, data = response
            if typ != "OK":
                words = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
                raise AppendRefused(f"APPEND to {folder!r} refused: {typ} {words}", words)
            response = data[0] if data else b""
        uids.extend(_appenduids(response, len(batch)))
        batch, size = [], 0

    for raw, flags, when in messages:
        item: dict[str, object] = {"msg": raw, "flags": [_flag_text(f) for f in flags]}
        if when is not None:
            if when.tzinfo is None:
                raise ValueError("INTERNALDATE must be an aware datetime")
            item["date"] = when
        if batch and size + len(raw) > batch_bytes:
            flush()
        batch.append(item)
        size += len(raw)
    flush()
    return uids


def _appenduids(response: bytes | str, expected: int) -> list[int]:
    text = response.decode() if isinstance(response, bytes) else str(response)
    match = re.search(r"APPENDUID \d+ ([\d:,]+)", text)
    if not match:
        return []
    uids: list[int] = []
    for part in match.group(1).split(","):
        if ":" in part:
            low, high = (int(x) for x in part.split(":"))
            uids.extend(range(min(low, high), max(low, high) + 1))
        else:
            uids.append(int(part))
    return uids[:expected] if len(uids) >= expected else uids


_MESSAGE_ID_RE = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def as_served(raw: bytes) -> bytes:
    """The bytes Dovecot returns for `raw` in BODY[]: it stores lines with LF and serves them with
    CRLF, so a bare LF comes back as CRLF (CRLF and everything else come back unchanged)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID header's value (unfolded, stripped) from the header block, or None."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    match = _MESSAGE_ID_RE.search(head)
    if not match:
        return None
    return re.sub(rb"\r?\n[ \t]+", b" ", match.group(1)).strip().decode("utf-8", "replace")


def read(client: IMAPClient, folder: str, *, batch: int = 500) -> list[StoredMessage]:
    """Read every message of `folder` (EXAMINE, BODY.PEEK[], aware INTERNALDATE), ordered by UID."""
    previous = client.normalise_times
    client.normalise_times = False
    try:
        client.select_folder(folder, readonly=True)
        uids = sorted(client.search("ALL"))
        stored: list[StoredMessage] = []
        for start in range(0, len(uids), batch):
            chunk = uids[start : start + batch]
            data = client.fetch(chunk, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
            for uid in chunk:
                item = data[uid]
                raw = item[b"BODY[]"]
                flags = tuple(sorted(_flag_text(f) for f in item[b"FLAGS"] if _flag_text(f) != "\\Recent"))
                stored.append(
                    StoredMessage(
                        uid=uid,
                        sha256=hashlib.sha256(raw).hexdigest(),
                        size=len(raw),
                        flags=flags,
                        internaldate=item[b"INTERNALDATE"],
                        message_id=message_id_of(raw),
                    )
                )
        client.unselect_folder() if client.has_capability("UNSELECT") else client.close_folder()
        return stored
    finally:
        client.normalise_times = previous


def folder_names(client: IMAPClient) -> list[str]:
    """Every folder name LIST returns (decoded from modified UTF-7), sorted."""
    return sorted(name for _flags, _delim, name in client.list_folders())
