"""Which accounts a run takes, and each account's last result (issue 12, items 2 and 3).

The last result of an account is its newest AccountRun (by its run's start): failed (the account
failed or was interrupted or cancelled), errors (done, with messages not copied), done (done, no
errors), running (queued or running now), or never (no run has taken it yet).
"""

from __future__ import annotations

from django.db.models import Case, CharField, OuterRef, Q, QuerySet, Subquery, Value, When

from runs.models import AccountRun
from tasks.models import Account

LAST_RESULTS = {
    "failed": "Failed",
    "errors": "Done with errors",
    "done": "Done",
    "running": "Running",
    "never": "Never run",
}
# What "Run failed accounts" takes: the accounts a run did not finish cleanly, and those no run has
# taken yet (added, or resumed after parking, since the last run).
RETRY_RESULTS = ("failed", "errors", "never")


def with_last_result(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """Annotate `last_result` (a LAST_RESULTS key) and `last_account_run_id` on each account, in the same query."""
    latest = AccountRun.objects.filter(account=OuterRef("pk")).order_by("-run__started_at", "-pk")
    return accounts.annotate(
        last_account_run_id=Subquery(latest.values("pk")[:1]),
        last_status=Subquery(latest.values("status")[:1]),
        last_errors=Subquery(latest.values("errors")[:1]),
    ).annotate(
        last_result=Case(
            When(last_status__isnull=True, then=Value("never")),
            When(
                last_status__in=[AccountRun.Status.FAILED, AccountRun.Status.CANCELLED],
                then=Value("failed"),
            ),
            When(last_status__in=[AccountRun.Status.QUEUED, AccountRun.Status.RUNNING], then=Value("running")),
            When(Q(last_status=AccountRun.Status.DONE, last_errors__gt=0), then=Value("errors")),
            default=Value("done"),
            output_field=CharField(),
        )
    )


def filter_last_result(accounts: QuerySet[Account], *results: str) -> QuerySet[Account]:
    """Accounts whose last result is one of `results` (LAST_RESULTS keys). Raises ValueError on an unknown key."""
    unknown = set(results) - set(LAST_RESULTS)
    if unknown:
        raise ValueError(f"unknown last result {sorted(unknown)!r}")
    return with_last_result(accounts).filter(last_result__in=results)


def accounts_to_retry(task_id: int) -> QuerySet[Account]:
    """The active accounts "Run failed accounts" takes: last result failed, done with errors, or never run."""
    return filter_last_result(Account.objects.filter(task_id=task_id).active(), *RETRY_RESULTS)
