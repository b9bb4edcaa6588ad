"""Endpoint host names are checked when they are entered, not at the first connection (issue 15, finding 6)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tasks.models import Endpoint, host_problem

pytestmark = pytest.mark.django_db


def post_endpoint(client, host: str, url: str | None = None):
    data = {"label": "New", "host": host, "port": "993", "security": "ssl", "verify_tls": "on", "max_connections": "5"}
    return client.post(url or reverse("tasks:endpoint_create"), data)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1:25", "Port field"),
        ("imap.example.com:993", "Port field"),
        ("imaps://imap.example.com", "not a URL"),
        ("imap.example.com/inbox", "not a URL"),
        ("user@imap.example.com", "not a URL"),
        ("imap.example.com\r\nX-Injected: 1", "line breaks"),
        ("imap example.com", "spaces"),
        ("[::1]", "without brackets"),
        ("-bad-.example.com", "not a valid host name"),
        ("under_score.example.com", "not a valid host name"),
        ("a" * 64 + ".example.com", "not a valid host name"),
    ],
)
def test_the_endpoint_form_refuses_what_is_not_a_host_name(admin_client, host, reason):
    response = post_endpoint(admin_client, host)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_host-errors"' in html and reason in html
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    "host", ["imap.example.com", "localhost", "127.0.0.1", "::1", "2001:db8::1", "bücher.example", "imap.example.com."]
)
def test_host_names_and_addresses_are_accepted(admin_client, host):
    assert host_problem(host) == ""
    assert post_endpoint(admin_client, host).status_code == 302
    assert Endpoint.objects.get().host == host


def test_the_admin_refuses_a_host_with_a_port_too(admin_client):
    response = post_endpoint(admin_client, "127.0.0.1:25", reverse("admin:tasks_endpoint_add"))
    assert response.status_code == 200  # the admin re-shows its form with the error
    assert "Port field" in response.content.decode()
    assert not Endpoint.objects.exists()
