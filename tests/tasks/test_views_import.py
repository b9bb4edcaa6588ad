from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tasks.models import Account
from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db

SECRET = "csv-Secret-Pa55word"


def upload(client, task, data: bytes):
    return client.post(
        reverse("tasks:import", args=[task.pk]),
        {"file": SimpleUploadedFile("accounts.csv", data, content_type="text/csv")},
    )


def test_upload_page(admin_client):
    task = TaskFactory()
    html = admin_client.get(reverse("tasks:import", args=[task.pk])).content.decode()
    assert "source_user,source_password,destination_user,destination_password" in html


def test_upload_without_a_file_shows_the_error_next_to_the_field(admin_client):
    task = TaskFactory()
    response = admin_client.post(reverse("tasks:import", args=[task.pk]), {})
    assert response.status_code == 400
    assert 'id="id_file-errors"' in response.content.decode()


def test_upload_preview_confirm_imports_the_accounts(admin_client):
    task = TaskFactory()
    AccountFactory(task=task, source_user="keep@old")
    response = upload(
        admin_client,
        task,
        f"new@old,{SECRET},new@new,\nkeep@old,{SECRET},keep@new,\n".encode(),
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("tasks:import_preview", args=[task.pk])
    preview = admin_client.get(response["Location"])
    html = preview.content.decode()
    assert "1 to add · 1 to update" in html
    assert "new@old" in html
    assert SECRET not in html
    assert Account.objects.count() == 1  # nothing saved before confirming
    done = admin_client.post(reverse("tasks:import_confirm", args=[task.pk]), follow=True)
    assert "1 account added, 1 updated" in done.content.decode()
    assert Account.objects.get(source_user="new@old").destination_password == SECRET
    assert Account.objects.get(source_user="keep@old").destination_user == "keep@new"
    # the pending upload is gone: confirming again finds nothing
    again = admin_client.post(reverse("tasks:import_confirm", args=[task.pk]), follow=True)
    assert "expired" in again.content.decode()


def test_pending_upload_is_not_stored_in_clear_text(admin_client):
    from django.contrib.sessions.models import Session

    task = TaskFactory()
    upload(admin_client, task, f"a@old,{SECRET},a@new,\n".encode())
    stored = "".join(s.session_data for s in Session.objects.all())
    assert SECRET not in stored
    import base64

    assert base64.b64encode(SECRET.encode()).decode()[:12] not in stored


def test_csv_with_bad_lines_imports_nothing_and_lists_each_problem(admin_client):
    task = TaskFactory()
    data = (
        b"source_user,source_password,destination_user,destination_password\n"
        b"good@old,pw,good@new,\n"
        b",pw,x@new,\n"
        b"good@old,pw,dupe@new,\n" + b"y" * 300 + b",pw,y@new,\n"
    )
    upload(admin_client, task, data)
    html = admin_client.get(reverse("tasks:import_preview", args=[task.pk])).content.decode()
    assert "3 bad lines" in html
    assert "Missing source_user" in html
    assert "Duplicate source user" in html
    assert "at most 255" in html
    for line in ("3", "4", "5"):
        assert f'<td class="num">{line}</td>' in html
    assert "Import 1 account" not in html  # no confirm button
    response = admin_client.post(reverse("tasks:import_confirm", args=[task.pk]), follow=True)
    assert "nothing was imported" in response.content.decode()
    assert not Account.objects.exists()


def test_non_utf8_file_is_refused(admin_client):
    task = TaskFactory()
    upload(admin_client, task, "m\xfcller@old,pw,m@new,\n".encode("cp1252"))
    html = admin_client.get(reverse("tasks:import_preview", args=[task.pk])).content.decode()
    assert "not UTF-8" in html
    admin_client.post(reverse("tasks:import_confirm", args=[task.pk]))
    assert not Account.objects.exists()


def test_cancel_drops_the_pending_upload(admin_client):
    task = TaskFactory()
    upload(admin_client, task, b"a@old,pw,a@new,\n")
    admin_client.post(reverse("tasks:import_cancel", args=[task.pk]))
    response = admin_client.get(reverse("tasks:import_preview", args=[task.pk]))
    assert response.status_code == 302
    assert not Account.objects.exists()


def test_preview_without_upload_sends_back_to_the_upload_page(admin_client):
    task = TaskFactory()
    response = admin_client.get(reverse("tasks:import_preview", args=[task.pk]))
    assert response["Location"] == reverse("tasks:import", args=[task.pk])


def test_oversized_file_is_refused_next_to_the_field(admin_client, monkeypatch):
    monkeypatch.setattr("tasks.forms.MAX_CSV_BYTES", 100)
    task = TaskFactory()
    response = upload(admin_client, task, b"a@old,pw,a@new,\n" * 10)
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_file-errors"' in html
    assert "Split it into several files" in html


def test_preview_of_a_long_file_shows_the_first_500_rows(admin_client):
    task = TaskFactory()
    upload(admin_client, task, "".join(f"u{n}@old,pw,u{n}@new,\n" for n in range(600)).encode())
    html = admin_client.get(reverse("tasks:import_preview", args=[task.pk])).content.decode()
    assert "The first 500 of 600 accounts are shown" in html
    assert "Import 600 accounts" in html
    assert "u499@old" in html and "u599@old" not in html


def test_the_import_page_refuses_a_password_for_an_oauth_side(admin_client):
    task = TaskFactory(source__auth_method="oauth_microsoft")
    response = upload(admin_client, task, f"a@old,{SECRET},a@new,dpw\n".encode())
    html = admin_client.get(response["Location"]).content.decode()
    assert "The source endpoint signs in with OAuth 2.0; leave source_password empty." in html
    assert SECRET not in html
    admin_client.post(reverse("tasks:import_confirm", args=[task.pk]))
    assert not task.accounts.exists()
