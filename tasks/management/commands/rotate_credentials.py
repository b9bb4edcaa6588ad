from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction

from imapcopier import crypto
from tasks.fields import EncryptedTextField
from tasks.models import Account, Endpoint

# Every model with secrets: accounts (passwords, users' refresh tokens) and endpoints (OAuth 2.0
# client secret, service account key). Their encrypted columns are found from the field type.
MODELS_WITH_SECRETS: tuple[type[models.Model], ...] = (Account, Endpoint)


def encrypted_columns(model: type[models.Model]) -> list[str]:
    """The database columns of `model` that hold Fernet tokens (EncryptedTextField)."""
    return [f.column for f in model._meta.get_fields() if isinstance(f, EncryptedTextField)]


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (IMAP passwords, OAuth 2.0 client secrets, service account keys and "
        "refresh tokens) with the newest key of IMAPCOPIER_FERNET_KEYS. Run it after putting a new key first in "
        "the list; afterwards the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        quote = connection.ops.quote_name
        rotated: dict[str, int] = {}
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                for model in MODELS_WITH_SECRETS:
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
                    rotated[model._meta.verbose_name_plural] = len(rows)
        except crypto.CredentialError as exc:
            raise CommandError(f"nothing was changed: {exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted the secrets of {rotated['accounts']} account(s) and {rotated['endpoints']} "
                "endpoint(s) with the newest key."
            )
        )
