"""One way to write counts and sizes (issue 12, item 10): plural-aware, decimal units everywhere."""

from __future__ import annotations

import pytest
from django.template import Context, Template

from tasks.wording import human_bytes, plural


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (0, "error", "0 errors"),
        (1, "error", "1 error"),
        (2, "message", "2 messages"),
        (1200, "account", "1,200 accounts"),
        (1, "mailbox", "1 mailbox"),
        (3, "mailbox", "3 mailboxes"),
    ],
)
def test_plural(count, noun, expected):
    assert plural(count, noun) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (23_700_000, "23.7 MB"),
        (1024**2, "1.0 MB"),
        (3_020_000_000, "3.02 GB"),
    ],
)
def test_sizes_are_decimal(size, expected):
    assert human_bytes(size) == expected


def test_templates_use_the_same_words():
    html = Template(
        '{% load ui %}{{ one|counted:"error" }}; {{ many|counted:"message" }}; {{ size|megabytes }}'
    ).render(Context({"one": 1, "many": 5, "size": 23_700_000}))
    assert html == "1 error; 5 messages; 23.7 MB"


def test_no_template_uses_binary_sizes():
    """filesizeformat counts 1 KB = 1,024 bytes: one page would say 22.6 MB where another says 23.7 MB."""
    from pathlib import Path

    templates = Path(__file__).resolve().parents[2] / "templates"
    offenders = [str(p.relative_to(templates)) for p in templates.rglob("*.html") if "filesizeformat" in p.read_text()]
    assert offenders == []
