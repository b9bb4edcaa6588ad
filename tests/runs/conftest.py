from __future__ import annotations

import pytest

from runs import orchestrator
from tests.factories import AccountFactory, EndpointFactory, TaskFactory


@pytest.fixture
def pushed(monkeypatch) -> list[int]:
    """Account run ids handed to the broker (nothing is really enqueued)."""
    ids: list[int] = []
    monkeypatch.setattr(orchestrator, "push_jobs", lambda pks: ids.extend(pks))
    return ids


@pytest.fixture
def make_task():
    """A task with `accounts` accounts tested OK on both sides."""

    def make(accounts: int = 3, **kwargs):
        task = TaskFactory(**kwargs)
        for _ in range(accounts):
            AccountFactory(task=task, tested=True)
        return task

    return make


@pytest.fixture
def imap_task(imap_server, make_imap_user):
    """A task on the test Dovecot: make(pairs, **endpoint kwargs) -> (task, [(source, destination)])."""

    def make(pairs: int = 1, *, max_connections: int = 10, users=None):
        source = EndpointFactory(
            host=imap_server.host,
            port=imap_server.imap_port,
            security="plain",
            verify_tls=False,
            max_connections=max_connections,
        )
        destination = EndpointFactory(
            host=imap_server.host,
            port=imap_server.imap_port,
            security="plain",
            verify_tls=False,
            max_connections=max_connections,
        )
        task = TaskFactory(source=source, destination=destination)
        users = users or [(make_imap_user(), make_imap_user()) for _ in range(pairs)]
        for src, dst in users:
            AccountFactory(
                task=task,
                tested=True,
                source_user=src.username,
                source_password=src.password,
                destination_user=dst.username,
                destination_password=dst.password,
            )
        return task, users

    return make
