"""Finding a source message's copies at the destination by identity (messages.identity): headers
only, matched as a multiset so two identical source messages need two destination copies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .imap import Connection
from .messages import IDENTITY_FETCH, Identity, identity
from .uidset import UidSet

IDENTITY_CHUNK = 2000  # messages per identity FETCH


def _identities(conn: Connection, uids: UidSet) -> dict[int, Identity]:
    """Identity (Message-ID + size, or a Date/From/Subject hash + size) of each UID, headers only."""
    out: dict[int, Identity] = {}
    pieces = list(uids)
    for start in range(0, len(pieces), IDENTITY_CHUNK):
        chunk = UidSet.from_uids(pieces[start : start + IDENTITY_CHUNK])
        data = conn.fetch(chunk, ["RFC822.SIZE", IDENTITY_FETCH])
        for uid, item in data.items():
            headers = _section(item, b"BODY[HEADER.FIELDS")
            out[uid] = identity(headers, int(item.get(b"RFC822.SIZE", 0)))
    return out


def _dest_identities(conn: Connection, since_uid: int = 1) -> dict[int, Identity]:
    """Identities of every message of the selected destination folder with UID ≥ since_uid."""
    data = conn.fetch_text(f"{since_uid}:*", ["RFC822.SIZE", IDENTITY_FETCH])
    out = {}
    for uid, item in data.items():
        if uid < since_uid:  # "n:*" always returns the last message, even below n
            continue
        headers = _section(item, b"BODY[HEADER.FIELDS")
        out[uid] = identity(headers, int(item.get(b"RFC822.SIZE", 0)))
    return out


def _section(item: dict[bytes, object], prefix: bytes) -> bytes:
    """The value of a FETCH item whose key starts with `prefix` (servers echo section specs their way)."""
    for key, value in item.items():
        if isinstance(key, bytes) and key.upper().startswith(prefix):
            return value if isinstance(value, bytes) else b""
    return b""


def _match_multiset(source: dict[int, Identity], destination: Sequence[Identity]) -> list[int]:
    """Source UIDs that already have a copy at the destination; identical messages count one each."""
    available = Counter(destination)
    matched = []
    for uid in sorted(source):
        key = source[uid]
        if available[key] > 0:
            available[key] -= 1
            matched.append(uid)
    return matched


def _flag_key(flags: Sequence[str] | Sequence[bytes]) -> frozenset[str]:
    out = set()
    for f in flags:
        text = f.decode("utf-8", "replace") if isinstance(f, bytes) else f
        if text.lower() != "\\recent":
            out.add(text.lower())
    return frozenset(out)


# ----------------------------------------------------------------------------- worker
