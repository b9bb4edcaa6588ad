"""runs/q2.py: each django-q2 internal it relies on, checked against the installed django-q2.

These fail loudly when an upgrade moves or renames what q2.py reads (the pin in pyproject.toml says which
minor version they were written for).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import uuid

import pytest
from django.urls import reverse
from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis
from django_q.cluster import Sentinel
from django_q.models import OrmQ
from django_q.tasks import async_task

from runs import q2


def test_the_job_names_are_the_job_functions():
    from runs import jobs

    assert f"{jobs.__name__}.{jobs.copy_account_job.__name__}" == q2.COPY_ACCOUNT_JOB
    assert f"{jobs.__name__}.{jobs.test_account_job.__name__}" == q2.TEST_ACCOUNT_JOB
    assert f"{jobs.__name__}.{jobs.fan_out_run_job.__name__}" == q2.FAN_OUT_RUN_JOB
    assert f"{jobs.__name__}.{jobs.fan_out_tests_job.__name__}" == q2.FAN_OUT_TESTS_JOB


def test_the_pinned_django_q2_is_the_one_installed():
    from importlib.metadata import version

    assert version("django-q2").startswith(q2.CHECKED_AGAINST.rsplit(".", 1)[0] + ".")


@pytest.fixture
def fresh_stop_lookup(monkeypatch):
    monkeypatch.setattr(q2, "_cluster_stop", None)


def _sentinel(stop_event):
    # Sentinel() sets SIGINT and SIGTERM handlers for the pool: put this process's back afterwards.
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return Sentinel(stop_event, multiprocessing.Event(), "q2-test", broker=get_broker(q2.copy_queue()), start=False)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@pytest.mark.django_db
def test_a_worker_finds_its_clusters_stop_event_on_the_sentinel_up_its_stack(fresh_stop_lookup):
    stop = multiprocessing.Event()
    sentinel = _sentinel(stop)

    def a_sentinel_method(self):  # what the forked worker inherits: a frame whose `self` is the Sentinel
        return q2.cluster_stop_event(), q2.cluster_stopping()

    assert a_sentinel_method(sentinel) == (stop, False)
    stop.set()
    assert q2.cluster_stopping() is True  # remembered for this process


def test_outside_a_cluster_there_is_no_stop_event(fresh_stop_lookup):
    assert q2.cluster_stop_event() is None
    assert q2.cluster_stopping() is False


def test_a_set_event_is_read_without_its_lock():
    event = multiprocessing.Event()
    assert q2.event_is_set_without_waiting(event) is False
    event.set()
    assert q2.event_is_set_without_waiting(event) is True


@pytest.mark.django_db
def test_pending_jobs_are_read_from_the_orm_broker():
    # The ORM broker (no REDIS_URL, as in these tests): OrmQ rows keyed by the queue, signed payloads.
    q2.enqueue(q2.COPY_ACCOUNT_JOB, 41, task_name="copy account run 41")
    q2.enqueue(q2.TEST_ACCOUNT_JOB, 43, task_name="test account 43")  # not a copy job
    assert OrmQ.objects.filter(key=q2.copy_queue()).count() == 2
    assert q2.pending_job_ids() == {41}
    assert q2.queue_readable() is True


def test_pending_jobs_are_read_from_a_redis_queue_too(monkeypatch):
    broker = Redis(list_key=f"ic-test-{uuid.uuid4().hex[:10]}")
    monkeypatch.setattr("django_q.brokers.get_broker", lambda list_key=None: broker)
    try:
        async_task(q2.COPY_ACCOUNT_JOB, 41, broker=broker)
        async_task(q2.COPY_ACCOUNT_JOB, 42, broker=broker)
        async_task(q2.TEST_ACCOUNT_JOB, 43, broker=broker)
        broker.connection.rpush(broker.list_key, b"not a signed package")
        assert q2.pending_job_ids() == {41, 42}
    finally:
        broker.delete_queue()
    assert q2.pending_job_ids() == set()


@pytest.mark.django_db
def test_an_unreadable_broker_is_an_error_in_the_log_and_in_the_metrics(client, monkeypatch, caplog):
    import redis

    broker = Redis(list_key=f"ic-test-{uuid.uuid4().hex[:10]}")
    # Nothing listens on port 1 of the loopback: every read of this broker fails, as with Redis down.
    broker.connection = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=2)
    monkeypatch.setattr("django_q.brokers.get_broker", lambda list_key=None: broker)

    with caplog.at_level(logging.ERROR, logger="runs.q2"):
        assert q2.pending_job_ids() is None
    assert [r.levelno for r in caplog.records if r.name == "runs.q2"] == [logging.ERROR]
    assert "cannot read the job queue (Redis broker)" in caplog.text

    body = client.get(reverse("metrics")).content.decode()
    assert "imapcopier_job_queue_readable 0.0" in body


@pytest.mark.django_db
def test_a_broker_q2_cannot_read_is_an_error_not_a_silent_none(monkeypatch, caplog):
    class SomeOtherBroker:
        list_key = "elsewhere"

    monkeypatch.setattr("django_q.brokers.get_broker", lambda list_key=None: SomeOtherBroker())
    with caplog.at_level(logging.ERROR, logger="runs.q2"):
        assert q2.pending_job_ids() is None
    assert "the SomeOtherBroker broker is not supported" in caplog.text


@pytest.mark.django_db
def test_metrics_say_the_queue_is_readable(client):
    assert "imapcopier_job_queue_readable 1.0" in client.get(reverse("metrics")).content.decode()
