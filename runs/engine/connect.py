"""Opening a connection: TLS, the read-only guard of the source, login; every failure classified.

connect() returns an imap.Connection or raises ConnectError (kind + password-free reason).
"""

from __future__ import annotations

import contextlib
import functools
import imaplib
import re
import socket
import ssl
import types
from collections.abc import Sequence

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError, ProtocolError
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.tls import IMAP4_TLS
from imapclient.util import to_unicode

from .imap import ConnectError, Connection, WriteRefused, describe
from .types import ErrorKind, Mailbox, Security, TokenUnavailable

_TEMPORARY_LOGIN_FAILURE = re.compile(
    r"\[(UNAVAILABLE|INUSE|SERVERBUG|LIMIT)\]|too many|throttl|try again", re.IGNORECASE
)


# What imaplib and IMAPClient raise on an answer they cannot parse (int() of a malformed number,
# undecodable bytes): the server's doing, so a classified failure, never a crash.
UNPARSABLE_ANSWERS: tuple[type[BaseException], ...] = (ProtocolError, ValueError, UnicodeError)


# ---------------------------------------------------------------------------- TLS


@functools.lru_cache(maxsize=64)
def _cached_tls_context(verify_tls: bool, ca_certificate: str) -> ssl.SSLContext:
    if not verify_tls:
        context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_certificate:
        # cadata given: create_default_context loads that CA alone, not the system store.
        return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cadata=ca_certificate)
    return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)


def tls_context(verify_tls: bool, ca_certificate: str = "") -> ssl.SSLContext:
    """The client TLS context for an endpoint's settings: the one home of that rule.

    verify_tls with a custom CA (PEM text): that CA *instead of* the system store, as the
    endpoint's help text promises; verify_tls without one: the system store; not verify_tls: no
    certificate or host name check (the CA is ignored). Contexts are built once per (verify mode,
    CA) per process and shared: building one loads the system store, about 50 ms of CPU (issue 14).
    Callers must not modify the returned context. Raises ssl.SSLError when the CA text is not a
    readable certificate.
    """
    return _cached_tls_context(bool(verify_tls), ca_certificate.strip() if verify_tls else "")


def _context_for(mailbox: Mailbox, security: Security) -> ssl.SSLContext | None:
    """The TLS context a connection needs, or None for plain IMAP (which builds none)."""
    if security == Security.PLAIN:
        return None
    try:
        return tls_context(mailbox.verify_tls, mailbox.ca_certificate)
    except ssl.SSLError as exc:
        raise ConnectError(
            ErrorKind.TLS, f"the custom CA certificate could not be read: {getattr(exc, 'reason', None) or exc}"
        ) from None


