from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from scheduling.jobs import (
    TICK_FUNC,
    TICK_SCHEDULES,
    install_tick_schedules,
    last_tick_at,
    record_tick,
    tick_job,
)
from scheduling.models import Ticker

pytestmark = pytest.mark.django_db


def test_the_migration_installed_two_one_minute_schedules_half_a_minute_apart_on_the_control_cluster():
    schedules = list(Schedule.objects.filter(func=TICK_FUNC).order_by("name"))
    assert [s.name for s in schedules] == list(TICK_SCHEDULES)
    assert {(s.schedule_type, s.minutes, s.repeats, s.cluster) for s in schedules} == {
        (Schedule.MINUTES, 1, -1, "control")
    }
    offsets = sorted(s.next_run.second for s in schedules)
    assert offsets == [0, 30]


def test_installing_again_changes_nothing_but_the_next_run():
    now = timezone.now()
    install_tick_schedules(Schedule, now)
    install_tick_schedules(Schedule, now + timedelta(hours=1))
    assert Schedule.objects.filter(func=TICK_FUNC).count() == 2


def test_tick_job_runs_a_tick_and_records_it():
    assert last_tick_at() is None
    before = timezone.now()
    summary = tick_job()
    assert summary == "reaped 0, started 0, already running 0, refused 0"
    assert last_tick_at() >= before
    assert Ticker.objects.get().last_result == summary


def test_record_tick_keeps_one_row():
    record_tick(timezone.now())
    record_tick(timezone.now())
    assert Ticker.objects.count() == 1
