"""What a folder's saved state is bound to, and the source UID → destination UID map.

A FolderStateData says "these source UIDs are at the destination". That is only true for the
destination it was written for: the server, the user, the destination folder and that folder's
UIDVALIDITY (RFC 3501 2.3.1.1: a new UIDVALIDITY means the old UIDs name nothing any more). When any
of them differs from what this run sees, the state is void and the folder is re-matched against
what the destination really holds (issue 11 case 11). The one home of that rule is
`binding_change()`.

The UID map remembers which destination UID each copied source UID became (APPENDUID, RFC 4315
section 3, or a match by identity), so flag changes land on the right copy even when two source
messages look the same (issue 11 case 5).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from .types import FolderStateData, Mailbox
from .uidset import UidSet


def server_key(host: str, port: int) -> str:
    """A server as states are bound to it: "host:port", host in lower case (DNS names ignore case)."""
    return f"{host.strip().lower()}:{int(port)}"


def destination_server(mailbox: Mailbox) -> str:
    """server_key() of the server `mailbox` logs in to."""
    return server_key(mailbox.host, mailbox.port)


def binding_change(
    state: FolderStateData,
    *,
    server: str,
    user: str,
    folder: str,
    uidvalidity: int | None,
) -> str:
    """Why `state` no longer describes the destination (words for the run's warnings), or "".

    `server`/`user` are the destination this run logs in to (destination_server(), the login),
    `folder` the destination folder the source folder maps to now, `uidvalidity` that folder's
    UIDVALIDITY (None when it does not exist yet). An empty binding field (state written before
    bindings were kept, see the runs migration 0004) is adopted, not judged: such a state was
    written for the destination the account had then, which is the one the migration recorded.
    """
    if state.destination_folder != folder:
        return f"it now goes to {folder!r} instead of {state.destination_folder!r}"
    if state.destination_server and state.destination_server != server:
        return f"the destination server changed ({state.destination_server} → {server})"
    if state.destination_user and state.destination_user != user:
        return f"the destination user changed ({state.destination_user!r} → {user!r})"
    if uidvalidity is None:
        if UidSet.parse(state.copied_uids):
            return f"the destination folder {folder!r} no longer exists"
        return ""
    if state.destination_uidvalidity is not None and state.destination_uidvalidity != uidvalidity:
        return (
            f"the destination folder {folder!r} was re-created "
            f"(UIDVALIDITY {state.destination_uidvalidity} → {uidvalidity})"
        )
    return ""


def bind_to_appended(state: FolderStateData, copied: UidSet, uid_map: UidMap, uidvalidity: int) -> bool:
    """Bind `state` to the destination UIDVALIDITY an APPENDUID named (RFC 4315 §3) when it differs from
    the one planning read by STATUS and the record holds no copy yet. Returns whether it re-bound.

    Why: a server may answer STATUS for a folder it has not stored UIDs for yet with a UIDVALIDITY it
    does not keep. Courier's is the time of asking, in seconds, until the folder is first written (an
    APPEND or a read-write SELECT; test_server_matrix.py shows it). A record bound to it would look "re-created" to the
    next run, be voided and every message matched again. The APPENDUID names the UIDVALIDITY the
    copies really are under. With copies already on record (`copied`, `uid_map`), a different value
    means the folder was re-created meanwhile: the binding is kept, so the next run voids the record
    (binding_change) and finds what the destination really holds.
    """
    if state.destination_uidvalidity == uidvalidity or copied or uid_map:
        return False
    state.destination_uidvalidity = uidvalidity
    return True


def deleted_at_destination(uid_map: UidMap, copied: UidSet, destination_uids: UidSet) -> UidSet:
    """Source UIDs among `copied` whose copy someone deleted at the destination after it was copied.

    `uid_map` says which destination UID each copy became; `destination_uids` is UID SEARCH ALL of
    the destination folder now, under the UIDVALIDITY the state is bound to (binding_change: a
    re-created folder voids the state first, so the UIDs compare). A copy whose UID is no longer
    there was expunged at the destination. A one-way migration does not copy it again (a re-run must
    not resurrect what the destination's user deleted); the report counts it apart.

    A copied UID the map does not know (a state written before the map existed, issue 11, or a copy
    made without UIDPLUS and never matched by identity) cannot be checked: it is left out here, so it
    still counts as already there, as it did before this count existed.
    """
    return UidSet.from_uids(
        source for source, dest in uid_map.items() if source in copied and dest not in destination_uids
    )


class UidMap:
    """Source UID → destination UID for one folder, kept as runs of consecutive pairs.

    Text form (stored in FolderStateData.uid_map): comma-separated "S=D" (one pair) or "S:E=D"
    (source UIDs S..E became D..D+E-S), sorted by source UID. Consecutive appends with APPENDUID
    give consecutive UIDs on both sides, so a folder copied in one go is one run however large.
    """

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: list[list[int]] = []  # [source start, source end, destination start], sorted

    @classmethod
    def parse(cls, text: str) -> UidMap:
        """Decode the text form; raises ValueError on anything else."""
        result = cls()
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            left, sep, right = part.partition("=")
            if not sep:
                raise ValueError(f"not a UID map entry: {part!r}")
            low, _colon, high = left.partition(":")
            start, end, dest = int(low), int(high or low), int(right)
            if start < 1 or end < start or dest < 1:
                raise ValueError(f"not a UID map entry: {part!r}")
            result.update((start + i, dest + i) for i in range(end - start + 1))
        return result

    def __str__(self) -> str:
        return ",".join(f"{s}={d}" if s == e else f"{s}:{e}={d}" for s, e, d in self._runs)

    def __len__(self) -> int:
        return sum(e - s + 1 for s, e, _d in self._runs)

    def __bool__(self) -> bool:
        return bool(self._runs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UidMap) and self._runs == other._runs

    def __repr__(self) -> str:
        return f"UidMap({str(self)!r})"

    def get(self, uid: int) -> int | None:
        """The destination UID source `uid` became, or None when unknown."""
        index = bisect.bisect_right(self._runs, [uid, float("inf")]) - 1
        if index >= 0:
            start, end, dest = self._runs[index]
            if start <= uid <= end:
                return dest + uid - start
        return None

    def items(self) -> Iterator[tuple[int, int]]:
        for start, end, dest in self._runs:
            for offset in range(end - start + 1):
                yield start + offset, dest + offset

    def update(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Record (source UID, destination UID) pairs; a later pair for a source UID wins."""
        for source, dest in pairs:
            self._set(int(source), int(dest))

    def only(self, uids: UidSet) -> UidMap:
        """The pairs whose source UID is in `uids` (drop what the source no longer has)."""
        result = UidMap()
        result.update((s, d) for s, d in self.items() if s in uids)
        return result

    def _set(self, source: int, dest: int) -> None:
        self._remove(source)
        runs = self._runs
        index = bisect.bisect_left(runs, [source])
        before = runs[index - 1] if index > 0 else None
        after = runs[index] if index < len(runs) else None
        joins_before = before is not None and before[1] + 1 == source and before[2] + source - before[0] == dest
        joins_after = after is not None and after[0] - 1 == source and after[2] - 1 == dest
        if joins_before and joins_after:
            assert before is not None and after is not None
            before[1] = after[1]
            del runs[index]
        elif joins_before:
            assert before is not None
            before[1] = source
        elif joins_after:
            assert after is not None
            after[0], after[2] = source, dest
        else:
            runs.insert(index, [source, source, dest])

    def _remove(self, source: int) -> None:
        index = bisect.bisect_right(self._runs, [source, float("inf")]) - 1
        if index < 0:
            return
        start, end, dest = self._runs[index]
        if not start <= source <= end:
            return
        pieces = []
        if start < source:
            pieces.append([start, source - 1, dest])
        if source < end:
            pieces.append([source + 1, end, dest + source + 1 - start])
        self._runs[index : index + 1] = pieces
