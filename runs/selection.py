"""Which accounts a run takes, and each account's last result (issue 12, items 2 and 3).

The last result of an account is its newest AccountRun (by its run's start): failed (the account
failed or was interrupted or cancelled), errors (done, with messages not copied), done (done, no
errors), running (queued or running now), or never (no run has taken it yet).
"""

from __future__ import annotations

from django.db.models import Case, CharField, Count, OuterRef, Q, QuerySet, Subquery, Value, When

from runs.models import AccountRun
from tasks.models import TEST_STATES, Account

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


# How one AccountRun's outcome is named (its status and errors), shared by "last result" and the
# run report's filter: these conditions are the only place the rule is written.
RUN_RESULTS = ("failed", "errors", "done", "running")


def result_condition(result: str, prefix: str = "") -> Q:
    """The condition on an AccountRun's `status` and `errors` (named `prefix + field`) for a RUN_RESULTS key.

    Raises ValueError on an unknown key.
    """
    status, errors = f"{prefix}status", f"{prefix}errors"
    if result == "failed":
        return Q(**{f"{status}__in": [AccountRun.Status.FAILED, AccountRun.Status.CANCELLED]})
    if result == "running":
        return Q(**{f"{status}__in": [AccountRun.Status.QUEUED, AccountRun.Status.RUNNING]})
    if result == "errors":
        return Q(**{status: AccountRun.Status.DONE, f"{errors}__gt": 0})
    if result == "done":
        return Q(**{status: AccountRun.Status.DONE, f"{errors}__lte": 0})
    raise ValueError(f"unknown result {result!r}")


def with_last_result(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """Annotate `last_outcome` (a LAST_RESULTS key) and `last_account_run_id` on each account, in the same query."""
    latest = AccountRun.objects.filter(account=OuterRef("pk")).order_by("-run__started_at", "-pk")
    return accounts.annotate(
        last_account_run_id=Subquery(latest.values("pk")[:1]),
        last_status=Subquery(latest.values("status")[:1]),
        last_errors=Subquery(latest.values("errors")[:1]),
    ).annotate(
        last_outcome=Case(
            When(last_status__isnull=True, then=Value("never")),
            *(When(result_condition(key, "last_"), then=Value(key)) for key in RUN_RESULTS),
            default=Value("never"),
            output_field=CharField(),
        )
    )


def filter_last_result(accounts: QuerySet[Account], *results: str) -> QuerySet[Account]:
    """Accounts whose last result is one of `results` (LAST_RESULTS keys). Raises ValueError on an unknown key."""
    unknown = set(results) - set(LAST_RESULTS)
    if unknown:
        raise ValueError(f"unknown last result {sorted(unknown)!r}")
    return with_last_result(accounts).filter(last_outcome__in=results)


def accounts_to_retry(task_id: int) -> QuerySet[Account]:
    """The active accounts "Run failed accounts" takes: last result failed, done with errors, or never run."""
    return filter_last_result(Account.objects.filter(task_id=task_id).active(), *RETRY_RESULTS)


REPORT_SORTS = {"": "by account", "errors": "most errors first"}


def report_filter(result: str | None, sort: str | None) -> tuple[str, str]:
    """The run report's filter from the query string: unknown values mean "all" and "by account"."""
    result = result if result in RUN_RESULTS else ""
    sort = sort if sort in REPORT_SORTS else ""
    return result, sort


def report_account_runs(run_id: int, *, result: str = "", sort: str = "") -> QuerySet[AccountRun]:
    """The run's account runs the report lists: those with `result` (RUN_RESULTS key, "" = all),
    by source user, or with sort="errors" most errors first. Passwords are never loaded."""
    rows = AccountRun.objects.filter(run_id=run_id)
    if result:
        rows = rows.filter(result_condition(result))
    order = ("-errors", "account__source_user", "pk") if sort == "errors" else ("account__source_user", "pk")
    return rows.order_by(*order)


def report_counts(run_id: int) -> dict[str, int]:
    """How many of the run's accounts have each result, and "all": the report's filter links."""
    rows = AccountRun.objects.filter(run_id=run_id)
    # Named n_<key>: an aggregate may not share its name with a field ("errors").
    counts = rows.aggregate(
        n_all=Count("pk"), **{f"n_{key}": Count("pk", filter=result_condition(key)) for key in RUN_RESULTS}
    )
    return {name.removeprefix("n_"): value for name, value in counts.items()}


ACCOUNT_FILTERS = ("test", "result", "parked")


def account_filter(params: dict) -> dict[str, str]:
    """The accounts table's filter from the query string (unknown values are dropped):
    test = ok | failed | untested (tasks.models.TEST_STATES), result = a LAST_RESULTS key,
    parked = yes | no."""
    chosen = {}
    if params.get("test") in TEST_STATES:
        chosen["test"] = params["test"]
    if params.get("result") in LAST_RESULTS:
        chosen["result"] = params["result"]
    if params.get("parked") in ("yes", "no"):
        chosen["parked"] = params["parked"]
    return chosen


def filter_accounts(accounts: QuerySet[Account], chosen: dict[str, str]) -> QuerySet[Account]:
    """Apply account_filter()'s choice; the result is annotated with `last_outcome` (with_last_result)."""
    if chosen.get("test"):
        accounts = accounts.with_test_state(chosen["test"])
    if chosen.get("parked") == "yes":
        accounts = accounts.parked()
    elif chosen.get("parked") == "no":
        accounts = accounts.active()
    accounts = with_last_result(accounts)
    if chosen.get("result"):
        accounts = accounts.filter(last_outcome=chosen["result"])
    return accounts


def last_result_counts(task_id: int) -> dict[str, int]:
    """How many of the task's accounts have each last result (LAST_RESULTS keys): the counters' links."""
    rows = with_last_result(Account.objects.filter(task_id=task_id)).values("last_outcome").annotate(n=Count("pk"))
    counts = dict.fromkeys(LAST_RESULTS, 0)
    counts.update({row["last_outcome"]: row["n"] for row in rows})
    return counts
