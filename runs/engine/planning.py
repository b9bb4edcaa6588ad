"""Planning, on the main thread before any worker starts: list and map the folders, create the
missing destination folders, and for each folder find what is new, what the destination already
holds and which flags changed; then cut the work into units for the workers."""

from __future__ import annotations

import imaplib
from collections.abc import Sequence

from imapclient.exceptions import IMAPClientError
from imapclient.util import to_unicode

from . import imap as wire
from .append import encode_folder
from .folders import MAPPED_SPECIAL_USE, folder_infos_with_status, map_folders
from .folderstate import UidMap, binding_change, deleted_at_destination
from .identity import _dest_identities, _flag_key, _identities, pair_messages
from .imap import Connection, ConnectionLost
from .messages import filter_flags
from .types import FolderPlan, FolderResult, FolderStateData, NotCopied
from .uidset import UidSet
from .work import _Job, _Unit

UNIT_MIN = 200  # a folder is split into units of this many UIDs or more ...
UNIT_MAX = 2000  # ... and at most this many

# STATUS items planning reads of each destination folder (its UIDVALIDITY binds the record, MESSAGES
# says whether it already holds mail).
DESTINATION_STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY")


def _source_status_items(src: Connection) -> list[str]:
    """STATUS items planning reads of each source folder: HIGHESTMODSEQ too under CONDSTORE (RFC 7162 §3.1.2),
    SIZE where offered."""
    items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"] + (["HIGHESTMODSEQ"] if src.has("CONDSTORE") else [])
    return items + (["SIZE"] if src.has("STATUS=SIZE") else [])  # RFC 8438: the folder's bytes (_Job.source_size)


def every_uid(status: dict[str, int]) -> UidSet | None:
    """The folder's UIDs when its STATUS alone gives them: MESSAGES = UIDNEXT − 1 means the UIDs are exactly
    1..MESSAGES (strictly ascending, at least 1 and below UIDNEXT: RFC 9051 §2.3.1.1), as in a folder nothing
    was ever expunged from. None otherwise (ask UID SEARCH)."""
    messages, uidnext = status.get("MESSAGES"), status.get("UIDNEXT")
    if messages is None or uidnext is None or messages < 1 or messages != uidnext - 1:
        return None
    return UidSet([(1, messages)])


