"""Fixtures for tests that talk to a real Dovecot (see tests/support/dovecot.py).

imap_server         session: Dovecot with '/' delimiter and no personal prefix (sdbox)
imap_server_dotted  session: Dovecot with '.' delimiter and the "INBOX." prefix (Maildir++)
imap_user           a fresh user on imap_server
make_imap_user      factory: make_imap_user(server=None, **add_user_kwargs) -> ImapUser

If Dovecot cannot start, every test using these fails with Dovecot's own words: never a skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.dovecot import Dovecot, DovecotError, ImapUser


def _start(layout: str) -> Dovecot:
    try:
        return Dovecot(layout)
    except (DovecotError, OSError) as exc:
        pytest.fail(f"the test Dovecot ({layout}) could not start:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def imap_server() -> Iterator[Dovecot]:
    server = _start("slash")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def imap_server_dotted() -> Iterator[Dovecot]:
    server = _start("dotted")
    yield server
    server.stop()


@pytest.fixture
def make_imap_user(imap_server: Dovecot) -> Callable[..., ImapUser]:
    def make(server: Dovecot | None = None, **kwargs: object) -> ImapUser:
        return (server or imap_server).add_user(**kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def imap_user(imap_server: Dovecot) -> ImapUser:
    return imap_server.add_user()
