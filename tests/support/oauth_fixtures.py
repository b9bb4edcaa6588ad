"""Fixtures for OAuth 2.0 sign-in tests: a local provider and a Dovecot that accepts its tokens.

oauth_provider      session: tests/support/oauth_provider.py (HTTPS token endpoints, tokeninfo for Dovecot)
oauth_imap_server   session: Dovecot whose oauth2 passdb asks oauth_provider; passwords work as well
oauth_bed           each test: the provider reset (lifetimes, permissions), imapcopier's token cache
                    emptied and the provider's certificate trusted (REQUESTS_CA_BUNDLE)
oauth_task          factory: make(method, pairs=1, **endpoint settings) -> (task, [(source, destination)]);
                    the source endpoint signs in with `method`, the destination with passwords

If a server cannot start, the tests using it fail with the reason: never a skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.dovecot import Dovecot, DovecotError
from tests.support.oauth_provider import OAuthProvider


@pytest.fixture(scope="session")
def oauth_provider() -> Iterator[OAuthProvider]:
    provider = OAuthProvider()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def oauth_imap_server(oauth_provider: OAuthProvider) -> Iterator[Dovecot]:
    try:
        server = Dovecot(oauth2_introspection_url=oauth_provider.introspection_url)
    except (DovecotError, OSError) as exc:
        pytest.fail(f"the test Dovecot with OAuth 2.0 could not start:\n{exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def oauth_bed(oauth_provider: OAuthProvider, oauth_imap_server: Dovecot, monkeypatch) -> Iterator[OAuthProvider]:
    from tasks import oauth

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", oauth_provider.ca_file)
    oauth.forget_cached_tokens()
    oauth_provider.lifetime_seconds = 3600.0
    oauth_provider.expires_in = None
    oauth_provider.requests.clear()
    oauth_provider.rotate_refresh_tokens = False
    yield oauth_provider
    oauth.forget_cached_tokens()


def endpoint_settings(provider: OAuthProvider, method: str) -> dict[str, Any]:
    """The endpoint fields that point `method` at the local provider."""
    if method == "oauth_microsoft":
        return {
            "oauth_tenant": provider.tenant,
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
            "oauth_authority_url": provider.authority_url,
        }
    if method == "oauth_google":
        import json

        return {
            "oauth_service_account_key": json.dumps(provider.service_account_info()),
            "oauth_token_url": provider.token_url,
        }
    if method == "oauth_consent":
        return {
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
            "oauth_token_url": provider.token_url,
            "oauth_authorize_url": provider.authorize_url,
            "oauth_scope": "imap offline_access",
        }
    return {}


@pytest.fixture
def oauth_task(oauth_bed: OAuthProvider, oauth_imap_server: Dovecot) -> Callable[..., Any]:
    from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

    def make(method: str, pairs: int = 1, *, source_port: int | None = None, **overrides: Any):
        server = oauth_imap_server
        common = {"host": server.host, "security": "plain", "verify_tls": False}
        source = EndpointFactory(
            port=source_port or server.imap_port,
            auth_method=method,
            **{**endpoint_settings(oauth_bed, method), **overrides},
            **common,
        )
        destination = EndpointFactory(port=server.imap_port, **common)
        task = TaskFactory(source=source, destination=destination)
        users = [(server.add_user(), server.add_user()) for _ in range(pairs)]
        for src, dst in users:
            if method == "oauth_microsoft":
                oauth_bed.app_mailboxes.add(src.username)
            elif method == "oauth_google":
                oauth_bed.delegated_mailboxes.add(src.username)
            AccountFactory(
                task=task,
                tested=True,
                source_user=src.username,
                source_password="",
                destination_user=dst.username,
                destination_password=dst.password,
            )
        return task, users

    return make
