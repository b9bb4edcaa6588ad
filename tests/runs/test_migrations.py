"""Data migrations of the runs app, run on a real database from the migration before them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# tasks is pinned too: its later migrations add NOT NULL columns the historical models here do not know.
BEFORE = [("runs", "0004_connectionslot_moves_to_tasks"), ("tasks", "0003_task_schedule_waiting_accounts")]
AFTER = [("runs", "0005_interrupted_field")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_rows_interrupted_before_the_field_existed_get_it():
    apps = _migrate(BEFORE)
    try:
        Endpoint = apps.get_model("tasks", "Endpoint")
        Task = apps.get_model("tasks", "Task")
        Account = apps.get_model("tasks", "Account")
        Run = apps.get_model("runs", "Run")
        AccountRun = apps.get_model("runs", "AccountRun")
        endpoint = Endpoint.objects.create(label="e", host="127.0.0.1")
        task = Task.objects.create(name="t", source=endpoint, destination=endpoint)
        accounts = [
            Account.objects.create(task=task, source_user=f"u{i}", destination_user=f"u{i}", source_password="p")
            for i in range(3)
        ]
        reaped = Run.objects.create(task=task, status="failed", reason="interrupted: 1 of 3 accounts stopped")
        AccountRun.objects.create(run=reaped, account=accounts[0], status="failed", last_error="interrupted: SIGTERM")
        AccountRun.objects.create(run=reaped, account=accounts[1], status="failed", last_error="Interrupted system")
        AccountRun.objects.create(run=reaped, account=accounts[2], status="failed", last_error="login refused")
        plain = Run.objects.create(task=task, status="failed", reason="1 of 1 accounts failed: login refused")

        apps = _migrate(AFTER)

        Run = apps.get_model("runs", "Run")
        AccountRun = apps.get_model("runs", "AccountRun")
        assert Run.objects.get(pk=reaped.pk).interrupted is True
        assert Run.objects.get(pk=plain.pk).interrupted is False
        marked = set(AccountRun.objects.filter(interrupted=True).values_list("account__source_user", flat=True))
        assert marked == {"u0", "u1"}  # the word at the start, in any case, as the breaker read it before
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
