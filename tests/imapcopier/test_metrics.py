from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from runs.models import AccountRun, Run
from scheduling.jobs import record_tick
from tasks.parking import park_accounts
from tests.support.factories import AccountFactory, AccountRunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_metrics_report_runs_jobs_and_copied_messages(client):
    task = TaskFactory()
    run = Run.objects.create(task=task, status=Run.Status.DONE)
    AccountRunFactory(run=run, status=AccountRun.Status.DONE, copied=120, bytes=4096, errors=2)
    AccountRunFactory(
        run=Run.objects.create(task=TaskFactory(), status=Run.Status.RUNNING),
        status=AccountRun.Status.RUNNING,
        copied=5,
    )

    response = client.get("/metrics")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'imapcopier_runs{status="done"} 1.0' in body
    assert 'imapcopier_runs{status="running"} 1.0' in body
    assert "imapcopier_messages_copied_total 125.0" in body
    assert "imapcopier_bytes_copied_total 4096.0" in body
    assert "imapcopier_message_errors_total 2.0" in body
    assert 'imapcopier_account_jobs{status="running"} 1.0' in body


@override_settings(METRICS_TOKEN="s3cret-token")
def test_metrics_need_the_token_when_one_is_set(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_metrics_report_how_long_ago_the_scheduler_ticked(client):
    # R1: the gauge was never there (the collector imported last_tick_at from the wrong module and
    # swallowed the ImportError).
    record_tick(timezone.now() - timedelta(seconds=42))

    body = client.get("/metrics").content.decode()

    (line,) = [x for x in body.splitlines() if x.startswith("imapcopier_tick_age_seconds ")]
    assert float(line.split()[1]) >= 42


def test_metrics_leave_out_the_tick_age_before_the_first_tick(client):
    body = client.get("/metrics").content.decode()
    assert "imapcopier_runs{" in body
    assert "imapcopier_tick_age_seconds " not in body


def test_metrics_count_the_schedules_waiting_for_account_tests(client):
    now = timezone.now()
    waiting = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=now)
    AccountFactory(task=waiting, tested=True)
    AccountFactory(task=waiting)  # untested
    AccountFactory(task=waiting, source_test_status="fail")
    parked = AccountFactory(task=waiting)  # untested but parked: it does not block
    park_accounts(waiting, [parked.pk], reason="later", now=now)
    TaskFactory(schedule_interval_seconds=3600, schedule_anchor=now)  # on, no active account: waiting too
    ready = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=now)
    AccountFactory(task=ready, tested=True)
    off = TaskFactory()  # schedule off: never waiting, whatever its accounts
    AccountFactory(task=off)
    broken = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=now, broken=True)
    AccountFactory(task=broken)  # the breaker's state, not waiting

    body = client.get("/metrics").content.decode()

    assert "imapcopier_schedules_waiting 2.0" in body
    assert "imapcopier_schedules_waiting_accounts 2.0" in body


def test_metrics_show_no_waiting_schedule_once_the_accounts_are_tested(client):
    task = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=timezone.now())
    account = AccountFactory(task=task)
    assert "imapcopier_schedules_waiting 1.0" in client.get("/metrics").content.decode()
    account.source_test_status = account.destination_test_status = "ok"
    account.save()
    body = client.get("/metrics").content.decode()
    assert "imapcopier_schedules_waiting 0.0" in body
    assert "imapcopier_schedules_waiting_accounts 0.0" in body
