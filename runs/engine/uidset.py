"""Compact IMAP sequence sets ("1:5,7,9:12") for large UID sets.

A set is held as a sorted tuple of disjoint, non-adjacent inclusive ranges, so 20,000 consecutive UIDs
are one range and every operation is linear in the number of ranges, not UIDs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Ranges = tuple[tuple[int, int], ...]


class UidSet:
    """An immutable set of positive integers stored as ranges."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self.ranges: Ranges = _normalise(ranges)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_uids(cls, uids: Iterable[int]) -> UidSet:
        ordered = sorted(set(uids))
        ranges: list[tuple[int, int]] = []
        for uid in ordered:
            if uid < 1:
                raise ValueError(f"UIDs are positive, not {uid}")
            if ranges and ranges[-1][1] + 1 == uid:
                ranges[-1] = (ranges[-1][0], uid)
            else:
                ranges.append((uid, uid))
        result = cls()
        result.ranges = tuple(ranges)
        return result

    @classmethod
    def parse(cls, text: str) -> UidSet:
        """Decode an IMAP sequence set of numbers ("*" is not allowed: state holds real UIDs)."""
        return cls(_parse_ranges(text))

    def __str__(self) -> str:
        return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in self.ranges)

    def __repr__(self) -> str:
        return f"UidSet({str(self)!r})"

    # --------------------------------------------------------------------- sets

    def __or__(self, other: UidSet) -> UidSet:
        return UidSet(self.ranges + other.ranges)

    def __sub__(self, other: UidSet) -> UidSet:
        result: list[tuple[int, int]] = []
        theirs = other.ranges
        j = 0
        for low, high in self.ranges:
            while j < len(theirs) and theirs[j][1] < low:
                j += 1
            k = j
            cur = low
            while k < len(theirs) and theirs[k][0] <= high:
                t_low, t_high = theirs[k]
                if t_low > cur:
                    result.append((cur, t_low - 1))
                cur = max(cur, t_high + 1)
                if cur > high:
                    break
                k += 1
            if cur <= high:
                result.append((cur, high))
        out = UidSet()
        out.ranges = tuple(result)
        return out

    def __and__(self, other: UidSet) -> UidSet:
        return self - (self - other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UidSet) and self.ranges == other.ranges

    def __hash__(self) -> int:
        return hash(self.ranges)

    def __len__(self) -> int:
        return sum(b - a + 1 for a, b in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __iter__(self) -> Iterator[int]:
        for a, b in self.ranges:
            yield from range(a, b + 1)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        from bisect import bisect_right

        i = bisect_right(self.ranges, (uid, float("inf"))) - 1
        return i >= 0 and self.ranges[i][0] <= uid <= self.ranges[i][1]

    @property
    def max(self) -> int:
        return self.ranges[-1][1] if self.ranges else 0


def _normalise(ranges: Iterable[tuple[int, int]]) -> Ranges:
    items = sorted((min(a, b), max(a, b)) for a, b in ranges)
    merged: list[tuple[int, int]] = []
    for low, high in items:
        if low < 1:
            raise ValueError(f"UIDs are positive, not {low}")
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return tuple(merged)


def _parse_ranges(text: str) -> list[tuple[int, int]]:
    text = text.strip()
    if not text:
        return []
    ranges = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                a, b = part.split(":")
                ranges.append((int(a), int(b)))
            else:
                n = int(part)
                ranges.append((n, n))
        except ValueError:
            raise ValueError(f"not a sequence set: {text[:80]!r}") from None
    return ranges


def encode(uids: Iterable[int]) -> str:
    """Sequence-set text for any iterable of UIDs."""
    return str(UidSet.from_uids(uids))


def decode(text: str) -> UidSet:
    return UidSet.parse(text)


def union(a: str, b: str) -> str:
    return str(UidSet.parse(a) | UidSet.parse(b))


def difference(a: str, b: str) -> str:
    return str(UidSet.parse(a) - UidSet.parse(b))
