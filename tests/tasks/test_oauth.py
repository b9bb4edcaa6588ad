"""OAuth 2.0 sign-in on the tasks side (issue 16): connection tests say whose token was used and why
it was refused, tokens are cached and renewed, each user's consent through the pages, the endpoint
form, and secrets that never leave the database. Against the local provider and its Dovecot
(tests/support/oauth_fixtures.py)."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse

import pytest
import requests
from django.urls import reverse

from runs.engine.types import TokenUnavailable
from tasks import oauth, services
from tasks.models import Account, Endpoint
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

pytestmark = [pytest.mark.imap, pytest.mark.django_db]


def _tested(account: Account) -> Account:
    return services.test_account(account)


def test_the_connection_test_says_which_identity_signed_in(admin_client, oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task("oauth_microsoft")
    account = _tested(task.accounts.get())
    assert account.source_test_status == Account.TestStatus.OK, account.source_test_message
    microsoft = f"signed in with OAuth 2.0 (application {oauth_bed.client_id} of tenant {oauth_bed.tenant})"
    assert re.fullmatch(rf"OK: \d+ folders, {re.escape(microsoft)}", account.source_test_message)
    assert account.destination_test_message.startswith("OK") and "OAuth" not in account.destination_test_message
    page = admin_client.get(reverse("tasks:detail", args=[task.pk]))
    assert f'title="{account.source_test_message} · tested '.encode() in page.content  # the badge's tooltip
    google_task, [(google_source, _)] = oauth_task("oauth_google")
    google = _tested(google_task.accounts.get())
    assert google.source_test_status == Account.TestStatus.OK, google.source_test_message
    email = oauth_bed.service_account_info()["client_email"]
    assert google.source_test_message.endswith(
        f", signed in with OAuth 2.0 (service account {email} acting for {google_source.username})"
    )


@pytest.mark.django_db(transaction=True)  # testaccounts tests in threads, each with its own connection
def test_testaccounts_says_whose_token_signed_in(oauth_task, oauth_bed):
    import io

    from django.core.management import call_command

    task, [(source, _)] = oauth_task("oauth_microsoft")
    out = io.StringIO()
    call_command("testaccounts", str(task.pk), stdout=out)
    identity = f"application {oauth_bed.client_id} of tenant {oauth_bed.tenant}"
    expected = rf"source ok \(OK: \d+ folders, signed in with OAuth 2\.0 \({re.escape(identity)}\)\)"
    assert re.search(expected, out.getvalue()), out.getvalue()


def test_the_connection_test_result_words_name_the_identity(oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task("oauth_microsoft")
    mailbox = services.account_mailbox(task.accounts.get(), "source")
    from runs.engine import test_connection

    result = test_connection(mailbox)
    assert result.ok, result.message
    assert result.message == (
        f"OAuth 2.0 sign-in as {source.username} (application {oauth_bed.client_id} of tenant "
        f"{oauth_bed.tenant}), LIST and EXAMINE INBOX succeeded"
    )


def test_a_token_the_server_refuses_is_named_with_the_identity(oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task("oauth_microsoft")
    oauth_bed.app_mailboxes.discard(source.username)  # no mailbox permission for the application
    account = _tested(task.accounts.get())
    assert account.source_test_status == Account.TestStatus.FAIL
    assert account.source_test_message.startswith(
        f"token refused by the server (OAUTHBEARER as {source.username}, application {oauth_bed.client_id} "
        f"of tenant {oauth_bed.tenant}): "
    ), account.source_test_message
    assert "AUTHENTICATIONFAILED" in account.source_test_message
    # A refused cached token is retried once with a fresh one before giving up.
    assert [g for _p, g in oauth_bed.requests] == ["client_credentials", "client_credentials"]


@pytest.mark.parametrize(
    ("method", "change", "expected"),
    [
        (
            "oauth_microsoft",
            {"oauth_tenant": "wrong-tenant"},
            "could not get a token: tenant wrong-tenant was not found at https://127.0.0.1:",
        ),
        (
            "oauth_microsoft",
            {"oauth_client_secret": "not-the-secret"},
            "could not get a token: invalid_client: AADSTS7000215: Invalid client secret provided",
        ),
        (
            "oauth_microsoft",
            {"oauth_scope": "https://graph.microsoft.com/.default"},
            "could not get a token: invalid_scope: AADSTS1002012: The provided value for scope is not valid.",
        ),
        ("oauth_google", {}, "could not get a token: unauthorized_client: Client is unauthorized"),
        ("oauth_consent", {}, "could not get a token: no consent yet: send the user this account's consent link"),
    ],
)
def test_a_token_that_cannot_be_had_is_a_clear_error_of_the_account(method, change, expected, oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task(method, **change)
    if method == "oauth_google":
        oauth_bed.delegated_mailboxes.discard(source.username)  # no domain-wide delegation for it
    account = _tested(task.accounts.get())
    assert account.source_test_status == Account.TestStatus.FAIL
    assert account.source_test_message.startswith(expected), account.source_test_message
    if method == "oauth_google":
        assert account.source_test_message.endswith(
            " (domain-wide delegation not granted for this client id and scope?)"
        ), account.source_test_message
    assert account.destination_test_status == Account.TestStatus.OK
    assert "not-the-secret" not in account.source_test_message


def test_a_token_is_renewed_shortly_before_it_expires(oauth_task, oauth_bed):
    oauth_bed.lifetime_seconds = 1.0  # told expires_in=1: used for half of that
    task, _users = oauth_task("oauth_microsoft")
    source = token_source(task)
    first = source(False)
    assert source(False) == first  # cached
    time.sleep(0.6)
    second = source(False)
    assert second != first
    assert source(True) not in (first, second)  # fresh=True always asks again


def token_source(task):
    return services.account_mailbox(task.accounts.get(), "source").token_source


def test_token_errors_never_carry_the_secret(oauth_bed):
    settings = oauth.Settings(
        method=Endpoint.AuthMethod.MICROSOFT_APP,
        authority=f"{oauth_bed.authority_url}/{oauth_bed.tenant}",
        token_url="",
        authorize_url="",
        client_id=oauth_bed.client_id,
        scope="https://outlook.office365.com/.default",
        tenant=oauth_bed.tenant,
        client_secret="Wr0ng-Secret-Value",
    )
    with pytest.raises(TokenUnavailable) as excinfo:
        oauth.fetch(settings, "user")
    assert "Wr0ng-Secret-Value" not in str(excinfo.value)
    assert "Wr0ng-Secret-Value" not in repr(settings)


# ------------------------------------------------------------------------------ each user's consent


def _consent_through_the_pages(client, provider, link: str, user: str, *, signs_in_as: str = ""):
    """The user opens the link, follows 'Sign in and allow', allows at the provider (signed in as
    `signs_in_as`, by default the link's mailbox `user`); the answer page."""
    page = client.get(link)
    assert page.status_code == 200
    authorize = page.context["authorize_url"]
    form = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    assert form["code_challenge_method"] == "S256" and form["login_hint"] == user
    form["user"] = signs_in_as or user
    answer = requests.post(
        provider.authorize_url, data=form, verify=provider.ca_file, allow_redirects=False, timeout=10
    )
    back = urllib.parse.urlsplit(answer.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def test_a_user_consents_through_the_link_and_the_account_signs_in(client, admin_client, oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task("oauth_consent")
    account = task.accounts.get()
    page = admin_client.get(reverse("tasks:account_edit", args=[task.pk, account.pk]))
    assert b'data-testid="consent-missing"' in page.content
    (side, link, given) = page.context["consent"][0]
    assert (side, given) == ("source", False)
    done = _consent_through_the_pages(client, oauth_bed, link, source.username)
    assert done.status_code == 200 and b'data-testid="consent-done"' in done.content
    account.refresh_from_db()
    assert account.source_refresh_token
    assert _tested(account).source_test_status == Account.TestStatus.OK
    page = admin_client.get(reverse("tasks:account_edit", args=[task.pk, account.pk]))
    assert b'data-testid="consent-given"' in page.content
    assert account.source_refresh_token.encode() not in page.content


def test_a_consent_given_as_another_mailbox_is_refused_and_nothing_stored(client, admin_client, oauth_task, oauth_bed):
    task, [(first, _), (second, _)] = oauth_task("oauth_consent", pairs=2)
    account = task.accounts.get(source_user=second.username)
    link = oauth.consent_links(account)["source"]
    answer = _consent_through_the_pages(client, oauth_bed, link, second.username, signs_in_as=first.username)
    assert answer.status_code == 400
    problem = answer.context["problem"]
    assert f"you signed in as another mailbox than {second.username}; " in problem
    assert f"sign in as {second.username}" in problem
    assert b"Thank you" not in answer.content
    account.refresh_from_db()
    assert (account.source_refresh_token, account.source_consents) == ("", 0)
    # Nothing was used up: the same link still works for the right mailbox.
    done = _consent_through_the_pages(client, oauth_bed, link, second.username)
    assert done.status_code == 200 and b'data-testid="consent-done"' in done.content
    assert b'data-testid="consent-test-pending"' not in done.content


def test_a_consent_link_is_single_use_and_the_page_shows_the_current_one(client, admin_client, oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task("oauth_consent")
    account = task.accounts.get()
    link = oauth.consent_links(account)["source"]
    assert _consent_through_the_pages(client, oauth_bed, link, source.username).status_code == 200
    used = client.get(link)
    assert used.status_code == 400
    assert used.context["problem"] == "This link was used; ask for a new one."
    page = admin_client.get(reverse("tasks:account_edit", args=[task.pk, account.pk]))
    (_side, current, given) = page.context["consent"][0]
    assert given and not current.endswith(link)
    assert client.get(current).status_code == 200  # the page's link works for a new consent


def test_a_consent_is_stored_with_its_test_pending_when_the_mail_server_cannot_be_reached(
    client, oauth_task, oauth_bed
):
    task, [(source, _)] = oauth_task("oauth_consent")
    account = task.accounts.get()
    link = oauth.consent_links(account)["source"]
    Endpoint.objects.filter(pk=task.source_id).update(port=_closed_port())
    done = _consent_through_the_pages(client, oauth_bed, link, source.username)
    assert done.status_code == 200 and b'data-testid="consent-done"' in done.content
    assert b'data-testid="consent-test-pending"' in done.content and b"connection refused" in done.content
    account.refresh_from_db()
    assert account.source_refresh_token
    assert account.source_test_status == Account.TestStatus.UNTESTED


def test_a_withdrawn_consent_is_no_longer_shown_as_given(admin_client, oauth_task, oauth_bed):
    from tests.runs.test_oauth_runs import consent

    task, [(source, _)] = oauth_task("oauth_consent")
    consent(oauth_bed, Account.objects.select_related("task__source", "task__destination").get())
    oauth_bed.revoke(source.username)
    account = _tested(task.accounts.get())
    assert account.source_test_status == Account.TestStatus.FAIL
    assert account.source_test_message.endswith("send the user this account's consent link again)")
    page = admin_client.get(reverse("tasks:account_edit", args=[task.pk, account.pk]))
    assert b'data-testid="consent-missing"' in page.content
    assert b'data-testid="consent-given"' not in page.content


def test_a_refusal_of_an_old_consent_keeps_a_new_one_given_meanwhile(oauth_task, oauth_bed):
    from tests.runs.test_oauth_runs import consent

    task, [(source, _)] = oauth_task("oauth_consent")
    consent(oauth_bed, Account.objects.select_related("task__source", "task__destination").get())
    before = Account.objects.select_related("task__source", "task__destination").get()
    stale = services.account_mailbox(before, "source")  # e.g. a run that read the first consent
    oauth_bed.revoke(source.username)
    consent(oauth_bed, Account.objects.select_related("task__source", "task__destination").get())
    with pytest.raises(TokenUnavailable):
        stale.token_source(False)
    assert Account.objects.get().source_refresh_token  # the new consent is kept


def test_a_refused_consent_and_a_forged_link_say_so(client, oauth_task, oauth_bed):
    task, _users = oauth_task("oauth_consent")
    account = task.accounts.get()
    link = reverse("tasks:consent_start", args=[oauth.consent_token(account, "source")])
    page = client.get(link)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.context["authorize_url"]).query))["state"]
    refused = client.get(
        reverse("tasks:consent_callback"),
        {"state": state, "error": "access_denied", "error_description": "The user declined."},
    )
    assert refused.status_code == 400
    assert refused.context["problem"] == "No consent was given: access_denied: The user declined."
    forged = client.get(reverse("tasks:consent_start", args=[oauth.consent_token(account, "source") + "x"]))
    assert forged.status_code == 400
    assert b"not valid or has expired" in forged.content
    stray = client.get(reverse("tasks:consent_callback"), {"state": "unknown", "code": "c"})
    assert stray.status_code == 400
    account.refresh_from_db()
    assert account.source_refresh_token == ""


def test_no_consent_link_for_an_endpoint_that_does_not_need_one(client):
    account = AccountFactory()
    assert oauth.consent_links(account) == {}
    response = client.get(reverse("tasks:consent_start", args=[oauth.consent_token(account, "source")]))
    assert response.status_code == 400
    assert b"no longer needs your consent" in response.content


# ------------------------------------------------------------------------------ form and secrets

KEY_SECRET = "-----BEGIN PRIVATE KEY-----never-shown"


def test_the_endpoint_form_keeps_secrets_write_only(admin_client):
    endpoint = EndpointFactory()
    url = reverse("tasks:endpoint_edit", args=[endpoint.pk])
    base = {
        "label": endpoint.label,
        "host": endpoint.host,
        "port": endpoint.port,
        "security": endpoint.security,
        "max_connections": 5,
        "auth_method": "oauth_microsoft",
    }
    missing = admin_client.post(url, base)
    assert missing.status_code == 400
    assert missing.context["form"].errors == {
        "oauth_tenant": ["This sign-in needs the tenant."],
        "oauth_client_id": ["This sign-in needs the client ID."],
        "oauth_client_secret": ["This sign-in needs the client secret (or a certificate)."],
    }
    saved = admin_client.post(
        url, {**base, "oauth_tenant": "t", "oauth_client_id": "c", "oauth_client_secret": "Cl1ent-S3cret"}
    )
    assert saved.status_code == 302
    kept = admin_client.post(url, {**base, "oauth_tenant": "t", "oauth_client_id": "c", "oauth_client_secret": ""})
    assert kept.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.oauth_client_secret == "Cl1ent-S3cret"
    page = admin_client.get(url)
    assert b"Cl1ent-S3cret" not in page.content and b"Leave blank to keep it" in page.content
    key = {"type": "service_account", "private_key": KEY_SECRET, "client_email": "sa@x.iam"}
    bad_key = admin_client.post(url, {**base, "auth_method": "oauth_google", "oauth_service_account_key": "{not json"})
    assert bad_key.status_code == 400
    assert b"{not json" not in bad_key.content
    google = admin_client.post(
        url, {**base, "auth_method": "oauth_google", "oauth_service_account_key": json.dumps(key)}
    )
    assert google.status_code == 302
    account = AccountFactory(task__source=endpoint, source_refresh_token="Refresh-T0ken-never-shown")
    pages = (
        url,
        reverse("tasks:endpoint_list"),
        reverse("admin:tasks_endpoint_change", args=[endpoint.pk]),
        reverse("admin:tasks_account_change", args=[account.pk]),
        reverse("admin:tasks_task_change", args=[account.task_id]),
        reverse("tasks:account_edit", args=[account.task_id, account.pk]),
    )
    for page_url in pages:
        response = admin_client.get(page_url)
        assert response.status_code == 200, page_url
        for secret in (KEY_SECRET, "Cl1ent-S3cret", "Refresh-T0ken-never-shown"):
            assert secret.encode() not in response.content, (page_url, secret)


def test_no_token_or_secret_reaches_the_logs_or_the_task_api(
    admin_client, oauth_task, oauth_imap_server, oauth_bed, caplog, pushed
):
    from runs import jobs, orchestrator
    from runs.models import Run
    from tests.runs.conftest import fill_user

    caplog.set_level(logging.DEBUG)
    task, [(source, _)] = oauth_task("oauth_microsoft")
    fill_user(oauth_imap_server, source, {"INBOX": 2})
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    for pk in run.account_runs.values_list("pk", flat=True):
        jobs.copy_account_job(pk)
    token = token_source(task)(False)  # the cached token the run used
    api = admin_client.get(reverse("api:task", args=[task.pk]))
    assert api.status_code == 200
    assert (api.json()["source"]["oauth"], api.json()["destination"]["oauth"]) == ("oauth_microsoft", None)
    for text in (caplog.text, api.content.decode()):
        assert oauth_bed.client_secret not in text
        assert token not in text


@pytest.fixture
def pushed(monkeypatch):
    from runs import orchestrator

    monkeypatch.setattr(orchestrator, "push_jobs", lambda pks: None)
    monkeypatch.setattr(orchestrator, "push_fan_out", orchestrator.fan_out)


def test_the_sign_in_method_is_part_of_the_csv_columns_and_task_list(admin_client):
    task = TaskFactory(source__auth_method="oauth_google")
    response = admin_client.get(reverse("tasks:import", args=[task.pk]))
    assert b"sign_in" in response.content


def test_the_account_export_lists_each_users_consent_link(admin_client, client, oauth_task, oauth_bed):
    import csv
    import io

    task, users = oauth_task("oauth_consent", pairs=2)
    given = task.accounts.get(source_user=users[0][0].username)
    given.source_refresh_token = "stored"
    given.save()
    response = admin_client.get(reverse("tasks:account_export", args=[task.pk]))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    states = {row["source_user"]: row["source_consent"] for row in rows}
    assert states == {users[0][0].username: "given", users[1][0].username: "missing"}
    assert "destination_consent" not in rows[0]
    link = rows[1]["source_consent_link"]
    assert link.startswith("http://testserver/consent/")
    assert client.get(link).status_code == 200
    assert b"stored" not in response.content


def _closed_port() -> int:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        return closed.getsockname()[1]


def test_a_token_endpoint_that_cannot_be_reached_is_named_with_its_cause_like_an_unreachable_server(
    oauth_task, oauth_bed
):
    port = _closed_port()
    task, _users = oauth_task("oauth_google", oauth_token_url=f"https://127.0.0.1:{port}/token?tenant=private")
    with pytest.raises(TokenUnavailable) as excinfo:
        token_source(task)(False)
    where = f"https://127.0.0.1:{port}/token"
    assert str(excinfo.value) == f"the token endpoint could not be reached: {where} (connection refused)"
    from runs.engine import test_connection

    result = test_connection(services.account_mailbox(task.accounts.get(), "source"))
    # Classified like an IMAP server whose port is closed (runs.engine.connect.network_problem):
    # the account fails at once with that kind, as it would for its IMAP server.
    assert (result.ok, result.kind) == (False, "refused")
    assert (
        result.message
        == f"could not get a token: the token endpoint could not be reached: {where} (connection refused)"
    )
    assert "private" not in result.message


def test_a_token_endpoint_whose_certificate_is_not_trusted_says_so(oauth_task, oauth_bed, monkeypatch):
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # the local provider's CA is not in it
    task, _users = oauth_task("oauth_microsoft")
    account = _tested(task.accounts.get())
    assert account.source_test_status == Account.TestStatus.FAIL
    assert account.source_test_message.startswith(
        f"could not get a token: the token endpoint could not be reached: {oauth_bed.authority_url}"
    ), account.source_test_message
    assert "(TLS: certificate verify failed: " in account.source_test_message


def test_a_microsoft_application_signs_in_with_a_certificate_instead_of_a_secret(oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task(
        "oauth_microsoft", oauth_client_secret="", oauth_client_certificate=oauth_bed.client_certificate_pem
    )
    account = _tested(task.accounts.get())
    assert account.source_test_status == Account.TestStatus.OK, account.source_test_message
    assert task.source.oauth_problems() == []


def test_a_certificate_the_provider_does_not_know_is_refused_with_its_words(oauth_task, oauth_bed):
    from tests.support.oauth_provider import _certificate_and_key

    other, _public = _certificate_and_key()
    task, _users = oauth_task("oauth_microsoft", oauth_client_secret="", oauth_client_certificate=other)
    account = _tested(task.accounts.get())
    assert account.source_test_message.startswith(
        "could not get a token: invalid_client: AADSTS700027: Client assertion failed signature validation"
    ), account.source_test_message
    assert "PRIVATE KEY" not in account.source_test_message


def test_the_endpoint_form_wants_a_certificate_with_its_key(admin_client, oauth_bed):
    endpoint = EndpointFactory()
    url = reverse("tasks:endpoint_edit", args=[endpoint.pk])
    base = {
        "label": endpoint.label,
        "host": endpoint.host,
        "port": endpoint.port,
        "security": endpoint.security,
        "max_connections": 5,
        "auth_method": "oauth_microsoft",
        "oauth_tenant": "t",
        "oauth_client_id": "c",
    }
    certificate_only = oauth_bed.client_certificate_pem.split("-----BEGIN PRIVATE KEY-----")[0]
    refused = admin_client.post(url, {**base, "oauth_client_certificate": certificate_only})
    assert refused.status_code == 400
    assert "oauth_client_certificate" in refused.context["form"].errors
    saved = admin_client.post(url, {**base, "oauth_client_certificate": oauth_bed.client_certificate_pem})
    assert saved.status_code == 302
    page = admin_client.get(url)
    assert b"PRIVATE KEY-----\n" not in page.content


def test_a_renewed_refresh_token_is_stored_and_a_new_consent_asks_for_a_new_test(oauth_task, oauth_bed):
    task, [(source, _)] = oauth_task("oauth_consent")
    account = task.accounts.get()
    oauth.store_refresh_token(account.pk, "source", "first", consent=False)
    from tests.runs.test_oauth_runs import consent

    consent(oauth_bed, Account.objects.select_related("task__source", "task__destination").get(pk=account.pk))
    account.refresh_from_db()
    # A new consent is tested at once: its proof (the token opens this mailbox) is the test.
    assert account.source_test_status == Account.TestStatus.OK
    assert account.source_test_message.endswith(
        f", signed in with OAuth 2.0 (consent of {account.source_user} to application {oauth_bed.client_id})"
    )
    assert account.destination_test_status == Account.TestStatus.OK
    Account.objects.filter(pk=account.pk).update(source_test_status=Account.TestStatus.UNTESTED)
    given = account.source_refresh_token
    oauth_bed.rotate_refresh_tokens = True
    token_source(task)(False)
    account.refresh_from_db()
    assert account.source_refresh_token not in ("", given)  # the provider's renewal is kept
    assert account.source_test_status == Account.TestStatus.UNTESTED  # and is not a new consent


# ------------------------------------------------------------------------------ editing an endpoint


def _endpoint_post(endpoint: Endpoint, **changes) -> dict:
    fields = (
        *("label", "host", "port", "security", "max_connections"),
        *("auth_method", "oauth_tenant", "oauth_client_id", "oauth_authority_url"),
    )
    return {**{name: getattr(endpoint, name) for name in fields}, "verify_tls": "on", **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"oauth_client_secret": "a-wrong-secret"},
        {"auth_method": "password"},
        {"oauth_tenant": "other-tenant"},
        {"oauth_scope": "https://outlook.office365.com/IMAP.AccessAsUser.All"},
        {"port": 1993},
    ],
    ids=["secret", "method", "tenant", "scope", "port"],
)
def test_editing_how_an_endpoint_signs_in_forgets_the_tests_of_every_account_using_it(admin_client, changes):
    endpoint = EndpointFactory(
        auth_method="oauth_microsoft", oauth_tenant="t", oauth_client_id="c", oauth_client_secret="s3cret"
    )
    as_source = AccountFactory(task__source=endpoint, tested=True)
    as_destination = AccountFactory(task__destination=endpoint, tested=True)
    untouched = AccountFactory(tested=True)
    url = reverse("tasks:endpoint_edit", args=[endpoint.pk])
    assert admin_client.post(url, _endpoint_post(endpoint, **changes)).status_code == 302
    for account in (as_source, as_destination, untouched):
        account.refresh_from_db()
    assert as_source.source_test_status == Account.TestStatus.UNTESTED
    assert as_source.destination_test_status == Account.TestStatus.OK  # the other side's server is unchanged
    assert as_destination.destination_test_status == Account.TestStatus.UNTESTED
    assert as_destination.source_test_status == Account.TestStatus.OK
    assert (untouched.source_test_status, untouched.destination_test_status) == (Account.TestStatus.OK,) * 2


