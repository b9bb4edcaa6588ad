"""FolderStateStore: the engine's StateStore (runs.engine.types) on the FolderState model.

The engine calls save() after each batch of messages lands at the destination, so a crash loses
at most the batch in flight. Every write is fenced by the job's claim (account run id + attempt):
a worker that lost its claim (reaped, superseded) writes nothing and is told to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

from runs.engine.types import FolderStateData
from runs.models import AccountRun, FolderState

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

    def load(self) -> dict[str, FolderStateData]:
        return {
            row.source_folder: FolderStateData(
                source_folder=row.source_folder,
                destination_folder=row.destination_folder,
                uidvalidity=row.uidvalidity,
                copied_uids=row.copied_uids,
                highest_modseq=row.highest_modseq,
            )
            for row in FolderState.objects.filter(account_id=self.account_id)
        }

    def save(self, state: FolderStateData) -> None:
        with transaction.atomic():
            if not self._still_ours():
                return
            FolderState.objects.update_or_create(
                account_id=self.account_id,
                source_folder=state.source_folder,
                defaults={
                    "destination_folder": state.destination_folder,
                    "uidvalidity": state.uidvalidity,
                    "copied_uids": state.copied_uids,
                    "highest_modseq": state.highest_modseq,
                },
            )
        self.saves += 1

    def delete(self, source_folder: str) -> None:
        with transaction.atomic():
            if not self._still_ours():
                return
            FolderState.objects.filter(
                account_id=self.account_id, source_folder=source_folder
            ).delete()

    def _still_ours(self) -> bool:
        if self.account_run_id is None:
            return True
        if self.lost:
            return False
        # Locks the account run row (PostgreSQL) until the write commits, so the reaper cannot take
        # the run away between this check and the write.
        ours = (
            AccountRun.objects.select_for_update()
            .filter(
                pk=self.account_run_id,
                attempt=self.attempt,
                status=AccountRun.Status.RUNNING,
            )
            .values_list("pk", flat=True)
        )
        if list(ours):
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
