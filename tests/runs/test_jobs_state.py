"""Copy state and totals through a task run (copy_account_job, FolderState rows), against Dovecot.

Issue 11 case 11 (state outliving its destination), case 12 (sums after a killed worker), case 10
(the report's summary) and the migration's promise: a task copied before does not copy again.
"""

from __future__ import annotations

import pytest

from runs import jobs, orchestrator
from runs.engine.folderstate import server_key
from runs.engine.uidset import UidSet
from runs.models import AccountRun, FolderState, Run
from runs.progress import run_summary
from tests.runs.conftest import fill_user, mail_hashes, message_count
from tests.support.dovecot import read
from tests.support.factories import EndpointFactory

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]

FOLDERS = {"INBOX": 30, "Archive": 5}


def _run(task) -> Run:
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    for pk in run.account_runs.order_by("pk").values_list("pk", flat=True):
        jobs.copy_account_job(pk)
    run.refresh_from_db()
    return run


def _assert_every_message_there(run: Run, copied: int, skipped: int) -> None:
    assert run.status == Run.Status.DONE, run.reason
    assert (run.copied, run.skipped, run.errors) == (copied, skipped, 0)
    summary = run_summary(run)
    assert summary.complete, summary.sentence
    assert summary.source_messages == summary.arrived == copied + skipped
    ar = run.account_runs.get()
    assert ar.source_messages == ar.copied + ar.skipped + ar.not_copied_messages


def test_changing_the_tasks_destination_server_copies_everything_there(
    imap_server, imap_server_dotted, imap_task, pushed
):
    task, [(source, destination)] = imap_task()
    total = fill_user(imap_server, source, FOLDERS)
    _assert_every_message_there(_run(task), total, 0)
    imap_server_dotted.add_user(destination.username, destination.password)
    task.destination = EndpointFactory(
        host=imap_server_dotted.host, port=imap_server_dotted.imap_port, security="plain", verify_tls=False
    )
    task.save()
    _assert_every_message_there(_run(task), total, 0)
    assert message_count(imap_server_dotted, destination) == total
    _assert_every_message_there(_run(task), 0, total)


def test_changing_an_accounts_destination_user_copies_everything_to_the_new_user(
    imap_server, imap_task, make_imap_user, pushed
):
    task, [(source, _destination)] = imap_task()
    total = fill_user(imap_server, source, FOLDERS)
    _run(task)
    other = make_imap_user()
    account = task.accounts.get()
    account.destination_user, account.destination_password = other.username, other.password
    account.save()
    _assert_every_message_there(_run(task), total, 0)
    assert mail_hashes(imap_server, other) == mail_hashes(imap_server, source)


def test_a_destination_mailbox_deleted_and_created_again_is_filled_again(imap_server, imap_task, pushed):
    task, [(source, destination)] = imap_task()
    total = fill_user(imap_server, source, FOLDERS)
    _run(task)
    imap_server.recreate_mailbox(destination, FOLDERS)
    run = _run(task)
    _assert_every_message_there(run, total, 0)
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
    assert any("re-created" in w for w in run.account_runs.get().warnings)


def test_after_a_killed_worker_the_next_runs_sums_add_up(imap_server, imap_task, pushed):
    task, [(source, destination)] = imap_task()
    total = fill_user(imap_server, source, {"INBOX": 30})
    _run(task)
    # What a worker killed between sending a batch's APPENDs and recording them leaves behind:
    # the first 18 recorded, the last 12 pending (they landed), the UID map of the recorded ones.
    row = FolderState.objects.get(source_folder="INBOX")
    with imap_server.connect(destination) as client:
        landed = read(client, "INBOX")
    row.copied_uids, row.pending_uids = "1:18", "19:30"
    row.pending_uidnext = landed[18].uid
    row.uid_map = f"1:18={landed[0].uid}"
    row.highest_modseq = None
    row.save()
    run = _run(task)
    _assert_every_message_there(run, 0, total)
    assert message_count(imap_server, destination) == total


