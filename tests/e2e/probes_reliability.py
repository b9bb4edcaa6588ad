"""The reliability probes of bench/reliability.py (issue 15, item 7), as pytest functions on the e2e harness.

Not collected by the test suite (the file name does not start with test_): bench/reliability.py runs it with
`-o python_functions=probe_*` and RELIABILITY_OUT=<file.jsonl>, one JSON line per probe:

    {"probe": str, "database": "sqlite"|"postgresql", "broker": "orm"|"redis",
     "left_running_s": float (seconds from the fault until the run left "running"),
     "status": str (the run's status then), "next_run": str (status of the run after, or "-"),
     "lost": int, "duplicated": int, "altered": int}   # sha256 of BODY[] source vs destination

Each probe copies one or two mailboxes through a slowed fault proxy (tests/support/faultproxy.py) to the test
Dovecot with a real `manage.py qcluster` (tests/e2e/conftest.py), does its harm mid-copy, waits for the run
to end, runs the task again when the first run did not finish, and compares the mailboxes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections

from runs.models import AccountRun, Run
from tests.e2e.conftest import fill_user, mail_hashes, manage, site_env, wait_until, worker_pid
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.cluster, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

MESSAGES = 500  # two batches of the engine, several seconds each behind the slowed proxy
REDIS = os.environ.get("RELIABILITY_REDIS") == "1"


def _record(probe: str, **row: object) -> None:
    row = {
        "probe": probe,
        "database": connection.vendor,
        "broker": "redis" if REDIS else "orm",
        **row,
    }
    out = os.environ.get("RELIABILITY_OUT")
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def _compare(imap_server, users) -> dict[str, int]:
    """lost / duplicated / altered over every folder of every pair (sha256 of BODY[])."""
    lost = duplicated = altered = 0
    for source, destination in users:
        src = Counter(h for hashes in mail_hashes(imap_server, source).values() for h in hashes)
        dst = Counter(h for hashes in mail_hashes(imap_server, destination).values() for h in hashes)
        extra = dst - src
        changed = sum(n for h, n in extra.items() if h not in src)
        duplicated += sum(n for h, n in extra.items() if h in src)
        altered += changed
        lost += max(0, sum((src - dst).values()) - changed)
    return {"lost": lost, "duplicated": duplicated, "altered": altered}


def _ended(run_pk: int, timeout: float, *clusters) -> Run:
    return wait_until(
        lambda: (r := Run.objects.get(pk=run_pk)) and not r.is_running and r, timeout, "the run's end", *clusters
    )


def _start(task, env: dict[str, str]) -> Run:
    """Start a run as an operator would; with Redis through `manage.py runtask` in the site's environment,
    so the jobs go to the site's Redis queue (this process enqueues to the ORM broker)."""
    from runs import orchestrator

    if not REDIS:
        return orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    manage(env, "runtask", str(task.pk))
    return Run.objects.filter(task=task).latest("pk")


def _next_run(task, cluster, env: dict[str, str]) -> str:
    rerun = _start(task, env)
    return _ended(rerun.pk, 180, cluster).status


def _setup(imap_server, imap_task, proxy, pairs: int = 1, side: str = "destination"):
    task, users = imap_task(pairs=pairs, **{f"{side}_port": proxy.port})
    for source, _ in users:
        fill_user(imap_server, source, {"INBOX": MESSAGES, "Archive": 40}, size=3000)
    return task, users


def _mid_copy(run, cluster, count: int = 1) -> None:
    wait_until(
        lambda: run.account_runs.filter(status=AccountRun.Status.RUNNING, copied__gt=0).count() >= count,
        90,
        "accounts mid-copy",
        cluster,
    )


