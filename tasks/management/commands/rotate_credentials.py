from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction

from imapcopier import crypto
from tasks.fields import EncryptedTextField
from tasks.wording import plural


def encrypted_columns(model: type[models.Model]) -> list[str]:
    """The database columns of `model` that hold Fernet tokens (EncryptedTextField)."""
    return [f.column for f in model._meta.get_fields() if isinstance(f, EncryptedTextField)]


def models_with_secrets() -> list[type[models.Model]]:
    """Every installed model with at least one EncryptedTextField, found from the field type, so a secret
    added to any model later is rotated too (accounts: passwords and refresh tokens; endpoints: OAuth 2.0
    client secrets and keys; tasks: the webhook secret)."""
    return [model for model in apps.get_models() if encrypted_columns(model)]


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (IMAP passwords, OAuth 2.0 client secrets, service account keys and "
        "refresh tokens) with the newest key of IMAPCOPIER_FERNET_KEYS. Run it after putting a new key first in "
        "the list; afterwards the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        quote = connection.ops.quote_name
        rotated: dict[str, int] = {}  # verbose name -> rows
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                for model in models_with_secrets():
                    table = quote(model._meta.db_table)
                    names = encrypted_columns(model)
                    columns = ", ".join(quote(c) for c in names)
                    assignments = ", ".join(f"{quote(c)} = %s" for c in names)
                    # Raw SQL on purpose: the model field would decrypt on read and encrypt again on write.
                    cursor.execute(f"SELECT id, {columns} FROM {table}")
                    rows = cursor.fetchall()
                    for pk, *tokens in rows:
                        new_tokens = [crypto.rotate(token) if token else token for token in tokens]
                        cursor.execute(f"UPDATE {table} SET {assignments} WHERE id = %s", [*new_tokens, pk])
                    rotated[str(model._meta.verbose_name)] = len(rows)
        except crypto.CredentialError as exc:
            raise CommandError(f"nothing was changed: {exc}") from None
        counts = ", ".join(plural(count, name) for name, count in sorted(rotated.items()))
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {counts} with the newest key."))
