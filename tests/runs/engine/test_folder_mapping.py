from __future__ import annotations

from runs.engine import FolderInfo, Namespace, map_folders
from runs.engine.folders import translate_path

SLASH = Namespace("", "/")
DOTTED = Namespace("INBOX.", ".")


def info(name, delimiter="/", special=None, selectable=True):
    return FolderInfo(name=name, delimiter=delimiter, special_use=special, selectable=selectable)


def plans_by_source(plans):
    return {p.source: p for p in plans}


def test_slash_to_dotted_prefix_and_back():
    assert translate_path("INBOX", SLASH, DOTTED) == ("INBOX", "")
    assert translate_path("Work/2024", SLASH, DOTTED) == ("INBOX.Work.2024", "")
    assert translate_path("INBOX.Sent Items", DOTTED, SLASH) == ("Sent Items", "")
    assert translate_path("INBOX.Work.2024", DOTTED, SLASH) == ("Work/2024", "")
    # A child of INBOX on a '/' server goes under the INBOX. prefix once, not twice.
    assert translate_path("INBOX/Sub", SLASH, DOTTED) == ("INBOX.Sub", "")


def test_destination_delimiter_inside_a_name_is_replaced_deterministically():
    assert translate_path("x.y", SLASH, DOTTED) == ("INBOX.x_y", "")
    assert translate_path("INBOX.a/b", DOTTED, SLASH) == ("a.b", "")


def test_explicit_then_special_use_then_path():
    source = [
        info("INBOX"),
        info("Sent Items", special="\\Sent"),
        info("Old"),
        info("Spam", special="\\Junk"),
    ]
    destination = [
        info("INBOX", "."),
        info("INBOX.Sent", ".", special="\\Sent"),
        info("INBOX.Junk", ".", special="\\Junk"),
    ]
    plans = plans_by_source(map_folders(source, SLASH, destination, DOTTED, {"Old": "INBOX.Archive.Old", "Spam": ""}))
    assert (plans["Old"].destination, plans["Old"].rule) == (
        "INBOX.Archive.Old",
        "explicit",
    )
    assert (plans["Spam"].destination, plans["Spam"].rule) == (None, "skip")
    assert (plans["Sent Items"].destination, plans["Sent Items"].rule) == (
        "INBOX.Sent",
        "special-use",
    )
    assert (plans["INBOX"].destination, plans["INBOX"].rule) == ("INBOX", "path")
    assert not any(p.conflict for p in plans.values())


def test_special_use_without_counterpart_falls_back_to_the_path():
    plans = map_folders([info("Sent Items", special="\\Sent")], SLASH, [info("INBOX")], SLASH)
    assert (plans[0].destination, plans[0].rule) == ("Sent Items", "path")


def test_two_sources_onto_one_destination_is_a_conflict():
    source = [info("Sent", special="\\Sent"), info("Sent Items", special="\\Sent")]
    destination = [info("Sent", special="\\Sent")]
    plans = map_folders(source, SLASH, destination, SLASH)
    conflicts = [p for p in plans if p.conflict]
    assert len(conflicts) == 1
    assert "would both be copied into 'Sent'" in conflicts[0].conflict


def test_explicit_mapping_onto_the_same_folder_is_a_conflict():
    plans = map_folders([info("A"), info("B")], SLASH, [], SLASH, {"A": "X", "B": "X"})
    assert [bool(p.conflict) for p in plans] == [False, True]


def test_case_insensitive_collision_is_reported():
    plans = map_folders([info("Trash"), info("trash")], SLASH, [], SLASH)
    assert not plans[0].conflict
    assert "only by case" in plans[1].conflict


def test_names_the_destination_cannot_hold_are_conflicts():
    plans = map_folders([info("a//b"), info("bell\x07")], SLASH, [], DOTTED)
    assert all(p.conflict for p in plans)


def test_noselect_parents_are_planned_as_hierarchy_only():
    source = [info("Parent", selectable=False), info("Parent/Child")]
    plans = plans_by_source(map_folders(source, SLASH, [], DOTTED))
    assert plans["Parent"].selectable is False and plans["Parent"].destination == "INBOX.Parent"
    assert plans["Parent/Child"].destination == "INBOX.Parent.Child"
    assert not any(p.conflict for p in plans.values())


def test_non_latin_and_ampersand_names_map_unchanged():
    plans = map_folders([info("Отправленные/A&B")], SLASH, [], DOTTED)
    assert plans[0].destination == "INBOX.Отправленные.A&B"
