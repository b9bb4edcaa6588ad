"""Did the destination store what it was given? A cheap check of freshly appended messages.

Some servers answer OK to an APPEND and store something else: Cyrus 3.6 turns 8-bit header bytes into 'X'
(same size), Dovecot and Courier turn bare LF into CRLF. After a batch lands, one UID FETCH of the new UIDs
(from APPENDUID, RFC 4315 section 3) asks for RFC822.SIZE (RFC 3501 section 6.4.5) and, where the server offers
it, DIGEST.SHA1 (Cyrus's digest of the stored message); only a message whose size or digest differs from what
was sent is fetched whole and compared, to say what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .imap import Connection
from .messages import normalise_line_endings
from .uidset import UidSet


@dataclass(frozen=True)
class Alteration:
    """One message the destination stored differently from the bytes sent."""

    destination_uid: int
    what: str  # in words, e.g. "8-bit header bytes replaced with 'X' (5 bytes)"


def describe_change(sent: bytes, stored: bytes) -> str:
    """What the destination changed between `sent` and `stored`, in words (no message content)."""
    if normalise_line_endings(sent) == stored:
        return "bare CR/LF line endings rewritten to CRLF"
    if len(sent) == len(stored):
        changed = [i for i in range(len(sent)) if sent[i] != stored[i]]
        header_end = sent.find(b"\r\n\r\n")
        header_end = len(sent) if header_end < 0 else header_end
        if changed and all(sent[i] >= 0x80 and stored[i] == ord("X") for i in changed):
            where = "header" if all(i < header_end for i in changed) else "header and body"
            return f"8-bit {where} bytes replaced with 'X' ({len(changed)} bytes)"
        return f"{len(changed)} of {len(sent)} bytes differ (first at offset {changed[0] if changed else 0})"
    return f"{len(stored)} bytes stored where {len(sent)} were sent (sha256 differs)"


def stored_alterations(connection: Connection, folder: str, appended: Sequence[tuple[int, bytes]]) -> list[Alteration]:
    """Compare the messages just appended to `folder` with the bytes sent; `appended` is (destination UID from
    APPENDUID, bytes sent). Returns one Alteration per message stored differently, in the order given.

    Opens `folder` with EXAMINE, asks RFC822.SIZE (and DIGEST.SHA1) and leaves it again, pipelined in one round
    trip (Connection.fetch_examined), so the connection ends unselected and can go on appending to it. Only when a
    message looks altered is the folder opened again to fetch it whole (rare). Raises what Connection raises: a
    refused EXAMINE or FETCH is an IMAPClientError, a broken connection imaplib's abort or OSError.
    """
    if not appended:
        return []
    sent = dict(appended)
    items = ["RFC822.SIZE"]
    digest = connection.has("DIGEST=SHA1")
    if digest:
        items.append("DIGEST.SHA1")
    answers = connection.fetch_examined(folder, UidSet.from_uids(sent), items)
    suspects = []
    for uid, raw in appended:
        item = answers.get(uid)
        if item is None:
            continue  # expunged meanwhile by someone else: nothing to compare
        size = item.get(b"RFC822.SIZE")
        value = item.get(b"DIGEST.SHA1")
        stored_digest = value.decode("ascii", "replace").lower() if isinstance(value, bytes) else None
        if size != len(raw) or (digest and stored_digest and stored_digest != hashlib.sha1(raw).hexdigest()):
            suspects.append(uid)
    if not suspects:
        return []
    found = []
    connection.examine(folder)
    try:
        bodies = connection.fetch(suspects, ["BODY.PEEK[]"])
        for uid in suspects:
            stored = bodies.get(uid, {}).get(b"BODY[]")
            if isinstance(stored, bytes) and stored != sent[uid]:
                found.append(Alteration(uid, describe_change(sent[uid], stored)))
    finally:
        connection.unselect()
    return found


def alteration_report(
    connection: Connection, source: str, destination: str, landed: Sequence[tuple[int, bytes, int | None]]
) -> tuple[int, list[str]]:
    """Check a batch that landed in `destination`: `landed` is (source UID, bytes sent, destination UID from
    APPENDUID or None; those are not checked). Returns (messages altered, one warning each naming the source
    folder and UID, the destination folder and UID, and what changed). Raises what stored_alterations raises."""
    by_dest_uid = {dest_uid: uid for uid, _raw, dest_uid in landed if dest_uid is not None}
    found = stored_alterations(connection, destination, [(d, raw) for _u, raw, d in landed if d is not None])
    warnings = [
        f"message UID {by_dest_uid[a.destination_uid]} in {source!r} was stored altered as UID "
        f"{a.destination_uid} in {destination!r}: {a.what}"
        for a in found
    ]
    return len(found), warnings
