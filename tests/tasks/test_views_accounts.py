from __future__ import annotations

import pytest
from django.urls import reverse

from tasks.models import Account, Task
from tests.factories import AccountFactory, AccountRunFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db

SECRET = "Tr0ub4dor&3-very-secret"


def test_add_account(admin_client):
    task = TaskFactory()
    response = admin_client.post(
        reverse("tasks:account_create", args=[task.pk]),
        {
            "source_user": "a@old",
            "source_password": SECRET,
            "destination_user": "a@new",
            "destination_password": "",
        },
    )
    assert response.status_code == 302
    account = Account.objects.get(task=task)
    assert account.source_password == SECRET
    assert account.destination_password == SECRET  # empty reuses the source password


def test_add_account_without_password_shows_the_error_next_to_the_field(admin_client):
    task = TaskFactory()
    response = admin_client.post(
        reverse("tasks:account_create", args=[task.pk]),
        {"source_user": "a@old", "source_password": "", "destination_user": "a@new"},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_source_password-errors"' in html
    assert "needs the source password" in html
    assert not Account.objects.exists()


def test_duplicate_source_user_is_refused_next_to_the_field(admin_client):
    task = TaskFactory()
    AccountFactory(task=task, source_user="a@old")
    response = admin_client.post(
        reverse("tasks:account_create", args=[task.pk]),
        {"source_user": "a@old", "source_password": "x", "destination_user": "b@new"},
    )
    html = response.content.decode()
    assert 'id="id_source_user-errors"' in html
    assert "already has an account" in html
    assert Account.objects.count() == 1


def test_edit_page_never_renders_the_passwords(admin_client):
    account = AccountFactory(source_password=SECRET, destination_password=SECRET + "-dst")
    html = admin_client.get(reverse("tasks:account_edit", args=[account.task_id, account.pk])).content.decode()
    assert account.source_user in html
    assert SECRET not in html


def test_blank_password_on_edit_keeps_the_stored_one(admin_client):
    account = AccountFactory(source_password=SECRET, destination_password="dst-pw", tested=True)
    response = admin_client.post(
        reverse("tasks:account_edit", args=[account.task_id, account.pk]),
        {
            "source_user": account.source_user,
            "source_password": "",
            "destination_user": "renamed@new",
            "destination_password": "",
        },
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.source_password == SECRET
    assert account.destination_password == "dst-pw"
    assert account.destination_user == "renamed@new"
    assert account.source_test_status == Account.TestStatus.OK  # source login unchanged
    assert account.destination_test_status == Account.TestStatus.UNTESTED


def test_account_of_another_task_is_404(admin_client):
    account = AccountFactory()
    other = TaskFactory()
    response = admin_client.get(reverse("tasks:account_edit", args=[other.pk, account.pk]))
    assert response.status_code == 404


def test_delete_account(admin_client):
    account = AccountFactory()
    response = admin_client.post(reverse("tasks:account_delete", args=[account.task_id, account.pk]))
    assert response.status_code == 302
    assert not Account.objects.exists()


def test_delete_needs_post(admin_client):
    account = AccountFactory()
    response = admin_client.get(reverse("tasks:account_delete", args=[account.task_id, account.pk]))
    assert response.status_code == 405
    assert Account.objects.exists()


def test_delete_account_of_running_task_is_refused(admin_client):
    account = AccountFactory(task=TaskFactory(status=Task.Status.RUNNING))
    response = admin_client.post(reverse("tasks:account_delete", args=[account.task_id, account.pk]), follow=True)
    assert Account.objects.exists()
    assert "cannot be removed" in response.content.decode()


def test_accounts_table_shows_test_results_with_the_servers_words(admin_client):
    task = TaskFactory()
    AccountFactory(
        task=task,
        source_test_status=Account.TestStatus.FAIL,
        source_test_message="[AUTHENTICATIONFAILED] Authentication failed.",
        destination_test_status=Account.TestStatus.OK,
    )
    html = admin_client.get(reverse("tasks:account_table", args=[task.pk])).content.decode()
    assert "[AUTHENTICATIONFAILED] Authentication failed." in html
    assert 'class="badge fail"' in html and 'class="badge ok"' in html
    assert "every 2s" not in html


def test_accounts_table_shows_the_last_result(admin_client):
    task = TaskFactory()
    account = AccountFactory(task=task)
    old = RunFactory(task=task)
    new = RunFactory(task=task)
    AccountRunFactory(run=old, account=account, status="failed")
    AccountRunFactory(run=new, account=account, status="done", copied=42)
    html = admin_client.get(reverse("tasks:account_table", args=[task.pk])).content.decode()
    assert "42 copied" in html
    assert reverse("runs:report", args=[new.pk]) in html


def test_export_has_the_accounts_and_no_passwords(admin_client):
    task = TaskFactory()
    AccountFactory(
        task=task,
        source_user="a@old",
        destination_user="a@new",
        source_password=SECRET,
        destination_password=SECRET,
    )
    response = admin_client.get(reverse("tasks:account_export", args=[task.pk]))
    body = response.content.decode()
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert body.splitlines()[0].startswith("source_user,destination_user")
    assert "a@old,a@new,untested" in body
    assert SECRET not in body


def test_accounts_are_paged_and_searchable(admin_client):
    task = TaskFactory()
    for n in range(105):
        AccountFactory(task=task, source_user=f"user{n:03d}@old", destination_user=f"user{n:03d}@new")
    first = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "user099@old" in first and "user100@old" not in first
    assert "Accounts 1–100 of 105" in first
    second = admin_client.get(reverse("tasks:account_table", args=[task.pk]) + "?page=2").content.decode()
    assert "user100@old" in second and "user099@old" not in second
    found = admin_client.get(reverse("tasks:account_table", args=[task.pk]) + "?q=user042").content.decode()
    assert "user042@old" in found and "user041@old" not in found
    assert "1 account matching “user042”" in found
    none = admin_client.get(reverse("tasks:account_table", args=[task.pk]) + "?q=nobody").content.decode()
    assert "No account matches" in none


def test_listing_accounts_never_decrypts_a_password(admin_client, monkeypatch):
    task = TaskFactory()
    AccountFactory.create_batch(3, task=task)

    def refuse(token):
        raise AssertionError("a password was decrypted to list accounts")

    monkeypatch.setattr("imapcopier.crypto.decrypt", refuse)
    assert admin_client.get(reverse("tasks:detail", args=[task.pk])).status_code == 200
    assert admin_client.get(reverse("tasks:account_table", args=[task.pk])).status_code == 200
    assert admin_client.get(reverse("tasks:list")).status_code == 200


def test_export_never_decrypts_the_passwords(admin_client):
    from cryptography.fernet import Fernet
    from django.test import override_settings

    task = TaskFactory()
    AccountFactory(task=task, source_user="b@old", destination_user="b@new", source_password=SECRET)
    # With a key that cannot read the stored passwords, the export still works: it never loads them.
    with override_settings(IMAPCOPIER_FERNET_KEYS=[Fernet.generate_key().decode()]):
        response = admin_client.get(reverse("tasks:account_export", args=[task.pk]))
    assert response.status_code == 200
    assert "b@old,b@new,untested" in response.content.decode()
