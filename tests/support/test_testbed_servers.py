"""The Cyrus and Courier test servers themselves: start, users, what they advertise, how they fail."""

from __future__ import annotations

import datetime as dt

import pytest
from imapclient.exceptions import LoginError

from tests.support import testbed
from tests.support.courier import Courier
from tests.support.cyrus import Cyrus
from tests.support.dovecot import fill, make_message, read
from tests.support.server_fixtures import start_server
from tests.support.testbed import TestbedError

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2020, 2, 29, 12, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))


@pytest.fixture(params=["cyrus", "courier"])
def server(request):
    return request.getfixturevalue(f"{request.param}_server")


def test_login_create_append_and_read_back_byte_exact(server):
    user = server.add_user()
    raw = make_message(subject="round trip", seed=11)
    with server.connect(user) as client:
        folder = server.folder("Projects/Grüße")
        fill(client, folder, [(raw, ("\\Seen", "$Work"), WHEN)])
        [stored] = read(client, folder)
        names = {name for _flags, _delim, name in client.list_folders()}
    assert folder in names
    assert stored.size == len(raw)
    assert stored.flags == ("$Work", "\\Seen")
    assert stored.internaldate == WHEN


def test_users_are_separate(server):
    alice, bob = server.add_user(), server.add_user()
    with server.connect(alice) as client:
        fill(client, "INBOX", [(make_message(seed=12), (), None)])
    with server.connect(bob) as client:
        assert read(client, "INBOX") == []


def test_a_changed_password_applies_at_once_and_the_old_one_is_refused(server):
    user = server.add_user()
    changed = server.set_password(user, "another-secret-1")
    with pytest.raises(LoginError):
        server.connect(user)
    server.connect(changed).logout()


def test_cyrus_advertises_what_the_pitfalls_table_says(cyrus_server):
    user = cyrus_server.add_user()
    with cyrus_server.connect(user) as client:
        caps = set(client.capabilities())
        namespace = client.namespace()
    for cap in (b"LITERAL+", b"UNSELECT", b"CONDSTORE", b"QRESYNC", b"CREATE-SPECIAL-USE", b"SPECIAL-USE", b"UIDPLUS"):
        assert cap in caps
    assert b"APPENDLIMIT=4294967295" in caps
    assert namespace.personal[0] == ("INBOX.", ".")


def test_courier_lacks_what_the_pitfalls_table_says(courier_server):
    user = courier_server.add_user()
    with courier_server.connect(user) as client:
        caps = set(client.capabilities())
        namespace = client.namespace()
        greeting = client.welcome
    for cap in (b"LITERAL+", b"UNSELECT", b"CONDSTORE", b"SPECIAL-USE", b"MULTIAPPEND"):
        assert cap not in caps
    assert b"UIDPLUS" in caps and b"NAMESPACE" in caps
    assert namespace.personal[0] == ("INBOX.", ".")
    assert b"ALERT" not in greeting  # gamin is there: no "[ALERT] Filesystem notification initialization error"


def test_cyrus_rewrites_eight_bit_header_bytes_and_says_ok(cyrus_server):
    # The quirk the engine must notice (issue 10 item 4): the message is stored, altered, with an OK.
    user = cyrus_server.add_user()
    raw = make_message(subject="Grüße", eight_bit=True, seed=13)
    with cyrus_server.connect(user) as client:
        fill(client, "INBOX", [(raw, (), None)])
        [stored] = read(client, "INBOX")
    assert stored.size == len(raw)
    assert stored.sha256 != __import__("hashlib").sha256(raw).hexdigest()


def test_stop_ends_every_process_of_the_server():
    for kind in (Cyrus, Courier):
        server = kind()
        user = server.add_user()
        server.connect(user).logout()
        session = server._process.pid
        assert testbed._session_members(session)
        server.stop()
        assert testbed._session_members(session) == []
        assert not server.workdir.exists()


def test_a_cyrus_that_cannot_start_says_why():
    # An empty httpmodules line: master exits 78 without a word (the pitfall that cost a day).
    with pytest.raises(TestbedError, match="exited during start-up with status 78"):
        Cyrus(extra_config="httpmodules:\n")


def test_the_fixture_fails_rather_than_skips_when_a_server_is_not_unpacked(monkeypatch, tmp_path):
    monkeypatch.setattr(testbed, "TESTBED_ROOT", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="install-imap-servers"):
        start_server(Courier)
