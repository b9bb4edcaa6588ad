"""The test bed itself: the private Dovecot, its users and limits, the message helpers, the fault proxy."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import socket
import ssl
import time

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, LoginError

from runs.engine.types import Security
from tests.support import dovecot as dovecot_module
from tests.support import imap_fixtures
from tests.support.dovecot import (
    AppendRefused,
    Dovecot,
    DovecotError,
    as_served,
    fill,
    folder_names,
    make_message,
    read,
)
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.imap

UTC_MINUS_5 = dt.timezone(dt.timedelta(hours=-5))


def awkward_messages() -> list[tuple[bytes, tuple[str, ...], dt.datetime]]:
    return [
        (
            make_message(subject="plain", seed=1),
            ("\\Seen",),
            dt.datetime(2019, 5, 6, 7, 8, 9, tzinfo=UTC_MINUS_5),
        ),
        (
            make_message(subject="Grüße", eight_bit=True, bare_lf=True, seed=2),
            ("\\Flagged", "$Label1"),
            dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC),
        ),
        (
            make_message(subject="no id", message_id=None, long_line=12000, seed=3),
            (),
            dt.datetime(2001, 1, 1, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        ),
        (
            make_message(subject="attachment", attachment_size=70_000, seed=4),
            ("\\Answered", "\\Seen"),
            dt.datetime(2022, 12, 31, 12, 0, 0, tzinfo=dt.UTC),
        ),
    ]


@pytest.mark.parametrize("security", ["plain", "ssl", "starttls"])
def test_login_list_append_fetch_round_trip(imap_server, imap_user, security):
    client = imap_server.connect(imap_user, security)
    try:
        if security != "plain":
            assert client._imap.sock.version().startswith("TLS")  # really encrypted
        folders = folder_names(client)
        assert "INBOX" in folders
        messages = awkward_messages()
        uids = fill(client, "Archive/2019", messages)
        assert len(uids) == len(messages)
        assert "Archive/2019" in folder_names(client)
        stored = read(client, "Archive/2019")
    finally:
        client.logout()
    assert [s.uid for s in stored] == uids
    for (raw, flags, when), got in zip(messages, stored, strict=True):
        # Byte for byte, except that Dovecot serves a bare LF as CRLF.
        assert got.sha256 == hashlib.sha256(as_served(raw)).hexdigest()
        assert got.size == len(as_served(raw))
        assert got.flags == tuple(sorted(flags))
        assert got.internaldate.tzinfo is not None
        assert got.internaldate == when  # same instant (Dovecot reports it in its own zone)
    assert stored[2].message_id is None
    assert stored[0].message_id and stored[0].message_id.startswith("<")


def test_capabilities_the_engine_relies_on(imap_server, imap_user):
    client = imap_server.connect(imap_user)
    try:
        caps = set(client.capabilities())
    finally:
        client.logout()
    for needed in (
        b"IMAP4REV1",
        b"LITERAL+",
        b"MULTIAPPEND",
        b"UIDPLUS",
        b"CONDSTORE",
        b"QRESYNC",
        b"SPECIAL-USE",
        b"QUOTA",
        b"NAMESPACE",
        b"MOVE",
    ):
        assert needed in caps
    assert not any(c.startswith(b"APPENDLIMIT") for c in caps)


def test_special_use_folders_are_there(imap_server, imap_user):
    client = imap_server.connect(imap_user)
    try:
        uses = {
            name: [f for f in flags if f in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk")]
            for flags, _delim, name in client.list_folders()
        }
    finally:
        client.logout()
    assert uses["Sent"] == [b"\\Sent"]
    assert uses["Drafts"] == [b"\\Drafts"]
    assert uses["Trash"] == [b"\\Trash"]
    assert uses["Junk"] == [b"\\Junk"]


def test_tls_verification_against_the_system_store_fails(imap_server, imap_user):
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            imap_server.host,
            port=imap_server.imaps_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=10,
        )
    client = IMAPClient(imap_server.host, port=imap_server.imap_port, ssl=False, timeout=10)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(ssl.create_default_context())
    finally:
        with contextlib.suppress(OSError):  # the failed handshake closed the socket already
            client.shutdown()


def test_certificate_verifies_for_localhost_and_loopback(imap_server):
    context = imap_server.ssl_context()
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    # IMAPClient checks the host it was given: 127.0.0.1 must be in the certificate.
    client = IMAPClient(
        "127.0.0.1",
        port=imap_server.imaps_port,
        ssl=True,
        ssl_context=context,
        timeout=10,
    )
    client.shutdown()
    with (
        socket.create_connection(("127.0.0.1", imap_server.imaps_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(4) == b"* OK"
    with (
        socket.create_connection(("127.0.0.1", imap_server.imaps_port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname"),
    ):
        context.wrap_socket(raw, server_hostname="mail.example.org")


def test_wrong_password_is_refused(imap_server, imap_user):
    client = IMAPClient(imap_server.host, port=imap_server.imap_port, ssl=False, timeout=10)
    try:
        with pytest.raises(LoginError, match=r"\[AUTHENTICATIONFAILED\]"):
            client.login(imap_user.username, imap_user.password + "x")
        with pytest.raises(LoginError, match=r"\[AUTHENTICATIONFAILED\]"):
            client.login("nobody-here", "whatever")
    finally:
        client.shutdown()


def test_changed_password_applies_at_once(imap_server, make_imap_user):
    user = make_imap_user()
    imap_server.connect(user).logout()
    changed = imap_server.set_password(user, "s3cond-Password")
    imap_server.connect(changed).logout()
    client = IMAPClient(imap_server.host, port=imap_server.imap_port, ssl=False, timeout=10)
    try:
        with pytest.raises(LoginError):
            client.login(user.username, user.password)
    finally:
        client.shutdown()


def test_users_are_independent_and_named_uniquely(imap_server, make_imap_user, imap_server_dotted):
    first, second = make_imap_user(), make_imap_user()
    assert first.username != second.username
    assert first.password != second.password
    named = make_imap_user(username="carol@example.org", password="pw-carol")
    assert (named.username, named.password) == ("carol@example.org", "pw-carol")
    on_dotted = make_imap_user(imap_server_dotted)
    imap_server_dotted.connect(on_dotted).logout()
    client = imap_server.connect(first)
    fill(client, "INBOX", [(make_message(), (), None)])
    client.logout()
    client = imap_server.connect(second)
    assert read(client, "INBOX") == []
    client.logout()
    with pytest.raises(ValueError):
        make_imap_user(username="bad:name")


def test_mailbox_picks_the_port_for_the_security_mode(imap_server, imap_user):
    plain = imap_server.mailbox(imap_user)
    assert (plain.host, plain.port, plain.security) == (
        "127.0.0.1",
        imap_server.imap_port,
        Security.PLAIN,
    )
    tls = imap_server.mailbox(imap_user, "ssl", verify_tls=True, ca_certificate=imap_server.ca_certificate)
    assert (tls.port, tls.security, tls.verify_tls) == (
        imap_server.imaps_port,
        Security.SSL,
        True,
    )
    assert tls.ca_certificate.startswith("-----BEGIN CERTIFICATE-----")
    starttls = imap_server.mailbox(imap_user, "starttls")
    assert (starttls.port, starttls.security) == (
        imap_server.imap_port,
        Security.STARTTLS,
    )
    assert (plain.username, plain.password) == (imap_user.username, imap_user.password)
    assert imap_user.password not in repr(plain) and imap_user.password not in repr(imap_user)


def test_dotted_server_has_dot_delimiter_and_inbox_prefix(imap_server_dotted, make_imap_user):
    server = imap_server_dotted
    assert (server.delimiter, server.prefix) == (".", "INBOX.")
    user = make_imap_user(server)
    client = server.connect(user)
    try:
        assert client.namespace().personal == (("INBOX.", "."),)
        fill(client, "INBOX.Projects.Пример & Co", [(make_message(), ("\\Seen",), None)])
        listed = {name: delim for _flags, delim, name in client.list_folders()}
        assert listed["INBOX.Projects.Пример & Co"] == b"."
        assert "INBOX.Projects" in listed
        assert {"INBOX.Sent", "INBOX.Drafts", "INBOX.Trash", "INBOX.Junk"} <= set(listed)
        assert len(read(client, "INBOX.Projects.Пример & Co")) == 1
    finally:
        client.logout()


def test_slash_server_has_slash_delimiter_and_no_prefix(imap_server, imap_user):
    client = imap_server.connect(imap_user)
    try:
        assert client.namespace().personal == (("", "/"),)
        fill(client, "Clients/ACME & Sons/2020.Q1", [(make_message(), (), None)])
        listed = {name: delim for _flags, delim, name in client.list_folders()}
    finally:
        client.logout()
    assert listed["Clients/ACME & Sons/2020.Q1"] == b"/"
    assert (imap_server.delimiter, imap_server.prefix) == ("/", "")


def test_quota_refuses_an_append_with_dovecots_words(imap_server, make_imap_user):
    user = make_imap_user(quota_bytes=6_000)
    client = imap_server.connect(user)
    try:
        fill(client, "INBOX", [(make_message(attachment_size=2_000, seed=1), (), None)])
        with pytest.raises(AppendRefused) as refused:
            fill(
                client,
                "INBOX",
                [(make_message(attachment_size=4_000, seed=2), (), None)],
            )
        assert "[OVERQUOTA]" in refused.value.words
        assert "Quota exceeded" in refused.value.words
        assert len(read(client, "INBOX")) == 1
        root = client.get_quota_root("INBOX")
    finally:
        client.logout()
    limit_kib = root[1][0].limit  # STORAGE in KiB, rounded up: 6000 bytes -> 6
    assert (limit_kib - 1) * 1024 < 6_000 <= limit_kib * 1024
    assert "STORAGE" in imap_server.quota(user)


def test_message_size_limit_refuses_and_is_advertised(imap_server, make_imap_user):
    user = make_imap_user(max_message_bytes=10_000)
    client = imap_server.connect(user)
    try:
        assert b"APPENDLIMIT=10000" in client.capabilities()
        fill(client, "INBOX", [(make_message(attachment_size=5_000), (), None)])
        with pytest.raises(AppendRefused) as refused:
            fill(client, "INBOX", [(make_message(attachment_size=9_000), (), None)])
        assert "[LIMIT] Mail size is larger than the maximum size" in refused.value.words
        assert len(read(client, "INBOX")) == 1
    finally:
        client.logout()
    silent = make_imap_user(max_message_bytes=10_000, advertise_appendlimit=False)
    client = imap_server.connect(silent)
    try:
        assert not any(c.startswith(b"APPENDLIMIT") for c in client.capabilities())
        with pytest.raises(AppendRefused, match=r"\[LIMIT\]"):
            fill(client, "INBOX", [(make_message(attachment_size=9_000), (), None)])
    finally:
        client.logout()


def _wait_for_count(server, username, expected, timeout=5.0):
    deadline = time.monotonic() + timeout
    count = server.connection_count(username)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = server.connection_count(username)
    return count


def test_connection_count_sees_open_connections(imap_server, make_imap_user):
    user = make_imap_user()
    assert imap_server.connection_count(user.username) == 0
    first = imap_server.connect(user)
    second = imap_server.connect(user, "ssl")
    try:
        assert _wait_for_count(imap_server, user.username, 2) == 2
        assert imap_server.connection_count() >= 2
    finally:
        first.logout()
    assert _wait_for_count(imap_server, user.username, 1) == 1
    second.logout()
    assert _wait_for_count(imap_server, user.username, 0) == 0


def test_many_connections_per_user_are_allowed(imap_server, make_imap_user):
    user = make_imap_user()
    clients = [imap_server.connect(user) for _ in range(15)]  # Dovecot's default would stop at 10
    try:
        assert _wait_for_count(imap_server, user.username, 15) == 15
    finally:
        for client in clients:
            client.logout()


def test_dovecot_serves_bare_lf_as_crlf(imap_server, imap_user):
    raw = make_message(bare_lf=True, seed=11)
    client = imap_server.connect(imap_user)
    try:
        fill(client, "INBOX", [(raw, (), None)])
        client.select_folder("INBOX", readonly=True)
        body = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
    finally:
        client.logout()
    (served,) = [item[b"BODY[]"] for item in body.values()]
    assert served != raw
    assert served == as_served(raw) == raw.replace(b"\n", b"\r\n")
    crlf = make_message(seed=11, message_id="x@example.org")
    assert as_served(crlf) == crlf


def test_set_uidvalidity_changes_what_clients_see(imap_server, imap_user):
    client = imap_server.connect(imap_user)
    try:
        fill(client, "Projects/Ünïcode", [(make_message(), ("\\Seen",), None)])
        before = client.folder_status("Projects/Ünïcode", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        imap_server.set_uidvalidity(imap_user, "Projects/Ünïcode", before + 1000)
        after = client.folder_status("Projects/Ünïcode", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        assert after == before + 1000
        assert [m.uid for m in read(client, "Projects/Ünïcode")] == [1]
    finally:
        client.logout()


def test_extra_config_can_take_capabilities_away_and_fill_still_works():
    with Dovecot(extra_config="protocol imap {\n  imap_capability = IMAP4rev1 UIDPLUS NAMESPACE\n}\n") as server:
        user = server.add_user()
        client = server.connect(user)
        try:
            assert set(client.capabilities()) == {b"IMAP4REV1", b"UIDPLUS", b"NAMESPACE"}
            messages = awkward_messages()
            assert len(fill(client, "Old", messages)) == len(messages)  # one APPEND each, sync literals
            stored = read(client, "Old")
        finally:
            client.logout()
    assert [s.sha256 for s in stored] == [hashlib.sha256(as_served(raw)).hexdigest() for raw, _f, _d in messages]
    assert not server.running


def test_a_dovecot_that_cannot_start_says_why():
    with pytest.raises(DovecotError, match="Unknown setting: no_such_setting") as failed:
        Dovecot(extra_config="no_such_setting = 1\n")
    assert "Dovecot exited during start-up" in str(failed.value)


def test_the_fixture_fails_rather_than_skips_when_dovecot_cannot_start(monkeypatch):
    monkeypatch.setattr(dovecot_module, "DOVECOT_BINARY", "/nonexistent/dovecot")
    with pytest.raises(pytest.fail.Exception, match="(?s)could not start.*dovecot-imapd"):
        imap_fixtures._start("slash")


def test_make_message_variants():
    plain = make_message(seed=1)
    assert b"\r\n" in plain and b"\n" not in plain.replace(b"\r\n", b"")
    assert b"Message-ID: <" in plain
    bare = make_message(bare_lf=True, seed=1)
    assert b"\r" not in bare
    assert b"Message-ID" not in make_message(message_id=None)
    assert b"Message-ID: <same@example.org>" in make_message(message_id="same@example.org")
    eight = make_message(eight_bit=True, subject="Grüße")
    assert "Grüße".encode() in eight and b"Content-Transfer-Encoding: 8bit" in eight
    big = make_message(attachment_size=100_000, seed=7, message_id="fixed@example.org")
    assert len(big) > 133_000 and b"Content-Disposition: attachment" in big
    assert big == make_message(attachment_size=100_000, seed=7, message_id="fixed@example.org")
    assert make_message(seed=1) != make_message(seed=1)  # generated Message-IDs are unique
    assert max(len(line) for line in make_message(long_line=20_000).split(b"\r\n")) == 20_000


# ------------------------------------------------------------------ fault proxy


def _client_via(proxy, user, timeout=10.0):
    client = IMAPClient(proxy.host, port=proxy.port, ssl=False, timeout=timeout)
    client.login(user.username, user.password)
    return client


@pytest.fixture
def filled_user(imap_server, make_imap_user):
    """A user with five 300 KB messages in INBOX."""
    user = make_imap_user()
    client = imap_server.connect(user)
    fill(
        client,
        "INBOX",
        [(make_message(attachment_size=300_000, seed=n), ("\\Seen",), None) for n in range(5)],
    )
    client.logout()
    return user


def test_proxy_forwards_and_counts_connections(imap_server, filled_user):
    with FaultProxy(imap_server.imap_port) as proxy:
        clients = [_client_via(proxy, filled_user) for _ in range(3)]
        assert (proxy.accepted, proxy.current, proxy.max_concurrent) == (3, 3, 3)
        assert len(read(clients[0], "INBOX")) == 5
        for client in clients:
            client.logout()
        assert proxy.wait_until(lambda: proxy.current == 0)
        assert proxy.max_concurrent == 3
        _client_via(proxy, filled_user).logout()
        assert proxy.accepted == 4 and proxy.max_concurrent == 3
        assert proxy.faults_fired == 0
        assert proxy.bytes_from_server > 5 * 300_000 * 4 // 3  # five base64 attachments went through
        assert 100 < proxy.bytes_from_client < 2_000
        # The proxy sees the last logout's close a moment later; reset once it has.
        assert proxy.wait_until(lambda: proxy.current == 0)
        proxy.reset_counters()
        assert (proxy.accepted, proxy.max_concurrent, proxy.bytes_from_server, proxy.bytes_from_client) == (0, 0, 0, 0)


def test_proxy_cut_mid_fetch_drops_the_client(imap_server, filled_user):
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.cut_after(server_bytes=500_000)
        client = _client_via(proxy, filled_user)
        client.select_folder("INBOX", readonly=True)
        with pytest.raises(IMAPClientAbortError, match="EOF"):
            client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
        assert proxy.faults_fired == 1
        # Only the first connection was cut: the next one reads everything.
        again = _client_via(proxy, filled_user)
        assert len(read(again, "INBOX")) == 5
        again.logout()
        assert proxy.faults_fired == 1


def test_proxy_cut_with_reset_gives_a_socket_error(imap_server, filled_user):
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.cut_after(server_bytes=100_000, reset=True)
        client = _client_via(proxy, filled_user)
        client.select_folder("INBOX", readonly=True)
        with pytest.raises((IMAPClientAbortError, ConnectionResetError)):
            client.fetch(client.search("ALL"), ["BODY.PEEK[]"])


def test_proxy_cut_mid_append_for_the_first_two_connections(imap_server, make_imap_user):
    user = make_imap_user()
    big = make_message(attachment_size=2_000_000, seed=5)
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.cut_after(client_bytes=1_000_000, connections=2)
        for _ in range(2):
            client = _client_via(proxy, user)
            with pytest.raises((IMAPClientAbortError, OSError)):
                client.append("INBOX", big)
        client = _client_via(proxy, user)
        client.append("INBOX", big)
        client.logout()
        assert proxy.faults_fired == 2
    client = imap_server.connect(user)
    assert len(read(client, "INBOX")) == 1  # the cut APPENDs left nothing behind
    client.logout()


def test_proxy_bye_at_next_command(imap_server, filled_user):
    with FaultProxy(imap_server.imap_port) as proxy:
        client = _client_via(proxy, filled_user)
        client.noop()
        proxy.bye_at_next_command()
        with pytest.raises(IMAPClientAbortError, match="Fault injected by the test proxy"):
            client.select_folder("INBOX")
        assert proxy.wait_until(lambda: proxy.current == 0)
        proxy.bye_at_next_command(open_connections=False, new_connections=1)
        with pytest.raises(IMAPClientAbortError, match="Fault injected"):
            _client_via(proxy, filled_user)  # imaplib's first command: CAPABILITY
        _client_via(proxy, filled_user).logout()  # only one new connection was affected


def test_proxy_stall_makes_the_client_time_out(imap_server, filled_user):
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.stall_new()
        started = time.monotonic()
        with pytest.raises((TimeoutError, IMAPClientAbortError)):
            IMAPClient(proxy.host, port=proxy.port, ssl=False, timeout=0.5)
        assert time.monotonic() - started < 5
        proxy.stall_after(server_bytes=200_000)
        client = _client_via(proxy, filled_user, timeout=0.5)
        client.select_folder("INBOX", readonly=True)
        with pytest.raises((TimeoutError, IMAPClientAbortError)):
            client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
        assert proxy.faults_fired == 1


def test_proxy_delay_and_cut_all(imap_server, filled_user):
    with FaultProxy(imap_server.imap_port, delay=0.05) as proxy:
        started = time.monotonic()
        client = _client_via(proxy, filled_user)
        assert time.monotonic() - started >= 0.1  # greeting and LOGIN answer each waited
        proxy.delay = 0
        assert proxy.cut_all() == 1
        with pytest.raises((IMAPClientAbortError, OSError)):
            client.noop()


def test_proxy_stops_by_itself_and_when_asked(imap_server):
    proxy = FaultProxy(imap_server.imap_port, lifetime=0.3)
    assert proxy.wait_until(lambda: not proxy.running, timeout=3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=2)
    with FaultProxy(imap_server.imap_port) as proxy:
        port = proxy.port
    assert not proxy.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with pytest.raises(ValueError):
        proxy.cut_after(server_bytes=1, client_bytes=1)