def _signal_probe(name, imap_server, imap_task, clusters, harm, *, control: bool = False) -> None:
    """`harm(run, cluster)` mid-copy; with `control`, a control cluster runs the tick (and its reaper) too."""

    with FaultProxy(imap_server.imap_port, delay=0.15) as proxy:
        task, users = _setup(imap_server, imap_task, proxy)
        env = site_env(redis=REDIS, workers=2)
        if control:
            from django.utils import timezone
            from django_q.models import Schedule

            from scheduling.jobs import install_tick_schedules

            install_tick_schedules(Schedule, timezone.now())  # the flush of the last probe took them
            clusters(env, control=True)
        cluster = clusters(env)
        run = _start(task, env)
        _mid_copy(run, cluster)
        harmed_at = time.monotonic()
        harm(run, cluster)
        first = _ended(run.pk, 200, cluster)
        left = time.monotonic() - harmed_at
        proxy.delay = 0
        cluster.stop()
        second = clusters(env)
        following = _next_run(task, second, env)
    _record(
        name, left_running_s=round(left, 1), status=first.status, next_run=following, **_compare(imap_server, users)
    )


@pytest.mark.timeout(300)
def probe_sigkill_main_process(imap_server, imap_task, clusters):
    _signal_probe(
        "SIGKILL of the cluster's main process", imap_server, imap_task, clusters, lambda run, c: c.signal_main(9)
    )


@pytest.mark.timeout(300)
def probe_sigkill_one_worker(imap_server, imap_task, clusters):
    def harm(run, cluster) -> None:
        worker = run.account_runs.filter(status=AccountRun.Status.RUNNING).values_list("worker", flat=True).first()
        os.kill(worker_pid(worker), signal.SIGKILL)

    # Only the reaper (the control cluster's tick, after the heartbeat lease) can end that account run.
    _signal_probe("SIGKILL of one worker", imap_server, imap_task, clusters, harm, control=True)


@pytest.mark.timeout(300)
def probe_sigterm_main_process(imap_server, imap_task, clusters):
    _signal_probe(
        "SIGTERM of the cluster's main process",
        imap_server,
        imap_task,
        clusters,
        lambda run, c: c.signal_main(signal.SIGTERM),
    )


def _proxy_probe(name, imap_server, imap_task, clusters, harm, side: str = "destination") -> None:
    """A fault on the connections to `side`; the run is expected to recover by itself (no restart)."""

    with FaultProxy(imap_server.imap_port, delay=0.1) as proxy:
        task, users = _setup(imap_server, imap_task, proxy, side=side)
        env = site_env(redis=REDIS, workers=2)
        cluster = clusters(env)
        run = _start(task, env)
        _mid_copy(run, cluster)
        harmed_at = time.monotonic()
        harm(proxy)
        first = _ended(run.pk, 240, cluster)
        left = time.monotonic() - harmed_at
        proxy.clear()
        proxy.delay = 0
        following = "-" if first.status == Run.Status.DONE else _next_run(task, cluster, env)
    _record(
        name, left_running_s=round(left, 1), status=first.status, next_run=following, **_compare(imap_server, users)
    )


def _cuts(reset: bool):
    def harm(proxy) -> None:
        for _ in range(3):
            proxy.cut_all(reset=reset)
            time.sleep(2)

    return harm


@pytest.mark.timeout(300)
def probe_connections_cut(imap_server, imap_task, clusters):
    _proxy_probe("3 cuts (FIN) of every connection", imap_server, imap_task, clusters, _cuts(reset=False))


@pytest.mark.timeout(300)
def probe_connections_reset(imap_server, imap_task, clusters):
    _proxy_probe("3 resets (RST) of every connection", imap_server, imap_task, clusters, _cuts(reset=True))


def _gone_for(seconds: float):
    def harm(proxy) -> None:
        proxy.stall_new(connections=None)
        proxy.cut_all()
        time.sleep(seconds)
        proxy.clear()

    return harm


@pytest.mark.timeout(300)
def probe_destination_gone_and_back(imap_server, imap_task, clusters):
    """The destination unreachable for 20 s (every connection cut, new ones never greeted), then back."""
    _proxy_probe("destination gone 20 s, then back", imap_server, imap_task, clusters, _gone_for(20))