def test_a_folder_not_created_makes_the_summary_say_so(imap_server, imap_task, pushed):
    task, [(source, _destination)] = imap_task()
    fill_user(imap_server, source, {"INBOX": 3, "Projects": 5})
    task.folder_mapping = {"Projects": "~Projects"}  # Dovecot refuses names starting with '~'
    task.save()
    run = _run(task)
    assert run.status == Run.Status.DONE and run.reason == "5 messages not copied"
    ar = run.account_runs.get()
    assert (ar.copied, ar.source_messages, ar.not_copied) == (3, 8, {"folder not created": 5})
    summary = run_summary(run)
    assert not summary.complete
    assert summary.sentence == "3 of 8 source messages are at the destination; 5 not copied (5 folder not created)."


def test_a_task_copied_before_bindings_were_kept_does_not_copy_again(imap_server, imap_task, pushed):
    task, [(source, destination)] = imap_task()
    total = fill_user(imap_server, source, FOLDERS)
    _run(task)
    # As migration 0004 leaves a row written by the earlier version: no UIDVALIDITY, no UID map.
    FolderState.objects.update(destination_uidvalidity=None, uid_map="", highest_modseq=None)
    _assert_every_message_there(_run(task), 0, total)
    row = FolderState.objects.get(source_folder="INBOX")
    assert row.destination_uidvalidity is not None
    assert row.destination_server == server_key(imap_server.host, imap_server.imap_port)
    assert row.destination_user == destination.username
    assert message_count(imap_server, destination) == total
    assert UidSet.parse(row.copied_uids) == UidSet.parse("1:30")
    assert AccountRun.objects.count() == 2


def test_a_flag_change_on_one_twin_lands_on_its_own_copy(imap_server, imap_task, pushed):
    # Issue 11 case 5 / issue 10's twins through the database store: the UID map is kept between runs.
    from tests.support.dovecot import fill, make_message

    task, [(source, destination)] = imap_task()
    a = make_message(message_id="<twins@example.org>", body="body AAAA\n", seed="twins")
    b = make_message(message_id="<twins@example.org>", body="body BBBB\n", seed="twins")
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(a, [b"\\Seen"], None), (b, [], None)])
    _run(task)
    assert FolderState.objects.get(source_folder="INBOX").uid_map == "1:2=1"
    with imap_server.connect(source) as client:
        client.select_folder("INBOX")
        client.set_flags([2], [b"\\Flagged"])
    _assert_every_message_there(_run(task), 0, 2)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert {m.sha256: m.flags for m in read(dst, "INBOX")} == {m.sha256: m.flags for m in read(src, "INBOX")}


def test_a_source_reporting_sizes_29_bytes_short_is_not_copied_twice(imap_server, imap_task, pushed):
    # Issue 11 case 6 through a task run: fresh state (the task's rows deleted) finds every copy.
    from tests.runs.engine.helpers import ResponseRewriter, sizes_short_by

    with ResponseRewriter(imap_server.imap_port, sizes_short_by(29)) as short:
        task, [(source, destination)] = imap_task(source_port=short.port)
        total = fill_user(imap_server, source, {"INBOX": 3})
        _assert_every_message_there(_run(task), total, 0)
        FolderState.objects.all().delete()
        _assert_every_message_there(_run(task), 0, total)
    assert message_count(imap_server, destination) == total


def test_a_run_with_an_account_whose_login_failed_never_claims_completeness(
    imap_server, imap_task, make_imap_user, pushed
):
    # Issue 11 case 10: "Every message was copied or already there" for a mailbox never read.
    good = (make_imap_user(), make_imap_user())
    bad = (make_imap_user(), make_imap_user())
    task, _ = imap_task(users=[good, bad])
    fill_user(imap_server, good[0], {"INBOX": 2})
    fill_user(imap_server, bad[0], {"INBOX": 4})
    imap_server.set_password(bad[0], "changed-since-the-test")
    run = _run(task)
    summary = run_summary(run)
    assert run.status == Run.Status.FAILED and not summary.complete
    assert summary.unread_accounts == [bad[0].username]
    assert f"mailbox not read for 1 account: {bad[0].username}" in summary.sentence
    # The destination's login failing instead: the source is read, its 4 messages "account not reached".
    imap_server.set_password(bad[0], bad[0].password)
    imap_server.set_password(bad[1], "changed-too")
    summary = run_summary(_run(task))
    assert summary.unread_accounts == [] and summary.not_copied == {"account not reached": 4}
    assert summary.source_messages == 6 and summary.arrived == 2
