"""Rules the views, the API and the commands share about accounts: connection tests.

A test logs in on both sides and LISTs the folders (a server may accept a login and then refuse
all work). Each test connection counts against its endpoint's max connections like the copies do.
"""

from __future__ import annotations

import logging

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from runs.engine.types import ConnectionTestResult, ErrorKind, Mailbox
from tasks.models import Account, Endpoint, Task

logger = logging.getLogger(__name__)

# IMAP socket timeout (connect and every read) for copies and tests.
IMAP_TIMEOUT_SECONDS = 60.0
# How long a connection test waits for a free connection slot before it gives up: short by default
# (a page waits for the answer), longer for the background "Test all" and the command.
TEST_SLOT_WAIT_SECONDS = 20.0
BACKGROUND_TEST_SLOT_WAIT_SECONDS = 300.0
MAX_MESSAGE_LENGTH = 1000


@sensitive_variables("password")  # kept off Django's error pages
def mailbox_for(endpoint: Endpoint, username: str, password: str) -> Mailbox:
    """The engine's view of one side of an account. Build it just before use, never store it."""
    return Mailbox(
        host=endpoint.host,
        port=endpoint.port,
        security=endpoint.security,
        username=username,
        password=password,
        verify_tls=endpoint.verify_tls,
        ca_certificate=endpoint.ca_certificate,
        timeout=IMAP_TIMEOUT_SECONDS,
    )


@sensitive_variables("password")
def check_login(
    endpoint: Endpoint,
    username: str,
    password: str,
    *,
    slot_wait_seconds: float | None = None,
) -> ConnectionTestResult:
    """LOGIN and LIST on one server, inside one of the endpoint's connection slots."""
    from runs import slots
    from runs.engine import test_connection

    if slot_wait_seconds is None:
        slot_wait_seconds = TEST_SLOT_WAIT_SECONDS

    holder = slots.connection_test_holder()
    try:
        got = slots.acquire(
            {endpoint.pk: 1},
            holder,
            lease_seconds=slots.TEST_SLOT_LEASE_SECONDS,
            timeout_seconds=slot_wait_seconds,
        )
    except slots.SlotsImpossible as exc:
        return ConnectionTestResult(ok=False, kind=ErrorKind.PROTOCOL, message=str(exc))
    if not got:
        return ConnectionTestResult(
            ok=False,
            kind=ErrorKind.TIMEOUT,
            message=(
                f"all {endpoint.max_connections} connections allowed to {endpoint.label} "
                "are in use (max connections); test again when the running copies have finished"
            ),
        )
    try:
        return test_connection(mailbox_for(endpoint, username, password))
    finally:
        slots.release(holder)


def _message(result: ConnectionTestResult) -> str:
    if result.ok:
        text = "OK"
        if result.folder_count:
            text += f": {result.folder_count} folders"
        return text
    return (result.message or (result.kind or "failed"))[:MAX_MESSAGE_LENGTH]


def test_account(account: Account, *, slot_wait_seconds: float | None = None) -> None:
    """Test both logins of an account (LOGIN and LIST) and store status, the server's words and the time.

    The passwords are read from the database here, just before use. When all of an endpoint's
    connections are in use, it waits up to `slot_wait_seconds` (default TEST_SLOT_WAIT_SECONDS)
    and then records that as the failure.
    """
    account = Account.objects.select_related("task__source", "task__destination").get(pk=account.pk)
    task = account.task
    source = check_login(task.source, account.source_user, account.source_password, slot_wait_seconds=slot_wait_seconds)
    source_at = timezone.now()
    destination = check_login(
        task.destination, account.destination_user, account.destination_password, slot_wait_seconds=slot_wait_seconds
    )
    destination_at = timezone.now()
    Account.objects.filter(pk=account.pk).update(
        source_test_status=Account.TestStatus.OK if source.ok else Account.TestStatus.FAIL,
        source_test_message=_message(source),
        source_tested_at=source_at,
        destination_test_status=(Account.TestStatus.OK if destination.ok else Account.TestStatus.FAIL),
        destination_test_message=_message(destination),
        destination_tested_at=destination_at,
        updated_at=destination_at,
    )
    logger.info(
        "account %s tested: source %s, destination %s",
        account.pk,
        "ok" if source.ok else f"failed ({source.kind})",
        "ok" if destination.ok else f"failed ({destination.kind})",
    )


def test_accounts(task: Task, *, background: bool = False, only_needing_test: bool = False) -> int:
    """Test every active (not parked) account of the task, or with only_needing_test=True only those
    not tested OK yet ("Test untested and failed accounts"); returns how many.

    With background=True, one django-q2 job per account is enqueued (ids only) and this returns at
    once; the rows show the results as the jobs store them.
    """
    accounts = task.accounts.needs_test() if only_needing_test else task.accounts.active()
    ids = list(accounts.order_by("source_user").values_list("pk", flat=True))
    if background:
        from django_q.tasks import async_task

        from runs.orchestrator import copy_queue

        for pk in ids:
            async_task(
                "runs.jobs.test_account_job",
                pk,
                task_name=f"test account {pk}",
                cluster=copy_queue(),
            )
        return len(ids)
    for pk in ids:
        test_account(Account(pk=pk))
    return len(ids)


def find_task(reference: str) -> Task:
    """A task by id or by exact name (for the commands); Task.DoesNotExist with a clear message."""
    task = None
    if reference.isdigit():
        task = Task.objects.filter(pk=int(reference)).first()
    if task is None:
        task = Task.objects.filter(name=reference).first()
    if task is None:
        raise Task.DoesNotExist(f"no task with id or name {reference!r}")
    return task
