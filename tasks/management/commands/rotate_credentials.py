from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from imapcopier import crypto
from tasks.models import Account

ENCRYPTED_COLUMNS = ("source_password", "destination_password")


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored IMAP password with the newest key of IMAPCOPIER_FERNET_KEYS. "
        "Run it after putting a new key first in the list; afterwards the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        quote = connection.ops.quote_name
        table = quote(Account._meta.db_table)
        columns = ", ".join(quote(c) for c in ENCRYPTED_COLUMNS)
        assignments = ", ".join(f"{quote(c)} = %s" for c in ENCRYPTED_COLUMNS)
        rotated = 0
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # Raw SQL on purpose: the model field would decrypt on read and encrypt again on write.
                cursor.execute(f"SELECT id, {columns} FROM {table}")
                for pk, *tokens in cursor.fetchall():
                    new_tokens = [crypto.rotate(token) if token else token for token in tokens]
                    cursor.execute(f"UPDATE {table} SET {assignments} WHERE id = %s", [*new_tokens, pk])
                    rotated += 1
        except crypto.CredentialError as exc:
            raise CommandError(f"nothing was changed: {exc}") from None
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted the passwords of {rotated} account(s) with the newest key.")
        )
