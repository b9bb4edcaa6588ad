"""The state binding rule and the source UID → destination UID map (pure, no server)."""

from __future__ import annotations

import pytest

from runs.engine import FolderStateData, Mailbox
from runs.engine.folderstate import (
    UidMap,
    bind_to_appended,
    binding_change,
    deleted_at_destination,
    destination_server,
)
from runs.engine.uidset import UidSet


def _state(**kwargs) -> FolderStateData:
    values = {
        "source_folder": "INBOX",
        "destination_folder": "INBOX",
        "uidvalidity": 7,
        "copied_uids": "1:300",
        "destination_server": "mail.example.net:993",
        "destination_user": "anna",
        "destination_uidvalidity": 40,
    }
    values.update(kwargs)
    return FolderStateData(**values)


def _change(state, **kwargs):
    where = {"server": "mail.example.net:993", "user": "anna", "folder": "INBOX", "uidvalidity": 40}
    where.update(kwargs)
    return binding_change(state, **where)


def test_a_state_stays_valid_for_the_destination_it_was_written_for():
    assert _change(_state()) == ""


@pytest.mark.parametrize(
    ("changed", "words"),
    [
        ({"server": "other.example.net:993"}, "destination server changed"),
        ({"user": "anna.new"}, "destination user changed"),
        ({"uidvalidity": 41}, "re-created"),
        ({"uidvalidity": None}, "no longer exists"),
        ({"folder": "Archive"}, "now goes to 'Archive'"),
    ],
)
def test_each_change_of_the_destination_voids_the_state(changed, words):
    assert words in _change(_state(), **changed)


def test_a_state_written_before_bindings_were_kept_is_adopted():
    legacy = _state(destination_server="", destination_user="", destination_uidvalidity=None)
    assert _change(legacy, server="any:143", user="bob", uidvalidity=99) == ""


def test_an_empty_state_for_a_folder_still_to_create_is_not_void():
    assert _change(_state(copied_uids=""), uidvalidity=None) == ""


def test_a_record_holding_no_copy_yet_takes_the_uidvalidity_the_first_appenduid_names():
    state = _state(copied_uids="")
    assert bind_to_appended(state, UidSet(), UidMap(), 41)
    assert state.destination_uidvalidity == 41 and _change(state, uidvalidity=41) == ""


@pytest.mark.parametrize(("copied", "mapped"), [(UidSet.parse("1:300"), UidMap()), (UidSet(), UidMap.parse("1:300=1"))])
def test_with_copies_on_record_an_appenduid_under_another_uidvalidity_leaves_the_record_to_be_voided(copied, mapped):
    """The folder was re-created since those copies were made: the next run must find that out (binding_change)."""
    state = _state()
    assert not bind_to_appended(state, copied, mapped, 41)
    assert "re-created" in _change(state, uidvalidity=41)


def test_the_server_key_ignores_the_case_of_the_host_name():
    a = Mailbox("Mail.Example.NET ", 993, "ssl", "u", "p")
    b = Mailbox("mail.example.net", 993, "ssl", "u", "p")
    assert destination_server(a) == destination_server(b) == "mail.example.net:993"


def test_uid_map_keeps_consecutive_appends_as_one_run():
    uid_map = UidMap()
    uid_map.update((uid, uid + 100) for uid in range(1, 20_001))
    uid_map.update([(20_005, 7)])
    assert str(uid_map) == "1:20000=101,20005=7"
    assert uid_map.get(1) == 101 and uid_map.get(20_000) == 20_100 and uid_map.get(20_005) == 7
    assert uid_map.get(20_001) is None and uid_map.get(0) is None
    assert UidMap.parse(str(uid_map)) == uid_map and len(uid_map) == 20_001


def test_uid_map_a_later_pair_replaces_the_earlier_one_and_splits_the_run():
    uid_map = UidMap.parse("1:10=101")
    uid_map.update([(5, 900)])
    assert str(uid_map) == "1:4=101,5=900,6:10=106"
    uid_map.update([(5, 105)])
    assert str(uid_map) == "1:10=101"


def test_uid_map_out_of_order_pairs_join_their_neighbours():
    uid_map = UidMap()
    uid_map.update([(3, 13), (1, 11), (2, 12), (7, 50)])
    assert str(uid_map) == "1:3=11,7=50"
    assert dict(uid_map.items()) == {1: 11, 2: 12, 3: 13, 7: 50}


def test_uid_map_only_keeps_the_listed_source_uids():
    uid_map = UidMap.parse("1:10=101,20=5")
    assert str(uid_map.only(UidSet.parse("2:3,20"))) == "2:3=102,20=5"


@pytest.mark.parametrize("text", ["1-2", "x=1", "0=1", "5:3=1", "1=0"])
def test_uid_map_refuses_malformed_text(text):
    with pytest.raises(ValueError):
        UidMap.parse(text)


def test_deleted_at_destination_names_the_copies_gone_from_the_destination():
    uid_map = UidMap.parse("1:5=101,7=200")
    copied = UidSet.parse("1:8")  # 6 and 8 were copied before the map existed: they cannot be checked
    gone = deleted_at_destination(uid_map, copied, UidSet.parse("101:102,104:105"))
    assert gone == UidSet.parse("3,7")
    # A source UID no longer counted as copied (gone from the source) is not reported.
    assert deleted_at_destination(uid_map, UidSet.parse("1:2"), UidSet()) == UidSet.parse("1:2")
