"""Encryption at rest for IMAP passwords: MultiFernet with keys separate from SECRET_KEY.

Keys come from IMAPCOPIER_FERNET_KEYS (comma-separated, newest first). The newest key
encrypts; any listed key decrypts, so keys can be rotated with `manage.py rotate_credentials`.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialError(Exception):
    """A stored credential cannot be decrypted with the configured keys."""


def parse_keys(raw: list[str]) -> list[Fernet]:
    fernets = []
    for position, key in enumerate(raw, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"IMAPCOPIER_FERNET_KEYS: key number {position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None
    return fernets


@cache
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("IMAPCOPIER_FERNET_KEYS is not set: no key to encrypt IMAP passwords with")
    return MultiFernet(parse_keys(list(keys)))


def fernet() -> MultiFernet:
    return _multifernet(tuple(settings.IMAPCOPIER_FERNET_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError, UnicodeError):
        # Never include the token or any plaintext in the message.
        raise CredentialError(
            "a stored password cannot be decrypted with the keys in IMAPCOPIER_FERNET_KEYS "
            "(was a key removed before `manage.py rotate_credentials` ran?)"
        ) from None


def rotate(token: str) -> str:
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        raise CredentialError("a stored password cannot be decrypted with the keys in IMAPCOPIER_FERNET_KEYS") from None
