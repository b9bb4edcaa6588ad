"""Migration 0004: states written before bindings were kept stay usable and get bound."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("runs", "0005_interrupted_field"), ("tasks", "0003_task_schedule_waiting_accounts")]
AFTER = [("runs", "0006_folderstate_destination_binding")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_existing_states_are_bound_to_their_accounts_destination():
    apps = _migrate(BEFORE)
    Endpoint = apps.get_model("tasks", "Endpoint")
    Task = apps.get_model("tasks", "Task")
    Account = apps.get_model("tasks", "Account")
    FolderState = apps.get_model("runs", "FolderState")
    source = Endpoint.objects.create(label="old", host="old.example.net", port=993)
    destination = Endpoint.objects.create(label="new", host="IMAP.Example.NET", port=143)
    task = Task.objects.create(name="t", source=source, destination=destination)
    account = Account.objects.create(task=task, source_user="a", destination_user="anna@example.net")
    FolderState.objects.create(
        account=account, source_folder="INBOX", destination_folder="INBOX", uidvalidity=5, copied_uids="1:300"
    )
    try:
        apps = _migrate(AFTER)
        row = apps.get_model("runs", "FolderState").objects.get()
        assert (row.destination_server, row.destination_user) == ("imap.example.net:143", "anna@example.net")
        assert row.destination_uidvalidity is None and row.uid_map == "" and row.copied_uids == "1:300"
    finally:
        _migrate(_leaf_nodes())


def _leaf_nodes():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()
