"""Probe an IMAP server for the endpoint page: connect, secure the connection, ask CAPABILITY.

probe_server() needs no account (the engine's test_connection(mailbox) logs in; this is the
login-free half of it). probe_endpoint() adds a login with an account of a task using the
endpoint, when there is one, because servers announce their full capabilities only after login.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass, field

import imapclient
from django.views.decorators.debug import sensitive_variables
from imapclient.exceptions import IMAPClientError

from tasks.models import Account, Endpoint
from tasks.services import check_login

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


def tls_context(verify_tls: bool, ca_certificate: str = "") -> ssl.SSLContext:
    """The TLS settings an endpoint asks for: system store, a private CA, or no verification."""
    if not verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_certificate.strip():
        return ssl.create_default_context(cadata=ca_certificate)
    return ssl.create_default_context()


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
        context = tls_context(verify_tls, ca_certificate)
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


@sensitive_variables("login", "password")  # kept off Django's error pages
def probe_endpoint(endpoint: Endpoint) -> ProbeResult:
    """Probe the endpoint without logging in; then, when a task has an account on it, log in too.

    Many servers (Dovecot among them) announce only part of their capabilities before login, so
    the full list comes from a login with the first account of a task that uses the endpoint.
    """
    result = probe_server(
        endpoint.host,
        endpoint.port,
        endpoint.security,
        verify_tls=endpoint.verify_tls,
        ca_certificate=endpoint.ca_certificate,
    )
    if not result.ok:
        return result
    login = _first_login(endpoint)
    if login is None:
        return result
    username, password = login
    tested = check_login(endpoint, username, password, slot_wait_seconds=10)
    if tested.ok:
        result.capabilities = list(tested.capabilities)
        result.login_user = username
    else:
        result.login_error = f"{username}: {tested.message}"
    return result


def _first_login(endpoint: Endpoint) -> tuple[str, str] | None:
    """User and password of the first account that logs in to this endpoint, or None."""
    account = Account.objects.filter(task__source=endpoint).order_by("task_id", "source_user").first()
    if account:
        return account.source_user, account.source_password
    account = Account.objects.filter(task__destination=endpoint).order_by("task_id", "source_user").first()
    if account:
        return account.destination_user, account.destination_password
    return None
