"""Parked accounts and "Run failed accounts" (issue 12, items 1 and 2): what a run takes and what blocks it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from runs import orchestrator
from runs.models import AccountRun, Run
from runs.selection import accounts_to_retry, filter_last_result, with_last_result
from tasks.models import Account
from tasks.parking import ParkRefused, park_accounts, resume_accounts
from tests.support.factories import AccountFactory, AccountRunFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def taken(run: Run) -> set[str]:
    return set(run.account_runs.values_list("account__source_user", flat=True))


def test_parked_accounts_are_skipped_by_runs_and_do_not_block_them(pushed, django_capture_on_commit_callbacks):
    task = TaskFactory()
    good = [AccountFactory(task=task, tested=True, source_user=f"good{i}@x") for i in range(3)]
    bad = [AccountFactory(task=task, source_user=f"bad{i}@x") for i in range(2)]  # untested: blocks
    with pytest.raises(orchestrator.AccountsNotTested) as refused:
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    assert str(refused.value).startswith("2 of 5 active accounts have not passed")
    assert refused.value.blocking == 2
    assert park_accounts(task, [a.pk for a in bad], reason="waiting for the new passwords", now=timezone.now()) == 2
    with django_capture_on_commit_callbacks(execute=True):
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    assert taken(run) == {a.source_user for a in good}
    assert sorted(pushed) == sorted(run.account_runs.values_list("pk", flat=True))


def test_a_task_whose_accounts_are_all_parked_says_so(pushed):
    task = TaskFactory()
    account = AccountFactory(task=task, tested=True)
    park_accounts(task, [account.pk], reason="mailbox closed", now=timezone.now())
    with pytest.raises(orchestrator.AllAccountsParked, match="Every account of this task is parked"):
        orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
    assert not Run.objects.exists()


def test_parking_needs_a_reason_and_touches_only_the_tasks_accounts():
    task, other = TaskFactory(), TaskFactory()
    mine, theirs = AccountFactory(task=task), AccountFactory(task=other)
    with pytest.raises(ParkRefused):
        park_accounts(task, [mine.pk], reason="   ", now=timezone.now())
    assert park_accounts(task, [mine.pk, theirs.pk], reason="  waiting\\n for  IT ", now=timezone.now()) == 1
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.paused and mine.paused_reason == "waiting\\n for IT" and mine.paused_at is not None
    assert not theirs.paused
    assert list(Account.objects.filter(task=task).active()) == []
    assert resume_accounts(task, [mine.pk]) == 1
    mine.refresh_from_db()
    assert not mine.paused and mine.paused_reason == "" and mine.paused_at is None


def _history():
    """Four accounts with different last results in a task's two runs, and one never run."""
    task = TaskFactory()
    names = ["failed", "errors", "done", "fixed-later", "new"]
    accounts = {n: AccountFactory(task=task, tested=True, source_user=f"{n}@x") for n in names}
    first = RunFactory(task=task, started_at=timezone.now() - timezone.timedelta(days=1))
    second = RunFactory(task=task, started_at=timezone.now())
    AccountRunFactory(run=first, account=accounts["fixed-later"], status=AccountRun.Status.FAILED)
    AccountRunFactory(run=second, account=accounts["fixed-later"], status=AccountRun.Status.DONE)
    AccountRunFactory(run=first, account=accounts["failed"], status=AccountRun.Status.DONE)
    AccountRunFactory(run=second, account=accounts["failed"], status=AccountRun.Status.FAILED)
    AccountRunFactory(run=second, account=accounts["errors"], status=AccountRun.Status.DONE, errors=3)
    AccountRunFactory(run=second, account=accounts["done"], status=AccountRun.Status.DONE)
    return task, accounts


def test_each_account_has_its_latest_result():
    task, _accounts = _history()
    results = dict(with_last_result(Account.objects.filter(task=task)).values_list("source_user", "last_outcome"))
    assert results == {
        "failed@x": "failed",
        "errors@x": "errors",
        "done@x": "done",
        "fixed-later@x": "done",
        "new@x": "never",
    }
    assert [a.source_user for a in filter_last_result(Account.objects.filter(task=task), "errors")] == ["errors@x"]
    with pytest.raises(ValueError):
        filter_last_result(Account.objects.all(), "bogus")


def test_run_failed_accounts_takes_failed_errors_and_new_ones_but_not_parked(pushed):
    task, accounts = _history()
    park_accounts(task, [accounts["new"].pk], reason="later", now=timezone.now())
    assert {a.source_user for a in accounts_to_retry(task.pk)} == {"failed@x", "errors@x"}
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, only=orchestrator.ONLY_FAILED)
    assert run.trigger == Run.Trigger.MANUAL
    assert taken(run) == {"failed@x", "errors@x"}


def test_run_failed_accounts_with_nothing_to_retry_is_refused_and_claims_nothing(pushed):
    task = TaskFactory()
    account = AccountFactory(task=task, tested=True)
    AccountRunFactory(run=RunFactory(task=task), account=account, status=AccountRun.Status.DONE)
    with pytest.raises(orchestrator.NothingToRetry):
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, only=orchestrator.ONLY_FAILED)
    task.refresh_from_db()
    assert not task.is_running
    with pytest.raises(ValueError):
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, only="some")
