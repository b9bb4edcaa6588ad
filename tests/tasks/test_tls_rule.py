"""The endpoint page's "Test connection" and the copy trust the same certificates (issue 13 R2)."""

from __future__ import annotations

import pytest

from runs.engine import connect as connect_module
from runs.engine import test_connection
from tasks.services_probe import probe_server
from tests.support.dovecot import make_self_signed_certificate

pytestmark = pytest.mark.imap


@pytest.fixture
def system_store_trusts_the_server(imap_server, tmp_path, monkeypatch):
    store = tmp_path / "system-store.pem"
    store.write_text(imap_server.ca_certificate)
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    connect_module._cached_tls_context.cache_clear()
    yield
    connect_module._cached_tls_context.cache_clear()


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_the_probe_and_the_copy_agree_on_a_custom_ca(imap_server, imap_user, system_store_trusts_the_server, security):
    other_ca, _key = make_self_signed_certificate("another-ca")
    port = imap_server.port_for(security)
    for ca, trusted in (("", True), (other_ca, False), (imap_server.ca_certificate, True)):
        probe = probe_server("127.0.0.1", port, security, verify_tls=True, ca_certificate=ca)
        copy_side = test_connection(
            imap_server.mailbox(imap_user, security=security, verify_tls=True, ca_certificate=ca)
        )
        assert (probe.ok, copy_side.ok) == (trusted, trusted), (ca[:30], probe.message, copy_side.message)
