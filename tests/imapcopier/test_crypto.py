from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from imapcopier import crypto
from tasks.models import Account
from tests.support.factories import AccountFactory

pytestmark = pytest.mark.django_db

SECRET = "hunter2-Correct-Horse-9"


def raw_passwords(account_id: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT source_password, destination_password FROM tasks_account WHERE id = %s",
            [account_id],
        )
        return cursor.fetchone()


def test_passwords_are_stored_encrypted_and_read_back_in_clear():
    account = AccountFactory(source_password=SECRET, destination_password=SECRET + "-dst")

    source_raw, destination_raw = raw_passwords(account.pk)
    assert SECRET not in source_raw and SECRET not in destination_raw
    assert source_raw.startswith("gAAAA") and destination_raw.startswith("gAAAA")  # Fernet tokens
    reloaded = Account.objects.get(pk=account.pk)
    assert reloaded.source_password == SECRET
    assert reloaded.destination_password == SECRET + "-dst"


def test_the_same_password_encrypts_differently_each_time():
    first = AccountFactory(source_password=SECRET)
    second = AccountFactory(source_password=SECRET)
    assert raw_passwords(first.pk)[0] != raw_passwords(second.pk)[0]


def test_rotate_credentials_reencrypts_with_the_newest_key_so_old_keys_can_go():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(IMAPCOPIER_FERNET_KEYS=[old]):
        accounts = [AccountFactory(source_password=f"{SECRET}-{i}", destination_password=f"dst-{i}") for i in range(3)]
        before = [raw_passwords(a.pk) for a in accounts]

    with override_settings(IMAPCOPIER_FERNET_KEYS=[new, old]):
        call_command("rotate_credentials", stdout=io.StringIO())

    with override_settings(IMAPCOPIER_FERNET_KEYS=[new]):  # the old key is gone now
        for i, account in enumerate(accounts):
            reloaded = Account.objects.get(pk=account.pk)
            assert reloaded.source_password == f"{SECRET}-{i}"
            assert reloaded.destination_password == f"dst-{i}"
            assert raw_passwords(account.pk) != before[i]


def test_rotate_with_a_missing_key_changes_nothing_and_says_why():
    old, unrelated = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(IMAPCOPIER_FERNET_KEYS=[old]):
        account = AccountFactory(source_password=SECRET)
    before = raw_passwords(account.pk)

    with (
        override_settings(IMAPCOPIER_FERNET_KEYS=[unrelated]),
        pytest.raises(CommandError) as excinfo,
    ):
        call_command("rotate_credentials")

    assert "nothing was changed" in str(excinfo.value)
    assert raw_passwords(account.pk) == before


def test_a_wrong_key_gives_a_clear_error_without_the_secret():
    with override_settings(IMAPCOPIER_FERNET_KEYS=[Fernet.generate_key().decode()]):
        account = AccountFactory(source_password=SECRET)
    token = raw_passwords(account.pk)[0]

    with (
        override_settings(IMAPCOPIER_FERNET_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(crypto.CredentialError) as excinfo,
    ):
        Account.objects.get(pk=account.pk)
    message = str(excinfo.value)
    assert "IMAPCOPIER_FERNET_KEYS" in message
    assert SECRET not in message and token not in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_rotate_credentials_covers_oauth_secrets_and_refresh_tokens():
    from tests.support.factories import EndpointFactory

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(IMAPCOPIER_FERNET_KEYS=[old]):
        endpoint = EndpointFactory(
            auth_method="oauth_microsoft", oauth_client_secret="app-secret", oauth_service_account_key='{"k": 1}'
        )
        account = AccountFactory(task__source=endpoint, source_refresh_token="refresh-1")
    with override_settings(IMAPCOPIER_FERNET_KEYS=[new, old]):
        out = io.StringIO()
        call_command("rotate_credentials", stdout=out)
    assert "1 account, 2 endpoints, 1 task" in out.getvalue()  # the task's source and destination
    with override_settings(IMAPCOPIER_FERNET_KEYS=[new]):  # the old key is gone now
        endpoint.refresh_from_db()
        account.refresh_from_db()
        assert endpoint.oauth_client_secret == "app-secret"
        assert endpoint.oauth_service_account_key == '{"k": 1}'
        assert account.source_refresh_token == "refresh-1"
    with connection.cursor() as cursor:
        cursor.execute("SELECT oauth_client_secret FROM tasks_endpoint WHERE id = %s", [endpoint.pk])
        assert cursor.fetchone()[0].startswith("gAAAA")


def test_rotate_credentials_covers_every_encrypted_field_of_every_model():
    """Key rotation, then the old key removed: every secret of every model still reads. A secret that
    rotation skipped (the task webhook's once did) made every page showing its task answer 500."""
    from django.apps import apps

    from tasks.fields import EncryptedTextField
    from tasks.models import Task
    from tests.support.factories import EndpointFactory

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(IMAPCOPIER_FERNET_KEYS=[old]):
        endpoint = EndpointFactory(
            oauth_client_secret="s1", oauth_client_certificate="c1", oauth_service_account_key="k1"
        )
        account = AccountFactory(task__source=endpoint, source_refresh_token="r1", destination_refresh_token="r2")
        Task.objects.filter(pk=account.task_id).update(notify_webhook_url="https://hooks.example/x")
        task = Task.objects.get(pk=account.task_id)
        task.notify_webhook_secret = "a-webhook-secret-of-16+"
        task.save()
    with override_settings(IMAPCOPIER_FERNET_KEYS=[new, old]):
        out = io.StringIO()
        call_command("rotate_credentials", stdout=out)
    assert "1 task" in out.getvalue()
    with override_settings(IMAPCOPIER_FERNET_KEYS=[new]):
        for model in apps.get_models():
            fields = [f.name for f in model._meta.get_fields() if isinstance(f, EncryptedTextField)]
            for row in model.objects.all():  # reading decrypts: a skipped secret raises CredentialError
                for name in fields:
                    getattr(row, name)
        assert Task.objects.get(pk=task.pk).notify_webhook_secret == "a-webhook-secret-of-16+"
