"""Pages that talk to a real IMAP server: endpoint probe, account tests, folder mapping."""

from __future__ import annotations

import ssl

import pytest
from django.urls import reverse
from django.utils.html import escape

from tasks.models import Account
from tasks.services_probe import describe_certificate_error, probe_server
from tests.support.dovecot import fill, make_message
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

pytestmark = [pytest.mark.django_db, pytest.mark.imap]


def endpoint_for(imap_server, security="starttls", **kwargs):
    kwargs.setdefault("verify_tls", True)
    kwargs.setdefault("ca_certificate", imap_server.ca_certificate)
    return EndpointFactory(
        host="127.0.0.1",
        port=imap_server.port_for(security),
        security=security,
        **kwargs,
    )


@pytest.mark.parametrize("security", ["plain", "starttls", "ssl"])
def test_probe_lists_capabilities_without_logging_in(imap_server, security):
    result = probe_server(
        "127.0.0.1",
        imap_server.port_for(security),
        security,
        verify_tls=True,
        ca_certificate=imap_server.ca_certificate,
    )
    assert result.ok, result.message
    assert dict(result.capability_table)["IMAP4rev1"] is True
    assert (result.tls != "") == (security != "plain")


def test_probe_explains_an_untrusted_certificate(imap_server):
    result = probe_server("127.0.0.1", imap_server.imaps_port, "ssl", verify_tls=True)
    assert not result.ok
    assert "self-signed certificate" in result.message
    assert "custom CA certificate" in result.message


@pytest.mark.parametrize(
    ("verify_message", "words"),
    [
        (
            "Hostname mismatch, certificate is not valid for 'mail.test'.",
            "not valid for the name 'mail.test'",
        ),
        ("certificate has expired", "has expired"),
        (
            "unable to get local issuer certificate",
            "issued by a CA this machine does not trust",
        ),
        ("self-signed certificate", "self-signed certificate"),
    ],
)
def test_certificate_problems_in_plain_words(verify_message, words):
    error = ssl.SSLCertVerificationError(1, verify_message)
    error.verify_message = verify_message
    assert words in describe_certificate_error(error, "mail.test")


def test_probe_with_tls_on_a_plain_port_says_to_check_the_security_setting(imap_server):
    result = probe_server("127.0.0.1", imap_server.imap_port, "ssl", verify_tls=False)
    assert not result.ok
    assert "Check the port and the security setting" in result.message


def test_probe_with_a_bad_custom_ca_says_so(imap_server):
    result = probe_server(
        "127.0.0.1",
        imap_server.imaps_port,
        "ssl",
        ca_certificate="-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----",
    )
    assert not result.ok
    assert "custom CA certificate could not be read" in result.message


def test_endpoint_test_logs_in_with_an_account_for_the_full_list(admin_client, imap_server, make_imap_user):
    endpoint = endpoint_for(imap_server)
    user = make_imap_user()
    AccountFactory(
        task=TaskFactory(source=endpoint),
        source_user=user.username,
        source_password=user.password,
    )
    html = admin_client.post(
        reverse("tasks:endpoint_test", args=[endpoint.pk]),
        headers={"HX-Request": "true"},
    ).content.decode()
    assert f"after logging in as {user.username}" in html
    assert '<li class="yes" title="supported">UIDPLUS' in html
    assert user.password not in html


def test_endpoint_test_reports_a_failed_account_login(admin_client, imap_server):
    endpoint = endpoint_for(imap_server)
    AccountFactory(
        task=TaskFactory(source=endpoint),
        source_user="nobody",
        source_password="wrong-pw-123",
    )
    html = admin_client.post(
        reverse("tasks:endpoint_test", args=[endpoint.pk]),
        headers={"HX-Request": "true"},
    ).content.decode()
    assert "the login failed" in html
    assert "wrong-pw-123" not in html


