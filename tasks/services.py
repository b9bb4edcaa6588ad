"""Rules the views, the API and the commands share about endpoints, tasks and accounts.

Connection tests: a test logs in on both sides and LISTs the folders (a server may accept a login and
then refuse all work). Each test connection counts against its endpoint's max connections like the
copies do. Then what the tasks app's pages read and change (the views only parse and render).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from django.db.models import Count, ProtectedError, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from runs import engine
from runs.engine.types import ConnectionTestResult, ErrorKind, Mailbox
from tasks import oauth, slots
from tasks.models import Account, Endpoint, Task
from tasks.spreadsheet import write_csv

logger = logging.getLogger(__name__)

# IMAP socket timeout (connect and every read) for copies and tests.
IMAP_TIMEOUT_SECONDS = 60.0
# How long a connection test waits for a free connection slot before it gives up: short by default
# (a page waits for the answer), longer for the background "Test all" and the command.
TEST_SLOT_WAIT_SECONDS = 20.0
BACKGROUND_TEST_SLOT_WAIT_SECONDS = 300.0
MAX_MESSAGE_LENGTH = 1000


@sensitive_variables("password", "refresh_token")  # kept off Django's error pages
def mailbox_for(
    endpoint: Endpoint,
    username: str,
    password: str,
    *,
    refresh_token: str = "",
    on_new_refresh_token: Callable[[str], None] | None = None,
    on_consent_withdrawn: Callable[[], None] | None = None,
) -> Mailbox:
    """The engine's view of one side of an account. Build it just before use, never store it.

    An endpoint that signs in with OAuth 2.0 gets a token source (tasks/oauth.py) instead of the
    password; refresh_token is the account side's stored consent (each user's consent only).
    """
    token_source = None
    identity = ""
    if endpoint.uses_oauth:
        token_source = oauth.token_source(
            endpoint,
            username,
            refresh_token=refresh_token,
            on_new_refresh_token=on_new_refresh_token,
            on_consent_withdrawn=on_consent_withdrawn,
        )
        identity = oauth.identity(endpoint, username)
        password = ""
    return Mailbox(
        host=endpoint.host,
        port=endpoint.port,
        security=endpoint.security,
        username=username,
        password=password,
        verify_tls=endpoint.verify_tls,
        ca_certificate=endpoint.ca_certificate,
        timeout=IMAP_TIMEOUT_SECONDS,
        token_source=token_source,
        identity=identity,
    )


def account_mailbox(account: Account, side: str) -> Mailbox:
    """The engine's view of one side ("source" or "destination") of an account, with its password or
    its OAuth 2.0 sign-in; a refresh token the provider renews is stored back on the account, one it
    refuses as withdrawn is forgotten (the account's page then asks for a new consent)."""
    endpoint = account.task.source if side == "source" else account.task.destination
    return mailbox_for(
        endpoint,
        getattr(account, f"{side}_user"),
        getattr(account, f"{side}_password"),
        refresh_token=getattr(account, f"{side}_refresh_token"),
        on_new_refresh_token=lambda token: oauth.store_refresh_token(account.pk, side, token),
        on_consent_withdrawn=lambda: oauth.forget_consent(account.pk, side, getattr(account, f"{side}_consents")),
    )


@sensitive_variables("password")
def check_login(
    endpoint: Endpoint,
    username: str,
    password: str,
    *,
    slot_wait_seconds: float | None = None,
    mailbox: Mailbox | None = None,
) -> ConnectionTestResult:
    """LOGIN and LIST on one server, inside one of the endpoint's connection slots (`mailbox`, when
    given, instead of one built from the user name and password)."""
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
        return engine.test_connection(mailbox or mailbox_for(endpoint, username, password))
    finally:
        slots.release(holder)


def _message(result: ConnectionTestResult, mailbox: Mailbox | None = None) -> str:
    """A test result as stored and shown: "OK: 6 folders", with whose token signed in for an OAuth 2.0
    side ("OK: 6 folders, signed in with OAuth 2.0 (application <id> of tenant <t>)"), or why it failed."""
    if result.ok:
        text = "OK"
        if result.folder_count:
            text += f": {result.folder_count} folders"
        if mailbox is not None and mailbox.token_source is not None:
            text += ", signed in with OAuth 2.0" + (f" ({mailbox.identity})" if mailbox.identity else "")
        return text[:MAX_MESSAGE_LENGTH]
    return (result.message or (result.kind or "failed"))[:MAX_MESSAGE_LENGTH]


def test_account(account: Account, *, slot_wait_seconds: float | None = None) -> Account:
    """Test both logins of an account (LOGIN and LIST), store status, the server's words and the time.

    Returns the account as stored afterwards (with its task and endpoints). The passwords are read
    from the database here, just before use. When all of an endpoint's connections are in use, it
    waits up to `slot_wait_seconds` (default TEST_SLOT_WAIT_SECONDS) and then records that as the
    failure. Account.DoesNotExist when the account is gone.
    """
    account = Account.objects.select_related("task__source", "task__destination").get(pk=account.pk)
    task = account.task
    source_mailbox = account_mailbox(account, "source")
    source = check_login(
        task.source,
        account.source_user,
        "",
        slot_wait_seconds=slot_wait_seconds,
        mailbox=source_mailbox,
    )
    source_at = timezone.now()
    destination_mailbox = account_mailbox(account, "destination")
    destination = check_login(
        task.destination,
        account.destination_user,
        "",
        slot_wait_seconds=slot_wait_seconds,
        mailbox=destination_mailbox,
    )
    destination_at = timezone.now()
    Account.objects.filter(pk=account.pk).update(
        source_test_status=Account.TestStatus.OK if source.ok else Account.TestStatus.FAIL,
        source_test_message=_message(source, source_mailbox),
        source_tested_at=source_at,
        destination_test_status=(Account.TestStatus.OK if destination.ok else Account.TestStatus.FAIL),
        destination_test_message=_message(destination, destination_mailbox),
        destination_tested_at=destination_at,
        updated_at=destination_at,
    )
    logger.info(
        "account %s tested: source %s, destination %s",
        account.pk,
        "ok" if source.ok else f"failed ({source.kind})",
        "ok" if destination.ok else f"failed ({destination.kind})",
    )
    account.refresh_from_db()
    return account


@sensitive_variables("access_token", "refresh_token")
def finish_consent(account: Account, side: str, *, code: str, verifier: str, redirect_uri: str) -> ConnectionTestResult:
    """A user's consent came back: trade the code for tokens, prove the token opens this mailbox,
    then store the refresh token (encrypted) on the account side. Returns the proof's result.

    The proof signs in to the endpoint's IMAP server as the account side's user with the fresh access
    token (the engine's login path, one short connection in one of the endpoint's slots): a user may
    sign in at the provider as another mailbox than the link's. A server refusing the token (AUTH) is
    oauth.ConsentError and nothing is stored. A proof that passes is the side's test result (OK); any
    other failure (the server cannot be reached...) still stores the consent, its test left pending.
    ConsentError also for the provider's refusal (oauth.exchange_code).
    """
    access_token, refresh_token = oauth.exchange_code(
        account, side, code=code, verifier=verifier, redirect_uri=redirect_uri
    )
    endpoint = getattr(account.task, side)
    user = getattr(account, f"{side}_user")
    mailbox = dataclasses.replace(mailbox_for(endpoint, user, ""), token_source=lambda fresh: access_token)
    result = check_login(endpoint, user, "", mailbox=mailbox)
    if result.kind == ErrorKind.AUTH:
        raise oauth.ConsentError(
            f"The mail server did not accept this sign-in for the mailbox {user}: you signed in as another "
            f"mailbox than {user}; open the link again and sign in as {user}. (The server said: {result.message})"
        )
    oauth.store_refresh_token(account.pk, side, refresh_token, consent=True)
    if result.ok:
        Account.objects.filter(pk=account.pk).update(
            **{
                f"{side}_test_status": Account.TestStatus.OK,
                f"{side}_test_message": _message(result, mailbox),
                f"{side}_tested_at": timezone.now(),
            }
        )
    return result


def test_accounts(task: Task, *, only_needing_test: bool = False) -> int:
    """Test every active (not parked) account of the task, one after the other, here and now, or with
    only_needing_test=True only the blocking ones (untested or failed); returns how many.

    The pages' "Test all" runs the same test in the background instead: runs.jobs.enqueue_account_tests.
    """
    accounts = task.accounts.blocking() if only_needing_test else task.accounts.active()
    ids = list(accounts.order_by("source_user").values_list("pk", flat=True))
    for pk in ids:
        test_account(Account(pk=pk))
    return len(ids)


def _untested(side: str) -> dict[str, object]:
    return {
        f"{side}_test_status": Account.TestStatus.UNTESTED,
        f"{side}_test_message": "",
        f"{side}_tested_at": None,
    }


def forget_endpoint_tests(task: Task, sides: set[str]) -> int:
    """Mark the accounts' tests of the changed side(s) ("source", "destination") as untested.

    A test passed against the old server says nothing about the new one (issue 11 case 11: an
    account stayed "tested" after the task's destination server changed). Returns accounts changed.
    """
    changed = 0
    for side in sorted(sides & {"source", "destination"}):
        changed += Account.objects.filter(task=task).update(**_untested(side))
    return changed


# Endpoint fields a passed test depends on: where the server is and how it is reached, and how its
# accounts sign in (a wrong client secret, or Password instead of OAuth 2.0 for accounts without one).
ENDPOINT_TESTED_FIELDS = frozenset(
    {
        "host",
        "port",
        "security",
        "verify_tls",
        "ca_certificate",
        "auth_method",
        "oauth_tenant",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_client_certificate",
        "oauth_service_account_key",
        "oauth_authority_url",
        "oauth_token_url",
        "oauth_authorize_url",
        "oauth_scope",
    }
)


def forget_tests_of_endpoint(endpoint: Endpoint, changed_fields: set[str] | list[str]) -> int:
    """After an endpoint is edited: when one of ENDPOINT_TESTED_FIELDS changed, the tests of every
    account using it, on the side(s) it is used on, are forgotten (untested), so that runs and
    schedules wait for a new test instead of failing. Returns how many account sides were reset."""
    if not ENDPOINT_TESTED_FIELDS & set(changed_fields):
        return 0
    changed = 0
    for side in ("source", "destination"):
        changed += Account.objects.filter(**{f"task__{side}": endpoint}).update(**_untested(side))
    return changed


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


# ---------------------------------------------------------------- what the tasks app's pages read and change


def endpoint_list() -> QuerySet[Endpoint]:
    """Every endpoint, with `source_count` and `destination_count`: how many tasks copy from and to it."""
    return Endpoint.objects.annotate(
        source_count=Count("source_tasks", distinct=True),
        destination_count=Count("destination_tasks", distinct=True),
    )


def tasks_using(endpoint: Endpoint) -> list[Task]:
    """The tasks that copy from or to `endpoint`."""
    return list(Task.objects.using_endpoint(endpoint))


def delete_endpoint(endpoint: Endpoint) -> list[Task]:
    """Delete the endpoint unless a task uses it; returns those tasks ([] when it was deleted)."""
    try:
        endpoint.delete()
    except ProtectedError:
        return tasks_using(endpoint)
    return []


class TaskIsRunning(Exception):
    """The task runs: it (or its accounts) cannot be deleted until the run ends."""


def deletion_summary(task: Task) -> dict[str, int]:
    """What deleting the task also deletes: `account_count`, `run_count`."""
    # task.runs: the reverse relation of runs.Run, counted without importing the runs app above this one.
    return {"account_count": task.accounts.count(), "run_count": task.runs.count()}


def delete_task(task: Task) -> None:
    """Delete the task with its accounts and runs; TaskIsRunning while it runs."""
    if task.is_running:
        raise TaskIsRunning(task.name)
    task.delete()


def remove_account(account: Account) -> None:
    """Delete an account; TaskIsRunning while its task runs."""
    if account.task.is_running:
        raise TaskIsRunning(account.task.name)
    account.delete()


EXPORT_COLUMNS = {
    "source_user": "source_user",
    "destination_user": "destination_user",
    "source_test": "source_test_status",
    "source_message": "source_test_message",
    "destination_test": "destination_test_status",
    "destination_message": "destination_test_message",
}


def write_accounts_csv(task: Task, out: TextIO, *, absolute_url: Callable[[str], str] = str) -> None:
    """The task's accounts as CSV (the import's columns without the passwords, plus the test results).

    A side whose endpoint needs each user's consent adds two columns: `<side>_consent` (given / missing)
    and `<side>_consent_link` (made absolute by `absolute_url`), so the links can be mailed from the file.
    """
    sides = [side for side in oauth.SIDES if getattr(task, side).needs_consent]
    header = list(EXPORT_COLUMNS)
    given: dict[str, set[int]] = {}
    consents: dict[str, dict[int, int]] = {}
    for side in sides:
        header += [f"{side}_consent", f"{side}_consent_link"]
        # An empty secret is stored empty: no decryption needed to tell which accounts have one.
        given[side] = set(task.accounts.exclude(**{f"{side}_refresh_token": ""}).values_list("pk", flat=True))
        consents[side] = dict(task.accounts.values_list("pk", f"{side}_consents"))

    def rows() -> Iterator[list[Any]]:
        # values_list: the export has no passwords, so it never decrypts them either.
        for pk, *values in task.accounts.values_list("pk", *EXPORT_COLUMNS.values()).iterator():
            for side in sides:
                values.append("given" if pk in given[side] else "missing")
                token = oauth.consent_token_for(pk, side, consents[side][pk])
                values.append(absolute_url(reverse("tasks:consent_start", args=[token])))
            yield values

    write_csv(out, header, rows())


def first_account(task: Task) -> Account | None:
    """The account the folder overview logs in with: the task's first, or None."""
    return task.accounts.first()


def save_folder_mapping(task: Task, listed: set[str], mapping: dict[str, Any]) -> None:
    """Store the mapping chosen for the `listed` source folders; entries for folders not listed stay."""
    kept = {k: v for k, v in task.folder_mapping.items() if k not in listed}
    task.folder_mapping = {**kept, **mapping}
    task.save(update_fields=["folder_mapping", "updated_at"])
