from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.engine import uidset
from runs.engine.uidset import UidSet

uid_lists = st.lists(st.integers(min_value=1, max_value=5000), max_size=300)


def test_encode_is_compact_and_sorted():
    assert uidset.encode([5, 1, 2, 3, 9, 7, 8, 3]) == "1:3,5,7:9"
    assert uidset.encode([]) == ""


def test_decode_accepts_reversed_ranges_and_spaces():
    assert list(uidset.decode("3:1, 7")) == [1, 2, 3, 7]


def test_union_and_difference_of_texts():
    assert uidset.union("1:5", "4:9,20") == "1:9,20"
    assert uidset.difference("1:10", "3,5:6") == "1:2,4,7:10"
    assert uidset.difference("1:10", "") == "1:10"
    assert uidset.difference("", "1:10") == ""


@pytest.mark.parametrize("bad", ["1:x", "a", "1::2", "*", "0", "2:0"])
def test_decode_rejects_malformed_input(bad):
    with pytest.raises(ValueError):
        uidset.decode(bad)


def test_membership_and_max():
    s = UidSet.parse("1:3,10:20")
    assert 2 in s and 15 in s
    assert 4 not in s and 21 not in s and "2" not in s
    assert s.max == 20 and UidSet().max == 0
    assert len(s) == 14


@given(uid_lists, uid_lists)
def test_set_operations_agree_with_python_sets(a, b):
    sa, sb = UidSet.from_uids(a), UidSet.from_uids(b)
    assert set(sa | sb) == set(a) | set(b)
    assert set(sa - sb) == set(a) - set(b)
    assert set(sa & sb) == set(a) & set(b)
    assert UidSet.parse(str(sa)) == sa
    assert list(sa) == sorted(set(a))


def test_twenty_thousand_uids_are_cheap():
    # Not a timing assertion: the point is the representation stays one range per run of UIDs.
    copied = UidSet.from_uids(range(1, 20_001))
    assert str(copied) == "1:20000"
    gappy = UidSet.from_uids(range(1, 40_001, 2))  # 20,000 separate UIDs
    left = UidSet.from_uids(range(1, 40_001)) - gappy
    assert len(left) == 20_000
    assert UidSet.parse(str(gappy)) == gappy
