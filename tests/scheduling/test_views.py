from __future__ import annotations

from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from runs.models import Run
from scheduling.services import panel_state
from tasks.models import Account, Task
from tests.support.factories import AccountFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def post_schedule(client, task, seconds, *, htmx=True):
    return client.post(
        reverse("scheduling:set_schedule", args=[task.pk]),
        {"interval_seconds": str(seconds)},
        headers=HTMX if htmx else {},
    )


def test_panel_shows_the_six_presets_with_the_current_one_selected(admin_client):
    task = TaskFactory(schedule_interval_seconds=10800, schedule_anchor=timezone.now())
    AccountFactory(task=task, tested=True)
    html = admin_client.get(reverse("scheduling:schedule", args=[task.pk])).content.decode()
    for label in ("Off", "Every 1h", "Every 3h", "Every 6h", "Every 12h", "Every 24h"):
        assert f">{label}</option>" in html
    assert '<option value="10800" selected>' in html
    assert "Next run: <time datetime=" in html
    assert 'hx-trigger="every 10s"' in html  # polls while a schedule is on


def test_refused_enable_through_the_page_is_409_with_the_message_and_the_old_value(
    admin_client,
):
    task = TaskFactory()
    AccountFactory(task=task, source_test_status=Account.TestStatus.OK)  # destination untested
    response = post_schedule(admin_client, task, 3600)
    assert response.status_code == 409
    html = response.content.decode()
    assert "all accounts must pass connection tests before scheduling" in html
    assert '<option value="0" selected>' in html
    assert 'value="3600" selected' not in html
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0


def test_refused_enable_without_javascript_redirects_with_the_message(admin_client):
    task = TaskFactory()
    response = post_schedule(admin_client, task, 3600, htmx=False)
    assert response.status_code == 302
    page = admin_client.get(response["Location"])
    assert "all accounts must pass connection tests before scheduling" in page.content.decode()


def test_enable_through_the_page_shows_next_run_and_starts_nothing(admin_client):
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    before = timezone.now()
    response = post_schedule(admin_client, task, 3600)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<option value="3600" selected>' in html
    task.refresh_from_db()
    assert task.schedule_anchor >= before
    expected = (task.schedule_anchor + timedelta(hours=1)).isoformat()
    assert f'<time datetime="{expected}">' in html
    assert not Run.objects.exists()


def test_bad_interval_through_the_page_is_400(admin_client):
    task = TaskFactory()
    for bad in ("60", "abc", ""):
        assert post_schedule(admin_client, task, bad).status_code == 400


def test_re_enabling_a_broken_task_reloads_the_page(admin_client):
    task = TaskFactory(broken=True)
    AccountFactory(task=task, tested=True)
    response = post_schedule(admin_client, task, 3600)
    assert response["HX-Refresh"] == "true"
    task.refresh_from_db()
    assert task.broken is False


def poll(client, task, token):
    return client.get(reverse("scheduling:schedule", args=[task.pk]), {"shown": token}, headers=HTMX)


def test_polling_answers_204_while_nothing_changed_and_reloads_when_the_breaker_trips(
    admin_client,
):
    task = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=timezone.now())
    AccountFactory(task=task, tested=True)  # a schedule with untested accounts (or none) waits: no next run
    token = panel_state(task, now=timezone.now())["token"]
    assert poll(admin_client, task, token).status_code == 204

    RunFactory(task=task, finished_at=timezone.now())  # a run finished: the next run moved
    response = poll(admin_client, task, token)
    assert response.status_code == 200 and b"Next run" in response.content
    assert "HX-Refresh" not in response

    Task.objects.filter(pk=task.pk).update(broken=True, schedule_interval_seconds=0)
    response = poll(admin_client, task, token)
    assert response["HX-Refresh"] == "true"


def test_no_polling_when_the_schedule_is_off_or_broken(admin_client):
    for task in (TaskFactory(), TaskFactory(broken=True)):
        html = admin_client.get(reverse("scheduling:schedule", args=[task.pk])).content.decode()
        assert "every 10s" not in html
    broken_html = admin_client.get(reverse("scheduling:schedule", args=[task.pk])).content.decode()
    assert 'class="badge broken"' in broken_html


