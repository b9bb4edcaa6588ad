"""Finding a source message's copy at the destination: by identity (messages.identity, headers
only), and where two messages share an identity, by their bodies.

pair_messages() answers "which destination UID holds this source UID", one copy per message: two
identical source messages need two destination copies. It is used wherever the UID map
(folderstate.UidMap) has no answer: a first run onto a destination that already holds mail, a state
voided by a UIDVALIDITY or destination change, an APPEND whose answer was lost, a server without
UIDPLUS.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from .imap import Connection
from .messages import IDENTITY_FETCH, Identity, body_digest, identity
from .uidset import UidSet

IDENTITY_CHUNK = 2000  # messages per identity FETCH
BODY_CHUNK = 50  # messages per body FETCH when look-alikes are told apart (rare: twins, resends)


def _identities(conn: Connection, uids: UidSet) -> dict[int, Identity]:
    """Identity of each UID of the selected folder (headers only)."""
    out: dict[int, Identity] = {}
    pieces = list(uids)
    for start in range(0, len(pieces), IDENTITY_CHUNK):
        chunk = UidSet.from_uids(pieces[start : start + IDENTITY_CHUNK])
        data = conn.fetch(chunk, [IDENTITY_FETCH])
        for uid, item in data.items():
            out[uid] = identity(_section(item, b"BODY[HEADER.FIELDS"))
    return out


def _dest_identities(conn: Connection, since_uid: int = 1) -> dict[int, Identity]:
    """Identities of every message of the selected destination folder with UID ≥ since_uid."""
    data = conn.fetch_text(f"{since_uid}:*", [IDENTITY_FETCH])
    out = {}
    for uid, item in data.items():
        if uid < since_uid:  # "n:*" always returns the last message, even below n
            continue
        out[uid] = identity(_section(item, b"BODY[HEADER.FIELDS"))
    return out


def _body_digests(conn: Connection, uids: Sequence[int]) -> dict[int, bytes]:
    """body_digest() of each UID of the selected folder (BODY.PEEK[]: the source stays unread)."""
    out: dict[int, bytes] = {}
    ordered = sorted(uids)
    for start in range(0, len(ordered), BODY_CHUNK):
        data = conn.fetch(UidSet.from_uids(ordered[start : start + BODY_CHUNK]), ["BODY.PEEK[]"])
        for uid, item in data.items():
            raw = item.get(b"BODY[]")
            if isinstance(raw, bytes):
                out[uid] = body_digest(raw)
    return out


def pair_messages(
    src: Connection,
    dst: Connection,
    source: dict[int, Identity],
    destination: dict[int, Identity],
) -> dict[int, int]:
    """Source UID → destination UID for every source message that has a copy at the destination.

    `source` and `destination` are identities of messages in the folders selected on `src` and
    `dst`. An identity held by one message on each side pairs them. Where several messages share an
    identity (twins: same Message-ID, other body), their bodies are fetched from both sides and
    equal bodies are paired first; what is left pairs in UID order (a server that rewrote a copy).
    Each destination message is paired at most once.
    """
    by_key_src: dict[Identity, list[int]] = defaultdict(list)
    by_key_dst: dict[Identity, list[int]] = defaultdict(list)
    for uid in sorted(source):
        by_key_src[source[uid]].append(uid)
    for uid in sorted(destination):
        by_key_dst[destination[uid]].append(uid)
    pairs: dict[int, int] = {}
    ambiguous: list[tuple[list[int], list[int]]] = []
    for key, src_uids in by_key_src.items():
        dst_uids = by_key_dst.get(key)
        if not dst_uids:
            continue
        if len(src_uids) == 1 and len(dst_uids) == 1:
            pairs[src_uids[0]] = dst_uids[0]
        else:
            ambiguous.append((src_uids, dst_uids))
    if ambiguous:
        src_digests = _body_digests(src, [u for group, _ in ambiguous for u in group])
        dst_digests = _body_digests(dst, [u for _, group in ambiguous for u in group])
        for src_uids, dst_uids in ambiguous:
            pairs.update(_pair_look_alikes(src_uids, dst_uids, src_digests, dst_digests))
    return pairs


def _pair_look_alikes(
    src_uids: list[int], dst_uids: list[int], src_digests: dict[int, bytes], dst_digests: dict[int, bytes]
) -> dict[int, int]:
    """Pair messages sharing one identity: equal bodies first, the rest in UID order."""
    free = list(dst_uids)
    pairs: dict[int, int] = {}
    unpaired = []
    for uid in src_uids:
        digest = src_digests.get(uid)
        match = next((d for d in free if digest is not None and dst_digests.get(d) == digest), None)
        if match is None:
            unpaired.append(uid)
        else:
            free.remove(match)
            pairs[uid] = match
    # Copies whose bytes differ from every source message (a server that rewrote them): by order.
    leftovers = [d for d in free if dst_digests.get(d) not in {src_digests.get(u) for u in src_uids}]
    for uid, dest in zip(unpaired, leftovers, strict=False):
        pairs[uid] = dest
    return pairs


def _section(item: dict[bytes, object], prefix: bytes) -> bytes:
    """The value of a FETCH item whose key starts with `prefix` (servers echo section specs their way)."""
    for key, value in item.items():
        if isinstance(key, bytes) and key.upper().startswith(prefix):
            return value if isinstance(value, bytes) else b""
    return b""


def _flag_key(flags: Sequence[str] | Sequence[bytes]) -> frozenset[str]:
    out = set()
    for f in flags:
        text = f.decode("utf-8", "replace") if isinstance(f, bytes) else f
        if text.lower() != "\\recent":
            out.add(text.lower())
    return frozenset(out)
