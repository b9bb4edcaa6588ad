from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from runs.models import AccountRun, Run
from scheduling.jobs import record_tick
from tests.support.factories import AccountRunFactory, TaskFactory

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
