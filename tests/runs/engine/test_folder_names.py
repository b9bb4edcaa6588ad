"""`%` and `*` are legal in folder names (issue 11 case 9): quoted, created and copied; a name is
refused only when the destination refuses CREATE, with its words."""

from __future__ import annotations

import datetime as dt

import pytest

from runs.engine import Outcome, copy_account, map_folders
from runs.engine.filestate import MemoryStateStore
from runs.engine.imap import Namespace
from runs.engine.types import FolderInfo
from tests.runs.engine.helpers import assert_same_folder
from tests.support.dovecot import fill, make_message

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2022, 2, 2, 2, 2, 2, tzinfo=dt.UTC)


def test_names_with_percent_and_star_are_copied(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    names = {"100% done": 1, "50% off": 5, "A*B": 2, "Sale/20% *now*": 3}
    with imap_server.connect(source) as client:
        for name, count in names.items():
            fill(client, name, [(make_message(seed=f"{name}{i}"), [], WHEN) for i in range(count)])
    result = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=MemoryStateStore())
    assert result.outcome == Outcome.DONE, result.reason
    assert (result.copied, result.errors, result.warnings) == (11, 0, [])
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        for name, count in names.items():
            assert assert_same_folder(src, name, dst, name) == count


def test_a_name_the_destination_refuses_is_refused_with_its_words(imap_server, imap_server_dotted, make_imap_user):
    """sdbox keeps one directory per level; Maildir++ one directory for the whole path, so three
    100-character levels fit the source and are too long for the destination's file system."""
    long_name = "/".join(f"L{i}" + "x" * 98 for i in range(3))
    source = make_imap_user()
    destination = make_imap_user(imap_server_dotted)
    with imap_server.connect(source) as client:
        fill(client, "50% off", [(make_message(seed=f"ok{i}"), [], WHEN) for i in range(2)])
        fill(client, long_name, [(make_message(seed="long"), [], WHEN)])
    result = copy_account(
        imap_server.mailbox(source), imap_server_dotted.mailbox(destination), state=MemoryStateStore()
    )
    assert result.outcome == Outcome.DONE, result.reason
    refused = [w for w in result.warnings if "the destination refused to create" in w]
    assert len(refused) == 1, result.warnings
    assert refused[0].startswith(f"{long_name!r} not copied") and "Not found" in refused[0]  # Dovecot's words
    assert result.copied == 2
    with imap_server.connect(source) as src, imap_server_dotted.connect(destination) as dst:
        assert assert_same_folder(src, "50% off", dst, "INBOX.50% off") == 2


def test_the_mapping_no_longer_refuses_wildcards():
    plans = map_folders(
        [FolderInfo(name="50% off", delimiter="/", flags=()), FolderInfo(name="a*", delimiter="/", flags=())],
        Namespace("", "/"),
        [],
        Namespace("", "/"),
        None,
    )
    assert [(p.destination, p.conflict) for p in plans] == [("50% off", ""), ("a*", "")]
