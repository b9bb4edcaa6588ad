"""Runs whose source signs in with OAuth 2.0 (issue 16), each of the three ways, against the local
provider and the Dovecot that checks its tokens (tests/support/oauth_fixtures.py). Jobs called directly."""

from __future__ import annotations

import urllib.parse

import pytest
import requests

from runs import jobs, orchestrator
from runs.engine import worker
from runs.models import AccountRun, Run
from tasks import oauth, services
from tasks.models import Account
from tests.runs.conftest import fill_user, mail_hashes
from tests.runs.test_jobs import _Once
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]

WAYS = ["oauth_microsoft", "oauth_google", "oauth_consent"]


def consent(provider, account: Account, side: str = "source") -> None:
    """What the user does with the consent link: sign in at the provider and allow; the answer stored."""
    redirect_uri = "http://testserver/consent/done/"
    url, state, verifier = oauth.begin_consent(account, side, redirect_uri)
    page = requests.get(url, verify=provider.ca_file, timeout=10)
    assert page.status_code == 200
    form = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    form["user"] = getattr(account, f"{side}_user")
    answer = requests.post(
        provider.authorize_url, data=form, verify=provider.ca_file, allow_redirects=False, timeout=10
    )
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer.headers["Location"]).query))
    assert back["state"] == state
    services.finish_consent(account, side, code=back["code"], verifier=verifier, redirect_uri=redirect_uri)


def consent_and_test(provider, account: Account) -> None:
    """The user consents; the operator tests the account again (a new consent resets its test)."""
    consent(provider, account)
    tested = services.test_account(account)
    assert tested.tested_ok, tested.source_test_message


def _run(task) -> Run:
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    for pk in run.account_runs.order_by("pk").values_list("pk", flat=True):
        jobs.copy_account_job(pk)
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("method", WAYS)
def test_each_way_copies_byte_exact_and_reruns_incrementally(method, oauth_task, oauth_imap_server, oauth_bed, pushed):
    task, [(source, destination)] = oauth_task(method)
    if method == "oauth_consent":
        consent_and_test(oauth_bed, task.accounts.get())
    expected = fill_user(oauth_imap_server, source, {"INBOX": 6, "Projects/2024": 3})
    run = _run(task)
    assert run.status == Run.Status.DONE, run.reason
    assert (run.copied, run.errors) == (expected, 0)
    assert mail_hashes(oauth_imap_server, destination) == mail_hashes(oauth_imap_server, source)
    again = _run(task)
    assert again.status == Run.Status.DONE, again.reason
    assert (again.copied, again.errors) == (0, 0)
    grants = [grant for _path, grant in oauth_bed.requests if grant != "authorization_code"]
    # Tokens are cached in memory: one token request for both runs and all their connections.
    assert len(grants) == 1, grants


def test_a_token_expiring_mid_folder_is_survived(oauth_task, oauth_imap_server, oauth_bed, pushed, monkeypatch):
    monkeypatch.setattr(worker, "BATCH_MESSAGES", 20)  # many batches: the folder is still being copied
    with FaultProxy(oauth_imap_server.imap_port, delay=0.01) as proxy:
        task, [(source, destination)] = oauth_task("oauth_microsoft", source_port=proxy.port)
        expected = fill_user(oauth_imap_server, source, {"INBOX": 300})
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
        (pk,) = run.account_runs.values_list("pk", flat=True)

        def expire() -> None:
            # The provider ends the token's life early and the server ends the session, as Exchange
            # does ("BYE Session invalidated - AccessTokenExpired"): the cached token no longer works.
            oauth_bed.expire_all()
            proxy.bye_at_next_command(text="* BYE Session invalidated - AccessTokenExpired")

        with _Once(expire) as once:
            jobs.copy_account_job(pk)
        assert once.fired.is_set()
        assert proxy.faults_fired >= 1
    run.refresh_from_db()
    assert run.status == Run.Status.DONE, run.reason
    assert (run.copied, run.errors) == (expected, 0)
    assert mail_hashes(oauth_imap_server, destination) == mail_hashes(oauth_imap_server, source)
    assert [grant for _p, grant in oauth_bed.requests] == ["client_credentials", "client_credentials"]


def test_a_revoked_consent_is_a_clear_error_of_that_account(oauth_task, oauth_imap_server, oauth_bed, pushed):
    task, users = oauth_task("oauth_consent", pairs=2)
    for account in task.accounts.all():
        consent_and_test(oauth_bed, account)
    for source, _ in users:
        fill_user(oauth_imap_server, source, {"INBOX": 3})
    revoked, kept = users
    oauth_bed.revoke(revoked[0].username)
    run = _run(task)
    assert run.status == Run.Status.FAILED
    assert run.copied == 3 and run.errors == 1
    failed = run.account_runs.get(account__source_user=revoked[0].username)
    assert failed.status == AccountRun.Status.FAILED
    assert failed.last_error == (
        "source: could not get a token: invalid_grant: Token has been expired or revoked. (the user's consent "
        "was withdrawn or has expired: send the user this account's consent link again)"
    )
    # The withdrawn consent is forgotten: the account's page asks for a new one.
    assert Account.objects.get(source_user=revoked[0].username).source_refresh_token == ""
    assert Account.objects.get(source_user=kept[0].username).source_refresh_token != ""
    assert run.account_runs.get(account__source_user=kept[0].username).status == AccountRun.Status.DONE
