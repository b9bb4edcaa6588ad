from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from tasks.models import Endpoint
from tests.support.factories import EndpointFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def unused_tcp_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_endpoint_list_shows_each_endpoint_and_its_use(admin_client):
    used = EndpointFactory(label="Old server", host="imap.old.test")
    EndpointFactory(label="Spare", verify_tls=False)
    TaskFactory(source=used)
    response = admin_client.get(reverse("tasks:endpoint_list"))
    assert response.status_code == 200
    assert b"Old server" in response.content
    assert b"imap.old.test:993" in response.content
    assert b"source of 1" in response.content
    assert b"not checked" in response.content


def test_endpoint_list_without_endpoints_offers_to_create_one(admin_client):
    response = admin_client.get(reverse("tasks:endpoint_list"))
    assert b"No endpoints yet" in response.content


def test_create_endpoint_saves_it(admin_client):
    response = admin_client.post(
        reverse("tasks:endpoint_create"),
        {
            "label": "New",
            "host": "imap.new.test",
            "port": "143",
            "security": "starttls",
            "verify_tls": "on",
            "ca_certificate": "",
            "max_connections": "5",
        },
    )
    endpoint = Endpoint.objects.get(label="New")
    assert response.status_code == 302
    assert response["Location"] == reverse("tasks:endpoint_edit", args=[endpoint.pk])
    assert (endpoint.port, endpoint.security, endpoint.max_connections) == (
        143,
        "starttls",
        5,
    )
    assert endpoint.verify_tls is True


def test_bad_port_is_reported_next_to_the_port_field(admin_client):
    response = admin_client.post(
        reverse("tasks:endpoint_create"),
        {
            "label": "X",
            "host": "h",
            "port": "70000",
            "security": "ssl",
            "max_connections": "1",
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_port-errors"' in html
    assert "less than or equal to 65535" in html
    assert not Endpoint.objects.exists()


def test_duplicate_label_and_bad_ca_are_refused_per_field(admin_client):
    EndpointFactory(label="Taken")
    response = admin_client.post(
        reverse("tasks:endpoint_create"),
        {
            "label": "Taken",
            "host": "h",
            "port": "993",
            "security": "ssl",
            "max_connections": "1",
            "ca_certificate": "not a certificate",
        },
    )
    html = response.content.decode()
    assert 'id="id_label-errors"' in html
    assert 'id="id_ca_certificate-errors"' in html
    assert "PEM" in html
    assert Endpoint.objects.count() == 1


def test_edit_page_warns_when_certificate_verification_is_off(admin_client):
    endpoint = EndpointFactory(verify_tls=False)
    response = admin_client.get(reverse("tasks:endpoint_edit", args=[endpoint.pk]))
    assert b"tls-warning saved-off" in response.content


def test_edit_page_has_no_warning_when_verification_is_on(admin_client):
    endpoint = EndpointFactory(verify_tls=True)
    response = admin_client.get(reverse("tasks:endpoint_edit", args=[endpoint.pk]))
    # the warning is in the page for the checkbox (CSS shows it when unchecked), but not shown as saved
    assert b"tls-warning saved-off" not in response.content


def test_edit_endpoint_saves_changes(admin_client):
    endpoint = EndpointFactory(label="A", max_connections=10)
    response = admin_client.post(
        reverse("tasks:endpoint_edit", args=[endpoint.pk]),
        {
            "label": "A",
            "host": "imap.a.test",
            "port": "993",
            "security": "ssl",
            "max_connections": "3",
        },
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.max_connections == 3
    assert endpoint.verify_tls is False  # an unchecked box is off


def test_delete_unused_endpoint(admin_client):
    endpoint = EndpointFactory()
    confirm = admin_client.get(reverse("tasks:endpoint_delete", args=[endpoint.pk]))
    assert b"Delete endpoint" in confirm.content
    response = admin_client.post(reverse("tasks:endpoint_delete", args=[endpoint.pk]))
    assert response.status_code == 302
    assert not Endpoint.objects.exists()


def test_delete_is_refused_while_a_task_uses_the_endpoint(admin_client):
    task = TaskFactory(name="Migration A")
    endpoint = task.destination
    confirm = admin_client.get(reverse("tasks:endpoint_delete", args=[endpoint.pk]))
    assert b"cannot be deleted" in confirm.content
    assert b"Migration A" in confirm.content
    response = admin_client.post(reverse("tasks:endpoint_delete", args=[endpoint.pk]), follow=True)
    assert Endpoint.objects.filter(pk=endpoint.pk).exists()
    assert "is used by task “Migration A” and cannot be deleted" in response.content.decode()


def test_endpoint_pages_need_a_login(client):
    response = client.get(reverse("tasks:endpoint_list"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_test_connection_needs_post(admin_client):
    endpoint = EndpointFactory()
    response = admin_client.get(reverse("tasks:endpoint_test", args=[endpoint.pk]))
    assert response.status_code == 405


def test_test_connection_to_a_closed_port_says_so(admin_client, unused_tcp_port):
    endpoint = EndpointFactory(port=unused_tcp_port, security="plain")
    response = admin_client.post(
        reverse("tasks:endpoint_test", args=[endpoint.pk]),
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Connection failed" in html
    assert "connection refused" in html
    assert "<html" not in html  # a partial for htmx


def test_test_connection_without_javascript_renders_the_whole_page(admin_client, unused_tcp_port):
    endpoint = EndpointFactory(port=unused_tcp_port, security="plain")
    response = admin_client.post(reverse("tasks:endpoint_test", args=[endpoint.pk]))
    html = response.content.decode()
    assert "<html" in html and "Connection failed" in html
