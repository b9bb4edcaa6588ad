"""API tokens: how scripts authenticate to the JSON API (`Authorization: Bearer <token>`).

A token is shown once, when it is made; only its SHA-256 digest is stored. A token is 32 random bytes,
so a fast digest is enough (no password hashing needed: there is nothing to guess from a digest of a
256-bit random value), and it lets a request find its token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

TOKEN_PREFIX = "imc_"


def digest(token: str) -> str:
    """SHA-256 of the token text, hex (64 characters): what the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token_text() -> str:
    """A fresh token: `imc_` followed by 43 URL-safe characters (32 random bytes)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiToken(models.Model):
    """One API token of one user. Revoking keeps the row (who made it, when it was last used)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. the script that uses it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the token, so the operator can tell tokens apart; not enough to use one.
    hint = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
