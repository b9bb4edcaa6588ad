"""How counts are written for people, in one place: pages, logs, e-mails and commands all use it."""

from __future__ import annotations

# Irregular plurals of the nouns we count; the rest take an "s".
_PLURALS = {"is": "are", "was": "were", "mailbox": "mailboxes"}


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """The count and its noun: plural(1, "error") == "1 error", plural(1200, "message") == "1,200 messages"."""
    word = singular if count == 1 else (plural_form or _PLURALS.get(singular, singular + "s"))
    return f"{count:,} {word}"


def human_bytes(value: int | None) -> str:
    """Bytes in decimal units (1 kB = 1,000 B, as mail quotas and disks count): "0 B", "18.1 kB", "3.02 GB".

    The one unit system of the product (issue 12): pages, reports and commands all write sizes with it.
    """
    value = value or 0
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if value >= size:
            amount = value / size
            return f"{amount:,.2f} {unit}" if unit in ("GB", "TB") else f"{amount:,.1f} {unit}"
    return f"{value} B"