def test_run_log_dialog_lists_runs_newest_first(admin_client):
    task = TaskFactory()
    now = timezone.now()
    RunFactory(
        task=task,
        started_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=1),
        copied=7,
        skipped=3,
        errors=0,
    )
    RunFactory(
        task=task,
        trigger=Run.Trigger.SCHEDULED,
        status=Run.Status.FAILED,
        started_at=now,
        finished_at=now,
        copied=1,
        skipped=0,
        errors=2,
    )
    response = admin_client.get(reverse("scheduling:run_log", args=[task.pk]), headers=HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith("<dialog data-autoshow")
    assert html.index("Scheduled") < html.index("Manual")
    assert '<td class="num">7</td>' in html and '<td class="num">2</td>' in html


def test_run_log_says_no_runs_yet_and_works_without_javascript(admin_client):
    task = TaskFactory()
    dialog = admin_client.get(reverse("scheduling:run_log", args=[task.pk]), headers=HTMX)
    assert b"No runs yet." in dialog.content
    page = admin_client.get(reverse("scheduling:run_log", args=[task.pk]))
    assert page.status_code == 200 and b"No runs yet." in page.content and b"<html" in page.content


def test_pages_need_login(client):
    task = TaskFactory()
    for url in (
        reverse("scheduling:schedule", args=[task.pk]),
        reverse("scheduling:run_log", args=[task.pk]),
    ):
        assert client.get(url).status_code == 302
    assert post_schedule(client, task, 0).status_code == 302


def test_broken_badge_partial():
    assert "broken" in render_to_string("scheduling/_broken_badge.html", {"task": Task(broken=True)})
    assert (
        render_to_string("scheduling/_broken_badge.html", {"task": Task(broken=False)}).strip().endswith("#}") is False
    )
    assert "badge" not in render_to_string("scheduling/_broken_badge.html", {"task": Task(broken=False)})


def test_the_panel_warns_when_no_tick_drives_the_schedule(admin_client):
    from scheduling.jobs import record_tick

    task = TaskFactory(schedule_interval_seconds=3600, schedule_anchor=timezone.now())
    url = reverse("scheduling:schedule", args=[task.pk])
    assert b"data-scheduler-stale" in admin_client.get(url).content  # never ticked
    record_tick(timezone.now() - timedelta(minutes=10), "old")
    assert b"data-scheduler-stale" in admin_client.get(url).content  # stopped ticking
    record_tick(timezone.now(), "fresh")
    assert b"data-scheduler-stale" not in admin_client.get(url).content
    off = TaskFactory()
    record_tick(timezone.now() - timedelta(hours=1))
    assert b"data-scheduler-stale" not in admin_client.get(reverse("scheduling:schedule", args=[off.pk])).content


def test_run_log_rows_link_to_their_reports_and_page_through_every_run(admin_client):
    task = TaskFactory()
    now = timezone.now()
    runs = [
        RunFactory(task=task, status=Run.Status.DONE, started_at=now - timedelta(hours=i), finished_at=now)
        for i in range(120)
    ]
    first = admin_client.get(reverse("scheduling:run_log", args=[task.pk]), headers=HTMX).content.decode()
    assert first.count("data-run-report-link") == 50
    assert reverse("runs:report", args=[runs[0].pk]) in first  # the newest run
    assert "runs 1–50 of 120" in first and "data-run-log-newer" not in first
    last = admin_client.get(reverse("scheduling:run_log", args=[task.pk]) + "?page=3").content.decode()
    assert last.count("data-run-report-link") == 20
    assert reverse("runs:report", args=[runs[-1].pk]) in last  # the oldest run is reachable
    assert "data-run-log-older" not in last and "data-run-log-newer" in last


def test_run_log_statuses_are_capitalised_like_everywhere_else(admin_client):
    task = TaskFactory()
    RunFactory(task=task, status=Run.Status.FAILED, finished_at=timezone.now())
    html = admin_client.get(reverse("scheduling:run_log", args=[task.pk])).content.decode()
    assert ">Failed</span>" in html and ">Manual</td>" in html
    assert "Already there" in html and "Skipped" not in html
