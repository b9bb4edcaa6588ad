"""Pure helpers about single messages: flags, INTERNALDATE text, identity, subject for error reports."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from email.header import decode_header, make_header

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_SYSTEM_BY_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
# A keyword is an atom: no specials, no "\" (RFC 3501 flag-keyword).
_ATOM_SPECIALS = re.compile(r'[(){ %*"\\\]\x00-\x1f\x7f]')
_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def _text(flag: bytes | str) -> str:
    return flag.decode("utf-8", "replace") if isinstance(flag, bytes) else flag


# Refusals about size or quota: sending the message again with fewer keywords cannot help.
_NOT_ABOUT_FLAGS = re.compile(r"\[(OVERQUOTA|LIMIT|TOOBIG)\]|quota|too (large|big)", re.IGNORECASE)


def keywords_may_be_refused(flags: Iterable[str], refusal: str) -> bool:
    """Could this APPEND refusal be about the message's keywords, so that sending it again with
    fewer keywords may work? True when the message has keywords and the refusal is not about its
    size or a quota (RFC 5530 response codes, or words saying so). Servers word keyword refusals
    their own way ("NO [CANNOT] Keyword length too long", "NO APPEND Invalid flag list")."""
    return any(not f.startswith("\\") for f in flags) and not _NOT_ABOUT_FLAGS.search(refusal)


def filter_flags(flags: Iterable[bytes | str], permanent: Iterable[bytes | str] | None) -> tuple[list[str], list[str]]:
    """Split source flags into (kept, dropped) for a destination with these PERMANENTFLAGS.

    `\\Recent` is never kept (nobody may set it) and is not reported as dropped. Unknown system
    flags (`\\Forwarded`) are dropped. Keywords are kept when the destination lists them or allows
    new ones with `\\*`. `permanent=None` means the server sent no PERMANENTFLAGS, which by RFC 3501
    means all flags can be set permanently.
    """
    allowed: set[str] | None = None
    allow_new_keywords = True
    if permanent is not None:
        perm = [_text(p) for p in permanent]
        allowed = {p.lower() for p in perm}
        allow_new_keywords = "\\*" in perm
    kept: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for raw in flags:
        flag = _text(raw)
        low = flag.lower()
        if low == "\\recent" or low in seen:
            continue
        seen.add(low)
        if flag.startswith("\\"):
            canonical = _SYSTEM_BY_LOWER.get(low)
            if canonical is None or (allowed is not None and low not in allowed):
                dropped.append(flag)
            else:
                kept.append(canonical)
            continue
        if not flag or _ATOM_SPECIALS.search(flag) or not flag.isascii():
            dropped.append(flag)
        elif allowed is None or low in allowed or allow_new_keywords:
            kept.append(flag)
        else:
            dropped.append(flag)
    return kept, dropped


def format_internaldate(when: dt.datetime) -> str:
    """INTERNALDATE text ("14-Mar-2021 15:09:26 +0100") keeping the original offset, locale-free."""
    if when.tzinfo is None:
        raise ValueError("INTERNALDATE must be timezone-aware")
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


# ------------------------------------------------------------------------ headers

IDENTITY_FETCH = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM SUBJECT)]"

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(rb"\r?\n[ \t]+")


def header_block(raw: bytes) -> bytes:
    """The header section of a message (everything before the first empty line)."""
    match = _HEADER_END.search(raw)
    if match is None:
        return raw
    return raw[: match.start()]


def parse_headers(block: bytes) -> dict[str, list[bytes]]:
    """Header fields by lower-case name, values unfolded and stripped, in order of appearance."""
    fields: dict[str, list[bytes]] = {}
    unfolded = _FOLD.sub(b" ", block)
    for line in re.split(rb"\r?\n|\r", unfolded):
        name, sep, value = line.partition(b":")
        if not sep or not name or b" " in name.strip():
            continue
        fields.setdefault(name.strip().lower().decode("ascii", "replace"), []).append(value.strip())
    return fields


Identity = tuple[str, bytes]


def identity(headers: bytes) -> Identity:
    """What makes two copies of a message "the same" across servers, from its headers alone.

    The Message-ID (RFC 5322 section 3.6.4); without one, a hash of Date, From and Subject
    (unfolded, so line endings do not matter). Never the size: servers disagree on RFC822.SIZE for
    the same bytes (issue 11 case 6). `headers` may be the full header block or just the identity
    fields as FETCHed. Two messages can share an identity (a resent mail, twins): matching then
    compares their bodies (identity.pair_messages).
    """
    fields = parse_headers(headers)
    message_ids = fields.get("message-id")
    if message_ids and message_ids[0]:
        return ("mid", message_ids[0])
    digest = hashlib.sha256()
    for name in ("date", "from", "subject"):
        for value in fields.get(name, []):
            digest.update(name.encode() + b":" + value + b"\n")
    return ("hash", digest.digest())


def identity_of_message(raw: bytes) -> Identity:
    return identity(header_block(raw))


def body_digest(raw: bytes) -> bytes:
    """sha256 of a message with its line endings made CRLF (servers store bare LF as CRLF)."""
    return hashlib.sha256(normalise_line_endings(raw)).digest()


def subject_of(raw_headers: bytes, limit: int = 200) -> str:
    """The decoded Subject for error reports ("" when there is none)."""
    values = parse_headers(header_block(raw_headers)).get("subject")
    if not values:
        return ""
    text = values[0].decode("utf-8", "replace")
    with contextlib.suppress(Exception):  # a broken encoded-word: show it raw
        text = str(make_header(decode_header(text)))
    return text[:limit]


def has_bare_line_endings(raw: bytes) -> bool:
    """True when the message has a LF without CR or a CR without LF."""
    return raw.count(b"\n") != raw.count(b"\r\n") or raw.count(b"\r") != raw.count(b"\r\n")


def normalise_line_endings(raw: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