def test_account_test_button_updates_the_row(admin_client, imap_server, make_imap_user):
    task = TaskFactory(source=endpoint_for(imap_server), destination=endpoint_for(imap_server, "ssl"))
    good, other = make_imap_user(), make_imap_user()
    account = AccountFactory(
        task=task,
        source_user=good.username,
        source_password=good.password,
        destination_user=other.username,
        destination_password="not-the-password",
    )
    response = admin_client.post(
        reverse("tasks:account_test", args=[task.pk, account.pk]),
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="account-{account.pk}"')
    account.refresh_from_db()
    assert account.source_test_status == Account.TestStatus.OK
    assert account.destination_test_status == Account.TestStatus.FAIL
    assert escape(account.destination_test_message) in html  # the server's words, on expand
    assert good.password not in html and "not-the-password" not in html


def _mapping_task(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    client = imap_server.connect(source)
    try:
        fill(
            client,
            "Projekte/Größe",
            [(make_message(seed=n), (), None) for n in range(3)],
        )
        fill(client, "Old stuff", [(make_message(seed=9), (), None)])
    finally:
        client.logout()
    task = TaskFactory(source=endpoint_for(imap_server), destination=endpoint_for(imap_server))
    AccountFactory(
        task=task,
        source_user=source.username,
        source_password=source.password,
        destination_user=destination.username,
        destination_password=destination.password,
    )
    return task


def test_folder_mapping_lists_source_folders_with_counts(admin_client, imap_server, make_imap_user):
    task = _mapping_task(imap_server, make_imap_user)
    html = admin_client.get(reverse("tasks:folders", args=[task.pk])).content.decode()
    assert "Projekte/Größe" in html
    assert "INBOX" in html and "Sent" in html
    assert "matched by special use" in html
    assert '<td class="num">3</td>' in html


def test_folder_mapping_saves_overrides_and_skips(admin_client, imap_server, make_imap_user):
    task = _mapping_task(imap_server, make_imap_user)
    html = admin_client.get(reverse("tasks:folders", args=[task.pk])).content.decode()
    names = [part.split("</strong>")[0] for part in html.split("<td><strong>")[1:]]
    data = {}
    for index, name in enumerate(names):
        if name == "Old stuff":
            data[f"skip_{index}"] = "on"
        if name == "Projekte/Größe":
            data[f"dest_{index}"] = "Projects/Size"
    task.folder_mapping = {"Gone folder": "Kept"}
    task.save()
    response = admin_client.post(reverse("tasks:folders", args=[task.pk]), data)
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.folder_mapping == {
        "Old stuff": "",
        "Projekte/Größe": "Projects/Size",
        "Gone folder": "Kept",
    }
    html = admin_client.get(reverse("tasks:folders", args=[task.pk])).content.decode()
    assert "your mapping" in html and "skipped by you" in html


def test_folder_mapping_shows_conflicts(admin_client, imap_server, make_imap_user):
    task = _mapping_task(imap_server, make_imap_user)
    task.folder_mapping = {"Old stuff": "Projekte/Größe"}  # two source folders onto one
    task.save()
    html = admin_client.get(reverse("tasks:folders", args=[task.pk])).content.decode()
    assert "cannot be copied as mapped" in html
    assert 'class="conflict"' in html


def test_folder_mapping_says_why_when_the_login_fails(admin_client, imap_server):
    task = TaskFactory(source=endpoint_for(imap_server), destination=endpoint_for(imap_server))
    AccountFactory(task=task, source_user="ghost", source_password="wrong-pw-456")
    html = admin_client.get(reverse("tasks:folders", args=[task.pk])).content.decode()
    assert "Could not read the folders of ghost" in html
    assert "wrong-pw-456" not in html


def test_folder_mapping_without_accounts(admin_client):
    task = TaskFactory()
    html = admin_client.get(reverse("tasks:folders", args=[task.pk])).content.decode()
    assert "No accounts yet" in html
