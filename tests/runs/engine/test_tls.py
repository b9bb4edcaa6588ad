"""One TLS rule for every connection (issue 13 R2, issue 14 item 1), against the real Dovecot.

The "system store" is pointed at a file with SSL_CERT_FILE (OpenSSL reads it when a context loads
its default certificates), so a test can make the system trust the test server, or not.
"""

from __future__ import annotations

import ssl

import pytest

from runs.engine import ErrorKind, Outcome, copy_account, test_connection, tls_context
from runs.engine import connect as connect_module
from runs.engine.filestate import MemoryStateStore
from tests.runs.engine.helpers import assert_same_folder
from tests.support.dovecot import fill, make_message, make_self_signed_certificate

pytestmark = pytest.mark.imap


@pytest.fixture
def fresh_contexts():
    """Contexts are cached per process: start and end each test with none built."""
    connect_module._cached_tls_context.cache_clear()
    yield
    connect_module._cached_tls_context.cache_clear()


@pytest.fixture
def system_store_trusts_the_server(imap_server, tmp_path, monkeypatch, fresh_contexts):
    store = tmp_path / "system-store.pem"
    store.write_text(imap_server.ca_certificate)
    monkeypatch.setenv("SSL_CERT_FILE", str(store))


@pytest.fixture
def builds(monkeypatch, fresh_contexts) -> list[tuple]:
    """Every TLS context the engine builds (the real one is built and returned)."""
    made: list[tuple] = []
    real = ssl.create_default_context

    def counting(*args, **kwargs):
        made.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(connect_module.ssl, "create_default_context", counting)
    return made


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_a_custom_ca_is_trusted_instead_of_the_system_store(
    imap_server, imap_user, system_store_trusts_the_server, security
):
    assert test_connection(imap_server.mailbox(imap_user, security=security, verify_tls=True)).ok
    other_ca, _key = make_self_signed_certificate("another-ca")
    refused = test_connection(
        imap_server.mailbox(imap_user, security=security, verify_tls=True, ca_certificate=other_ca)
    )
    assert (refused.ok, refused.kind) == (False, ErrorKind.TLS)
    assert "certificate verify failed" in refused.message
    own = imap_server.mailbox(imap_user, security=security, verify_tls=True, ca_certificate=imap_server.ca_certificate)
    assert test_connection(own).ok


def test_plain_imap_builds_no_tls_context(imap_server, imap_user, builds):
    for _ in range(3):
        assert test_connection(imap_server.mailbox(imap_user)).ok
    assert builds == []


def test_tls_contexts_are_built_once_per_verify_mode_and_ca(imap_server, imap_user, builds):
    with_ca = imap_server.mailbox(imap_user, security="ssl", verify_tls=True, ca_certificate=imap_server.ca_certificate)
    insecure = imap_server.mailbox(imap_user, security="starttls", verify_tls=False)
    for _ in range(3):
        assert test_connection(with_ca).ok
        assert test_connection(insecure).ok
    assert len(builds) == 2
    assert tls_context(True, imap_server.ca_certificate) is tls_context(True, "\n" + imap_server.ca_certificate)
    assert tls_context(False, imap_server.ca_certificate) is tls_context(False)  # the CA plays no part


def test_an_unreadable_custom_ca_is_a_tls_failure(imap_server, imap_user, fresh_contexts):
    mailbox = imap_server.mailbox(imap_user, security="ssl", verify_tls=True, ca_certificate="not a certificate")
    result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.TLS)
    assert result.message.startswith("the custom CA certificate could not be read")


@pytest.mark.parametrize("security", ["plain", "ssl", "starttls"])
def test_a_copy_over_each_transport_arrives_byte_for_byte(imap_server, make_imap_user, fresh_contexts, security):
    """Plain, implicit TLS and STARTTLS (where the reader is remade on the TLS socket) all carry many small
    messages and one of several MB without losing or reordering a byte."""
    source, destination = make_imap_user(), make_imap_user()
    messages = [make_message(seed=i) for i in range(60)]
    messages.insert(30, make_message(seed=99, attachment_size=3 * 1024 * 1024))
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(raw, [b"\\Seen"], None) for raw in messages])
    result = copy_account(
        imap_server.mailbox(source, security=security),
        imap_server.mailbox(destination, security=security),
        state=MemoryStateStore(),
    )
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, len(messages), 0), result.reason
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == len(messages)