def test_saving_an_endpoint_unchanged_or_its_label_keeps_the_tests(admin_client):
    endpoint = EndpointFactory(
        auth_method="oauth_microsoft", oauth_tenant="t", oauth_client_id="c", oauth_client_secret="s3cret"
    )
    account = AccountFactory(task__source=endpoint, tested=True)
    url = reverse("tasks:endpoint_edit", args=[endpoint.pk])
    # The secret left blank keeps it: not a change.
    assert admin_client.post(url, _endpoint_post(endpoint, oauth_client_secret="")).status_code == 302
    assert admin_client.post(url, _endpoint_post(endpoint, label="renamed", max_connections=3)).status_code == 302
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.OK
    admin = reverse("admin:tasks_endpoint_change", args=[endpoint.pk])
    posted = _endpoint_post(endpoint, label="renamed", max_connections=3, oauth_client_secret="new-secret")
    assert admin_client.post(admin, posted).status_code == 302
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.UNTESTED


# ------------------------------------------------------------------------------ accounts of OAuth sides


def test_the_account_form_asks_no_password_for_an_oauth_side(admin_client):
    task = TaskFactory(source__auth_method="oauth_consent", source__oauth_client_id="c", source__oauth_tenant="t")
    account = AccountFactory(task=task, source_password="", destination_password="dpw")
    for url in (
        reverse("tasks:account_create", args=[task.pk]),
        reverse("tasks:account_edit", args=[task.pk, account.pk]),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert b'name="source_password"' not in page.content and b'name="destination_password"' in page.content
        assert b'data-testid="oauth-side-source"' in page.content
    page = admin_client.get(reverse("tasks:account_edit", args=[task.pk, account.pk]))
    assert b"no consent yet" in page.content
    saved = admin_client.post(
        reverse("tasks:account_edit", args=[task.pk, account.pk]),
        {"source_user": account.source_user, "destination_user": account.destination_user, "source_password": "x"},
    )
    assert saved.status_code == 302
    account.refresh_from_db()
    assert (account.source_password, account.destination_password) == ("", "dpw")  # nothing posted is stored


def test_the_endpoint_pages_name_the_sign_in_once_and_the_list_shows_it(admin_client):
    endpoint = EndpointFactory(auth_method="oauth_google", oauth_service_account_key='{"type": "service_account"}')
    EndpointFactory()
    form = admin_client.get(reverse("tasks:endpoint_edit", args=[endpoint.pk])).content.decode()
    assert form.count(">Sign-in<") == 1  # the field's label, no heading repeating it
    listing = admin_client.get(reverse("tasks:endpoint_list")).content.decode()
    assert ">Sign-in</th>" in listing
    cells = re.findall(r'data-testid="sign-in"[^>]*>([^<]*)</td>', listing)
    assert sorted(cells) == ["OAuth 2.0: Google service account", "Password"]