@pytest.mark.timeout(300)
def probe_source_gone_and_back(imap_server, imap_task, clusters):
    """The source unreachable for 20 s (every connection cut, new ones never greeted), then back."""
    _proxy_probe("source gone 20 s, then back", imap_server, imap_task, clusters, _gone_for(20), side="source")


@pytest.mark.timeout(300)
def probe_quota_exceeded_then_raised(imap_server, imap_task, make_imap_user, clusters):
    """The destination's quota holds about a third of the mailbox; raised after the run, the next run finishes."""

    source, destination = make_imap_user(), make_imap_user(quota_bytes=700_000)
    task, users = imap_task(users=[(source, destination)])
    fill_user(imap_server, source, {"INBOX": MESSAGES, "Archive": 40}, size=3000)
    env = site_env(redis=REDIS, workers=2)
    cluster = clusters(env)
    started = time.monotonic()
    run = _start(task, env)
    first = _ended(run.pk, 180, cluster)
    left = time.monotonic() - started
    imap_server.set_quota(destination, 100_000_000)
    following = _next_run(task, cluster, env)
    _record(
        "destination quota exceeded, then raised",
        left_running_s=round(left, 1),
        status=f"{first.status} ({first.not_copied} not copied)",
        next_run=following,
        **_compare(imap_server, users),
    )


def _race_rounds(task, rounds: int, first, second) -> list[int]:
    """Per round, first(round) and second(round) released together in two threads (each its own database
    connection); returns the number of runs the task got per round. Between rounds the runs are ended."""
    started = []
    for round_ in range(rounds):
        before = Run.objects.filter(task=task).count()
        barrier = threading.Barrier(2)

        def press(action, round_=round_, barrier=barrier) -> None:
            try:
                barrier.wait()
                action(round_)
            except Exception:  # noqa: S110  RunRefused: the other one won; counted below
                pass
            finally:
                connections.close_all()

        threads = [threading.Thread(target=press, args=(action,)) for action in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        started.append(Run.objects.filter(task=task).count() - before)
        Run.objects.filter(task=task).update(status=Run.Status.CANCELLED)
        AccountRun.objects.filter(run__task=task).update(status=AccountRun.Status.CANCELLED)
        type(task).objects.filter(pk=task.pk).update(status=type(task).Status.IDLE)
    return started


def _race_row(name: str, started: list[int]) -> None:
    _record(
        name,
        left_running_s=None,
        status=f"runs started per round: {dict(sorted(Counter(started).items()))}",
        next_run="-",
        lost=0,
        duplicated=0,
        altered=0,
    )
    assert set(started) == {1}, started


@pytest.mark.timeout(120)
def probe_two_run_now_at_once(imap_task):
    """Twenty rounds of two "Run now" at the same moment: exactly one run each (no cluster: nothing copies)."""
    from runs import orchestrator

    task, _users = imap_task(pairs=1)

    def manual(_round: int) -> None:
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)

    _race_row("two Run now at once (20 rounds)", _race_rounds(task, 20, manual, manual))


@pytest.mark.timeout(120)
def probe_tick_racing_run_now(imap_task):
    """Twenty rounds of the scheduler's tick (task due) against a "Run now": exactly one run each."""
    from datetime import timedelta

    from django.utils import timezone

    from runs import orchestrator
    from scheduling.services import set_schedule
    from scheduling.ticker import tick

    task, _users = imap_task(pairs=1)
    base = timezone.now()
    set_schedule(task, 3600, now=base - timedelta(hours=2))

    def ticking(round_: int) -> None:
        tick(base + timedelta(hours=2 * round_))

    def manual(_round: int) -> None:
        orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)

    _race_row("scheduler tick racing Run now (20 rounds)", _race_rounds(task, 20, ticking, manual))
