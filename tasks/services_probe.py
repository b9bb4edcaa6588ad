"""Probe an IMAP server for the endpoint page: connect, secure the connection, ask CAPABILITY.

probe_server() needs no account (the engine's test_connection(mailbox) logs in; this is the
login-free half of it). probe_endpoint() adds a login with an account the operator picks, because
many servers announce their full capabilities only after login.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass, field

import imapclient
from django.db.models import Q
from django.views.decorators.debug import sensitive_variables
from imapclient.exceptions import IMAPClientError

from runs.engine import Mailbox, tls_context
from tasks.models import Account, Endpoint
from tasks.services import account_mailbox, check_login

# The capabilities the operator cares about, in the order the page shows them.
KNOWN_CAPABILITIES = [
    ("IMAP4rev1", "IMAP4rev1"),
    ("IMAP4rev2", "IMAP4rev2"),
    ("UIDPLUS", "UIDPLUS"),
    ("CONDSTORE", "CONDSTORE"),
    ("SPECIAL-USE", "SPECIAL-USE"),
    ("NAMESPACE", "NAMESPACE"),
    ("APPENDLIMIT", "APPENDLIMIT"),
    ("LITERAL+", "LITERAL+"),
    ("MOVE", "MOVE"),
]


@dataclass
class ProbeResult:
    ok: bool
    message: str = ""  # plain words: what went wrong, or a one-line summary
    capabilities: list[str] = field(default_factory=list)
    tls: str = ""  # e.g. "TLSv1.3", empty for plain connections
    greeting: str = ""
    login_user: str = ""  # set when `capabilities` is the list announced after logging in as this user
    login_error: str = ""  # the login with an account failed: why

    @property
    def capability_table(self) -> list[tuple[str, bool]]:
        """(name, present) for each capability the page lists; APPENDLIMIT may carry a value."""
        present = {c.upper().split("=", 1)[0] for c in self.capabilities}
        return [(label, name.upper() in present) for label, name in KNOWN_CAPABILITIES]

    @property
    def appendlimit(self) -> int | None:
        for capability in self.capabilities:
            name, _, value = capability.partition("=")
            if name.upper() == "APPENDLIMIT" and value.isdigit():
                return int(value)
        return None


def describe_certificate_error(error: ssl.SSLCertVerificationError, host: str) -> str:
    """The certificate problem in words an operator can act on."""
    text = (error.verify_message or str(error)).lower()
    if "hostname mismatch" in text or "doesn't match" in text:
        return f"The server's certificate is not valid for the name {host!r}. Use the name the certificate was issued to, or turn off certificate verification."
    if "expired" in text:
        return "The server's certificate has expired. Ask the server's administrator to renew it, or turn off certificate verification."
    if "not yet valid" in text:
        return "The server's certificate is not valid yet (check the clocks of both machines)."
    if "self-signed" in text or "self signed" in text:
        return "The server uses a self-signed certificate that this machine does not trust. Paste the certificate (or its CA) as custom CA certificate, or turn off certificate verification."
    if "unable to get local issuer" in text or "unable to get issuer" in text:
        return "The server's certificate was issued by a CA this machine does not trust. Paste that CA's certificate as custom CA certificate, or turn off certificate verification."
    return f"The server's certificate could not be verified: {error.verify_message or error}."


def probe_server(
    host: str,
    port: int,
    security: str,
    verify_tls: bool = True,
    ca_certificate: str = "",
    timeout: float = 15.0,
) -> ProbeResult:
    """Connect to an IMAP server the way an endpoint says and list its capabilities, without logging in."""
    try:
        context = tls_context(verify_tls, ca_certificate) if security != "plain" else None
    except ssl.SSLError as exc:
        return ProbeResult(ok=False, message=f"The custom CA certificate could not be read: {exc}.")
    client = None
    try:
        client = imapclient.IMAPClient(
            host,
            port=port,
            ssl=security == "ssl",
            ssl_context=context,
            timeout=timeout,
        )
        if security == "starttls":
            client.starttls(context)
        capabilities = [c.decode("ascii", "replace") if isinstance(c, bytes) else str(c) for c in client.capabilities()]
        tls = ""
        sock = client._imap.sock
        if isinstance(sock, ssl.SSLSocket):
            tls = sock.version() or ""
        greeting = client.welcome.decode("utf-8", "replace") if client.welcome else ""
        return ProbeResult(
            ok=True,
            message="Connected" + (f" over {tls}" if tls else " without encryption"),
            capabilities=capabilities,
            tls=tls,
            greeting=greeting,
        )
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(ok=False, message=describe_certificate_error(exc, host))
    except ssl.SSLError as exc:
        return ProbeResult(
            ok=False,
            message=f"The TLS handshake failed ({exc.reason or exc}). Check the port and the security setting: port 993 usually means SSL/TLS, 143 STARTTLS.",
        )
    except ConnectionRefusedError:
        return ProbeResult(
            ok=False,
            message=f"Nothing accepts connections on {host} port {port} (connection refused).",
        )
    except socket.gaierror:
        return ProbeResult(ok=False, message=f"The host name {host!r} does not resolve.")
    except TimeoutError:
        return ProbeResult(
            ok=False,
            message=f"No answer from {host} port {port} within {timeout:g} seconds.",
        )
    except IMAPClientError as exc:
        return ProbeResult(ok=False, message=f"The server said: {exc}")
    except (ValueError, UnicodeError) as exc:  # an answer imaplib could not parse
        return ProbeResult(ok=False, message=f"The server's answer could not be understood: {exc}")
    except OSError as exc:
        return ProbeResult(
            ok=False,
            message=f"Could not connect to {host} port {port}: {exc.strerror or exc}.",
        )
    finally:
        if client is not None:
            try:
                client.logout()
            except Exception:  # best effort on a probe connection
                with contextlib.suppress(Exception):
                    client.shutdown()


# At most this many accounts are offered to log in with (the page shows them in one list).
PROBE_ACCOUNT_CHOICES = 200


def probe_accounts(endpoint: Endpoint) -> list[tuple[int, str]]:
    """(account id, label) of the accounts the operator may pick to log in with on this endpoint."""
    accounts = (
        Account.objects.filter(Q(task__source=endpoint) | Q(task__destination=endpoint))
        .select_related("task")
        .order_by("task__name", "source_user")[:PROBE_ACCOUNT_CHOICES]
    )
    choices = []
    for account in accounts:
        source_side = account.task.source_id == endpoint.pk
        user = account.source_user if source_side else account.destination_user
        choices.append((account.pk, f"{user} ({account.task.name}, {'source' if source_side else 'destination'})"))
    return choices


@sensitive_variables("login", "password")  # kept off Django's error pages
def probe_endpoint(endpoint: Endpoint, account_id: int | None = None) -> ProbeResult:
    """Probe the endpoint: greeting and pre-login capabilities; with `account_id`, log in too.

    Logs in only with the account the operator picked (one of probe_accounts()), never with one
    chosen for them: a wrong password there would make a healthy server look broken (issue 10
    item 5). After a login the capability list is the full one many servers announce only then.
    Never raises for anything the server does.
    """
    result = probe_server(
        endpoint.host,
        endpoint.port,
        endpoint.security,
        verify_tls=endpoint.verify_tls,
        ca_certificate=endpoint.ca_certificate,
    )
    if not result.ok or account_id is None:
        return result
    login = _login_for(endpoint, account_id)
    if login is None:
        result.login_error = "that account does not use this endpoint"
        return result
    username, mailbox = login
    tested = check_login(endpoint, username, "", slot_wait_seconds=10, mailbox=mailbox)
    if tested.ok:
        result.capabilities = list(tested.capabilities)
        result.login_user = username
    else:
        result.login_error = f"{username}: {tested.message}"
    return result


def _login_for(endpoint: Endpoint, account_id: int) -> tuple[str, Mailbox] | None:
    """User and engine mailbox (password or OAuth 2.0 sign-in) of this account on this endpoint's
    side, or None if it does not use it."""
    account = Account.objects.filter(pk=account_id).select_related("task__source", "task__destination").first()
    if account is None:
        return None
    if account.task.source_id == endpoint.pk:
        return account.source_user, account_mailbox(account, "source")
    if account.task.destination_id == endpoint.pk:
        return account.destination_user, account_mailbox(account, "destination")
    return None
