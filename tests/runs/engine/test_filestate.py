from __future__ import annotations

import json

import pytest

from runs.engine import FolderStateData
from runs.engine.filestate import JsonFileStateStore


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
    with pytest.raises(ValueError, match="not a copy state file"):
        JsonFileStateStore(path).load()
    path.write_text(json.dumps({"version": 1}))
    with pytest.raises(ValueError):
        JsonFileStateStore(path).load()
    assert path.read_text() == json.dumps({"version": 1})
