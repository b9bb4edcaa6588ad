from __future__ import annotations

import json

import pytest

from runs.engine import FolderStateData
from runs.engine.filestate import JsonFileStateStore, StateFileError


def test_state_survives_a_new_store_on_the_same_file(tmp_path):
    path = tmp_path / "state.json"
    store = JsonFileStateStore(path)
    assert store.load() == {}
    store.save(FolderStateData("Отправленные", "INBOX.Sent", 42, "1:100,105", 77))
    store.save(FolderStateData("INBOX", "INBOX", 1, "1:3"))
    again = JsonFileStateStore(path).load()
    assert again["Отправленные"] == FolderStateData("Отправленные", "INBOX.Sent", 42, "1:100,105", 77)
    assert again["INBOX"].copied_uids == "1:3"


def test_delete_removes_one_folder(tmp_path):
    store = JsonFileStateStore(tmp_path / "s.json")
    store.save(FolderStateData("A", "A", 1, "1"))
    store.save(FolderStateData("B", "B", 1, "2"))
    store.delete("A")
    assert set(JsonFileStateStore(tmp_path / "s.json").load()) == {"B"}


def test_loaded_state_is_a_copy(tmp_path):
    store = JsonFileStateStore(tmp_path / "s.json")
    store.save(FolderStateData("A", "A", 1, "1"))
    loaded = store.load()
    loaded["A"].copied_uids = "1:999"
    assert store.load()["A"].copied_uids == "1"


def test_a_malformed_file_is_refused_not_reset(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="not a copy state file"):
        JsonFileStateStore(path).load()
    path.write_text(json.dumps({"version": 1}))
    with pytest.raises(StateFileError):
        JsonFileStateStore(path).load()
    assert path.read_text() == json.dumps({"version": 1})


def test_a_file_that_is_not_text_is_refused_not_reset(tmp_path):
    path = tmp_path / "s.json"
    path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(StateFileError, match="is not a copy state file: it is not UTF-8 text"):
        JsonFileStateStore(path).load()
    assert path.read_bytes() == b"\xff\xfe binary"


def test_a_rewrite_that_cannot_write_names_the_file_and_leaves_it_whole(tmp_path, monkeypatch):
    """Compaction on load (and the first save) writes a temporary file and renames it: a full disk there
    is a StateFileError, the journal is left as it was and no temporary file stays behind."""
    import os

    path = tmp_path / "s.json"
    store = JsonFileStateStore(path)
    store.save(FolderStateData("A", "A", 1, "1"))
    store.save(FolderStateData("A", "A", 1, "1:2"))  # a superseded line: the next load compacts
    before = path.read_text()
    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(StateFileError) as raised:
        JsonFileStateStore(path).load()
    assert str(raised.value) == f"cannot write the copy state file {path}: No space left on device"
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    assert JsonFileStateStore(path).load()["A"].copied_uids == "1:2"


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_save_appends_one_line_and_a_new_store_compacts_them(tmp_path):
    path = tmp_path / "s.json"
    store = JsonFileStateStore(path)
    for n in range(1, 6):
        store.save(FolderStateData("INBOX", "INBOX", 7, f"1:{n}", pending_uids=f"{n + 1}", pending_uidnext=n + 1))
    store.save(FolderStateData("Sent", "Sent", 8, "3"))
    assert len(_lines(path)) == 1 + 6  # the header, then one line per save: nothing rewritten
    again = JsonFileStateStore(path).load()
    assert again["INBOX"] == FolderStateData("INBOX", "INBOX", 7, "1:5", pending_uids="6", pending_uidnext=6)
    assert [entry.get("save", {}).get("source_folder") for entry in _lines(path)] == [None, "INBOX", "Sent"]


def test_a_last_line_cut_short_is_a_save_that_never_happened(tmp_path):
    """The process died inside save(): the engine had not sent the batch that save announced, so the state
    before it is the truth. The torn bytes are cut off, so later saves read back whole."""
    path = tmp_path / "s.json"
    JsonFileStateStore(path).save(FolderStateData("INBOX", "INBOX", 7, "1:10"))
    whole = path.read_text()
    torn = json.dumps({"save": {"source_folder": "INBOX", "destination_folder": "INBOX", "uidvalidity": 7}})
    path.write_text(whole + torn[:40])
    store = JsonFileStateStore(path)
    assert store.load()["INBOX"].copied_uids == "1:10"
    store.save(FolderStateData("INBOX", "INBOX", 7, "1:12"))
    assert JsonFileStateStore(path).load()["INBOX"].copied_uids == "1:12"


def test_an_unreadable_line_inside_the_journal_is_refused_and_kept(tmp_path):
    path = tmp_path / "s.json"
    store = JsonFileStateStore(path)
    store.save(FolderStateData("INBOX", "INBOX", 7, "1:10"))
    store.save(FolderStateData("INBOX", "INBOX", 7, "1:11"))
    lines = path.read_text().splitlines(keepends=True)
    damaged = lines[0] + '{"save": garbage\n' + lines[2]
    path.write_text(damaged)
    with pytest.raises(StateFileError, match="not a copy state file"):
        JsonFileStateStore(path).load()
    assert path.read_text() == damaged


def test_a_state_file_of_the_first_format_is_read_and_continued(tmp_path):
    """Files written before the journal: one JSON document {"version": 1, "folders": {...}}."""
    path = tmp_path / "s.json"
    first = {
        "version": 1,
        "folders": {
            "Отправленные": {
                "source_folder": "Отправленные",
                "destination_folder": "INBOX.Sent",
                "uidvalidity": 42,
                "copied_uids": "1:100,105",
                "highest_modseq": 77,
                "uid_map": "1:100>3:102",
            }
        },
    }
    path.write_text(json.dumps(first, ensure_ascii=False, indent=1))
    store = JsonFileStateStore(path)
    assert store.load()["Отправленные"] == FolderStateData(
        "Отправленные", "INBOX.Sent", 42, "1:100,105", 77, uid_map="1:100>3:102"
    )
    store.save(FolderStateData("INBOX", "INBOX", 1, "1:3"))
    assert set(JsonFileStateStore(path).load()) == {"Отправленные", "INBOX"}
    assert _lines(path)[0] == {"version": 2}


def test_a_state_file_cannot_supply_the_operators_accepted_refusals(tmp_path):
    """accepted_uids is the operator's input for one run (never saved): a file that carries it is read
    without it, so no message is skipped as "accepted" on the word of a state file."""
    path = tmp_path / "s.json"
    saved = {"source_folder": "INBOX", "destination_folder": "INBOX", "uidvalidity": 7, "accepted_uids": "1:*"}
    path.write_text(json.dumps({"version": 2}) + "\n" + json.dumps({"save": saved}) + "\n")
    assert JsonFileStateStore(path).load()["INBOX"].accepted_uids == ""
