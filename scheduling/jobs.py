"""django-q2 entry points of the scheduler, and the schedules that drive the tick.

The tick should run about every 30 s. A django-q2 schedule repeats at most once a minute and the
cluster's scheduler looks for due schedules about every 30 s (django-q2 checks its Schedule table on
each guard cycle, not at the second a schedule is due), so two one-minute schedules half a minute apart
drive it. They belong to the `control` cluster (settings.Q_CLUSTER,
ALT_CLUSTERS): one small worker that long copy jobs can never occupy, started with
`Q_CLUSTER_NAME=control manage.py qcluster` beside the copy cluster.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from scheduling.models import Ticker

TICK_FUNC = "scheduling.jobs.tick_job"
# Schedule name -> offset within the minute.
TICK_SCHEDULES = {
    "scheduling tick :00": timedelta(seconds=0),
    "scheduling tick :30": timedelta(seconds=30),
}


def control_cluster() -> str:
    """Name of the django-q2 cluster that runs the tick."""
    return settings.Q_CONTROL_CLUSTER


def tick_job() -> str:
    """Run one tick at the current time. Returns a one-line summary (stored as the job's result)."""
    # Imported here, not at the top: the data migration imports this module, and the ticker pulls in
    # runs and django-q2, which a migration must not depend on.
    from scheduling.ticker import tick

    now = timezone.now()
    report = tick(now)
    summary = (
        f"reaped {report.reaped}, started {len(report.started)}, "
        f"already running {len(report.skipped)}, refused {len(report.refused)}"
    )
    record_tick(now, summary)
    return summary


def record_tick(now: datetime, summary: str = "") -> None:
    """Remember when the tick last ran (the schedule panel warns when it stops)."""
    if not Ticker.objects.filter(pk=1).update(last_tick_at=now, last_result=summary):
        try:
            with transaction.atomic():
                Ticker.objects.create(pk=1, last_tick_at=now, last_result=summary)
        except IntegrityError:  # another tick created it a moment ago
            Ticker.objects.filter(pk=1).update(last_tick_at=now, last_result=summary)


def last_tick_at() -> datetime | None:
    """When the scheduler tick last ran, or None if it never has."""
    return Ticker.objects.filter(pk=1).values_list("last_tick_at", flat=True).first()


def install_tick_schedules(schedule_model: type[models.Model], now: datetime) -> None:
    """Create or update the two tick schedules (idempotent; the data migration calls it).

    `schedule_model` is django_q's Schedule (the historical model inside a migration).
    """
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for name, offset in TICK_SCHEDULES.items():
        schedule_model.objects.update_or_create(
            name=name,
            defaults={
                "func": TICK_FUNC,
                "schedule_type": "I",  # Schedule.MINUTES
                "minutes": 1,
                "repeats": -1,
                "cluster": control_cluster(),
                "next_run": minute + offset,
            },
        )
