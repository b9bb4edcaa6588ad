from __future__ import annotations

import pytest

from runs.engine.connect import check_read_only
from runs.engine.imap import WriteRefused


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("EXAMINE", ('"INBOX"',)),
        ("UID", ("FETCH", "1:5", "(BODY.PEEK[] FLAGS INTERNALDATE)")),
        (
            "UID",
            (
                "FETCH",
                "1:5",
                "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
                "(CHANGEDSINCE 7)",
            ),
        ),
        ("UID", ("SEARCH", "RETURN", "(ALL)", "ALL")),
        ("STATUS", ('"INBOX"', "(MESSAGES)")),
        ("LIST", ('""', '"*"')),
        ("LOGOUT", ()),
    ],
)
def test_read_commands_pass(name, args):
    check_read_only(name, args)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("SELECT", ('"INBOX"',)),
        ("APPEND", ('"INBOX"',)),
        ("UID", ("STORE", "1", "+FLAGS", "(\\Seen)")),
        ("STORE", ("1", "+FLAGS", "(\\Seen)")),
        ("EXPUNGE", ()),
        ("CLOSE", ()),
        ("CREATE", ('"x"',)),
        ("DELETE", ('"x"',)),
        ("UID", ("COPY", "1", '"x"')),
        ("UID", ("MOVE", "1", '"x"')),
        ("UID", ("FETCH", "1", "(BODY[])")),
        ("UID", ("FETCH", "1", "(RFC822)")),
        ("UID", ("FETCH", "1", "(RFC822.TEXT)")),
        ("UID", ("FETCH", "1", "(BINARY[1])")),
        ("UID", ("FETCH", "1", "(FLAGS BODY[HEADER])")),
    ],
)
def test_write_commands_and_seen_setting_fetches_are_refused(name, args):
    with pytest.raises(WriteRefused):
        check_read_only(name, args)
