from __future__ import annotations

import pytest
from django.urls import reverse

from tasks.models import Account, Task
from tests.support.factories import AccountFactory, TaskFactory

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
