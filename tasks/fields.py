from __future__ import annotations

from typing import Any

from django.db import models

from imapcopier import crypto


class EncryptedTextField(models.TextField):
    """A text column stored as a Fernet token; the Python value is the plaintext.

    Lookups on the plaintext are impossible by design (each token is different).
    """

    description = "Text encrypted at rest with IMAPCOPIER_FERNET_KEYS"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(value)
