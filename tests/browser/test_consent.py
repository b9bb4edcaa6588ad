"""Each user's consent in a real browser (issue 16): the operator copies an account's consent link, the
mailbox's user opens it, signs in at the (local) provider and allows; the refresh token is stored and the
account signs in with it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tasks import services
from tasks.models import Account

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.imap
def test_a_user_gives_consent_through_the_link_the_operator_sends(
    live_page, live_server, browser, oauth_task, oauth_bed
):
    task, [(source, _)] = oauth_task("oauth_consent")
    account = task.accounts.get()
    page = live_page
    page.goto(f"{live_server.url}/tasks/{task.pk}/accounts/{account.pk}/edit/")
    expect(page.get_by_test_id("consent-missing")).to_have_text("no consent yet")
    link = page.get_by_test_id("consent-link-source").input_value()
    assert link.startswith(f"{live_server.url}/consent/")

    # The user: another browser, not logged in to imapcopier; the local provider's certificate is self-signed.
    context = browser.new_context(ignore_https_errors=True)
    try:
        user_page = context.new_page()
        user_page.goto(link)
        expect(user_page.get_by_test_id("consent")).to_contain_text(source.username)
        user_page.get_by_test_id("consent-continue").click()
        expect(user_page.get_by_label("Mailbox")).to_have_value(source.username)  # the login hint
        user_page.get_by_role("button", name="Allow").click()
        expect(user_page.get_by_test_id("consent-done")).to_contain_text(source.username)
        user_page.goto(link)  # the link is single-use
        expect(user_page.get_by_test_id("consent-problem")).to_have_text("This link was used; ask for a new one.")
    finally:
        context.close()

    account = Account.objects.get(pk=account.pk)
    assert account.source_refresh_token
    page.reload()
    expect(page.get_by_test_id("consent-given")).to_have_text("consent given")
    expect(page.get_by_test_id("consent-link-source")).not_to_have_value(link)  # the current link
    expect(page.get_by_label("Source password")).to_have_count(0)  # an OAuth side asks no password
    tested = services.test_account(account)
    assert tested.source_test_status == Account.TestStatus.OK, tested.source_test_message


def test_the_endpoint_form_shows_the_settings_of_the_chosen_sign_in(live_page, live_server):
    page = live_page
    page.goto(f"{live_server.url}/endpoints/new/")
    tenant, key = page.get_by_label("Tenant", exact=True), page.get_by_label("Service account key (JSON)")
    expect(tenant).to_be_hidden()
    page.get_by_label("Sign-in", exact=True).select_option("oauth_microsoft")
    expect(tenant).to_be_visible()
    expect(key).to_be_hidden()
    page.get_by_label("Sign-in", exact=True).select_option("oauth_google")
    expect(key).to_be_visible()
    expect(tenant).to_be_hidden()
