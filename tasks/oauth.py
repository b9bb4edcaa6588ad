"""OAuth 2.0 access tokens for endpoints that sign in with a token (issue 16), and users' consent.

Three ways, each through a well-kept library:
- Microsoft 365 application access: client credentials with MSAL (ConfidentialClientApplication, the
  authority being the endpoint's sign-in address + tenant); one token for the tenant, used for every
  mailbox (Exchange checks the application's mailbox permission at login).
- Google Workspace domain-wide delegation: google-auth's service_account.Credentials with the mailbox as
  the subject (the JWT-bearer grant, RFC 7523): one token per mailbox.
- Each user's consent: authorization code with PKCE (RFC 7636) and then refresh tokens, with Authlib.

Access tokens live in this process's memory only (never in the database, a log or a message), cached
until shortly before they expire; the engine gets `token_source(fresh)` and asks again with fresh=True
when the server refuses a cached token. Every failure to get one is engine.TokenUnavailable with the
provider's error code and description. HTTPS requests honour REQUESTS_CA_BUNDLE (requests' own rule).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from django.core import signing
from django.db import connection
from django.db.models import F
from django.utils import timezone

from runs.engine.connect import network_problem
from runs.engine.types import TokenSource, TokenUnavailable
from tasks.models import Account, Endpoint

HTTP_TIMEOUT_SECONDS = 30
# A cached token is used until this long before it expires (or half its life, when that is shorter).
EXPIRY_MARGIN_SECONDS = 300
MAX_DESCRIPTION = 300
# Provider answers that mean "try again later" rather than "no" (RFC 6749 §4.1.2.1 names them).
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
CONSENT_SALT = "imapcopier.tasks.consent"
CONSENT_LINK_MAX_AGE_SECONDS = 30 * 86400
SIDES = ("source", "destination")


@dataclass(frozen=True)
class Settings:
    """What a token request needs, copied out of an Endpoint (safe to hand to a worker thread)."""

    method: str
    authority: str
    token_url: str
    authorize_url: str
    client_id: str
    scope: str
    tenant: str
    client_secret: str = field(default="", repr=False)
    client_certificate: str = field(default="", repr=False)  # PEM: certificate and private key
    service_account_key: str = field(default="", repr=False)

    @classmethod
    def of(cls, endpoint: Endpoint) -> Settings:
        return cls(
            method=endpoint.auth_method,
            authority=endpoint.microsoft_authority,
            token_url=endpoint.token_url,
            authorize_url=endpoint.authorize_url,
            client_id=endpoint.oauth_client_id,
            scope=endpoint.scope,
            tenant=endpoint.oauth_tenant,
            client_secret=endpoint.oauth_client_secret,
            client_certificate=endpoint.oauth_client_certificate,
            service_account_key=endpoint.oauth_service_account_key,
        )


@dataclass
class _Cached:
    token: str
    use_until: float  # time.monotonic()


_cache: dict[tuple[str, ...], _Cached] = {}
_lock = threading.Lock()


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _use_until(expires_in: float, now: float) -> float:
    return now + max(0.0, expires_in - min(EXPIRY_MARGIN_SECONDS, expires_in / 2))


def provider_words(error: object, description: object) -> str:
    """The provider's error code and description, one line, bounded (outside text)."""
    text = f"{error}: {description}" if description else str(error)
    return " ".join(text.split())[:MAX_DESCRIPTION]


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "imapcopier"
    return session


def identity(endpoint: Endpoint, username: str) -> str:
    """Whose token signs in, in words for connection tests and errors (no secret): "application <client
    id> of tenant <tenant>", "service account <email> acting for <user>" or "consent of <user> to
    application <client id>". The one home of these words (tasks.services._message shows them)."""
    method = Endpoint.AuthMethod
    if endpoint.auth_method == method.MICROSOFT_APP:
        return f"application {endpoint.oauth_client_id} of tenant {endpoint.oauth_tenant}"
    if endpoint.auth_method == method.GOOGLE_SERVICE_ACCOUNT:
        try:
            email = json.loads(endpoint.oauth_service_account_key).get("client_email", "?")
        except (ValueError, AttributeError):
            email = "?"
        return f"service account {email} acting for {username}"
    return f"consent of {username} to application {endpoint.oauth_client_id}"


