"""A small OAuth 2.0 provider on 127.0.0.1 for the tests: stands in for Microsoft Entra and Google.

Two listeners in one thread each:
- HTTPS (self-signed certificate, `ca_file`): what imapcopier talks to (MSAL insists on https).
  /<tenant>/v2.0/.well-known/openid-configuration   MSAL's tenant discovery (unknown tenant: 400)
  /<tenant>/oauth2/v2.0/token, /token                token endpoint (RFC 6749 §4.1, §4.4, §6; RFC 7523)
  /authorize                                         consent page (GET) and consent (POST, redirects back)
- HTTP, for the test Dovecot (RFC 7662 style answers: {"active": true, "username": ...} or {"active": false}):
  GET /introspect with the token as a Bearer header (Dovecot's oauth2 passdb, introspection_mode = auth), and
  GET /introspect/<login>/<token> (its checkpassword script, for application tokens, which name no user).

Grants: client_credentials (a Microsoft application token: valid for the mailboxes in `app_mailboxes`,
like Exchange's Add-MailboxPermission), jwt-bearer (google-auth's service-account grant: the JWT's RS256
signature is checked with the public key of `service_account_info()`, its `sub` must be in
`delegated_mailboxes`), authorization_code with PKCE S256, refresh_token. `lifetime_seconds` is how long
a token is really valid; `expires_in` is what clients are told (set them apart to make a token expire
"early", as a server that ends a session would). `revoke(user)` drops a user's refresh and access tokens.
Errors are answered as the real providers do: {"error": ..., "error_description": ...} with status 400/401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.dovecot import make_self_signed_certificate

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class _Token:
    subject: str | None  # None: an application token (client credentials)
    client_id: str
    expires_at: float  # time.monotonic()


class OAuthProvider:
    """Start with OAuthProvider(); stop() at the end. All state is in memory and thread-safe."""

    host = "127.0.0.1"

    def __init__(self, *, lifetime_seconds: float = 3600.0, expires_in: int | None = None) -> None:
        self.tenant = "contoso-tenant"
        self.client_id = "imapcopier-app"
        self.client_secret = secrets.token_urlsafe(16)
        self.lifetime_seconds = lifetime_seconds
        self.expires_in = expires_in
        self.app_mailboxes: set[str] = set()
        self.delegated_mailboxes: set[str] = set()
        self.consenting_user = ""  # pre-filled on the consent page
        self.rotate_refresh_tokens = False  # answer a refresh with a new refresh token, as Microsoft does
        self.requests: list[tuple[str, str]] = []  # (path, grant_type) of every token request
        self._lock = threading.Lock()
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._codes: dict[str, dict[str, str]] = {}
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._sa_key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self._sa_public = key.public_key()
        self.service_account_email = "migrator@imapcopier-test.iam.gserviceaccount.com"
        # The application's certificate (Microsoft: "Certificates & secrets → Certificates"): what an
        # endpoint's certificate field holds, certificate and private key in one PEM text.
        self.client_certificate_pem, self._client_cert_public = _certificate_and_key()
        self._dir = Path(tempfile.mkdtemp(prefix="oauth-provider-"))
        cert, key_pem = make_self_signed_certificate()
        self.ca_certificate = cert
        (self._dir / "cert.pem").write_text(cert)
        (self._dir / "key.pem").write_text(key_pem)
        self.ca_file = str(self._dir / "cert.pem")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._dir / "cert.pem", self._dir / "key.pem")
        self._https = ThreadingHTTPServer((self.host, 0), _handler(self))
        self._https.socket = context.wrap_socket(self._https.socket, server_side=True)
        self._http = ThreadingHTTPServer((self.host, 0), _handler(self))
        self._threads = [
            threading.Thread(target=server.serve_forever, daemon=True, name="oauth-provider")
            for server in (self._https, self._http)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self._https.server_address[1]}"

    @property
    def authority_url(self) -> str:
        """What an endpoint's Microsoft authority setting holds (the tenant is added to it)."""
        return self.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def introspection_url(self) -> str:
        return f"http://{self.host}:{self._http.server_address[1]}/introspect"

    def service_account_info(self) -> dict[str, str]:
        """A Google service-account key file's contents (JSON), pointing at this provider's token URL."""
        return {
            "type": "service_account",
            "project_id": "imapcopier-test",
            "private_key_id": "key1",
            "private_key": self._sa_key_pem,
            "client_email": self.service_account_email,
            "client_id": "1234567890",
            "token_uri": self.token_url,
        }

    # ------------------------------------------------------------------- controls

    def revoke(self, user: str) -> None:
        """The user withdraws consent: their refresh and access tokens stop working."""
        with self._lock:
            for store in (self._access, self._refresh):
                for token in [t for t, info in store.items() if info.subject == user]:
                    del store[token]

    def expire_all(self) -> None:
        """Every access token issued so far stops working (refresh tokens stay)."""
        with self._lock:
            self._access.clear()

    def stop(self) -> None:
        for server in (self._https, self._http):
            server.shutdown()
            server.server_close()

    # -------------------------------------------------------------------- grants

    def _issue(self, subject: str | None, client_id: str, *, refresh: bool = False) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._access[token] = _Token(subject, client_id, time.monotonic() + self.lifetime_seconds)
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.expires_in if self.expires_in is not None else int(self.lifetime_seconds),
        }
        if refresh:
            refresh_token = secrets.token_urlsafe(24)
            with self._lock:
                self._refresh[refresh_token] = _Token(subject, client_id, float("inf"))
            answer["refresh_token"] = refresh_token
        return answer

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, client_secret = (urllib.parse.unquote(p) for p in decoded.partition(":"))
        if grant == JWT_BEARER:
            return self._jwt_bearer(form.get("assertion", ""))
        if form.get("client_assertion_type") == CLIENT_ASSERTION:  # RFC 7523 §2.2: a certificate, not a secret
            try:
                jwt.decode(
                    form.get("client_assertion", ""),
                    self._client_cert_public,
                    algorithms=["RS256", "PS256"],
                    audience=[f"{self.base_url}/{self.tenant}/oauth2/v2.0/token", self.token_url],
                    issuer=self.client_id,
                )
            except jwt.PyJWTError as exc:
                return 401, _error(
                    "invalid_client", f"AADSTS700027: Client assertion failed signature validation: {exc}"
                )
            client_secret = self.client_secret  # the assertion stands for it
        if client_id != self.client_id or client_secret != self.client_secret:
            return 401, _error(
                "invalid_client", "AADSTS7000215: Invalid client secret provided (or unknown client id)."
            )
        if grant == "client_credentials":
            if form.get("scope", "") != "https://outlook.office365.com/.default":
                return 400, _error("invalid_scope", "AADSTS1002012: The provided value for scope is not valid.")
            return 200, self._issue(None, client_id)
        if grant == "authorization_code":
            with self._lock:
                code = self._codes.pop(form.get("code", ""), None)
            if code is None or code["redirect_uri"] != form.get("redirect_uri"):
                return 400, _error("invalid_grant", "The authorization code is invalid or has expired.")
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != code["challenge"]:
                return 400, _error("invalid_grant", "PKCE verification failed: code_verifier does not match.")
            return 200, self._issue(code["user"], client_id, refresh=True)
        if grant == "refresh_token":
            with self._lock:
                info = self._refresh.get(form.get("refresh_token", ""))
            if info is None:
                return 400, _error("invalid_grant", "Token has been expired or revoked.")
            return 200, self._issue(info.subject, client_id, refresh=self.rotate_refresh_tokens)
        return 400, _error("unsupported_grant_type", f"grant type {grant!r} is not supported")

    def _jwt_bearer(self, assertion: str) -> tuple[int, dict[str, Any]]:
        try:
            # google-auth always names Google's token endpoint as the audience, wherever it sends the JWT.
            claims = jwt.decode(
                assertion,
                self._sa_public,
                algorithms=["RS256"],
                audience=[self.token_url, "https://oauth2.googleapis.com/token"],
            )
        except jwt.PyJWTError as exc:
            return 400, _error("invalid_grant", f"Invalid JWT Signature or claims: {exc}")
        if claims.get("iss") != self.service_account_email:
            return 400, _error("invalid_client", "The OAuth client was not found.")
        if claims.get("scope") != "https://mail.google.com/":
            return 400, _error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        subject = claims.get("sub", "")
        if subject not in self.delegated_mailboxes:
            return 401, _error(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, "
                "or client not authorized for any of the scopes requested.",
            )
        return 200, self._issue(subject, self.service_account_email)

    def authorize(self, params: dict[str, str], user: str) -> str:
        """The user consented: a redirect URL back to the client with a one-time code."""
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = {
                "user": user,
                "challenge": params.get("code_challenge", ""),
                "redirect_uri": params.get("redirect_uri", ""),
            }
        query = urllib.parse.urlencode({"code": code, "state": params.get("state", "")})
        return f"{params['redirect_uri']}?{query}"

    def introspect(self, token: str, user: str) -> dict[str, Any]:
        with self._lock:
            info = self._access.get(token)
        if info is None or info.expires_at < time.monotonic():
            return {"active": False}
        if info.subject is None:  # an application token: any mailbox it was given permission on
            return {"active": True, "username": user} if user in self.app_mailboxes else {"active": False}
        return {"active": True, "username": info.subject}


