from __future__ import annotations

import re

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
            destination_server="imap.example.net:993",
            destination_user="anna",
            destination_uidvalidity=555,
            uid_map="1:10=31",
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
        destination_server="imap.example.net:993",
        destination_user="anna",
        destination_uidvalidity=555,
        uid_map="1:10=31",
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


def test_a_store_that_lost_its_claim_adds_uid_pairs_but_keeps_the_rows_own(claimed):
    bound = {"destination_server": "h:143", "destination_user": "anna", "destination_uidvalidity": 9}
    FolderStateFactory(account_id=claimed.account_id, uidvalidity=77, copied_uids="1:3", uid_map="1:3=11", **bound)
    AccountRun.objects.filter(pk=claimed.pk).update(status=AccountRun.Status.FAILED)
    store = _store(claimed, [])
    state = FolderStateData("INBOX", "INBOX", 77, copied_uids="1:5", uid_map="3=99,4:5=14", **bound)
    store.save(state)
    row = FolderState.objects.get(account_id=claimed.account_id, source_folder="INBOX")
    assert (row.copied_uids, row.uid_map) == ("1:5", "1:5=11")
    # Written for another destination user: its UIDs name other copies, nothing is merged.
    store.save(FolderStateData("INBOX", "INBOX", 77, copied_uids="1:9", **{**bound, "destination_user": "bob"}))
    assert FolderState.objects.get(pk=row.pk).copied_uids == "1:5"


def test_a_batch_save_is_one_update_fenced_by_the_claim(claimed):
    """After a folder's first save, each save (one per batch) is a single UPDATE that checks the claim itself."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    store = _store(claimed)
    state = FolderStateData(source_folder="INBOX", destination_folder="INBOX", uidvalidity=7, copied_uids="1:10")
    store.save(state)
    state.copied_uids, state.pending_uids, state.pending_uidnext = "1:20", "21:30", 60
    with CaptureQueriesContext(connection) as queries:
        store.save(state)
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"].upper()]
    assert len(statements) == 1 and statements[0].startswith("UPDATE"), statements
    assert "runs_accountrun" in statements[0]  # the claim check is part of the statement
    row = FolderState.objects.get(account_id=claimed.account_id, source_folder="INBOX")
    assert (row.copied_uids, row.pending_uids, row.pending_uidnext) == ("1:20", "21:30", 60)


def test_a_folders_first_save_is_the_claim_check_and_one_insert(claimed):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    store = _store(claimed)
    state = FolderStateData(source_folder="Sent", destination_folder="Sent", uidvalidity=9, copied_uids="1:3")
    with CaptureQueriesContext(connection) as queries:
        store.save(state)
    statements = [
        q["sql"].split()[0].upper()
        for q in queries.captured_queries
        if not re.match(r"(SAVEPOINT|RELEASE|BEGIN|COMMIT)", q["sql"].upper())
    ]
    assert statements == ["SELECT", "INSERT"]
    row = FolderState.objects.get(account_id=claimed.account_id, source_folder="Sent")
    assert (row.copied_uids, row.uidvalidity) == ("1:3", 9) and row.updated_at is not None


def test_a_batch_save_after_the_claim_moved_on_is_only_merged(claimed):
    lost: list = []
    store = _store(claimed, lost)
    state = FolderStateData(source_folder="INBOX", destination_folder="INBOX", uidvalidity=7, copied_uids="1:10")
    store.save(state)
    AccountRun.objects.filter(pk=claimed.pk).update(attempt=claimed.attempt + 1)
    state.copied_uids = "5:20"  # the engine's view lost 1:4 (it cannot, but a merge must not lose them)
    store.save(state)
    row = FolderState.objects.get(account_id=claimed.account_id, source_folder="INBOX")
    assert row.copied_uids == "1:20" and lost == [1]
