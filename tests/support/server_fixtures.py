"""Session fixtures for the Cyrus and Courier test servers (tests/support/cyrus.py, courier.py).

cyrus_server    session: Cyrus IMAP 3.6, "INBOX." with "."
courier_server  session: Courier-IMAP 5.0, "INBOX." with "."

If a server cannot start (not unpacked, start-up failure), every test using it fails with the reason: never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.courier import Courier
from tests.support.cyrus import Cyrus
from tests.support.testbed import ServerProcess, TestbedError


def start_server(kind: type[ServerProcess]) -> ServerProcess:
    """Start a server of `kind` or fail the calling test with the reason."""
    try:
        return kind()
    except (TestbedError, OSError) as exc:
        pytest.fail(f"the test {kind.name} could not start:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def cyrus_server() -> Iterator[Cyrus]:
    server = start_server(Cyrus)
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture(scope="session")
def courier_server() -> Iterator[Courier]:
    server = start_server(Courier)
    yield server  # type: ignore[misc]
    server.stop()