def token_source(
    endpoint: Endpoint,
    username: str,
    *,
    refresh_token: str = "",
    on_new_refresh_token: Callable[[str], None] | None = None,
    on_consent_withdrawn: Callable[[], None] | None = None,
) -> TokenSource:
    """The engine's token_source(fresh) for one mailbox of an OAuth 2.0 endpoint.

    Cached tokens are shared by every mailbox that may use them (a Microsoft application token by the
    whole tenant). on_new_refresh_token(token) is called when the provider hands out a new refresh
    token (Microsoft rotates them), so the caller can store it; on_consent_withdrawn() when the
    provider answers invalid_grant to the refresh token (withdrawn or expired: ConsentWithdrawn), so
    the caller can forget it.
    """
    settings = Settings.of(endpoint)
    if settings.method == Endpoint.AuthMethod.MICROSOFT_APP:
        credential = settings.client_certificate or settings.client_secret
        key = ("ms", settings.authority, settings.client_id, _fingerprint(credential), settings.scope)
    elif settings.method == Endpoint.AuthMethod.GOOGLE_SERVICE_ACCOUNT:
        key = ("google", settings.token_url, _fingerprint(settings.service_account_key), settings.scope, username)
    else:
        key = ("user", settings.token_url, settings.client_id, _fingerprint(refresh_token), settings.scope)

    current = {"refresh_token": refresh_token}  # the newest one, once the provider renews it

    def get(fresh: bool) -> str:
        now = time.monotonic()
        with _lock:
            cached = _cache.get(key)
        if cached is not None and not fresh and cached.use_until > now:
            return cached.token
        try:
            token, expires_in, new_refresh = fetch(settings, username, current["refresh_token"])
        except ConsentWithdrawn:
            if on_consent_withdrawn is not None:
                on_consent_withdrawn()
            raise
        with _lock:
            _cache[key] = _Cached(token, _use_until(expires_in, now))
        if new_refresh and new_refresh != current["refresh_token"]:
            current["refresh_token"] = new_refresh
            if on_new_refresh_token is not None:
                on_new_refresh_token(new_refresh)
        return token

    return get


def forget_cached_tokens() -> None:
    """Drop every cached access token of this process (tests; after a secret changes they are unused anyway)."""
    with _lock:
        _cache.clear()


def fetch(settings: Settings, username: str, refresh_token: str = "") -> tuple[str, float, str]:
    """A new access token: (token, seconds it is valid, new refresh token or ""). Raises TokenUnavailable.

    When the token endpoint cannot be reached, the TokenUnavailable names the URL and the cause and
    its __cause__ is the network error, which the engine classifies like an IMAP server that cannot
    be reached (runs.engine.connect.network_problem)."""
    try:
        if settings.method == Endpoint.AuthMethod.MICROSOFT_APP:
            return _microsoft_app(settings)
        if settings.method == Endpoint.AuthMethod.GOOGLE_SERVICE_ACCOUNT:
            return _google_service_account(settings, username)
        return _refresh(settings, refresh_token)
    except requests.RequestException as exc:
        url = settings.authority if settings.method == Endpoint.AuthMethod.MICROSOFT_APP else settings.token_url
        raise _unreachable(url, exc) from exc


