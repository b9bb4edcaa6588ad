"""What the site's pages show (imapcopier/views.py): plain functions that take plain arguments and `now`.

They compose the apps below: tasks (accounts), runs (last results, progress) and scheduling (state).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import OuterRef, Q, QuerySet, Subquery

from runs import progress, selection, watch
from runs.jobs import enqueue_account_tests
from runs.models import AccountRun, Run
from scheduling.services import panel_state, schedule_state, with_schedule_facts
from tasks.models import Account, Endpoint, Task

ACCOUNTS_PER_PAGE = 100
# "Test all" polls the accounts table until every account was tested, or this long after it started.
TEST_ALL_POLL_SECONDS = 600


def task_rows(queryset: QuerySet[Task] | None = None) -> list[Task]:
    """Tasks with what the list shows, in a fixed number of queries (no per-row queries).

    Each task carries `account_count`, `blocking_count` (accounts not tested OK), its last run
    (`last_run_id`, `last_run_status`, `last_run_started_at`, `last_run_errors`), `schedule` (a
    scheduling.services.ScheduleState), `next_run_at`, and `percent` of its running run.
    """
    last_run = Run.objects.filter(task=OuterRef("pk")).newest_first()
    tasks = (
        with_schedule_facts(queryset if queryset is not None else Task.objects.all())
        .select_related("source", "destination")
        .annotate(
            last_run_id=Subquery(last_run.values("pk")[:1]),
            last_run_status=Subquery(last_run.values("status")[:1]),
            last_run_started_at=Subquery(last_run.values("started_at")[:1]),
            last_run_errors=Subquery(last_run.values("errors")[:1]),
            **progress.running_run_progress(),
        )
    )
    rows = list(tasks)
    for task in rows:
        task.schedule = schedule_state(task)  # uses the annotations: no query
        task.next_run_at = task.schedule.next_run
        task.percent = progress.task_percent(task)  # accounts done plus the running ones' share (issue 12)
    return rows


def task_list(*, now: datetime) -> dict[str, Any]:
    """The task list: `tasks` (task_rows), `any_running`, `endpoint_count`, and `watch_token`
    (runs.watch.tasks_token: the open list reloads when a run starts or ends elsewhere)."""
    rows = task_rows()
    return {
        "tasks": rows,
        "any_running": any(t.is_running for t in rows),
        "endpoint_count": Endpoint.objects.count(),
        "watch_token": watch.tasks_token(),
    }


def with_last_results(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """Annotate accounts with `last_account_run_id`, the pk of their latest AccountRun."""
    latest = AccountRun.objects.filter(account=OuterRef("pk")).order_by("-run__started_at", "-pk")
    return accounts.annotate(last_account_run_id=Subquery(latest.values("pk")[:1]))


def attach_last_results(accounts: list[Account]) -> list[Account]:
    """Set `last_result` (an AccountRun or None) on accounts annotated by with_last_results(): one query."""
    runs = AccountRun.objects.in_bulk([a.last_account_run_id for a in accounts if a.last_account_run_id])
    for account in accounts:
        account.last_result = runs.get(account.last_account_run_id)
    return accounts


def account_page(
    task: Task, *, q: str = "", page: str | int | None = None, filters: dict[str, str] | None = None
) -> dict[str, Any]:
    """One page of the task's accounts (search `q`, page number `page`, `filters` as
    runs.selection.account_filter() reads them from the query string), with their last results, the
    counts (Account.objects.test_counts()) and the filters' links and counters."""
    q = q.strip()
    chosen = selection.account_filter(filters or {})
    # The passwords are not needed to list accounts: never load (or decrypt) them here.
    accounts = task.accounts.defer("source_password", "destination_password").order_by("source_user", "pk")
    if q:
        accounts = accounts.filter(Q(source_user__icontains=q) | Q(destination_user__icontains=q))
    shown = Paginator(selection.filter_accounts(accounts, chosen), ACCOUNTS_PER_PAGE).get_page(page)
    counts = task.accounts.test_counts()
    return {
        "task": task,
        "accounts": attach_last_results(list(shown.object_list)),
        "page": shown,
        "q": q,
        "counts": counts,
        "chosen": chosen,
        "filter_query": urlencode(chosen),
        "test_links": [
            ("ok", "OK", counts["ok"]),
            ("failed", "Failed", counts["failed"]),
            ("untested", "Not tested", counts["active"] - counts["ok"] - counts["failed"]),
        ],
        "result_counts": selection.last_result_counts(task.pk),
        "results": selection.LAST_RESULTS,
    }


def task_page(
    task_id: int, *, q: str = "", page: str | int | None = None, filters: dict[str, str] | None = None, now: datetime
) -> dict[str, Any]:
    """The task page: the task, a page of its accounts, its run panel and its schedule panel, and the
    `watch_token` its watch polls with (runs.watch: a run started elsewhere reloads the page).

    Raises Task.DoesNotExist.
    """
    task = with_schedule_facts(Task.objects.select_related("source", "destination")).get(pk=task_id)
    panel = progress.run_panel_context(task, now)
    latest = panel["run"]  # the token from what the page shows: no extra query
    return {
        **account_page(task, q=q, page=page, filters=filters),
        **panel,
        "panel": panel_state(task, now=now),
        "watch_token": watch.token_of(task.status, latest.pk if latest else None, latest.status if latest else None),
    }


def parse_until(text: str) -> datetime:
    """The moment "Test all" started, as the page sends it back: ISO 8601 with a time zone.

    Raises ValueError for anything else (a time without a zone included: it would be a guess).
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def tests_pending(task: Task, *, since: datetime, now: datetime, only_needing_test: bool = False) -> bool:
    """True while some active account of the task has not been tested since `since`, for at most
    TEST_ALL_POLL_SECONDS; with only_needing_test, accounts tested OK before are not waited for."""
    if now - since > timedelta(seconds=TEST_ALL_POLL_SECONDS):
        return False  # give up polling; a reload shows whatever was recorded
    accounts = task.accounts.active()
    if only_needing_test:
        accounts = accounts.exclude(**Account.TESTED_OK)
    return accounts.filter(
        Q(source_tested_at__isnull=True)
        | Q(source_tested_at__lt=since)
        | Q(destination_tested_at__isnull=True)
        | Q(destination_tested_at__lt=since)
    ).exists()


def account_table(
    task: Task,
    *,
    q: str = "",
    page: str | int | None = None,
    filters: dict[str, str] | None = None,
    until: datetime | None,
    only_needing_test: bool = False,
    now: datetime,
) -> dict[str, Any]:
    """The accounts table alone; it polls while a "Test all" (or, with only_needing_test, "Test untested
    and failed") that started at `until` is under way."""
    return {
        **account_page(task, q=q, page=page, filters=filters),
        "until": until.isoformat() if until else "",
        "only": "needs-test" if only_needing_test else "",
        "polling": until is not None and tests_pending(task, since=until, now=now, only_needing_test=only_needing_test),
    }


def test_all(
    task: Task, *, q: str = "", page: str | int | None = None, only_needing_test: bool = False, now: datetime
) -> dict[str, Any]:
    """Start "Test all" (every active account) or "Test untested and failed" (only_needing_test: the
    blocking ones) in the background, one job per account, and return the accounts table, polling.

    `tested`: how many accounts are being tested (the table does not poll when none is).
    """
    tested = enqueue_account_tests(task, only_needing_test=only_needing_test)
    return {
        **account_page(task, q=q, page=page),
        "polling": bool(tested),
        "until": now.isoformat(),
        "only": "needs-test" if only_needing_test else "",
        "tested": tested,
        "testing": tested,
    }
