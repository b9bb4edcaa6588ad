"""Second tries for a message the destination refused or lost: part of the worker (worker.py).

A refused message with bare CR/LF goes again with CRLF line endings; one refused with keywords goes
again with fewer keywords (issue 11 case 2). Either way a message that lands with a change gets a
per-message warning. _AppendRetries is mixed into _Worker and uses its inflight, isolation,
_report() and _drop().
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import imap as wire
from .append import AppendItem, AppendOutcome, append_many
from .imap import Connection, ConnectionLost
from .isolation import Suspects
from .messages import normalise_line_endings, subject_of
from .types import MessageError, MessageWarning
from .work import _Batch, _Job

if TYPE_CHECKING:
    from .isolation import Isolation
    from .messages import Identity


class _AppendRetries:
    # Set by _Worker, whose _report() and _drop() these methods call as well.
    inflight: tuple[_Job, list[tuple[int, AppendItem]], list[Identity], int] | None
    isolation: Isolation

    def _append_normalised(self, dst: Connection, job: _Job, uid: int, item: AppendItem, refusal: str) -> None:
        """Second try for a refused message with bare CR/LF: the same bytes with CRLF line endings."""
        report = _Batch(job)
        fixed = AppendItem(raw=normalise_line_endings(item.raw), flags=item.flags, when=item.when)
        outcome = self._append_one(dst, job, uid, fixed)
        if outcome.ok:
            report.add_landed(uid, len(fixed.raw), outcome)
            report.message_warnings.append(
                self._warning(
                    job,
                    uid,
                    item,
                    f"message UID {uid} in {job.source!r}: the destination refused it as is ({refusal}); "
                    "copied with bare CR/LF rewritten to CRLF",
                )
            )
        else:
            report.errors.append(self._error(job, uid, item, outcome.text))
        self._report(report, resolved=[uid])
        self._drop([uid])

    def _append_with_fewer_keywords(self, dst: Connection, job: _Job, uid: int, item: AppendItem, refusal: str) -> None:
        """A message refused with keywords: again without the keywords the refusal names, then
        without any keyword (system flags kept). Copied that way, it gets a warning naming the
        keywords dropped; refused still, an error with the last refusal."""
        keywords = [f for f in item.flags if not f.startswith("\\")]
        named = [k for k in keywords if k.lower() in refusal.lower()]
        tries = []
        if named and len(named) < len(keywords):
            tries.append([f for f in item.flags if f not in named])
        tries.append([f for f in item.flags if f.startswith("\\")])
        report = _Batch(job)
        for flags in tries:
            outcome = self._append_one(dst, job, uid, AppendItem(raw=item.raw, flags=flags, when=item.when))
            if outcome.ok:
                dropped = [k for k in keywords if k not in flags]
                report.add_landed(uid, len(item.raw), outcome)
                report.message_warnings.append(
                    self._warning(
                        job,
                        uid,
                        item,
                        f"message UID {uid} in {job.source!r}: the destination refused its keywords ({refusal}); "
                        f"copied without {', '.join(dropped)}",
                    )
                )
                break
            refusal = outcome.text
        else:
            report.errors.append(self._error(job, uid, item, refusal))
        self._report(report, resolved=[uid])
        self._drop([uid])

    def _append_one(self, dst: Connection, job: _Job, uid: int, item: AppendItem) -> AppendOutcome:
        """APPEND one message now; a connection lost meanwhile leaves it in flight (looked for
        after the reconnect, so it is never sent twice) and raises ConnectionLost."""
        outcome: list[AppendOutcome] = []
        uidnext = 0
        try:
            uidnext = int(dst.status(job.destination, ["UIDNEXT"])["UIDNEXT"])
            append_many(dst, job.destination, [item], outcome)
        except ConnectionLost:
            self.inflight = (job, [(uid, item)], [], uidnext)
            self._suspect_stored([(uid, item)])
            raise
        except wire.TRANSIENT_ERRORS as exc:
            raise wire.lost(exc) from None
        return outcome[0]

    def _suspect_stored(self, unconfirmed: list[tuple[int, AppendItem]]) -> None:
        """The destination broke while storing these: the suspects, should it happen again."""
        known = {uid: (len(item.raw), subject_of(item.raw)) for uid, item in unconfirmed}
        self.isolation.watch(Suspects("stored at the destination", [uid for uid, _ in unconfirmed], known))

    def _warning(self, job: _Job, uid: int, item: AppendItem, text: str) -> MessageWarning:
        return MessageWarning(job.source, uid, len(item.raw), subject_of(item.raw), text)

    def _error(self, job: _Job, uid: int, item: AppendItem, reason: str) -> MessageError:
        return MessageError(job.source, uid, len(item.raw), subject_of(item.raw), reason)