def unreachable_words(url: str, exc: BaseException) -> str:
    """'<scheme://host[:port]/path> (<cause>)' for a token or authorization endpoint that could not be
    reached: the URL the request went to when known, never its query; the cause in the engine's
    words (connection refused, TLS certificate not trusted, no answer...)."""
    request = getattr(exc, "request", None)
    parts = urllib.parse.urlsplit(getattr(request, "url", None) or url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    where = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"
    problem = network_problem(exc)
    cause = problem[1] if problem else type(exc).__name__
    return f"{where} ({cause})"


def _unreachable(url: str, exc: BaseException) -> TokenUnavailable:
    return TokenUnavailable(f"the token endpoint could not be reached: {unreachable_words(url, exc)}", transient=True)


def split_certificate(pem: str) -> tuple[str, str]:
    """(certificate PEM, private key PEM) out of one pasted text holding both; ("", "") parts when absent."""
    certificate = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    key = re.search(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", pem, re.S)
    return (certificate.group(0) if certificate else "", key.group(0) if key else "")


def microsoft_credential(settings: Settings) -> str | dict[str, str]:
    """MSAL's client_credential: the certificate (a signed client assertion, RFC 7523 §2.2, with the
    certificate's SHA-256 thumbprint, MSAL >= 1.35) when one is stored, else the client secret."""
    if not settings.client_certificate:
        return settings.client_secret
    certificate, key = split_certificate(settings.client_certificate)
    return {"private_key": key, "public_certificate": certificate}


def _microsoft_app(settings: Settings) -> tuple[str, float, str]:
    import msal

    try:
        # instance_discovery=False: the authority is taken as given (a national cloud, or the tests'
        # local provider) instead of being checked against Microsoft's list of hosts.
        app = msal.ConfidentialClientApplication(
            settings.client_id,
            client_credential=microsoft_credential(settings),
            authority=settings.authority,
            instance_discovery=False,
            http_client=_session(),
            timeout=HTTP_TIMEOUT_SECONDS,
        )
    except ValueError:
        # MSAL's tenant discovery: an unknown tenant answers 400 (AADSTS90002).
        raise TokenUnavailable(
            f"tenant {settings.tenant} was not found at {settings.authority.rsplit('/', 1)[0]} (wrong tenant?)"
        ) from None
    result: dict[str, Any] = app.acquire_token_for_client(scopes=[settings.scope])
    if "access_token" not in result:
        error = result.get("error", "error")
        raise TokenUnavailable(
            provider_words(error, result.get("error_description", "")), transient=error in TRANSIENT_ERRORS
        )
    return result["access_token"], float(result.get("expires_in", 3600)), ""


def _google_service_account(settings: Settings, username: str) -> tuple[str, float, str]:
    from google.auth import exceptions as google_exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    try:
        info = {**json.loads(settings.service_account_key), "token_uri": settings.token_url}
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=[settings.scope], subject=username
        )
    except (ValueError, KeyError, TypeError):
        raise TokenUnavailable("the service account key is not a Google service account key (JSON)") from None
    session = _session()
    try:
        credentials.refresh(Request(session))
    except google_exceptions.RefreshError as exc:
        words = provider_words(exc.args[0] if exc.args else "refused", "")
        if words.startswith("unauthorized_client"):
            # Google's answer when the Workspace admin has not granted the client id this scope.
            words += " (domain-wide delegation not granted for this client id and scope?)"
        raise TokenUnavailable(words, transient=bool(getattr(exc, "retryable", False))) from None
    except google_exceptions.TransportError as exc:
        raise _unreachable(settings.token_url, exc) from exc
    expires_in = 3600.0
    if credentials.expiry is not None:
        from datetime import UTC, datetime

        expires_in = (credentials.expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    return credentials.token, expires_in, ""


def _oauth2_session(settings: Settings, **kwargs: Any) -> Any:
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session(
        settings.client_id,
        settings.client_secret or None,
        scope=settings.scope,
        token_endpoint_auth_method="client_secret_post" if settings.client_secret else "none",
        code_challenge_method="S256",
        **kwargs,
    )
    session.headers["User-Agent"] = "imapcopier"
    return session


def _refresh(settings: Settings, refresh_token: str) -> tuple[str, float, str]:
    from authlib.integrations.base_client.errors import OAuthError

    if not refresh_token:
        raise TokenUnavailable("no consent yet: send the user this account's consent link")
    session = _oauth2_session(settings)
    try:
        token = session.refresh_token(settings.token_url, refresh_token=refresh_token, timeout=HTTP_TIMEOUT_SECONDS)
    except OAuthError as exc:
        words = provider_words(exc.error, exc.description)
        if exc.error == "invalid_grant":
            raise ConsentWithdrawn(
                f"{words} (the user's consent was withdrawn or has expired: send the user this account's "
                "consent link again)"
            ) from None
        raise TokenUnavailable(words, transient=exc.error in TRANSIENT_ERRORS) from None
    return token["access_token"], float(token.get("expires_in", 3600)), token.get("refresh_token", "")


class ConsentWithdrawn(TokenUnavailable):
    """The provider refuses a user's refresh token (invalid_grant, RFC 6749 §5.2: revoked, expired,
    or the password changed): only a new consent helps."""


# ---------------------------------------------------------------------------- each user's consent


def consent_token(account: Account, side: str) -> str:
    """The signed part of an account's consent link (no secret in it; valid CONSENT_LINK_MAX_AGE_SECONDS
    and until a consent is stored through it: single use)."""
    return consent_token_for(account.pk, side, getattr(account, f"{side}_consents"))


def consent_token_for(account_id: int, side: str, consents: int) -> str:
    """consent_token() by the account's id and the count of consents stored for that side so far
    (Account.<side>_consents): once one more is stored, the link answers "used" (consent_account)."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}")
    return signing.dumps({"account": account_id, "side": side, "generation": consents}, salt=CONSENT_SALT)


def consent_links(account: Account) -> dict[str, str]:
    """{side: path of the consent link} for the sides of the account whose endpoint needs each user's
    consent (a path: the page makes it absolute with the address the operator uses)."""
    from django.urls import reverse

    return {
        side: reverse("tasks:consent_start", args=[consent_token(account, side)])
        for side in SIDES
        if getattr(account.task, side).needs_consent
    }


class ConsentError(Exception):
    """A consent link or answer that cannot be used; the message is for the user's page."""


def consent_target(signed: str) -> tuple[Account, str]:
    """The account and side a consent link is for. ConsentError when the link is forged, expired or
    its account is gone or no longer signs in with each user's consent."""
    try:
        data = signing.loads(signed, salt=CONSENT_SALT, max_age=CONSENT_LINK_MAX_AGE_SECONDS)
    except signing.BadSignature:
        raise ConsentError("This consent link is not valid or has expired; ask for a new one.") from None
    return consent_account(data.get("account"), data.get("side"), data.get("generation"))


def consent_account(account_id: object, side: object, generation: object) -> tuple[Account, str]:
    """The account side a consent is for, checked again: ConsentError when the account is gone, that
    side no longer signs in with each user's consent, or a consent was stored through this link
    already (`generation`, from the link: the link is single-use)."""
    account = Account.objects.select_related("task__source", "task__destination").filter(pk=account_id).first()
    if account is None or side not in SIDES:
        raise ConsentError("This consent link is no longer in use.")
    if not getattr(account.task, str(side)).needs_consent:
        raise ConsentError("This mailbox no longer needs your consent.")
    if generation != getattr(account, f"{side}_consents"):
        raise ConsentError("This link was used; ask for a new one.")
    return account, str(side)


def begin_consent(account: Account, side: str, redirect_uri: str) -> tuple[str, str, str]:
    """(authorization URL to send the user to, state, PKCE code verifier). Keep state and verifier
    in the user's session until the provider sends them back."""
    endpoint = getattr(account.task, side)
    settings = Settings.of(endpoint)
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(24)
    session = _oauth2_session(settings, redirect_uri=redirect_uri)
    url, _state = session.create_authorization_url(
        settings.authorize_url,
        state=state,
        code_verifier=verifier,
        login_hint=getattr(account, f"{side}_user"),
    )
    return url, state, verifier


def exchange_code(account: Account, side: str, *, code: str, verifier: str, redirect_uri: str) -> tuple[str, str]:
    """Trade the provider's code for (access token, refresh token); nothing is stored here (see
    tasks.services.finish_consent). ConsentError with the provider's words when it refuses."""
    from authlib.integrations.base_client.errors import OAuthError

    endpoint = getattr(account.task, side)
    settings = Settings.of(endpoint)
    session = _oauth2_session(settings, redirect_uri=redirect_uri)
    try:
        token = session.fetch_token(settings.token_url, code=code, code_verifier=verifier, timeout=HTTP_TIMEOUT_SECONDS)
    except OAuthError as exc:
        raise ConsentError(f"The sign-in service refused: {provider_words(exc.error, exc.description)}") from None
    except requests.RequestException as exc:
        raise ConsentError(
            f"The sign-in service could not be reached: {unreachable_words(settings.token_url, exc)}"
        ) from None
    refresh_token = token.get("refresh_token", "")
    if not refresh_token:
        raise ConsentError("The sign-in service gave no refresh token (the scope needs offline_access for Microsoft).")
    return token["access_token"], refresh_token


def store_refresh_token(account_id: int, side: str, refresh_token: str, *, consent: bool = False) -> None:
    """Keep a user's refresh token for one side of an account (encrypted at rest).

    consent=True (a new consent, not a provider's renewal): that side's test result is reset, as
    after a password change, so the account is tested again before it runs.
    Called from the engine's worker threads too (a renewed token): such a thread's database
    connection is closed afterwards, as nothing else closes it.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}")
    changes: dict[str, object] = {f"{side}_refresh_token": refresh_token, "updated_at": timezone.now()}
    if consent:
        changes.update({f"{side}_test_status": Account.TestStatus.UNTESTED, f"{side}_test_message": ""})
    account = Account.objects.get(pk=account_id)
    for name, value in changes.items():
        setattr(account, name, value)
    fields = list(changes)
    if consent:
        setattr(account, f"{side}_consents", F(f"{side}_consents") + 1)  # uses up the link (consent_account)
        fields.append(f"{side}_consents")
    account.save(update_fields=fields)
    if threading.current_thread() is not threading.main_thread() and not connection.in_atomic_block:
        connection.close()


def forget_consent(account_id: int, side: str, consents: int) -> None:
    """Forget a side's refresh token the provider refused as withdrawn (invalid_grant), unless a new
    consent was stored meanwhile (`consents`: Account.<side>_consents when the refused token was read),
    so the account's page says "no consent yet" again. Closes a worker thread's database connection
    like store_refresh_token."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}")
    Account.objects.filter(pk=account_id, **{f"{side}_consents": consents}).update(
        **{f"{side}_refresh_token": "", "updated_at": timezone.now()}
    )
    if threading.current_thread() is not threading.main_thread() and not connection.in_atomic_block:
        connection.close()
