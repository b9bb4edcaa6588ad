from __future__ import annotations

import pytest

from tasks.csv_import import ImportRefused, apply_import, parse_accounts_csv
from tasks.models import Account
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_rows_without_header_and_reused_destination_password():
    task = TaskFactory()
    preview = parse_accounts_csv(task, b"a@old,pw-a,a@new,\nb@old,pw-b,b@new,other\n")
    assert preview.errors == []
    assert [(r.line, r.source_user, r.destination_user) for r in preview.rows] == [
        (1, "a@old", "a@new"),
        (2, "b@old", "b@new"),
    ]
    assert preview.rows[0].destination_password == "pw-a"
    assert preview.rows[1].destination_password == "other"


def test_header_line_is_optional_and_line_numbers_count_it():
    task = TaskFactory()
    preview = parse_accounts_csv(
        task,
        b"source_user,source_password,destination_user,destination_password\nx@old,p,x@new,\n",
    )
    assert [r.line for r in preview.rows] == [2]


def test_three_columns_are_enough():
    preview = parse_accounts_csv(TaskFactory(), b"x@old,p,x@new\n")
    assert preview.errors == [] and preview.rows[0].destination_password == "p"


def test_utf8_bom_semicolons_and_quoted_commas():
    data = '\ufeffjosé@old;"p,w;1";josé@new;\n'.encode()
    preview = parse_accounts_csv(TaskFactory(), data)
    assert preview.errors == []
    assert preview.rows[0].source_user == "josé@old"
    assert preview.rows[0].source_password == "p,w;1"


def test_every_bad_line_is_listed_with_its_number_and_reason():
    task = TaskFactory()
    data = (
        b"ok@old,p,ok@new,\n"
        b",p,nouser@new,\n"
        b"nopw@old,,nopw@new,\n"
        b"ok@old,p2,again@new,\n" + b"long" * 70 + b"@old,p,x@new,\n"
        b"a,b,c,d,e,f\n"
    )
    preview = parse_accounts_csv(task, data)
    reasons = {e.line: e.reason for e in preview.errors}
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert "Missing source_user" in reasons[2]
    assert "Missing source_password" in reasons[3]
    assert "Duplicate source user 'ok@old' (already on line 1)" in reasons[4]
    assert "at most 255" in reasons[5]
    assert "expected 4" in reasons[6]
    assert not preview.ok


def test_file_that_is_not_utf8_is_refused_with_the_line():
    preview = parse_accounts_csv(TaskFactory(), "a@old,p,a@new,\nb\xe9@old,p,b@new,\n".encode("latin-1"))
    assert len(preview.errors) == 1
    assert preview.errors[0].line == 2
    assert "not UTF-8" in preview.errors[0].reason
    assert preview.rows == []


def test_empty_file_is_an_error():
    preview = parse_accounts_csv(TaskFactory(), b"  \n")
    assert preview.errors and "empty" in preview.errors[0].reason


def test_existing_source_users_are_updates():
    task = TaskFactory()
    AccountFactory(task=task, source_user="a@old")
    preview = parse_accounts_csv(task, b"a@old,p,a@new,\nb@old,p,b@new,\n")
    assert [r.source_user for r in preview.to_update] == ["a@old"]
    assert [r.source_user for r in preview.to_create] == ["b@old"]


def test_apply_creates_and_updates_and_resets_test_status():
    task = TaskFactory()
    old = AccountFactory(task=task, source_user="a@old", tested=True)
    preview = parse_accounts_csv(task, b"a@old,newpw,a@new,\nb@old,pb,b@new,db\n")
    assert apply_import(task, preview) == (1, 1)
    old.refresh_from_db()
    assert old.source_password == "newpw" and old.destination_password == "newpw"
    assert old.source_test_status == Account.TestStatus.UNTESTED
    created = Account.objects.get(task=task, source_user="b@old")
    assert (created.source_password, created.destination_password) == ("pb", "db")


def test_apply_refuses_a_preview_with_errors_and_saves_nothing():
    task = TaskFactory()
    preview = parse_accounts_csv(task, b"a@old,p,a@new,\n,p,x,\n")
    with pytest.raises(ImportRefused):
        apply_import(task, preview)
    assert not Account.objects.exists()


def test_apply_is_all_or_nothing_when_the_database_fails_midway(monkeypatch):
    task = TaskFactory()
    AccountFactory(task=task, source_user="a@old", destination_user="kept@new")
    preview = parse_accounts_csv(task, b"a@old,p,a@new,\nb@old,p,b@new,\n")

    def fail(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Account.objects, "bulk_update", fail)  # after the new rows were inserted
    with pytest.raises(RuntimeError):
        apply_import(task, preview)
    assert list(Account.objects.values_list("source_user", "destination_user")) == [("a@old", "kept@new")]


def test_apply_treats_a_source_user_added_after_the_preview_as_an_update():
    task = TaskFactory()
    preview = parse_accounts_csv(task, b"a@old,p,a@new,\nb@old,p,b@new,\n")
    # Someone adds b@old after the preview but before the import: apply() re-reads the task's
    # accounts, so b@old becomes an update; the file's other row still lands.
    AccountFactory(task=task, source_user="b@old")
    assert apply_import(task, preview) == (1, 1)
    assert Account.objects.count() == 2
    assert Account.objects.get(source_user="b@old").destination_user == "b@new"


def test_passwords_stay_out_of_the_row_repr():
    preview = parse_accounts_csv(TaskFactory(), b"a@old,hunter2-secret,a@new,\n")
    assert "hunter2-secret" not in repr(preview)


def test_an_oauth_source_needs_no_password_and_stores_none():
    task = TaskFactory(source__auth_method="oauth_microsoft")
    data = b"source_user,source_password,destination_user,destination_password,sign_in\na@old,,a@new,dpw,oauth\n"
    preview = parse_accounts_csv(task, data)
    assert preview.errors == []
    assert [(r.source_password, r.destination_password) for r in preview.rows] == [("", "dpw")]
    apply_import(task, preview)
    account = task.accounts.get(source_user="a@old")
    assert (account.source_password, account.destination_password) == ("", "dpw")


def test_a_password_for_an_oauth_side_refuses_the_line_and_imports_nothing():
    task = TaskFactory(source__auth_method="oauth_microsoft", destination__auth_method="oauth_google")
    data = b"a@old,,a@new,\nb@old,spw,b@new,\nc@old,,c@new,dpw\n"
    preview = parse_accounts_csv(task, data)
    assert {e.line: e.reason for e in preview.errors} == {
        2: "The source endpoint signs in with OAuth 2.0; leave source_password empty.",
        3: "The destination endpoint signs in with OAuth 2.0; leave destination_password empty.",
    }
    assert not preview.ok
    with pytest.raises(ImportRefused):
        apply_import(task, preview)
    assert not task.accounts.exists()


def test_an_oauth_source_still_needs_the_destination_password():
    task = TaskFactory(source__auth_method="oauth_google")
    preview = parse_accounts_csv(task, b"a@old,,a@new,\n")
    assert [e.reason for e in preview.errors] == ["Missing destination_password."]


def test_a_sign_in_column_that_disagrees_with_the_endpoint_is_a_line_error():
    preview = parse_accounts_csv(TaskFactory(), b"a@old,pw,a@new,,oauth\nb@old,pw,b@new,,token\n")
    reasons = {e.line: e.reason for e in preview.errors}
    assert reasons == {
        1: "sign_in says oauth, but this task's source endpoint signs in with password.",
        2: "sign_in is 'token'; use password or oauth.",
    }