def _certificate_and_key() -> tuple[str, Any]:
    """(PEM text with a self-signed RSA certificate and its private key, the public key)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imapcopier-test-app")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode(), key.public_key()


def _error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def _handler(provider: OAuthProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict[str, Any] | str, content_type: str = "application/json") -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            return dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            parts = url.path.strip("/").split("/")
            if url.path.endswith("/v2.0/.well-known/openid-configuration"):
                if parts[0] != provider.tenant:
                    self._send(400, _error("invalid_tenant", f"AADSTS90002: Tenant '{parts[0]}' not found."))
                    return
                base = f"{provider.base_url}/{parts[0]}"
                self._send(
                    200,
                    {
                        "issuer": f"{base}/v2.0",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    },
                )
                return
            if url.path == "/introspect":  # Dovecot's oauth2 passdb: the token alone
                bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                self._send(200, provider.introspect(bearer, ""))
                return
            if url.path.startswith("/introspect/"):  # the checkpassword script: /introspect/<login>/<token>
                _, user, token = url.path[1:].split("/", 2)
                self._send(200, provider.introspect(urllib.parse.unquote(token), urllib.parse.unquote(user)))
                return
            if url.path == "/authorize":
                user = params.get("login_hint") or provider.consenting_user
                hidden = "".join(
                    f'<input type="hidden" name="{k}" value="{v}">' for k, v in params.items() if k != "login_hint"
                )
                page = (
                    "<!doctype html><title>Test provider: consent</title>"
                    f'<form method="post" action="/authorize">{hidden}'
                    f'<label>Mailbox <input name="user" value="{user}"></label>'
                    '<button type="submit">Allow</button></form>'
                )
                self._send(200, page, "text/html")
                return
            self._send(404, _error("not_found", self.path))

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            form = self._form()
            if url.path.endswith("/token"):
                grant = form.get("grant_type", "")
                provider.requests.append((url.path, grant))
                status, body = provider.token(form, self.headers.get("Authorization", ""))
                self._send(status, body)
                return
            if url.path == "/authorize":
                user = form.pop("user", "")
                self.send_response(302)
                self.send_header("Location", provider.authorize(form, user))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(404, _error("not_found", self.path))

    return Handler
