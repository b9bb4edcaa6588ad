"""Finding the one message that breaks a connection (issue 11 cases 3 and 4).

Some messages break the connection every time: a source that answers `* BYE FETCH failed` for a
message it cannot read, a proxy or server that resets the connection on an APPEND it dislikes.
Retrying the same batch would fail the same way until the account gives up, and the messages
after it would never be copied. So when a connection breaks while a batch is being read from
the source or stored at the destination, the next batches are half as large; the batch that
still breaks is halved again, until the message is alone. A message that breaks the connection
twice on its own is reported (folder, UID, size, subject when known) and skipped; the copy goes
on, one message per batch at first and twice as many after each batch that lands, so a second
bad message nearby is found at once and a healthy folder is soon back to full batches. Halving
steps do not count as failed reconnects: each one narrows the search. Three messages in a row
found this way, with nothing landing in between, mean the server itself is unusable.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .uidset import UidSet

TIMES_ALONE = 2  # a message must break the connection this often when sent alone to be blamed
BLAMED_IN_A_ROW = 3  # this many blamed messages without one landing in between: give up
_LIMIT_GONE = 4096  # a batch limit grown this far is no limit (batches are far smaller anyway)


@dataclass
class Suspects:
    """The batch that was on the wire: what the worker was doing, and what it knows of each UID."""

    doing: str  # "read from the source" or "stored at the destination"
    uids: list[int]
    known: dict[int, tuple[int, str]] = field(default_factory=dict)  # uid -> (size in bytes, subject)


@dataclass
class Verdict:
    """What to make of a broken connection."""

    counts: bool  # a failed reconnect that counts towards the account's limit
    blamed: int | None = None  # the UID that broke the connection twice on its own
    doing: str = ""
    size: int = 0
    subject: str = ""
    give_up: bool = False  # BLAMED_IN_A_ROW messages blamed in a row: the server is the problem


class Isolation:
    """The halving state of one worker for one unit of work (a folder's UIDs)."""

    def __init__(self) -> None:
        self.limit: int | None = None  # most messages per batch while narrowing; None = normal batches
        self.suspects: Suspects | None = None
        self._alone: Counter[int] = Counter()
        self._blamed_in_a_row = 0

    def batch_messages(self, normal: int) -> int:
        """Messages per batch: `normal`, or fewer while a breaking message is being narrowed down."""
        return normal if self.limit is None else min(normal, self.limit)

    def watch(self, suspects: Suspects | None) -> None:
        """These UIDs are on the wire now (None: nothing message-specific is)."""
        self.suspects = suspects

    def landed(self) -> None:
        """Messages landed: blamed messages so far were not in a row, and batches may grow again."""
        self._blamed_in_a_row = 0
        if self.limit is not None:
            self.limit = None if self.limit >= _LIMIT_GONE else self.limit * 2

    def after_break(self, remaining: UidSet) -> Verdict:
        """The connection broke: narrow the suspects down, or blame the one left alone.

        `remaining` is what is still to copy (UIDs that landed before the break are gone from it).
        """
        suspects, self.suspects = self.suspects, None
        uids = [uid for uid in suspects.uids if uid in remaining] if suspects else []
        if not uids:
            return Verdict(counts=True)
        if len(uids) > 1:
            self.limit = max(1, len(uids) // 2)
            return Verdict(counts=False)
        uid = uids[0]
        self.limit = 1
        self._alone[uid] += 1
        if self._alone[uid] < TIMES_ALONE:
            return Verdict(counts=True)  # once may be a plain network drop
        del self._alone[uid]
        self._blamed_in_a_row += 1
        size, subject = suspects.known.get(uid, (0, "")) if suspects else (0, "")
        return Verdict(
            counts=False,
            blamed=uid,
            doing=suspects.doing if suspects else "",
            size=size,
            subject=subject,
            give_up=self._blamed_in_a_row >= BLAMED_IN_A_ROW,
        )
