"""The one module that talks to django-q2: job names, the copy queue, enqueueing, and the internals we read.

Checked against django-q2 1.11.1 (CHECKED_AGAINST; pyproject.toml pins the 1.11 minor). Public API used:
`django_q.tasks.async_task`, `django_q.brokers.get_broker`, `django_q.conf.Conf`. django-q2 offers no public
way to do the rest, so these internals are read here and nowhere else, each with a test in
tests/runs/test_q2.py that fails on an upgrade that changes it:

- the broker's waiting jobs: the ORM broker's `OrmQ` rows (`key` = the broker's `list_key`, `payload`), the
  Redis broker's list (`connection.lrange(list_key)`), each payload a `django_q.signing.SignedPackage`
  with `func` and `args` (pending_job_ids, queue_readable);
- the cluster's stop event: the `Sentinel` object (its `stop_event` attribute) found on the call stack a
  worker process inherits when it is forked (cluster_stop_event). django-q2's signals (pre_execute,
  post_spawn, ...) say nothing about a stopping cluster;
- `multiprocessing.Event._flag` (CPython's, not django-q2's), read without taking the event's lock
  (event_is_set_without_waiting).

Jobs are named by the dotted path of their function (django-q2 stores the name in the broker and imports
it in the worker): the constants below, which a test compares with the functions.
"""

from __future__ import annotations

import logging
import os
import sys

from django_q import brokers as q2_brokers
from django_q import tasks as q2_tasks
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.cluster import Sentinel
from django_q.conf import Conf
from django_q.management.commands.qcluster import Command as ClusterCommand  # noqa: F401  (runs' qcluster)
from django_q.models import OrmQ
from django_q.signing import SignedPackage

logger = logging.getLogger(__name__)

CHECKED_AGAINST = "1.11.1"

# django-q2 entry points (runs/jobs.py), as django-q2 stores them in the broker.
COPY_ACCOUNT_JOB = "runs.jobs.copy_account_job"
TEST_ACCOUNT_JOB = "runs.jobs.test_account_job"
FAN_OUT_RUN_JOB = "runs.jobs.fan_out_run_job"
FAN_OUT_TESTS_JOB = "runs.jobs.fan_out_tests_job"
NOTIFY_JOB = "scheduling.notifications.jobs.send_notification_job"  # args: event, task id, run id, detail, notice id


def copy_queue() -> str:
    """The django-q2 queue copy and test jobs go to: the main cluster's, whoever enqueues (the web, the tick)."""
    return Conf.PREFIX


def enqueue(job: str, *args: object, task_name: str) -> None:
    """Hand one job to the copy queue's broker: `args` are ids and words, never a password.

    Raises whatever the broker raises when it cannot take the job (callers decide what that means).
    """
    # Looked up on the module at call time, so a test can replace django_q.tasks.async_task.
    q2_tasks.async_task(job, *args, task_name=task_name, cluster=copy_queue())


def _queue_payloads() -> list | None:
    """The signed payloads of the jobs in the copy queue's broker, or None (logged as an ERROR) if unreadable."""
    broker = q2_brokers.get_broker(copy_queue())
    try:
        if isinstance(broker, ORM):
            return list(OrmQ.objects.using(Conf.ORM).filter(key=broker.list_key).values_list("payload", flat=True))
        if isinstance(broker, Redis):
            return broker.connection.lrange(broker.list_key, 0, -1)
    except Exception:
        logger.exception("cannot read the job queue (%s broker)", type(broker).__name__)
        return None
    logger.error("cannot read the job queue: the %s broker is not supported (ORM and Redis are)", type(broker).__name__)
    return None


def queue_readable() -> bool:
    """Whether the copy queue's broker can be read (for /metrics: the reaper needs it to find lost jobs)."""
    return _queue_payloads() is not None


def pending_job_ids() -> set[int] | None:
    """Account run ids whose copy job is in the broker (waiting or, with the ORM broker, taken).

    None when the broker cannot be read: that is logged as an ERROR, and /metrics shows
    imapcopier_job_queue_readable 0.
    """
    return _pending_ids(COPY_ACCOUNT_JOB)


def pending_fan_out_run_ids() -> set[int] | None:
    """Run ids whose fan-out job (it enqueues the run's copy jobs) is in the broker; None when unreadable."""
    return _pending_ids(FAN_OUT_RUN_JOB)


def _pending_ids(job: str) -> set[int] | None:
    """The first argument (an id) of every `job` in the copy queue's broker, or None when unreadable."""
    payloads = _queue_payloads()
    if payloads is None:
        return None
    ids: set[int] = set()
    for payload in payloads:
        try:
            package = SignedPackage.loads(payload)
        except Exception:
            continue  # another site's job (other signing key) or garbage: not ours
        if package.get("func") == job and package.get("args"):
            try:
                ids.add(int(package["args"][0]))
            except (TypeError, ValueError):
                continue
    return ids


_cluster_stop: tuple[int, object | None] | None = None  # (pid, the cluster's stop event) once looked up


def cluster_stop_event() -> object | None:
    """The stop event of the django-q2 cluster this process works for, or None outside a cluster.

    A worker is forked from the cluster's sentinel, so the Sentinel object is on the call stack this
    process inherited. Its stop event is set when the cluster's main process gets SIGTERM or SIGINT;
    the sentinel then waits for its workers to finish their jobs, however long they take.
    """
    global _cluster_stop
    if _cluster_stop is None or _cluster_stop[0] != os.getpid():
        event = None
        try:
            frame = sys._getframe(1)
            while frame is not None and event is None:
                candidate = frame.f_locals.get("self")
                if isinstance(candidate, Sentinel):
                    event = candidate.stop_event
                frame = frame.f_back
        except Exception:
            logger.exception("cannot find the cluster's stop event")
        _cluster_stop = (os.getpid(), event)
    return _cluster_stop[1]


_flag_unreadable_logged = False


def event_is_set_without_waiting(event: object) -> bool:
    """Whether a multiprocessing.Event is set, without taking its lock."""
    # multiprocessing.Event.is_set() takes the event's lock, which a sentinel killed while waiting on
    # the event holds for ever (a process manager signalling the whole group); the count of its
    # semaphore answers without that lock.
    try:
        return event._flag.get_value() > 0  # type: ignore[attr-defined]
    except Exception:
        global _flag_unreadable_logged
        if not _flag_unreadable_logged:  # once per process: this is asked between every two batches
            _flag_unreadable_logged = True
            logger.exception("cannot read the cluster's stop event: a stopping cluster will not stop copies early")
        return False


def cluster_stopping() -> bool:
    """True when the django-q2 cluster this worker process belongs to was told to stop (False outside one)."""
    event = cluster_stop_event()
    return event is not None and event_is_set_without_waiting(event)


def sentinel_stop_event_in(frame: object | None) -> object | None:
    """The stop event of the Sentinel whose method is running in `frame` or below it, or None.

    The sentinel process's main thread runs inside Sentinel.guard(): runs/lifeline.py sets this event
    when the cluster's main process is gone, as SIGTERM to the main process would.
    """
    while frame is not None:
        candidate = frame.f_locals.get("self")  # type: ignore[attr-defined]
        if isinstance(candidate, Sentinel):
            return candidate.stop_event
        frame = frame.f_back  # type: ignore[attr-defined]
    return None