def _tls_message(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"TLS: certificate verify failed: {detail}"
    reason = getattr(exc, "reason", None) or describe(exc)
    return f"TLS handshake failed: {reason}"


# ---------------------------------------------------------------------- connecting

_READ_COMMANDS = frozenset(
    {
        "CAPABILITY",
        "LOGIN",
        "AUTHENTICATE",
        "LOGOUT",
        "NOOP",
        "STARTTLS",
        "ID",
        "ENABLE",
        "NAMESPACE",
        "LIST",
        "LSUB",
        "XLIST",
        "STATUS",
        "EXAMINE",
        "UNSELECT",
        "SEARCH",
        "FETCH",
        "ESEARCH",
    }
)
# FETCH items that would set \Seen: BODY[...] / BINARY[...] without .PEEK, RFC822 and RFC822.TEXT.
_SEEN_SETTING_FETCH = re.compile(
    r"(?<![\w.])(BODY|BINARY)\[|(?<![\w.])RFC822(?![\w.]*\.(SIZE|HEADER))(\.TEXT)?(?![\w.])",
    re.IGNORECASE,
)


def check_read_only(name: str, args: Sequence[object]) -> None:
    """Raise WriteRefused unless the command cannot change the source mailbox."""
    words = [name.upper()]
    rest = list(args)
    if words[0] == "UID" and rest:
        words.append(to_unicode(rest.pop(0)).upper())
    verb = words[-1]
    if verb not in _READ_COMMANDS:
        raise WriteRefused(f"refused to send {verb} to the read-only source")
    if verb == "FETCH":
        items = " ".join(to_unicode(a) for a in rest[1:] if a is not None)
        if _SEEN_SETTING_FETCH.search(items):
            raise WriteRefused(f"refused a FETCH that would mark messages seen: {items}")


def _guard(client: IMAPClient) -> None:
    """Wrap the two paths by which IMAPClient sends commands so only read commands get through."""
    imap = client._imap
    original_command = imap._command
    original_raw = client._raw_command

    def guarded_command(_imap: object, name: str, *args: object) -> object:
        check_read_only(name, args)
        return original_command(name, *args)

    def guarded_raw(command: bytes, args: object, uid: bool = True) -> object:
        check_read_only(
            to_unicode(command),
            list(args) if isinstance(args, list | tuple) else [args],
        )
        return original_raw(command, args, uid=uid)

    # A bound method, as the original: imaplib tells an AUTHENTICATE callback from a literal by
    # comparing its type with type(self._command).
    imap._command = types.MethodType(guarded_command, imap)
    client._raw_command = guarded_raw


def connect(mailbox: Mailbox, *, read_only: bool) -> Connection:
    """Open, secure and log in; raise ConnectError with a classified, password-free reason.

    read_only=True guards the connection so only read commands reach the server (the source).
    """
    security = Security(mailbox.security)
    context = _context_for(mailbox, security)
    client = _open(mailbox, security, context)
    # Never log protocol traffic: it contains message contents (and imaplib formats every line).
    client._imap.debug = 0
    client.normalise_times = False
    try:
        if security == Security.STARTTLS:
            _starttls(client, context)
        if read_only:
            _guard(client)
        _login(client, mailbox)
        client._cached_capabilities = None  # many servers announce more after login
        connection = Connection(client, mailbox, read_only=read_only)
        # Only the source's modseqs are used; enabling CONDSTORE on the destination would make it
        # track modseqs for every message we append.
        if read_only and connection.has("ENABLE") and connection.has("CONDSTORE"):
            with contextlib.suppress(IMAPClientError):
                client.enable("CONDSTORE")
        return connection
    except ConnectError:
        _shutdown(client)
        raise
    except TimeoutError:
        _shutdown(client)
        raise ConnectError(
            ErrorKind.TIMEOUT,
            f"the server stopped answering (no reply within {mailbox.timeout:g} s)",
        ) from None
    except ssl.SSLError as exc:
        _shutdown(client)
        raise ConnectError(ErrorKind.TLS, _tls_message(exc)) from None
    except (OSError, imaplib.IMAP4.abort) as exc:
        _shutdown(client)
        raise ConnectError(ErrorKind.PROTOCOL, f"connection lost while logging in: {describe(exc)}") from None
    except UNPARSABLE_ANSWERS as exc:
        _shutdown(client)
        raise ConnectError(
            ErrorKind.PROTOCOL,
            f"the server's answer could not be understood: {_strip_password(describe(exc), mailbox)}",
        ) from None
    except (IMAPClientError, imaplib.IMAP4.error) as exc:
        _shutdown(client)
        raise ConnectError(ErrorKind.PROTOCOL, _strip_password(describe(exc), mailbox)) from None


def _causes(exc: BaseException) -> list[BaseException]:
    """exc and what it wraps: __cause__, __context__, a `reason` (urllib3) and exception args."""
    found: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        item = pending.pop(0)
        if not isinstance(item, BaseException) or any(item is seen for seen in found):
            continue
        found.append(item)
        pending += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return found


def network_problem(exc: BaseException) -> tuple[ErrorKind, str] | None:
    """(kind, words) when exc is, or wraps, a failure to reach a server over the network; else None.

    The one rule for "the server cannot be reached", for an IMAP server (_open) and for a token
    endpoint (tasks/oauth.py, through TokenUnavailable's __cause__): certificate not trusted or
    handshake failed -> TLS; connection refused -> REFUSED; host name not found, no route, no
    answer (timeout) -> UNREACHABLE. Such an account fails at once with that kind (runs/engine/
    account.py first_connect retries only PROTOCOL). The words never hold a URL's query or a secret.
    """
    causes = _causes(exc)
    for kinds, kind, words in (
        ((ssl.SSLCertVerificationError,), ErrorKind.TLS, _tls_message),
        ((ssl.SSLError,), ErrorKind.TLS, _tls_message),
        ((ConnectionRefusedError,), ErrorKind.REFUSED, lambda e: "connection refused"),
        ((socket.gaierror,), ErrorKind.UNREACHABLE, lambda e: f"host name not found: {e.strerror or e}"),
        ((TimeoutError,), ErrorKind.UNREACHABLE, lambda e: "no answer (timeout)"),
        ((OSError,), ErrorKind.UNREACHABLE, lambda e: f"network error: {e.strerror or type(e).__name__}"),
    ):
        for cause in causes:
            if isinstance(cause, kinds):
                return kind, words(cause)
    return None


class _GreetingCapabilities:
    """imaplib asks CAPABILITY as soon as the greeting is read. Most servers (Dovecot, Cyrus, Courier)
    already list them in the greeting's [CAPABILITY ...] response code (RFC 9051 §7.1, "the server MAY
    include a CAPABILITY response code in the initial OK"): take those and save a round trip per
    connection. A greeting without them is asked as before. After STARTTLS and after login IMAPClient
    asks (or takes the login answer's) again, as RFC 9051 §6.2.1 requires."""

    def _get_capabilities(self) -> None:
        announced = self.untagged_responses.pop("CAPABILITY", None)  # type: ignore[attr-defined]
        if not announced or not announced[-1]:
            super()._get_capabilities()  # type: ignore[misc]
            return
        self.capabilities = tuple(str(announced[-1], self._encoding).upper().split())  # type: ignore[attr-defined]


class _PlainIMAP4(_GreetingCapabilities, IMAP4WithTimeout):
    pass


class _TlsIMAP4(_GreetingCapabilities, IMAP4_TLS):
    pass


class _Client(IMAPClient):
    """IMAPClient whose imaplib object takes the greeting's capabilities (_GreetingCapabilities)."""

    def _create_IMAP4(self) -> imaplib.IMAP4:
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _TlsIMAP4(self.host, self.port, self.ssl_context, connect_timeout)
        return _PlainIMAP4(self.host, self.port, connect_timeout)


def _open(mailbox: Mailbox, security: Security, context: ssl.SSLContext | None) -> IMAPClient:
    """TCP (and TLS on an SSL port) up to the greeting; failures classified as ConnectError."""
    try:
        return _Client(
            mailbox.host,
            port=mailbox.port,
            ssl=security == Security.SSL,
            ssl_context=context,
            timeout=mailbox.timeout,
        )
    except ssl.SSLError as exc:
        raise ConnectError(ErrorKind.TLS, _tls_message(exc)) from None
    except ConnectionRefusedError:
        raise ConnectError(
            ErrorKind.REFUSED,
            f"connection refused by {mailbox.host}:{mailbox.port} (nothing listens on that port)",
        ) from None
    except socket.gaierror as exc:
        raise ConnectError(
            ErrorKind.UNREACHABLE,
            f"cannot resolve {mailbox.host}: {exc.strerror or exc}",
        ) from None
    except TimeoutError:
        if _accepts_tcp(mailbox):
            raise ConnectError(
                ErrorKind.TIMEOUT,
                f"{mailbox.host}:{mailbox.port} accepted the connection but sent no greeting within {mailbox.timeout:g} s",
            ) from None
        raise ConnectError(
            ErrorKind.UNREACHABLE,
            f"no answer from {mailbox.host}:{mailbox.port} within {mailbox.timeout:g} s",
        ) from None
    except OSError as exc:
        raise ConnectError(
            ErrorKind.UNREACHABLE,
            f"cannot reach {mailbox.host}:{mailbox.port}: {exc.strerror or exc}",
        ) from None
    except (*UNPARSABLE_ANSWERS, imaplib.IMAP4.error) as exc:
        raise ConnectError(ErrorKind.PROTOCOL, f"the server's greeting was not usable: {describe(exc)}") from None


def _starttls(client: IMAPClient, context: ssl.SSLContext | None) -> None:
    """STARTTLS (RFC 9051 §6.2.1), refusing to go on in clear text when it is not offered."""
    caps = {to_unicode(c).upper() for c in client.capabilities()}
    if "STARTTLS" not in caps:
        raise ConnectError(
            ErrorKind.TLS,
            "the server does not offer STARTTLS; refusing to continue without encryption",
        )
    try:
        client.starttls(context)
    except ssl.SSLError as exc:
        raise ConnectError(ErrorKind.TLS, _tls_message(exc)) from None
    client._cached_capabilities = None


def _quotable(text: str) -> bool:
    """Can this go in an IMAP quoted string (RFC 9051 §4.3: 7-bit, no CR, LF or NUL)?"""
    return text.isascii() and not any(c in text for c in "\r\n\0")


def _authenticate(client: IMAPClient, mailbox: Mailbox, caps: set[str]) -> None:
    """Log in with any Unicode user name and password; LoginError when the server refuses.

    Quotable credentials: LOGIN with quoted strings, as every server understands (RFC 9051 §6.2.3).
    Others: AUTHENTICATE PLAIN, whose credentials are UTF-8 (RFC 4616 §2), where the server offers
    it; else LOGIN with UTF-8 literals (RFC 9051 §4.3; imaplib can only send ASCII there).
    """
    if _quotable(mailbox.username) and _quotable(mailbox.password):
        client.login(mailbox.username, mailbox.password)
    elif "AUTH=PLAIN" in caps:
        client.plain_login(mailbox.username, mailbox.password)
    else:
        _login_with_literals(client, mailbox.username, mailbox.password, literal_plus="LITERAL+" in caps)


def _login_with_literals(client: IMAPClient, username: str, password: str, *, literal_plus: bool) -> None:
    """LOGIN {n}user {m}password, in UTF-8, with synchronising literals unless LITERAL+ (RFC 7888).

    Sent straight to the socket: imaplib allows one literal per command and IMAPClient's own
    literal sender logs literal contents at DEBUG, which would put the password in a log.
    """
    imap = client._imap
    tag = imap._new_tag()
    imap.send(tag + b" LOGIN")
    for value in (username.encode("utf-8"), password.encode("utf-8")):
        if literal_plus:
            imap.send(b" {%d+}\r\n" % len(value) + value)
            continue
        imap.send(b" {%d}\r\n" % len(value))
        while imap._get_response():  # until the "+" continuation, or the command's own answer
            if imap.tagged_commands.get(tag):
                break
        if imap.tagged_commands.get(tag):
            break  # refused before the literal was sent: the command is over
        imap.send(value)
    else:
        imap.send(b"\r\n")
    try:
        typ, data = imap._command_complete("LOGIN", tag)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:  # BAD: the server would not take the command as sent
        raise LoginError(describe(exc)) from None
    if typ != "OK":
        words = to_unicode(data[0]) if data and data[0] is not None else ""
        raise LoginError(words)
    imap.state = "AUTH"  # what imaplib's own login() records


def sasl_mechanism(caps: set[str]) -> str | None:
    """The SASL mechanism for an OAuth 2.0 token among the server's capabilities (upper case):
    OAUTHBEARER, the standard one (RFC 7628), when offered, else XOAUTH2 (Google's and Microsoft's
    older one); None when the server offers neither."""
    for mechanism in ("OAUTHBEARER", "XOAUTH2"):
        if f"AUTH={mechanism}" in caps:
            return mechanism
    return None


def _token(mailbox: Mailbox, *, fresh: bool) -> str:
    assert mailbox.token_source is not None
    try:
        return mailbox.token_source(fresh)
    except TokenUnavailable as exc:
        kind = ErrorKind.PROTOCOL if exc.transient else ErrorKind.AUTH
        # A token endpoint that cannot be reached (its network error is the cause) is classified
        # like an IMAP server that cannot be reached: network_problem, the one rule.
        network = network_problem(exc.__cause__) if exc.__cause__ is not None else None
        if network is not None:
            kind = network[0]
        raise ConnectError(kind, f"could not get a token: {exc}") from None


def _oauth_login(client: IMAPClient, mailbox: Mailbox, caps: set[str]) -> None:
    """AUTHENTICATE with an access token; once more with a fresh token when the server refuses a
    cached one (it expired or was revoked early, e.g. on reconnecting in the middle of a copy).

    ConnectError AUTH "could not get a token: <provider's words>" or "token refused by the server
    (...): <server's words>"; the token itself never appears in a message.
    """
    mechanism = sasl_mechanism(caps)
    if mechanism is None:
        raise ConnectError(
            ErrorKind.AUTH,
            "the server does not offer OAuth 2.0 sign-in (neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2)",
        )
    for fresh in (False, True):
        token = _token(mailbox, fresh=fresh)
        try:
            if mechanism == "OAUTHBEARER":
                client.oauthbearer_login(mailbox.username, token)
            else:
                client.oauth2_login(mailbox.username, token)
            return
        except LoginError as exc:
            if isinstance(exc.__context__, imaplib.IMAP4.abort) or _TEMPORARY_LOGIN_FAILURE.search(describe(exc)):
                raise
            words = describe(exc).replace(token, "********") if token else describe(exc)
            if fresh:
                who = f" ({mechanism} as {mailbox.username}" + (f", {mailbox.identity})" if mailbox.identity else ")")
                raise ConnectError(ErrorKind.AUTH, f"token refused by the server{who}: {words}") from None


def _login(client: IMAPClient, mailbox: Mailbox) -> None:
    """Log in; a refusal is ConnectError AUTH ("login refused: <server's words>"), a temporary one
    or a connection lost meanwhile is PROTOCOL (retried). With a token source: OAuth 2.0 (_oauth_login)."""
    if client._imap.state != "NONAUTH":
        return  # PREAUTH greeting: the server authenticated the connection itself (RFC 9051 §7.1.4)
    caps = {to_unicode(c).upper() for c in client.capabilities()}
    if "LOGINDISABLED" in caps and mailbox.token_source is None:
        raise ConnectError(
            ErrorKind.TLS,
            "the server refuses LOGIN on an unencrypted connection (LOGINDISABLED)",
        )
    try:
        if mailbox.token_source is not None:
            _oauth_login(client, mailbox, caps)
        else:
            _authenticate(client, mailbox, caps)
    except LoginError as exc:
        if isinstance(exc.__context__, imaplib.IMAP4.abort):
            # IMAPClient wraps a connection lost mid-LOGIN in LoginError: not a wrong password.
            raise ConnectError(
                ErrorKind.PROTOCOL, f"connection lost while logging in: {describe(exc.__context__)}"
            ) from None
        if _TEMPORARY_LOGIN_FAILURE.search(describe(exc)):
            # "[UNAVAILABLE]", "Too many simultaneous connections", throttling: not the password.
            raise ConnectError(
                ErrorKind.PROTOCOL, f"login refused for now: {_strip_password(describe(exc), mailbox)}"
            ) from None
        raise ConnectError(
            ErrorKind.AUTH,
            f"login refused: {_strip_password(describe(exc), mailbox)}",
        ) from None


def _accepts_tcp(mailbox: Mailbox) -> bool:
    """After a timeout: did the TCP connection work (a stalled server) or not (an unreachable host)?"""
    try:
        with socket.create_connection((mailbox.host, mailbox.port), timeout=min(mailbox.timeout, 5.0)):
            return True
    except OSError:
        return False


def _strip_password(text: str, mailbox: Mailbox) -> str:
    if mailbox.password and mailbox.password in text:
        text = text.replace(mailbox.password, "********")
    return text


def _shutdown(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()
