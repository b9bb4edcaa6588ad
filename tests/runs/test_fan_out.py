"""Starting a run records it and returns; one job enqueues the copy jobs (issue 15, finding 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import jobs, orchestrator, q2
from runs.models import AccountRun, Run

pytestmark = pytest.mark.django_db


def test_fan_out_enqueues_every_queued_account_run_in_batches(make_task, monkeypatch):
    monkeypatch.setattr(orchestrator, "FAN_OUT_BATCH", 2)
    pushed: list[list[int]] = []
    monkeypatch.setattr(orchestrator, "push_jobs", lambda ids: pushed.append(list(ids)))
    monkeypatch.setattr(orchestrator, "push_fan_out", lambda run_id: None)  # the job has not run yet
    task = make_task(accounts=6)
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    ids = list(run.account_runs.order_by("pk").values_list("pk", flat=True))
    # Meanwhile one account run was taken by a worker and one cancelled: neither is pushed.
    AccountRun.objects.filter(pk=ids[1]).update(status=AccountRun.Status.RUNNING)
    AccountRun.objects.filter(pk=ids[4]).update(status=AccountRun.Status.CANCELLED)
    jobs.fan_out_run_job(run.pk)
    assert pushed == [[ids[0], ids[2]], [ids[3], ids[5]]]


def test_a_run_whose_fan_out_job_waits_in_the_broker_is_left_to_it(make_task, django_capture_on_commit_callbacks):
    task = make_task(accounts=2)
    start = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, now=start)
    # Long copies of other runs hold every worker: the fan-out job waits in the queue for an hour.
    assert q2.pending_fan_out_run_ids() == {run.pk}
    assert q2.pending_job_ids() == set()
    assert orchestrator.reap_stale(start + timedelta(hours=1)) == 0
    assert set(run.account_runs.values_list("status", "enqueues")) == {(AccountRun.Status.QUEUED, 1)}
    assert q2.pending_job_ids() == set()  # the reaper pushed nothing: the fan-out will


def test_a_run_whose_fan_out_job_was_lost_is_started_by_the_reaper(make_task, pushed, monkeypatch):
    monkeypatch.setattr(orchestrator, "push_fan_out", lambda run_id: None)  # the broker lost it
    task = make_task(accounts=2)
    start = timezone.now()
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL, now=start)
    assert pushed == []
    later = start + timedelta(seconds=orchestrator.LOST_JOB_GRACE_SECONDS + 1)
    assert orchestrator.reap_stale(later) == 0
    assert sorted(pushed) == sorted(run.account_runs.values_list("pk", flat=True))
