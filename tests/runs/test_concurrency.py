"""Races between processes, played with threads (each has its own database connection).

Run on SQLite and on PostgreSQL (DATABASE_URL=postgresql://...): the claims must hold on both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from unittest import mock

import pytest
from django.db import connections
from django.utils import timezone

from runs import orchestrator
from runs.engine.types import AccountResult, Outcome
from runs.models import AccountRun, Run
from tasks import slots
from tasks.models import ConnectionSlot, Task
from tests.support.factories import EndpointFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _race(count: int, work: Callable[[int], object]) -> list[object]:
    """Run work(i) in `count` threads released at the same moment; returns results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # collected for the assertions
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("round_", range(3))
def test_simultaneous_starts_give_one_run(make_task, pushed, round_):
    task = make_task(accounts=2)
    results = _race(
        4,
        lambda i: orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED if i % 2 else Run.Trigger.MANUAL),
    )
    runs = [r for r in results if isinstance(r, Run)]
    refused = [r for r in results if isinstance(r, orchestrator.TaskAlreadyRunning)]
    assert len(runs) == 1, results
    assert len(refused) == 3, results
    assert Run.objects.filter(task=task).count() == 1
    assert AccountRun.objects.filter(run__task=task).count() == 2
    assert Task.objects.get(pk=task.pk).status == Task.Status.RUNNING


@pytest.mark.parametrize("round_", range(3))
def test_accounts_finishing_at_the_same_moment_finalise_the_run_once(make_task, pushed, round_):
    task = make_task(accounts=4)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    now = timezone.now()
    claimed = [
        orchestrator.claim_account_run(pk, worker="w:1", now=now)
        for pk in run.account_runs.values_list("pk", flat=True)
    ]
    calls: list[int] = []
    lock = threading.Lock()

    def after_run(r: Run) -> bool:
        with lock:
            calls.append(r.pk)
        return False

    with mock.patch("scheduling.breaker.after_run", side_effect=after_run):
        results = _race(
            4,
            lambda i: orchestrator.finish_account_run(
                claimed[i],
                claimed[i].attempt,
                AccountResult(outcome=Outcome.DONE, copied=i + 1, bytes=10),
                now=timezone.now(),
            ),
        )
    assert results == [True, True, True, True]
    assert calls == [run.pk]
    run.refresh_from_db()
    assert run.status == Run.Status.DONE
    assert run.copied == 1 + 2 + 3 + 4 and run.bytes == 40


def test_the_same_job_delivered_twice_at_once_is_claimed_once(make_task, pushed):
    task = make_task(accounts=1)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    pk = run.account_runs.get().pk
    results = _race(
        4,
        lambda i: orchestrator.claim_account_run(pk, worker=f"w:{i}", now=timezone.now()),
    )
    claims = [r for r in results if isinstance(r, AccountRun)]
    assert len(claims) == 1 and results.count(None) == 3, results
    assert AccountRun.objects.get(pk=pk).attempt == 1


def test_simultaneous_slot_requests_never_exceed_the_cap():
    endpoint = EndpointFactory(max_connections=3)
    results = _race(
        8,
        lambda i: slots.try_acquire({endpoint.pk: 1}, f"holder-{i}", now=timezone.now()),
    )
    assert results.count(True) == 3, results
    assert results.count(False) == 5, results
    assert slots.in_use(endpoint.pk, now=timezone.now()) == 3


def test_simultaneous_requests_for_several_slots_each_get_all_or_none():
    # A copy job leases its connections of both sides at once; racing jobs must never split the slots.
    endpoint = EndpointFactory(max_connections=6)
    results = _race(
        8,
        lambda i: slots.try_acquire({endpoint.pk: 2}, f"holder-{i}", now=timezone.now()),
    )
    assert results.count(True) == 3 and results.count(False) == 5, results
    held = {
        holder: ConnectionSlot.objects.filter(holder=holder).count() for holder in (f"holder-{i}" for i in range(8))
    }
    assert sorted(held.values()) == [0] * 5 + [2] * 3, held
