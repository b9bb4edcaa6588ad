"""A server answer the client cannot parse reaches the pages and `testaccounts` as words, never as
an error page or a traceback (issue 10 item 5). A scripted fake server gives the odd answer."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from tasks.models import Account
from tasks.services_probe import probe_server
from tests.runs.engine.helpers import FakeServer
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory

pytestmark = pytest.mark.django_db


def _odd_server() -> FakeServer:
    """Logs anyone in, then answers EXAMINE with a UIDVALIDITY that is not a number."""

    def handler(tag: str, command: str) -> list[str]:
        verb = command.split(" ")[0].upper()
        return {
            "CAPABILITY": ["* CAPABILITY IMAP4rev1", f"{tag} OK done"],
            "LOGIN": [f"{tag} OK logged in"],
            "LIST": ['* LIST () "/" INBOX', f"{tag} OK done"],
            "EXAMINE": ["* OK [UIDVALIDITY twelve] odd", f"{tag} OK [READ-ONLY] done"],
            "LOGOUT": ["* BYE bye", f"{tag} OK bye"],
        }.get(verb, [f"{tag} BAD unknown"])

    return FakeServer(b"* OK odd server ready\r\n", handler)


@pytest.mark.django_db(transaction=True)  # testaccounts tests in threads, each with its own connection
def test_an_unparsable_answer_is_a_failed_test_with_words_on_the_page_and_in_testaccounts(admin_client):
    with _odd_server() as server:
        endpoint = EndpointFactory(port=server.port, security="plain", verify_tls=False)
        task = TaskFactory(source=endpoint, destination=endpoint)
        account = AccountFactory(task=task)
        response = admin_client.post(
            reverse("tasks:account_test", args=[task.pk, account.pk]), headers={"HX-Request": "true"}
        )
        assert response.status_code == 200
        account.refresh_from_db()
        assert account.source_test_status == Account.TestStatus.FAIL
        assert "could not be understood" in account.source_test_message
        assert "twelve" in account.source_test_message
        out = io.StringIO()
        with pytest.raises(CommandError, match="1 accounts failed the test"):
            call_command("testaccounts", task.name, stdout=out)
    assert f"{account.source_user} -> {account.destination_user}: source fail (" in out.getvalue()
    assert "Traceback" not in out.getvalue()


def test_the_endpoint_probe_reports_an_undecodable_answer_in_words():
    def handler(tag: str, command: str) -> list[str]:
        if command.upper().startswith("CAPABILITY"):
            return ["* CAPABILITY IMAP4rev1 XÜBER", f"{tag} OK done"]
        return ["* BYE bye", f"{tag} OK bye"]

    with FakeServer(b"* OK odd server ready\r\n", handler) as server:
        result = probe_server("127.0.0.1", server.port, "plain", verify_tls=False, timeout=5)
    assert not result.ok
    assert result.message.startswith("The server's answer could not be understood")
