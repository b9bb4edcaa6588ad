from __future__ import annotations

import pytest

from runs import orchestrator
from tests.support.factories import AccountFactory, EndpointFactory, TaskFactory


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

    def make(
        pairs: int = 1,
        *,
        max_connections: int = 10,
        users=None,
        source_port: int | None = None,
        destination_port: int | None = None,
    ):
        source = EndpointFactory(
            host=imap_server.host,
            port=source_port or imap_server.imap_port,
            security="plain",
            verify_tls=False,
            max_connections=max_connections,
        )
        destination = EndpointFactory(
            host=imap_server.host,
            port=destination_port or imap_server.imap_port,
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


def fill_user(server, user, folders: dict[str, int], *, size: int = 0, seed: str = "") -> int:
    """Put `count` distinct messages in each folder of a Dovecot user; returns the total."""
    from tests.support.dovecot import fill, make_message

    client = server.connect(user)
    try:
        for folder, count in folders.items():
            fill(
                client,
                folder,
                [
                    (
                        make_message(
                            subject=f"{folder} {i}",
                            seed=f"{seed}{user.username}{folder}{i}",
                            attachment_size=size,
                        ),
                        ["\\Seen"] if i % 2 else [],
                        None,
                    )
                    for i in range(count)
                ],
            )
    finally:
        client.logout()
    return sum(folders.values())


def mail_hashes(server, user) -> dict[str, list[str]]:
    """Every folder's message hashes (sha256 of BODY[]), sorted: compare two mailboxes with ==."""
    from tests.support.dovecot import read

    client = server.connect(user)
    try:
        selectable = [
            name for flags, _delim, name in client.list_folders() if not {b"\\Noselect", b"\\NonExistent"} & set(flags)
        ]
        return {folder: sorted(m.sha256 for m in read(client, folder)) for folder in sorted(selectable)}
    finally:
        client.logout()


def message_count(server, user) -> int:
    return sum(len(v) for v in mail_hashes(server, user).values())
