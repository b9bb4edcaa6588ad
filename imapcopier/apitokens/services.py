"""Making, revoking and checking API tokens. Views and the `apitoken` command call these."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser

from imapcopier.apitokens.models import TOKEN_PREFIX, ApiToken, digest, new_token_text

# last_used_at is written at most this often per token, so a busy script does not write on every call.
LAST_USED_RESOLUTION_SECONDS = 60


def create_token(user: AbstractBaseUser, name: str, *, now: datetime) -> tuple[ApiToken, str]:
    """Make a token for `user`; return the row and the token text, which is never available again."""
    text = new_token_text()
    token = ApiToken.objects.create(
        user=user,
        name=name.strip() or "API token",
        digest=digest(text),
        hint=text[: len(TOKEN_PREFIX) + 4],
        created_at=now,
    )
    return token, text


def revoke_token(token_id: int, *, now: datetime, user: AbstractBaseUser | None = None) -> bool:
    """Revoke a token (of `user` when given). True if it was active; revoking twice is harmless."""
    tokens = ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True)
    if user is not None:
        tokens = tokens.filter(user=user)
    return tokens.update(revoked_at=now) == 1


def user_for_token(text: str, *, now: datetime) -> AbstractBaseUser | None:
    """The active user an active token belongs to, or None (unknown, revoked, or the user is inactive)."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    token = ApiToken.objects.active().select_related("user").filter(digest=digest(text)).first()
    if token is None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= timedelta(seconds=LAST_USED_RESOLUTION_SECONDS):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
