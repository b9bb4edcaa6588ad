"""FolderStateStore: the engine's StateStore (runs.engine.types) on the FolderState model.

The engine calls save() once per batch: the batch's outcome together with the UIDs about to be
sent next (the pending UIDs: its intent, recorded before they are sent; runs.engine.account), so a
crash loses nothing and duplicates nothing. Every write is checked against the job's claim
(account run id + attempt); while the claim holds and the row exists, a save is one UPDATE
statement whose WHERE clause is the claim check. While the claim holds, the engine's view is written as
is. A worker that lost its claim (reaped after a long pause) is told to stop, and what it still
reports is only merged in: the UIDs it copied and the APPENDs it sent are added to the row, never
removed, so the next run neither copies them again nor misses them.

A row also says which destination it was written for (server, user, destination folder and its
UIDVALIDITY) and which destination UID each copied source UID became; the engine voids a row whose
destination changed (runs.engine.folderstate.binding_change).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from runs.engine.folderstate import UidMap
from runs.engine.types import FolderStateData
from runs.engine.uidset import UidSet
from runs.models import AccountRun, FolderState
from runs.refusals import accepted_uids

logger = logging.getLogger(__name__)


class FolderStateStore:
    """Loads all of an account's folder states in one query; saves one folder per batch, fenced."""

    def __init__(
        self,
        account_id: int,
        *,
        account_run_id: int | None = None,
        attempt: int | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.account_id = account_id
        self.account_run_id = account_run_id
        self.attempt = attempt
        self.on_lost = on_lost
        self.lost = False
        self.saves = 0
        self.rows: set[str] = set()  # source folders whose row exists (loaded or saved by this store)

    def load(self) -> dict[str, FolderStateData]:
        """Every folder state of the account, with the refusals the operator accepted (runs.refusals)."""
        accepted = accepted_uids(self.account_id)
        states = {
            row.source_folder: FolderStateData(
                source_folder=row.source_folder,
                destination_folder=row.destination_folder,
                uidvalidity=row.uidvalidity,
                copied_uids=row.copied_uids,
                highest_modseq=row.highest_modseq,
                pending_uids=row.pending_uids,
                pending_uidnext=row.pending_uidnext,
                destination_server=row.destination_server,
                destination_user=row.destination_user,
                destination_uidvalidity=row.destination_uidvalidity,
                uid_map=row.uid_map,
                accepted_uids=str(UidSet.from_uids(accepted.get((row.source_folder, row.uidvalidity), []))),
            )
            for row in FolderState.objects.filter(account_id=self.account_id)
        }
        self.rows = set(states)
        return states

    def save(self, state: FolderStateData) -> None:
        """Write `state` for its source folder, fenced by the claim (see the module docstring).

        The usual case (the row exists, the claim holds) is one UPDATE whose claim check is a
        sub-select of the same statement; on PostgreSQL that sub-select locks the account run row
        (FOR UPDATE), so the reaper cannot take the run away between the check and the write. Only
        the first save of a folder, or a save after the claim was lost, takes the slower path."""
        if state.source_folder in self.rows and self._update(state):
            self.saves += 1
            return
        with transaction.atomic():
            if self._still_ours():
                self._upsert(state)
            else:
                try:
                    with transaction.atomic():
                        self._merge(state)
                except IntegrityError:
                    # The account was deleted meanwhile: nothing left to record.
                    logger.warning("account %s: gone, folder state dropped", self.account_id)
        self.rows.add(state.source_folder)
        self.saves += 1

    def _upsert(self, state: FolderStateData) -> None:
        """Create the folder's row (the usual case when this store has not seen it), else update it."""
        if state.source_folder not in self.rows:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(
                        _sql("insert"),
                        [self.account_id, state.source_folder, timezone.now(), *_columns(state).values()],
                    )
                return
            except IntegrityError:
                pass  # written meanwhile by another writer: updated below
        FolderState.objects.update_or_create(
            account_id=self.account_id, source_folder=state.source_folder, defaults=_columns(state)
        )

    def _update(self, state: FolderStateData) -> bool:
        """One UPDATE of the folder's row if it exists and the claim holds; False otherwise.

        The statement is written once per database vendor (_fenced_update_sql) rather than built by the
        ORM on every save: building it was most of a save's CPU, and saves come once per batch."""
        if self.lost:
            return False
        fenced = self.account_run_id is not None
        params = [*_columns(state).values(), self.account_id, state.source_folder]
        if fenced:
            params += [self.account_run_id, self.attempt, AccountRun.Status.RUNNING.value]
        with connection.cursor() as cursor:
            cursor.execute(_sql("fenced update" if fenced else "update"), params)
            return cursor.rowcount == 1

    def _merge(self, state: FolderStateData) -> None:
        """Add a claim-less writer's facts to the row without taking anything away."""
        row = (
            FolderState.objects.select_for_update()
            .filter(account_id=self.account_id, source_folder=state.source_folder)
            .first()
        )
        if row is None:
            FolderState.objects.create(
                account_id=self.account_id,
                source_folder=state.source_folder,
                **{**_columns(state), "highest_modseq": None},
            )
            return
        if (
            row.uidvalidity != state.uidvalidity
            or row.destination_folder != state.destination_folder
            or (row.destination_server, row.destination_user, row.destination_uidvalidity)
            != (state.destination_server, state.destination_user, state.destination_uidvalidity)
        ):
            return  # its UIDs mean something else now
        row.copied_uids = str(UidSet.parse(row.copied_uids) | UidSet.parse(state.copied_uids))
        # Pairs the row does not know yet are added; the row's own pairs stay as they are.
        uid_map = UidMap.parse(row.uid_map)
        uid_map.update((s, d) for s, d in UidMap.parse(state.uid_map).items() if uid_map.get(s) is None)
        row.uid_map = str(uid_map)
        pending = UidSet.parse(state.pending_uids) - UidSet.parse(row.copied_uids)
        if pending:
            row.pending_uids = str(UidSet.parse(row.pending_uids) | pending)
            nexts = [n for n in (row.pending_uidnext, state.pending_uidnext) if n]
            row.pending_uidnext = min(nexts) if nexts else None
        # Flags may have changed under the other writer: make the next run look again.
        row.highest_modseq = None
        row.save()

    def delete(self, source_folder: str) -> None:
        with transaction.atomic():
            if not self._still_ours():
                return
            FolderState.objects.filter(account_id=self.account_id, source_folder=source_folder).delete()

    def _still_ours(self) -> bool:
        if self.account_run_id is None:
            return True
        if self.lost:
            return False
        # Locks the account run row (PostgreSQL) until the write commits, so the reaper cannot take
        # the run away between this check and the write.
        with connection.cursor() as cursor:
            cursor.execute(_sql("claim"), [self.account_run_id, self.attempt, AccountRun.Status.RUNNING.value])
            if cursor.fetchone() is not None:
                return True
        self.lost = True
        logger.warning(
            "account run %s attempt %s: claim lost, folder state not saved",
            self.account_run_id,
            self.attempt,
        )
        if self.on_lost:
            self.on_lost()
        return False


_SQL: dict[tuple[str, str], str] = {}


def _sql(statement: str) -> str:
    """The store's statements, written once per database vendor rather than built by the ORM on every
    save (building them was most of a save's CPU, and saves come once per batch). Parameters:

    - "claim": account run id, attempt, running status → one row while the claim holds. Where the
      database has SELECT ... FOR UPDATE (PostgreSQL) it locks the account run row until the write
      commits, so the reaper cannot take the run away between the check and the write.
    - "update": the _columns values in order, account id, source folder.
    - "fenced update": the same, then the "claim" parameters: the claim check is a sub-select of the
      UPDATE (its ORM form: `rows.filter(Exists(claim.select_for_update())).update(...)`). On SQLite
      the UPDATE holds the database's write lock, so the check and the write are one step.
    - "insert": account id, source folder, updated_at (UTC), the _columns values in order.
    """
    key = (connection.vendor, statement)
    if key not in _SQL:
        quote = connection.ops.quote_name
        folder, run = FolderState._meta, AccountRun._meta
        table = quote(folder.db_table)
        columns = [quote(folder.get_field(name).column) for name in _COLUMN_NAMES]
        account, source = quote(folder.get_field("account").column), quote(folder.get_field("source_folder").column)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        claim = (
            f"SELECT 1 FROM {quote(run.db_table)} WHERE {quote(run.pk.column)} = %s "
            f"AND {quote(run.get_field('attempt').column)} = %s AND {quote(run.get_field('status').column)} = %s"
        )
        update = f"UPDATE {table} SET {', '.join(c + ' = %s' for c in columns)} WHERE {account} = %s AND {source} = %s"
        _SQL[key] = {
            "claim": claim + lock,
            "update": update,
            "fenced update": f"{update} AND EXISTS ({claim}{lock})",
            "insert": f"INSERT INTO {table} ({account}, {source}, {quote(folder.get_field('updated_at').column)}, "
            f"{', '.join(columns)}) VALUES ({', '.join(['%s'] * (len(columns) + 3))})",
        }[statement]
    return _SQL[key]


def _columns(state: FolderStateData) -> dict[str, object]:
    """The FolderState column values of an engine state (all but the account and source folder)."""
    return {
        "destination_folder": state.destination_folder,
        "uidvalidity": state.uidvalidity,
        "copied_uids": state.copied_uids,
        "highest_modseq": state.highest_modseq,
        "pending_uids": state.pending_uids,
        "pending_uidnext": state.pending_uidnext,
        "destination_server": state.destination_server,
        "destination_user": state.destination_user,
        "destination_uidvalidity": state.destination_uidvalidity,
        "uid_map": state.uid_map,
    }


_COLUMN_NAMES = tuple(_columns(FolderStateData(source_folder="", destination_folder="", uidvalidity=0)))
