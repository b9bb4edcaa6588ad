"""A StateStore kept in one JSON file, for `manage.py copymailbox` and the benchmarks."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from .types import FolderStateData

_FIELDS = {f.name for f in dataclasses.fields(FolderStateData)}


class JsonFileStateStore:
    """FolderStateData per source folder in a JSON file, rewritten atomically on every save (once per
    batch: the engine records a batch's outcome and the next batches' intent in one save).

    The file holds {"version": 1, "folders": {source folder: {...}}}. A missing file is an empty
    state; a malformed one raises ValueError rather than silently starting over (which would
    copy everything again).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._folders: dict[str, FolderStateData] | None = None

    def load(self) -> dict[str, FolderStateData]:
        if self._folders is None:
            self._folders = self._read()
        return {name: dataclasses.replace(state) for name, state in self._folders.items()}

    def save(self, state: FolderStateData) -> None:
        if self._folders is None:
            self._folders = self._read()
        self._folders[state.source_folder] = dataclasses.replace(state)
        self._write()

    def delete(self, source_folder: str) -> None:
        if self._folders is None:
            self._folders = self._read()
        if self._folders.pop(source_folder, None) is not None:
            self._write()

    def _read(self) -> dict[str, FolderStateData]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            folders = data["folders"]
            return {
                name: FolderStateData(**{k: v for k, v in item.items() if k in _FIELDS})
                for name, item in folders.items()
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path} is not a copy state file: {exc}") from None

    def _write(self) -> None:
        assert self._folders is not None
        payload = {
            "version": 1,
            "folders": {name: _saved(state) for name, state in sorted(self._folders.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, ensure_ascii=False, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _saved(state: FolderStateData) -> dict[str, object]:
    """What is kept of a state: all but the operator's input (accepted_uids)."""
    data = dataclasses.asdict(state)
    data.pop("accepted_uids", None)
    return data


class MemoryStateStore:
    """A StateStore in memory (tests, one-off runs without persistence)."""

    def __init__(self) -> None:
        self.folders: dict[str, FolderStateData] = {}
        self.saves = 0

    def load(self) -> dict[str, FolderStateData]:
        return {name: dataclasses.replace(state) for name, state in self.folders.items()}

    def save(self, state: FolderStateData) -> None:
        self.saves += 1
        self.folders[state.source_folder] = dataclasses.replace(state)

    def delete(self, source_folder: str) -> None:
        self.folders.pop(source_folder, None)
