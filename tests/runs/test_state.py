from __future__ import annotations

import pytest
from django.utils import timezone

from runs import orchestrator
from runs.engine.types import FolderStateData
from runs.models import AccountRun, FolderState, Run
from runs.state import FolderStateStore
from tests.support.factories import FolderStateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def claimed(make_task, pushed) -> AccountRun:
    task = make_task(accounts=1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    return orchestrator.claim_account_run(run.account_runs.get().pk, worker="w:1", now=timezone.now())


def _store(ar: AccountRun, lost: list | None = None) -> FolderStateStore:
    return FolderStateStore(
        ar.account_id,
        account_run_id=ar.pk,
        attempt=ar.attempt,
        on_lost=(lambda: lost.append(1)) if lost is not None else None,
    )


def test_state_round_trips_with_the_pending_appends(claimed):
    store = _store(claimed)
    store.save(
        FolderStateData(
            source_folder="INBOX",
            destination_folder="INBOX",
            uidvalidity=77,
            copied_uids="1:10",
            highest_modseq=5,
            pending_uids="11:12",
            pending_uidnext=40,
        )
    )
    store.save(
        FolderStateData(
            source_folder="Sent",
            destination_folder="Sent",
            uidvalidity=78,
            copied_uids="3",
        )
    )
    loaded = _store(claimed).load()
    assert loaded["INBOX"] == FolderStateData(
        source_folder="INBOX",
        destination_folder="INBOX",
        uidvalidity=77,
        copied_uids="1:10",
        highest_modseq=5,
        pending_uids="11:12",
        pending_uidnext=40,
    )
    assert loaded["Sent"].copied_uids == "3" and loaded["Sent"].pending_uidnext is None
    store.delete("Sent")
    assert set(_store(claimed).load()) == {"INBOX"}


def test_a_store_that_lost_its_claim_only_adds_to_the_state(claimed):
    FolderStateFactory(
        account_id=claimed.account_id,
        uidvalidity=77,
        copied_uids="1:10",
        highest_modseq=9,
    )
    FolderStateFactory(
        account_id=claimed.account_id,
        source_folder="Old",
        destination_folder="Old",
        uidvalidity=1,
        copied_uids="1:3",
    )
    AccountRun.objects.filter(pk=claimed.pk).update(status=AccountRun.Status.FAILED)
    lost: list = []
    store = _store(claimed, lost)
    store.save(
        FolderStateData(
            source_folder="INBOX",
            destination_folder="INBOX",
            uidvalidity=77,
            copied_uids="1:5,20:22",  # knows less than the row in places, more in others
            pending_uids="23:24",
            pending_uidnext=50,
        )
    )
    assert lost == [1] and store.lost
    row = FolderState.objects.get(account_id=claimed.account_id, source_folder="INBOX")
    assert row.copied_uids == "1:10,20:22"
    assert row.pending_uids == "23:24" and row.pending_uidnext == 50
    assert row.highest_modseq is None
    # Another UIDVALIDITY: its UIDs mean nothing for the row, which stays as it is.
    store.save(
        FolderStateData(
            source_folder="Old",
            destination_folder="Old",
            uidvalidity=2,
            copied_uids="1:99",
        )
    )
    assert FolderState.objects.get(source_folder="Old").copied_uids == "1:3"
    # Nothing is deleted without the claim.
    store.delete("Old")
    assert FolderState.objects.filter(source_folder="Old").exists()


def test_a_store_without_a_claim_writes_as_told(claimed):
    store = FolderStateStore(claimed.account_id)
    store.save(
        FolderStateData(
            source_folder="INBOX",
            destination_folder="INBOX",
            uidvalidity=1,
            copied_uids="1",
        )
    )
    assert FolderState.objects.get(source_folder="INBOX").copied_uids == "1"
