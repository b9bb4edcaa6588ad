"""Known-refused messages and the breaker (issue 11): the operator accepts a refusal, later runs
neither try the message again nor count it as an error, reports list it, and it can be un-accepted."""

from __future__ import annotations

import pytest
from django.urls import reverse

from runs import jobs, orchestrator
from runs.models import AcceptedRefusal, Run
from runs.progress import run_summary
from tasks.models import Task
from tests.runs.conftest import fill_user
from tests.support.dovecot import fill, make_message

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]


def _scheduled_run(task) -> Run:
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
    for pk in run.account_runs.values_list("pk", flat=True):
        jobs.copy_account_job(pk)
    run.refresh_from_db()
    return run


def _task_with_a_message_too_big(imap_server, imap_task, make_imap_user):
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=50_000, advertise_appendlimit=False)
    task, _ = imap_task(users=[(source, destination)])
    fill_user(imap_server, source, {"INBOX": 3})
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed="big", subject="the big one", attachment_size=80_000), [], None)])
    return task


def _arm_schedule(task) -> None:
    Task.objects.filter(pk=task.pk).update(schedule_interval_seconds=3600, broken=False)


def test_an_accepted_refusal_is_not_tried_again_and_does_not_trip_the_breaker(
    imap_server, imap_task, make_imap_user, pushed, admin_client, admin_user
):
    task = _task_with_a_message_too_big(imap_server, imap_task, make_imap_user)
    _arm_schedule(task)
    first = _scheduled_run(task)
    assert (first.copied, first.errors) == (3, 1)
    task.refresh_from_db()
    assert task.broken  # the seed's rule: a scheduled run with errors trips the breaker
    page = admin_client.get(reverse("runs:report", args=[first.pk])).content.decode()
    assert "the big one" in page and 'data-accept="message"' in page

    ar = first.account_runs.get()
    response = admin_client.post(
        reverse("runs:accept", args=[first.pk]),
        {"account_run": ar.pk, "folder": "INBOX", "uid": ar.message_errors[0]["uid"]},
    )
    assert response.status_code == 302
    accepted = AcceptedRefusal.objects.get()
    assert (accepted.accepted_by, accepted.accepted_by_name) == (admin_user, admin_user.username)
    assert accepted.subject == "the big one" and "[LIMIT]" in accepted.reason

    _arm_schedule(task)
    second = _scheduled_run(task)
    assert (second.status, second.copied, second.errors, second.not_copied) == (Run.Status.DONE, 0, 0, 1)
    task.refresh_from_db()
    assert not task.broken
    ar2 = second.account_runs.get()
    assert ar2.message_errors == [] and ar2.not_copied == {"accepted as not copied": 1}
    summary = run_summary(second)
    assert summary.source_messages == 4 and summary.arrived == 3
    assert "1 accepted as not copied" in summary.sentence
    page = admin_client.get(reverse("runs:report", args=[second.pk])).content.decode()
    assert 'id="accepted-refusals"' in page and "the big one" in page and admin_user.username in page
    csv = admin_client.get(reverse("runs:report_csv", args=[second.pk])).content.decode()
    assert "accepted as not copied" in csv and "the big one" in csv
    api = admin_client.get(f"/api/runs/{second.pk}/not-copied").json()
    assert api["not_copied"] == {"accepted as not copied": 1} and api["source_messages"] == 4
    [listed] = api["accepted_as_not_copied"]
    assert (listed["subject"], listed["accepted_by"]) == ("the big one", admin_user.username)
    assert listed["accepted_at"].endswith("Z")

    # Un-accepted: the next run tries the message again (and the destination refuses it again).
    admin_client.post(reverse("runs:unaccept", args=[second.pk, accepted.pk]))
    assert not AcceptedRefusal.objects.exists()
    third = _scheduled_run(task)
    assert (third.errors, third.not_copied) == (1, 1)
    assert third.account_runs.get().not_copied == {"refused by the destination": 1}


def test_accepting_all_of_a_run_accepts_every_refused_message_once(
    imap_server, imap_task, make_imap_user, pushed, admin_client
):
    task = _task_with_a_message_too_big(imap_server, imap_task, make_imap_user)
    run = _scheduled_run(task)
    admin_client.post(reverse("runs:accept", args=[run.pk]))
    admin_client.post(reverse("runs:accept", args=[run.pk]))
    assert AcceptedRefusal.objects.count() == 1