class _Planning:
    """The planning half of _Account (account.py), kept apart so each file reads as one concern."""

    saved: dict[str, tuple]  # set by _Account: what the store holds, per source folder
    # STATUS of every folder as the planning LIST brought it (LIST-STATUS), per side ("src", "dst") and
    # folder name; empty where the server lacks LIST-STATUS. Set by _Account.
    listed_status: dict[str, dict[str, dict[str, int]]]
    listed_subscriptions: dict[str, set[str]]  # per side, the \Subscribed folders of that LIST (_subscribed)

    def listed(self, side: str, folder: str, items: Sequence[str]) -> dict[str, int] | None:
        """`items` of `folder` from the planning LIST (LIST-STATUS), or None when it did not bring them all
        (a server without LIST-STATUS, a folder created since): then ask STATUS."""
        status = self.listed_status.get(side, {}).get(folder)
        if status is None or any(item not in status for item in items):
            return None
        return status

    def plan_all(self) -> None:
        listing: dict[str, object] = {}

        def discover(src: Connection, dst: Connection) -> None:
            # One LIST per side also brings every folder's STATUS where the server has LIST-STATUS.
            listing["src"], self.listed_status["src"] = folder_infos_with_status(src, _source_status_items(src))
            listing["dst"], self.listed_status["dst"] = folder_infos_with_status(dst, DESTINATION_STATUS_ITEMS)
            self.listed_subscriptions = {
                side: {info.name for info in listing[side] if "\\subscribed" in {f.lower() for f in info.flags}}  # type: ignore[attr-defined]
                for side in ("src", "dst")
            }
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
        self.saved = {name: state.snapshot() for name, state in self.states.items()}
        # map_folders gives one plan per source folder, in order: the source's special-use travels along.
        uses = {
            plan.destination: info.special_use
            for plan, info in zip(plans, listing["src"], strict=True)  # type: ignore[call-overload]
            if plan.rule == "path" and plan.destination and info.special_use in MAPPED_SPECIAL_USE
        }
        taken = {f.special_use for f in listing["dst"] if f.special_use}  # type: ignore[attr-defined]
        uses = {name: use for name, use in uses.items() if use not in taken}
        self._create_destinations(plans, dest_names, dest_ns.delimiter or "/", uses)  # type: ignore[attr-defined]
        self._retrying("copying subscriptions", lambda src, dst: self._subscribe(src, dst, plans))
        for plan in plans:
            if self.stop_requested():
                return
            if plan.conflict:
                self._retrying(
                    f"counting {plan.source!r}",
                    lambda src, dst, plan=plan: self._left_out(src, plan, NotCopied.FOLDER_NOT_CREATED, plan.conflict),
                )
                continue
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
                result = FolderResult(plan.source, plan.destination, errors=1, warnings=[text])
                self.result.folders.append(result)
                self.result.errors += 1
                self.result.warnings.append(text)
                self.pair.drop()  # the connection may be in any state now
            self.progress()
        self.planned = True

    def _left_out(self, src: Connection, plan: FolderPlan, reason: NotCopied, why: str) -> None:
        """Record a folder that is not copied at all, its source messages counted as not copied."""
        text = f"{plan.source!r} not copied: {why}"
        result = FolderResult(plan.source, plan.destination, errors=1, warnings=[text])
        try:
            if plan.selectable:  # a \Noselect level holds no messages
                status = self.listed("src", plan.source, ["MESSAGES"]) or src.status(plan.source, ["MESSAGES"])
                result.source_messages = int(status.get("MESSAGES", 0))
        except imaplib.IMAP4.abort:
            raise  # a broken connection, not a refusal: the reconnect logic handles it
        except IMAPClientError:
            pass  # its messages are not known; the report lists the folder as not read
        if result.source_messages:
            self.total_messages += result.source_messages
            self.count_not_copied(result, reason, result.source_messages)
        self.result.folders.append(result)
        self.result.errors += 1
        self.result.warnings.append(text)

    def _subscribe(self, src: Connection, dst: Connection, plans: list[FolderPlan]) -> None:
        """Subscribe at the destination what the source subscribes (mapped names), RFC 3501 6.3.6.

        Nothing is unsubscribed: what the destination user subscribed stays. A folder the source
        does not subscribe is not subscribed. A refused SUBSCRIBE is a warning.
        """
        subscribed, already = self._subscribed(src, "src"), self._subscribed(dst, "dst")
        refused = self._failed_destinations
        for plan in plans:
            target = plan.destination
            if plan.source not in subscribed or not target or plan.conflict or target in refused:
                continue
            if target in already or (target.upper() == "INBOX" and "INBOX" in {n.upper() for n in already}):
                continue
            try:
                dst.client.subscribe_folder(target)
            except imaplib.IMAP4.abort:
                raise  # a broken connection, not a refusal: the reconnect logic handles it
            except IMAPClientError as exc:
                self.result.warnings.append(f"could not subscribe {target!r}: {wire.describe(exc)}")
            already.add(target)

    def _subscribed(self, connection: Connection, side: str) -> set[str]:
        """The folders `side` subscribes: the \\Subscribed ones of the planning LIST where it asked for them
        (Connection.subscriptions_listed), else LSUB. The LIST names only existing folders; a subscription
        to a folder that does not exist is of no use to the copy (nothing is copied from or into it)."""
        if connection.subscriptions_listed() and side in self.listed_subscriptions:
            return self.listed_subscriptions[side]
        return {name for _flags, _delim, name in connection.client.list_sub_folders()}

    def _create_destinations(
        self, plans: list[FolderPlan], existing: set[str], delimiter: str, uses: dict[str, str] | None = None
    ) -> None:
        """CREATE (and subscribe) the missing destination folders and hierarchy levels. `uses` maps a destination
        name to the source folder's special-use (\\Sent...): where the destination offers CREATE-SPECIAL-USE
        (RFC 6154 section 3) the folder is created with it, each use once; a refused USE is retried plainly."""
        uses = dict(uses or {})
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
            if plan.destination is None and not plan.conflict:  # skipped by the mapping: listed, nothing copied
                self.result.folders.append(FolderResult(plan.source, None))
            elif plan.note:  # renamed to fit the destination: said before any message is copied
                self.result.warnings.append(f"{plan.source!r} {plan.note}")
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
                    use = uses.pop(name, None)
                    if use and dst.has("CREATE-SPECIAL-USE"):
                        self._create_with_use(dst, name, use)
                    else:
                        dst.client.create_folder(name)
                except imaplib.IMAP4.abort:
                    raise  # a broken connection, not a refusal: the reconnect logic handles it
                except IMAPClientError as exc:
                    text = wire.describe(exc)
                    if "exists" not in text.lower():
                        self._failed_destinations[name] = text
                        continue
                existing_folded.add(name)

        self._retrying("creating folders", create)

    def _create_with_use(self, dst: Connection, name: str, use: str) -> None:
        """CREATE name (USE (use)), RFC 6154 section 5.2; on a refusal, a plain CREATE and a warning."""
        imap = dst.client._imap
        typ, data = imap._simple_command("CREATE", encode_folder(name), f"(USE ({use}))")
        if typ == "OK":
            return
        words = to_unicode(data[0]) if data and data[0] else typ
        if "exists" in words.lower():
            raise IMAPClientError(words)
        self.result.warnings.append(f"{name!r} created without its special use {use}: the server said {words}")
        dst.client.create_folder(name)

    def plan_folder(self, src: Connection, dst: Connection, plan: FolderPlan) -> None:
        """Plan one source folder: STATUS, the record of earlier runs, then what is left to copy.

        Appends a _Job to self.jobs (its candidates queued for the workers), or records why the
        folder is not copied. A refused STATUS is a folder error; a broken connection raises
        (imaplib's abort, OSError, ConnectionLost) and _retrying plans the folder again.
        """
        assert plan.destination is not None
        if plan.destination in self._failed_destinations:
            why = (
                f"the destination refused to create {plan.destination!r}: {self._failed_destinations[plan.destination]}"
            )
            self._left_out(src, plan, NotCopied.FOLDER_NOT_CREATED, why)
            return
        status = self._folder_status(src, plan)
        if status is None:
            return
        messages = int(status.get("MESSAGES", 0))
        self.total_messages += messages
        uidvalidity = int(status["UIDVALIDITY"])
        modseq = status.get("HIGHESTMODSEQ")
        result = FolderResult(plan.source, plan.destination)
        dest_status = self.listed("dst", plan.destination, DESTINATION_STATUS_ITEMS) or dst.status(
            plan.destination, DESTINATION_STATUS_ITEMS
        )
        dest_uidvalidity = int(dest_status["UIDVALIDITY"])
        loaded = self.states.get(plan.source)
        previous = self._previous_state(plan, uidvalidity, dest_uidvalidity, result)
        self.result.warnings.extend(result.warnings)
        state = previous or FolderStateData(
            source_folder=plan.source,
            destination_folder=plan.destination,
            uidvalidity=uidvalidity,
        )
        if previous is None and loaded is not None and loaded.uidvalidity == uidvalidity:
            state.accepted_uids = loaded.accepted_uids  # voided for the destination's sake: same source UIDs
        # Bind (or re-bind a state written before bindings were kept) to this destination.
        bound = (self.destination_key, self.destination.username, dest_uidvalidity)
        rebound = (state.destination_server, state.destination_user, state.destination_uidvalidity) != bound
        state.destination_server, state.destination_user, state.destination_uidvalidity = bound
        job = _Job(
            plan,
            state,
            UidSet.parse(state.copied_uids),
            result,
            uidvalidity,
            int(modseq) if modseq is not None else None,
            uid_map=UidMap.parse(state.uid_map),
            source_size=status.get("SIZE"),
            source_uidnext=status.get("UIDNEXT"),
            destination_uidnext=int(dest_status["UIDNEXT"]) if "UIDNEXT" in dest_status else None,
        )
        if messages == 0 and previous is None:
            # Empty, and never recorded: nothing to copy or re-flag, so neither opened nor recorded (on
            # an account of a few messages, most folders are empty: each record would cost a write).
            result.source_messages = 0
            self.jobs.append(job)
            return
        if (
            previous is not None
            and modseq is not None
            and previous.highest_modseq is not None
            and int(modseq) == previous.highest_modseq
            and not previous.pending_uids
        ):
            # Nothing was added, removed or re-flagged since the last complete run: every message
            # of the folder is already at the destination, but for the refusals the operator accepted.
            accepted = min(messages, len(UidSet.parse(state.accepted_uids)))
            self.count_not_copied(result, NotCopied.ACCEPTED, accepted)
            gone = UidSet()
            if job.uid_map:  # the source did not change, the destination may have
                dst.examine(plan.destination)
                try:
                    gone = deleted_at_destination(job.uid_map, job.copied, dst.search_all())
                finally:
                    dst.unselect()
            self._count_already(job, messages - accepted, gone)
            result.source_messages = messages
            if rebound:
                self.save(job)
            self.jobs.append(job)
            return
        candidates = self._candidates(
            src, dst, job, previous, dest_has_mail=int(dest_status.get("MESSAGES", 0)) > 0, status=status
        )
        if candidates is not None:
            job.state.pending_uids = ""
            job.state.pending_uidnext = None
        if candidates:
            self._queue(job, candidates)
        else:
            self._finish_plan(job)
        self.jobs.append(job)

    def _folder_status(self, src: Connection, plan: FolderPlan) -> dict | None:
        """STATUS of the source folder (with HIGHESTMODSEQ under CONDSTORE, RFC 7162 §3.1.2), or None
        (and the folder recorded as not copied) when the server refuses it."""
        items = _source_status_items(src)
        listed = self.listed("src", plan.source, items)
        if listed is not None:
            return listed
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

    def _previous_state(
        self, plan: FolderPlan, uidvalidity: int, dest_uidvalidity: int, result: FolderResult
    ) -> FolderStateData | None:
        """The record of earlier runs, or None when there is none or it no longer applies: the
        source's UIDVALIDITY changed (RFC 9051 §2.3.1.1), or the destination it was written for did
        (folderstate.binding_change). Then it is deleted and the folder's messages are matched
        against what the destination really holds."""
        source = plan.source
        previous = self.states.get(source)
        if previous is None:
            return None
        if previous.uidvalidity != uidvalidity:
            why = f"UIDVALIDITY of {source!r} changed ({previous.uidvalidity} → {uidvalidity})"
        else:
            why = binding_change(
                previous,
                server=self.destination_key,
                user=self.destination.username,
                folder=plan.destination or "",
                uidvalidity=dest_uidvalidity,
            )
        if not why:
            return previous
        self.store.delete(source)
        self.states.pop(source, None)
        self.saved.pop(source, None)
        result.warnings.append(
            f"{source!r}: {why}; its record was voided and its messages are matched against the destination again"
        )
        return None

    def _candidates(
        self,
        src: Connection,
        dst: Connection,
        job: _Job,
        previous: FolderStateData | None,
        *,
        dest_has_mail: bool,
        status: dict[str, int],
    ) -> UidSet | None:
        """Source UIDs still to copy; None when there is nothing new and no flag to carry.

        Messages copied by earlier runs count as already there ("skipped"), but for those deleted at
        the destination since (counted apart, not copied again: _count_already); so do messages found at
        the destination by identity: on a first run onto a destination that holds mail (or after
        the record was voided), and after a run that stopped between APPEND and its answer. Found
        copies join the UID map; flags are carried (_sync_flags): changes since the last run, and
        every re-matched message brought in line with its source.
        """
        source, destination = job.source, job.destination
        all_uids = every_uid(status) if previous is None and not dest_has_mail else None
        if all_uids is None:
            info = src.examine(source)
            uidvalidity = int(info.get(b"UIDVALIDITY", 0))
            if uidvalidity != job.uidvalidity:
                if previous is not None:  # the record's UIDs name other messages now: plan again, from STATUS
                    raise ConnectionLost(f"UIDVALIDITY of {source!r} changed while reading it")
                # No record to keep: this session's UIDs are the ones planned. A source that keeps no UIDs gives
                # each session its own UIDVALIDITY (account.py, "Sessions"), so STATUS and EXAMINE a second apart
                # never agree there, and planning them again would fail the same way.
                job.adopt_session_uidvalidity(uidvalidity)
            all_uids = src.search_all()
        # else: a folder copied for the first time onto an empty one, whose UIDs STATUS alone gives: not
        # opened here (no flags to carry, nothing to match); the worker checks its UIDVALIDITY when it opens it.
        job.result.source_messages = len(all_uids)
        candidates = all_uids - job.copied
        kept = job.copied & all_uids  # copied by earlier runs: counted once the destination is open
        accepted = UidSet.parse(job.state.accepted_uids) & candidates
        if accepted:  # refused before, and the operator accepted it: not tried again
            self.count_not_copied(job.result, NotCopied.ACCEPTED, len(accepted))
            candidates = candidates - accepted
        pending = UidSet.parse(job.state.pending_uids or "") & candidates
        needs_flags = bool(previous is not None and kept)
        if not candidates and not needs_flags:
            src.unselect()
            self._count_already(job, len(kept), UidSet())
            return None
        select = dst.select(destination)
        perm = select.get(b"PERMANENTFLAGS")
        job.permanent_flags = tuple(perm) if perm is not None else None
        try:
            gone = deleted_at_destination(job.uid_map, kept, dst.search_all()) if kept and job.uid_map else UidSet()
            self._count_already(job, len(kept), gone)
            found = UidSet()
            if previous is None and candidates and dest_has_mail:
                # A destination that already holds mail: copy only what is missing.
                found = self._match(src, dst, job, candidates, since=1)
            elif pending and job.state.pending_uidnext:
                # The last run stopped between sending APPENDs and hearing back: find what landed.
                found = self._match(src, dst, job, pending, since=int(job.state.pending_uidnext))
            if found:
                job.copied = job.copied | found
                job.result.skipped += len(found)
                self.result.skipped += len(found)
                candidates = candidates - found
            if needs_flags:
                since = previous.highest_modseq if previous is not None else None
                self._sync_flags(src, dst, job, kept - gone, since_modseq=since)
            if found and previous is None:
                self._sync_flags(src, dst, job, found, since_modseq=None)
        finally:
            dst.unselect()
            src.unselect()
        return candidates

    def _plan_in_session(self, src: Connection, dst: Connection, job: _Job) -> None:
        """Plan a folder again in this session, whose UIDVALIDITY differs from the one planning read (a
        worker found it so: worker._open_source), and leave it open for worker 0, which copies it on these
        connections, so in the same session (account.py, "Sessions").

        RFC 9051 §2.3.1.1: a server that cannot keep a folder's UIDs between sessions gives each session a
        new UIDVALIDITY; Courier does so for a folder it has not stored UIDs for yet (one nobody opened
        read-write: it answers the time of asking). The UIDs planned before, and the copies on record under
        them, then name nothing: the folder's messages are matched against the destination by identity,
        the copies this run made included, and what is not there is queued as one unit. The folder's
        counts are redone to match (a message is counted once: copied, already there, or not copied).
        """
        before = job.uidvalidity
        info = src.examine(job.source)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        all_uids = src.search_all()
        result = job.result
        # What was counted under the old UIDs is void: the copies already there or deleted at the destination,
        # the messages not copied (refused ones are tried again, and counted again if refused), the refusals
        # the operator accepted (like a changed source UIDVALIDITY, _previous_state). What this run copied
        # stays counted: those copies are among the ones matched below.
        self.result.skipped -= result.skipped
        self.result.deleted_at_destination -= result.deleted_at_destination
        self.result.errors -= result.errors
        result.skipped = result.deleted_at_destination = result.errors = 0
        for reason, count in result.not_copied.items():
            self.result.not_copied[reason] -= count
            if not self.result.not_copied[reason]:
                del self.result.not_copied[reason]
        result.not_copied.clear()
        self.result.message_errors = [e for e in self.result.message_errors if e.folder != job.source]
        job.incomplete = False  # the folder starts again: what its new unit does decides
        job.adopt_session_uidvalidity(uidvalidity)
        self.total_messages += len(all_uids) - (result.source_messages or 0)
        result.source_messages = len(all_uids)
        dst.select(job.destination)
        try:
            found = self._match(src, dst, job, all_uids, since=1) if all_uids else UidSet()
            self._sync_flags(src, dst, job, found, since_modseq=None)
        finally:
            dst.unselect()
        job.copied = found
        arrived_now = result.copied + result.altered  # copied by this run: among `found`
        self._count_already(job, max(0, len(found) - arrived_now), UidSet())
        candidates = all_uids - found
        self.save(job)
        if job.sessions == 1:
            self.add_warning(
                job,
                f"{job.source!r} had another UIDVALIDITY in another session ({before} → {uidvalidity}): the source does "
                "not keep its UIDs between sessions, so it was read again, matched against the destination by identity "
                "and copied in one session",
            )
        if not candidates:
            src.unselect()
            return
        job.units_left += 1
        self.run.units.put(_Unit(job, candidates))

    def _count_already(self, job: _Job, copied_before: int, gone: UidSet) -> None:
        """Count the `copied_before` messages of a folder that earlier runs copied: "already there"
        (skipped), but for `gone`, the ones deleted at the destination since (not copied again,
        counted apart: folderstate.deleted_at_destination)."""
        job.result.skipped += copied_before - len(gone)
        self.result.skipped += copied_before - len(gone)
        job.result.deleted_at_destination += len(gone)
        self.result.deleted_at_destination += len(gone)

    def _finish_plan(self, job: _Job) -> None:
        job.state.highest_modseq = job.modseq
        job.state.uidvalidity = job.uidvalidity
        self.save(job)

    def _match(self, src: Connection, dst: Connection, job: _Job, uids: UidSet, *, since: int) -> UidSet:
        """Source UIDs among `uids` whose copy is at the destination (UID ≥ since), recorded in the UID map."""
        taken = {dest for source, dest in job.uid_map.items() if source not in uids}
        dest_ids = {uid: key for uid, key in _dest_identities(dst, since).items() if uid not in taken}
        if not dest_ids:
            return UidSet()
        pairs = pair_messages(src, dst, _identities(src, uids), dest_ids)
        job.uid_map.update(pairs.items())
        return UidSet.from_uids(pairs)

    def _sync_flags(
        self, src: Connection, dst: Connection, job: _Job, uids: UidSet, *, since_modseq: int | None
    ) -> None:
        """Bring the flags of the copies of `uids` in line with the source, through the UID map.

        With CONDSTORE and `since_modseq`, only messages changed since then are read (RFC 7162
        §3.1.4). A copy the map does not know (copied before the map existed, or by a server
        without UIDPLUS) is found by identity once and joins the map.
        """
        if not uids:
            return
        modifiers = None
        if since_modseq is not None and src.has("CONDSTORE"):
            modifiers = [f"CHANGEDSINCE {since_modseq}"]
        changed = src.fetch(uids, ["FLAGS"], modifiers)
        if not changed:
            return
        unmapped = UidSet.from_uids(uid for uid in changed if job.uid_map.get(uid) is None)
        if unmapped:
            self._match(src, dst, job, unmapped, since=1)
        targets = {uid: job.uid_map.get(uid) for uid in changed}
        wanted = UidSet.from_uids(dest for dest in targets.values() if dest is not None)
        current = dst.fetch(wanted, ["FLAGS"]) if wanted else {}
        stores: dict[tuple[str, ...], list[int]] = {}
        for uid in sorted(changed):
            dest_uid = targets[uid]
            if dest_uid is None or dest_uid not in current:
                continue  # no copy known, or deleted at the destination since
            kept, _dropped = filter_flags(changed[uid].get(b"FLAGS", ()), job.permanent_flags)
            if _flag_key(kept) != _flag_key(current[dest_uid].get(b"FLAGS", ())):
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
