from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st
from imapclient import imap_utf7

from runs.engine.messages import (
    filter_flags,
    format_internaldate,
    has_bare_line_endings,
    identity,
    identity_of_message,
    normalise_line_endings,
    subject_of,
)

DOVECOT_PERMANENT = (
    b"\\Answered",
    b"\\Flagged",
    b"\\Deleted",
    b"\\Seen",
    b"\\Draft",
    b"\\*",
)


def test_recent_is_never_kept_nor_reported():
    kept, dropped = filter_flags([b"\\Recent", b"\\Seen"], DOVECOT_PERMANENT)
    assert kept == ["\\Seen"] and dropped == []


def test_keywords_kept_when_new_keywords_are_allowed():
    kept, dropped = filter_flags([b"$Label1", b"$MDNSent", b"\\Flagged"], DOVECOT_PERMANENT)
    assert kept == ["$Label1", "$MDNSent", "\\Flagged"] and dropped == []


def test_keywords_outside_permanentflags_are_dropped_and_reported():
    kept, dropped = filter_flags([b"$Label1", b"Work", b"\\Seen"], (b"\\Seen", b"Work"))
    assert kept == ["Work", "\\Seen"]
    assert dropped == ["$Label1"]


def test_unknown_system_flags_are_dropped():
    kept, dropped = filter_flags([b"\\FORWARDED", b"\\seen", b"\\Indexed"], DOVECOT_PERMANENT)
    assert kept == ["\\Seen"]
    assert dropped == ["\\FORWARDED", "\\Indexed"]


def test_no_permanentflags_means_everything_valid_is_kept():
    kept, dropped = filter_flags([b"$x", b"\\Draft", b"bad(flag"], None)
    assert kept == ["$x", "\\Draft"] and dropped == ["bad(flag"]


def test_internaldate_keeps_the_offset_and_is_locale_free():
    tz = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    assert format_internaldate(dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=tz)) == "04-Mar-2021 05:06:07 -0330"
    assert format_internaldate(dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)) == "31-Dec-1999 23:59:59 +0000"


def test_identity_uses_the_message_id_and_never_the_size():
    a = b"Message-ID: <a@x>\r\nSubject: one\r\n\r\nbody"
    b = b"Subject: two\r\nMessage-Id:\r\n <a@x>\r\n\r\nother, longer"
    assert identity_of_message(a) == identity_of_message(b) == ("mid", b"<a@x>")


def test_identity_without_message_id_hashes_date_from_subject():
    one = b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nFrom: a@x\r\nSubject: hi\r\n\r\n"
    same_lf = one.replace(b"\r\n", b"\n")
    other = one.replace(b"hi", b"ho")
    assert identity(one) == identity(same_lf)
    assert identity(one) != identity(other)
    assert identity(one)[0] == "hash"


def test_subject_is_decoded_for_reports():
    raw = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nx"
    assert subject_of(raw) == "Grüße"
    assert subject_of(b"From: a\r\n\r\n") == ""
    assert subject_of(b"Subject: =?broken\r\n\r\n") == "=?broken"


def test_bare_line_endings_are_detected_and_normalised():
    assert not has_bare_line_endings(b"a\r\nb\r\n")
    assert has_bare_line_endings(b"a\nb\r\n")
    assert has_bare_line_endings(b"a\rb\r\n")
    assert normalise_line_endings(b"a\nb\rc\r\n") == b"a\r\nb\r\nc\r\n"


@given(st.text(min_size=1, max_size=40))
def test_modified_utf7_round_trip(name):
    encoded = imap_utf7.encode(name)
    assert encoded.isascii()
    assert imap_utf7.decode(encoded) == name


def test_modified_utf7_known_names():
    assert imap_utf7.encode("A&B") == b"A&-B"
    assert imap_utf7.decode(b"R&AOk-ponses 1200+1201") == "Réponses 1200+1201"
    assert imap_utf7.decode(imap_utf7.encode("Отправленные")) == "Отправленные"


def test_fast_body_fetch_parser_reads_the_usual_shape_and_refuses_others():
    from runs.engine.imap import parse_body_fetch

    data = [
        (b'7 (UID 42 FLAGS (\\Seen \\Recent $X) INTERNALDATE " 2-Jan-2020 06:04:05 -0330" BODY[] {5}', b"hello"),
        b")",
        (b"8 (UID 43 FLAGS () INTERNALDATE NIL BODY[] {0}", b""),
        b")",
    ]
    parsed = parse_body_fetch(data)
    assert parsed == {
        42: {
            b"BODY[]": b"hello",
            b"FLAGS": (b"\\Seen", b"\\Recent", b"$X"),
            b"INTERNALDATE": " 2-Jan-2020 06:04:05 -0330",
        },
        43: {b"BODY[]": b"", b"FLAGS": (), b"INTERNALDATE": None},
    }
    # Anything else goes to the general parser: items after the literal, a wrong length, no UID.
    assert parse_body_fetch([(b"1 (BODY[] {5}", b"hello"), b" UID 3 FLAGS ())"]) is None
    assert parse_body_fetch([(b"1 (UID 3 FLAGS () BODY[] {6}", b"hello"), b")"]) is None
    assert parse_body_fetch([(b"1 (FLAGS () BODY[] {5}", b"hello"), b")"]) is None
    assert parse_body_fetch([b"1 (UID 3 FLAGS (\\Seen))"]) is None
    assert parse_body_fetch([(b'1 (UID 3 FLAGS () INTERNALDATE "x\\" y" BODY[] {5}', b"hello"), b")"]) is None
