"""A StateStore kept in one JSON file, for `manage.py copymailbox` and the benchmarks."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from .types import FolderStateData


class JsonFileStateStore:
    """FolderStateData per source folder in a JSON Lines journal: each save() appends one line, so a copy
    of 5,000 messages writes about 140 short lines instead of rewriting the whole file 140 times (issue 14).

    The file's first line is {"version": 2}; each further line is {"save": {field: value, ...}} (every
    FolderStateData field but accepted_uids, the operator's input) or {"delete": source folder}, and the
    last line for a folder wins. Loading compacts the file (one line per folder, written to a temporary
    file and renamed over it) when it holds superseded lines, so it does not grow from run to run.

    A last line cut short with no newline is a save that never returned (the process died while writing
    it): it is ignored and cut off, as the engine never sent the batch that save announced (account.py,
    "Crash window"). Any other unreadable line, a missing file header, or a file of the first format
    ({"version": 1, "folders": {...}}, read and then rewritten as a journal) that is malformed raises
    StateFileError and leaves the file as it is, rather than silently starting over (which would copy
    everything again). A missing file is an empty state. A file that cannot be read or written (no
    permission, a directory in the way, a full disk) raises StateFileError naming the path and the
    system's reason; a save that raises it recorded nothing, and the engine sends nothing it announced.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._folders: dict[str, FolderStateData] | None = None
        self._journal_started = False  # the file exists with its header (it is created by the first save)

    def load(self) -> dict[str, FolderStateData]:
        return {name: dataclasses.replace(state) for name, state in self._loaded().items()}

    def save(self, state: FolderStateData) -> None:
        folders = self._loaded()
        self._append({"save": _saved(state)})
        folders[state.source_folder] = dataclasses.replace(state)

    def delete(self, source_folder: str) -> None:
        folders = self._loaded()
        if source_folder in folders:
            self._append({"delete": source_folder})
            del folders[source_folder]

    def _loaded(self) -> dict[str, FolderStateData]:
        if self._folders is None:
            self._folders, compact = self._read()
            if compact:
                self._rewrite(self._folders)
        return self._folders

    def _read(self) -> tuple[dict[str, FolderStateData], bool]:
        """The folders, and whether the file should be rewritten (superseded lines, a torn last line,
        the first format)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, False
        except OSError as exc:
            raise StateFileError(f"cannot read the copy state file {self.path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise StateFileError(f"{self.path} is not a copy state file: it is not UTF-8 text") from None
        self._journal_started = True
        try:
            try:
                return _read_journal(text)
            except _NotAJournal:
                folders = json.loads(text)["folders"]
                return {name: _state(item) for name, item in folders.items()}, True
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"{self.path} is not a copy state file: {exc}") from None

    def _append(self, entry: dict[str, object]) -> None:
        if not self._journal_started:
            self._rewrite({})
        try:
            with self.path.open("a", encoding="utf-8") as journal:
                journal.write(_line(entry))
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def _rewrite(self, folders: dict[str, FolderStateData]) -> None:
        lines = [_line(_HEADER)] + [_line({"save": _saved(state)}) for _, state in sorted(folders.items())]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write("".join(lines))
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        self._journal_started = True


class StateFileError(Exception):
    """The copy state file cannot be read or written, or is not one; the message names the path and
    the reason (the system's words for an OSError), never the file's contents."""


def _write_error(path: Path, exc: OSError) -> StateFileError:
    return StateFileError(f"cannot write the copy state file {path}: {exc.strerror or exc}")


_HEADER = {"version": 2}


class _NotAJournal(Exception):
    """The file does not start with the journal's header line (it may be the first format)."""


def _read_journal(text: str) -> tuple[dict[str, FolderStateData], bool]:
    """Replay a journal; raises _NotAJournal, or ValueError/KeyError/TypeError for a malformed one."""
    lines = text.split("\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        raise _NotAJournal from None
    if header != _HEADER:
        raise _NotAJournal
    # After the last newline: "" when every line is whole, else a line never completely written.
    torn = lines.pop() != ""
    folders: dict[str, FolderStateData] = {}
    for line in lines[1:]:
        entry = json.loads(line)
        if "save" in entry:
            state = _state(entry["save"])
            folders[state.source_folder] = state
        else:
            folders.pop(entry["delete"], None)
    return folders, torn or len(lines) - 1 > len(folders)


def _line(entry: dict[str, object]) -> str:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"


def _state(item: dict[str, object]) -> FolderStateData:
    return FolderStateData(**{k: v for k, v in item.items() if k in _KEPT})  # type: ignore[arg-type]


def _saved(state: FolderStateData) -> dict[str, object]:
    """What is kept of a state: all but the operator's input (accepted_uids)."""
    return {name: getattr(state, name) for name in _KEPT}


_KEPT = tuple(f.name for f in dataclasses.fields(FolderStateData) if f.name != "accepted_uids")


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
