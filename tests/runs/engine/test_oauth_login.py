"""The engine's OAuth 2.0 sign-in (SASL OAUTHBEARER / XOAUTH2, RFC 7628) against the test Dovecot that
checks tokens with the local provider. Plain Python: the token source is a function, no Django."""

from __future__ import annotations

import pytest
import requests

from runs.engine import connect as connect_module
from runs.engine.connect import connect, sasl_mechanism
from runs.engine.imap import ConnectError
from runs.engine.types import ErrorKind, Mailbox, TokenUnavailable

pytestmark = pytest.mark.imap


def _app_token(provider) -> str:
    answer = requests.post(
        provider.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "scope": "https://outlook.office365.com/.default",
        },
        verify=provider.ca_file,
        timeout=10,
    )
    return answer.json()["access_token"]


def _mailbox(server, username: str, source) -> Mailbox:
    return Mailbox(
        host=server.host,
        port=server.imap_port,
        security="plain",
        username=username,
        password="",
        token_source=source,
        identity="application test-app of tenant t",
    )


def test_the_mechanism_follows_the_capabilities():
    assert sasl_mechanism({"AUTH=XOAUTH2", "AUTH=OAUTHBEARER"}) == "OAUTHBEARER"
    assert sasl_mechanism({"AUTH=PLAIN", "AUTH=XOAUTH2"}) == "XOAUTH2"
    assert sasl_mechanism({"AUTH=PLAIN"}) is None


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_a_token_signs_in_with_either_mechanism(mechanism, oauth_provider, oauth_imap_server, monkeypatch):
    user = oauth_imap_server.add_user()
    oauth_provider.app_mailboxes.add(user.username)
    monkeypatch.setattr(connect_module, "sasl_mechanism", lambda caps: mechanism)
    asked: list[bool] = []
    token = _app_token(oauth_provider)

    def source(fresh: bool) -> str:
        asked.append(fresh)
        return token

    connection = connect(_mailbox(oauth_imap_server, user.username, source), read_only=True)
    try:
        assert connection.list()  # signed in: the server answers LIST
    finally:
        connection.close()
    assert asked == [False]


def test_a_refused_cached_token_is_replaced_once_by_a_fresh_one(oauth_provider, oauth_imap_server):
    user = oauth_imap_server.add_user()
    oauth_provider.app_mailboxes.add(user.username)
    stale, fresh = "expired-token", _app_token(oauth_provider)
    asked: list[bool] = []

    def source(want_fresh: bool) -> str:
        asked.append(want_fresh)
        return fresh if want_fresh else stale

    connection = connect(_mailbox(oauth_imap_server, user.username, source), read_only=True)
    connection.close()
    assert asked == [False, True]


def test_a_refused_token_is_an_auth_error_without_the_token(oauth_provider, oauth_imap_server):
    user = oauth_imap_server.add_user()  # the application has no permission on this mailbox
    token = _app_token(oauth_provider)
    with pytest.raises(ConnectError) as excinfo:
        connect(_mailbox(oauth_imap_server, user.username, lambda fresh: token), read_only=True)
    assert excinfo.value.kind == ErrorKind.AUTH
    assert excinfo.value.message.startswith(
        f"token refused by the server (OAUTHBEARER as {user.username}, application test-app of tenant t): "
    )
    assert token not in excinfo.value.message


def test_no_token_is_an_auth_error_with_the_providers_words(oauth_imap_server):
    def source(fresh: bool) -> str:
        raise TokenUnavailable("invalid_scope: AADSTS70011: The provided value for scope is not valid.")

    with pytest.raises(ConnectError) as excinfo:
        connect(_mailbox(oauth_imap_server, "anyone", source), read_only=True)
    assert excinfo.value.kind == ErrorKind.AUTH
    assert excinfo.value.message == (
        "could not get a token: invalid_scope: AADSTS70011: The provided value for scope is not valid."
    )


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (ConnectionRefusedError(111, "Connection refused"), ErrorKind.REFUSED),
        (TimeoutError("timed out"), ErrorKind.UNREACHABLE),
        (None, ErrorKind.PROTOCOL),  # the provider said "try later": retried like a dropped connection
    ],
)
def test_a_token_endpoint_that_cannot_be_reached_is_classified_like_an_unreachable_server(
    cause, kind, oauth_imap_server
):
    def source(fresh: bool) -> str:
        problem = TokenUnavailable("the token endpoint could not be reached: https://idp/token (…)", transient=True)
        if cause is None:
            raise problem
        # As tasks/oauth.py raises it: the network error (wrapped, as requests wraps it) is the cause.
        wrapped = requests.ConnectionError(OSError("wrapper"))
        wrapped.__context__ = cause
        raise problem from wrapped

    with pytest.raises(ConnectError) as excinfo:
        connect(_mailbox(oauth_imap_server, "anyone", source), read_only=True)
    assert excinfo.value.kind == kind


def test_a_server_without_oauth_sign_in_says_so(imap_server):
    with pytest.raises(ConnectError) as excinfo:
        connect(_mailbox(imap_server, "anyone", lambda fresh: "t"), read_only=True)
    assert excinfo.value.kind == ErrorKind.AUTH
    assert "does not offer OAuth 2.0 sign-in" in excinfo.value.message
