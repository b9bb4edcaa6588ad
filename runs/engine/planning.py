"""Planning, on the main thread before any worker starts: list and map the folders, create the
missing destination folders, and for each folder find what is new, what the destination already
holds and which flags changed; then cut the work into units for the workers."""

from __future__ import annotations

import contextlib
import imaplib

from imapclient.exceptions import IMAPClientError

from . import imap as wire
from .folders import folder_infos, map_folders
from .identity import _dest_identities, _flag_key, _identities, _match_multiset, _section
from .imap import Connection, ConnectionLost
from .messages import IDENTITY_FETCH, Identity, filter_flags, identity
from .types import FolderPlan, FolderResult, FolderStateData
from .uidset import UidSet
from .work import _Job, _Unit

UNIT_MIN = 200  # a folder is split into units of this many UIDs or more ...
UNIT_MAX = 2000  # ... and at most this many


class _Planning:
    """The planning half of _Account (account.py), kept apart so each file reads as one concern."""

    def plan_all(self) -> None:
        listing: dict[str, object] = {}

        def discover(src: Connection, dst: Connection) -> None:
            listing["src"] = folder_infos(src)
            listing["dst"] = folder_infos(dst)
            listing["src_ns"] = src.namespace()
            listing["dst_ns"] = dst.namespace()

        self._retrying("listing folders", discover)
        plans = map_folders(
            listing["src"],  # type: ignore[arg-type]
            listing["src_ns"],  # type: ignore[arg-type]
            listing["dst"],  # type: ignore[arg-type]
            listing["dst_ns"],  # type: ignore[arg-type]
            self.mapping,
        )
        dest_names = {f.name for f in listing["dst"]}  # type: ignore[attr-defined]
        dest_ns = listing["dst_ns"]
        self.states = self.store.load()
        self._create_destinations(plans, dest_names, dest_ns.delimiter or "/")  # type: ignore[attr-defined]
        for plan in plans:
            if self.stop_requested():
                return
            if plan.destination is None or not plan.selectable or plan.conflict:
                continue
            self.current_folder = plan.source
            try:
                self._retrying(
                    f"reading {plan.source!r}",
                    lambda src, dst, plan=plan: self.plan_folder(src, dst, plan),
                )
            except (IMAPClientError, imaplib.IMAP4.error) as exc:  # aborts are retried inside
                text = f"{plan.source!r} not copied: the server refused: {wire.describe(exc)}"
                self.result.folders.append(FolderResult(plan.source, plan.destination, errors=1, warnings=[text]))
                self.result.errors += 1
                self.result.warnings.append(text)
                self.pair.drop()  # the connection may be in any state now
            self.progress()

    def _create_destinations(self, plans: list[FolderPlan], existing: set[str], delimiter: str) -> None:
        existing_folded = {n.upper() if n.upper() == "INBOX" else n for n in existing}
        wanted = sorted({p.destination for p in plans if p.destination and not p.conflict and p.selectable})
        hierarchy = sorted(
            {
                p.destination
                for p in plans
                if p.destination and not p.conflict and not p.selectable and p.destination not in wanted
            }
        )
        for plan in plans:
            if plan.conflict:
                result = FolderResult(plan.source, plan.destination, errors=1, warnings=[plan.conflict])
                self.result.folders.append(result)
                self.result.errors += 1
                self.result.warnings.append(f"{plan.source!r} not copied: {plan.conflict}")
            elif plan.destination is None:  # skipped by the mapping: listed, nothing copied
                self.result.folders.append(FolderResult(plan.source, None))
        self._failed_destinations: dict[str, str] = {}

        def create(src: Connection, dst: Connection) -> None:
            for name in hierarchy:
                if name in existing_folded or any(w.startswith(name + delimiter) for w in wanted):
                    continue
                try:
                    dst.client.create_folder(name + delimiter)
                except imaplib.IMAP4.abort:
                    raise  # a broken connection, not a refusal: the reconnect logic handles it
                except IMAPClientError as exc:
                    self.result.warnings.append(f"could not create the folder level {name!r}: {wire.describe(exc)}")
                existing_folded.add(name)
            for name in wanted:
                if name in existing_folded or (name.upper() == "INBOX"):
                    continue
                try:
                    dst.client.create_folder(name)
                except imaplib.IMAP4.abort:
                    raise  # a broken connection, not a refusal: the reconnect logic handles it
                except IMAPClientError as exc:
                    text = wire.describe(exc)
                    if "exists" not in text.lower():
                        self._failed_destinations[name] = text
                        continue
                with contextlib.suppress(IMAPClientError):
                    dst.client.subscribe_folder(name)
                existing_folded.add(name)

        self._retrying("creating folders", create)

    def plan_folder(self, src: Connection, dst: Connection, plan: FolderPlan) -> None:
        """Plan one source folder: STATUS, the record of earlier runs, then what is left to copy.

        Appends a _Job to self.jobs (its candidates queued for the workers), or records why the
        folder is not copied. A refused STATUS is a folder error; a broken connection raises
        (imaplib's abort, OSError, ConnectionLost) and _retrying plans the folder again.
        """
        assert plan.destination is not None
        if self._destination_refused(plan):
            return
        status = self._folder_status(src, plan)
        if status is None:
            return
        messages = int(status.get("MESSAGES", 0))
        self.total_messages += messages
        uidvalidity = int(status["UIDVALIDITY"])
        modseq = status.get("HIGHESTMODSEQ")
        result = FolderResult(plan.source, plan.destination)
        previous = self._previous_state(plan, uidvalidity, result)
        self.result.warnings.extend(result.warnings)
        if (
            previous is not None
            and modseq is not None
            and previous.highest_modseq is not None
            and int(modseq) == previous.highest_modseq
            and not previous.pending_uids
        ):
            # Nothing was added, removed or re-flagged since the last complete run: every message
            # of the folder is already at the destination.
            result.skipped += messages
            self.result.skipped += messages
            self.jobs.append(
                _Job(plan, previous, UidSet.parse(previous.copied_uids), result, uidvalidity, previous.highest_modseq)
            )
            return
        state = previous or FolderStateData(
            source_folder=plan.source,
            destination_folder=plan.destination,
            uidvalidity=uidvalidity,
        )
        job = _Job(
            plan,
            state,
            UidSet.parse(state.copied_uids),
            result,
            uidvalidity,
            int(modseq) if modseq is not None else None,
        )
        candidates = self._candidates(src, dst, job, previous)
        if candidates is not None:
            job.state.pending_uids = ""
            job.state.pending_uidnext = None
        if candidates:
            self._queue(job, candidates)
        else:
            self._finish_plan(job)
        self.jobs.append(job)

    def _destination_refused(self, plan: FolderPlan) -> bool:
        """True (and the folder recorded as not copied) when CREATE of its destination was refused."""
        refusal = self._failed_destinations.get(plan.destination)
        if refusal is None:
            return False
        text = f"{plan.source!r} not copied: the destination refused to create {plan.destination!r}: {refusal}"
        self.result.folders.append(FolderResult(plan.source, plan.destination, errors=1, warnings=[text]))
        self.result.errors += 1
        self.result.warnings.append(text)
        return True

    def _folder_status(self, src: Connection, plan: FolderPlan) -> dict | None:
        """STATUS of the source folder (with HIGHESTMODSEQ under CONDSTORE, RFC 7162 §3.1.2), or None
        (and the folder recorded as not copied) when the server refuses it."""
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"] + (["HIGHESTMODSEQ"] if src.has("CONDSTORE") else [])
        try:
            return src.status(plan.source, items)
        except imaplib.IMAP4.abort:
            raise  # a broken connection, not a refusal: the reconnect logic handles it
        except IMAPClientError as exc:
            text = f"{plan.source!r} not copied: it could not be read: {wire.describe(exc)}"
            self.result.folders.append(FolderResult(plan.source, plan.destination, errors=1, warnings=[text]))
            self.result.errors += 1
            self.result.warnings.append(text)
            return None

    def _previous_state(self, plan: FolderPlan, uidvalidity: int, result: FolderResult) -> FolderStateData | None:
        """The record of earlier runs, or None when there is none or it no longer applies (the
        source's UIDVALIDITY changed, RFC 9051 §2.3.1.1, or the folder now goes elsewhere): then it
        is deleted and the folder's messages are matched against the destination again."""
        source, destination = plan.source, plan.destination
        previous = self.states.get(source)
        if previous is not None and previous.uidvalidity != uidvalidity:
            self.store.delete(source)
            self.states.pop(source, None)
            result.warnings.append(
                f"UIDVALIDITY of {source!r} changed ({previous.uidvalidity} → {uidvalidity}): its record was voided "
                "and its messages are matched against the destination again"
            )
            previous = None
        if previous is not None and previous.destination_folder != destination:
            self.store.delete(source)
            self.states.pop(source, None)
            result.warnings.append(
                f"{source!r} now goes to {destination!r} instead of {previous.destination_folder!r}: "
                "its messages are matched against the new destination"
            )
            previous = None
        return previous

    def _candidates(
        self, src: Connection, dst: Connection, job: _Job, previous: FolderStateData | None
    ) -> UidSet | None:
        """Source UIDs still to copy; None when there is nothing new and no flag to carry.

        Messages copied by earlier runs count as skipped; on a first run onto a destination that
        holds mail, and after a run that stopped between APPEND and its answer, messages found at
        the destination by identity count as copied. Carries flag changes (_sync_flags).
        """
        source, destination = job.source, job.destination
        info = src.examine(source)
        if int(info.get(b"UIDVALIDITY", 0)) != job.uidvalidity:
            raise ConnectionLost(f"UIDVALIDITY of {source!r} changed while reading it")
        all_uids = src.search_all()
        candidates = all_uids - job.copied
        # Messages copied by earlier runs count as skipped: "already there" for the operator.
        already = len(job.copied & all_uids)
        job.result.skipped += already
        self.result.skipped += already
        pending = UidSet.parse(job.state.pending_uids or "") & candidates
        needs_flags = bool(previous is not None and (job.copied & all_uids))
        dest_has_mail = int(dst.status(destination, ["MESSAGES"]).get("MESSAGES", 0)) > 0
        if not candidates and not needs_flags:
            src.unselect()
            return None
        select = dst.select(destination)
        perm = select.get(b"PERMANENTFLAGS")
        job.permanent_flags = tuple(perm) if perm is not None else None
        try:
            if previous is None and candidates and dest_has_mail:
                # First run onto a destination that already holds mail: copy only what is missing.
                matched = self._match(src, dst, candidates, since=1)
                if matched:
                    job.copied = job.copied | matched
                    job.result.skipped += len(matched)
                    self.result.skipped += len(matched)
                    candidates = candidates - matched
            elif pending and job.state.pending_uidnext:
                # The last run stopped between sending APPENDs and hearing back: find what landed.
                landed = self._match(src, dst, pending, since=int(job.state.pending_uidnext))
                if landed:
                    job.copied = job.copied | landed
                    candidates = candidates - landed
            if needs_flags:
                self._sync_flags(src, dst, job, previous, all_uids)
        finally:
            dst.unselect()
            src.unselect()
        return candidates

    def _finish_plan(self, job: _Job) -> None:
        job.state.highest_modseq = job.modseq
        job.state.uidvalidity = job.uidvalidity
        self.save(job)

    def _match(self, src: Connection, dst: Connection, uids: UidSet, *, since: int) -> UidSet:
        source_ids = _identities(src, uids)
        dest_ids = list(_dest_identities(dst, since).values())
        return UidSet.from_uids(_match_multiset(source_ids, dest_ids))

    def _sync_flags(
        self,
        src: Connection,
        dst: Connection,
        job: _Job,
        previous: FolderStateData | None,
        all_uids: UidSet,
    ) -> None:
        """Carry flag changes of already-copied messages to their destination copies."""
        copied = job.copied & all_uids
        if not copied:
            return
        modifiers = None
        if src.has("CONDSTORE") and previous is not None and previous.highest_modseq is not None:
            modifiers = [f"CHANGEDSINCE {previous.highest_modseq}"]
        changed = src.fetch(copied, ["FLAGS"], modifiers)
        if not changed:
            return
        source_ids = _identities(src, UidSet.from_uids(changed))
        dest_data = dst.fetch_text("1:*", ["FLAGS", "RFC822.SIZE", IDENTITY_FETCH])
        by_identity: dict[Identity, list[tuple[int, frozenset[str]]]] = {}
        for uid in sorted(dest_data):
            item = dest_data[uid]
            headers = _section(item, b"BODY[HEADER.FIELDS")
            key = identity(headers, int(item.get(b"RFC822.SIZE", 0)))
            by_identity.setdefault(key, []).append((uid, _flag_key(item.get(b"FLAGS", ()))))
        stores: dict[tuple[str, ...], list[int]] = {}
        for uid in sorted(changed):
            key = source_ids.get(uid)
            if key is None or not by_identity.get(key):
                continue
            dest_uid, current = by_identity[key].pop(0)
            kept, _dropped = filter_flags(changed[uid].get(b"FLAGS", ()), job.permanent_flags)
            if _flag_key(kept) != current:
                stores.setdefault(tuple(sorted(kept)), []).append(dest_uid)
        for flags, dest_uids in stores.items():
            dst.client.set_flags(str(UidSet.from_uids(dest_uids)), list(flags), silent=True)
        if stores:
            updated = sum(len(v) for v in stores.values())
            job.result.warnings.append(f"flags updated on {updated} message(s) already copied")

    def _queue(self, job: _Job, candidates: UidSet) -> None:
        """Note a folder's work; the units are cut once every folder is planned (_make_units)."""
        job.queued = True
        self.to_copy.append((job, candidates))

    def _make_units(self) -> None:
        """Cut the work into units for the workers.

        Workers on different folders do not get in each other's way; two sessions appending to one
        destination folder make the server lock and re-read that folder's index all the time. So a
        folder is only split when there are fewer folders than connections (or it is very large),
        and the queue alternates between folders.
        """
        per_folder: list[list[_Unit]] = []
        for job, candidates in self.to_copy:
            count = len(candidates)
            if len(self.to_copy) >= self.connections:
                per_unit = UNIT_MAX
            else:
                per_unit = max(UNIT_MIN, min(UNIT_MAX, -(-count // self.connections)))
            units: list[_Unit] = []
            chunk: list[tuple[int, int]] = []
            size = 0
            for low, high in candidates.ranges:
                while low <= high:
                    take = min(high, low + (per_unit - size) - 1)
                    chunk.append((low, take))
                    size += take - low + 1
                    low = take + 1
                    if size >= per_unit:
                        units.append(_Unit(job, UidSet(chunk)))
                        chunk, size = [], 0
            if chunk:
                units.append(_Unit(job, UidSet(chunk)))
            job.units_left = len(units)
            per_folder.append(units)
        # Largest folders first, then round-robin, so neighbours in the queue are different folders.
        per_folder.sort(key=len, reverse=True)
        for round_ in range(max((len(u) for u in per_folder), default=0)):
            for units in per_folder:
                if round_ < len(units):
                    self.run.units.put(units[round_])
        self.to_copy = []
