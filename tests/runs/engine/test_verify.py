"""describe_change(): what a destination changed, in words (pure)."""

from __future__ import annotations

from runs.engine.verify import describe_change


def test_line_endings_rewritten():
    assert describe_change(b"a\nb\r\n", b"a\r\nb\r\n") == "bare CR/LF line endings rewritten to CRLF"


def test_eight_bit_header_bytes_replaced_with_x():
    sent = "Subject: Grüße\r\n\r\nbody\r\n".encode()
    stored = sent.replace("ü".encode(), b"XX").replace("ß".encode(), b"XX")
    assert describe_change(sent, stored) == "8-bit header bytes replaced with 'X' (4 bytes)"


def test_other_changes_name_sizes_or_offsets_only():
    assert describe_change(b"Subject: a\r\n\r\nsecret\r\n", b"Subject: a\r\n\r\nsecreT\r\n") == (
        "1 of 22 bytes differ (first at offset 19)"
    )
    assert describe_change(b"abc", b"abcd") == "4 bytes stored where 3 were sent (sha256 differs)"
