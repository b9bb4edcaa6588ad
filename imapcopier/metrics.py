"""`/metrics` in the Prometheus text format, computed from the database at scrape time.

Nothing is kept in process memory, so every web process answers the same, however many there are.
Protected by a bearer token when METRICS_TOKEN is set.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from runs import q2
from runs.models import AccountRun, Run
from scheduling.jobs import last_tick_at
from scheduling.services import ScheduleState, schedule_state, with_schedule_facts
from tasks.models import Task


class DatabaseCollector:
    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("imapcopier_runs", "Runs by status", labels=["status"])
        counts = dict(Run.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in Run.Status.values:
            runs.add_metric([status], counts.get(status, 0))
        yield runs

        tasks = GaugeMetricFamily("imapcopier_tasks", "Tasks by status", labels=["status"])
        counts = dict(Task.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in Task.Status.values:
            tasks.add_metric([status], counts.get(status, 0))
        yield tasks
        yield GaugeMetricFamily(
            "imapcopier_tasks_broken",
            "Tasks whose schedule the breaker stopped",
            value=Task.objects.filter(broken=True).count(),
        )

        # "Waiting" has one home, scheduling.services.schedule_state; the annotations keep it one query.
        waiting = [
            state
            for state in map(schedule_state, with_schedule_facts(Task.objects.schedule_on()))
            if state.state == ScheduleState.WAITING
        ]
        yield GaugeMetricFamily(
            "imapcopier_schedules_waiting",
            "Tasks whose schedule is on but cannot start: some active accounts need a connection test, or none are active",
            value=len(waiting),
        )
        yield GaugeMetricFamily(
            "imapcopier_schedules_waiting_accounts",
            "Active accounts that need a connection test before the waiting schedules can start",
            value=sum(state.waiting_accounts or 0 for state in waiting),
        )

        totals = AccountRun.objects.aggregate(copied=Sum("copied"), bytes=Sum("bytes"), errors=Sum("errors"))
        yield CounterMetricFamily(
            "imapcopier_messages_copied",
            "Messages copied, all runs",
            value=totals["copied"] or 0,
        )
        yield CounterMetricFamily(
            "imapcopier_bytes_copied",
            "Bytes copied, all runs",
            value=totals["bytes"] or 0,
        )
        yield CounterMetricFamily(
            "imapcopier_message_errors",
            "Per-message and per-account errors, all runs",
            value=totals["errors"] or 0,
        )

        jobs = GaugeMetricFamily(
            "imapcopier_account_jobs",
            "Account copy jobs not finished yet",
            labels=["status"],
        )
        counts = dict(
            AccountRun.objects.filter(status__in=[AccountRun.Status.QUEUED, AccountRun.Status.RUNNING])
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        for status in (AccountRun.Status.QUEUED, AccountRun.Status.RUNNING):
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs

        yield GaugeMetricFamily(
            "imapcopier_job_queue_readable",
            "1 when the job queue (the django-q2 broker) can be read, 0 when not: the reaper then cannot find lost jobs",
            value=1 if q2.queue_readable() else 0,
        )

        last_tick = last_tick_at()
        if last_tick is not None:
            yield GaugeMetricFamily(
                "imapcopier_tick_age_seconds",
                "Seconds since the scheduler tick last ran",
                value=(timezone.now() - last_tick).total_seconds(),
            )


@require_GET
@login_not_required
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return HttpResponse(
                "metrics token required\n",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
