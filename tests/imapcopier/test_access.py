from __future__ import annotations

import pytest
from django.db import OperationalError
from django.urls import reverse

from tasks.models import Account
from tests.support.factories import AccountFactory

pytestmark = pytest.mark.django_db

SECRET = "hunter2-Correct-Horse-9"


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_says_503_when_the_database_does_not_answer(client, monkeypatch):
    from imapcopier import views

    def broken_cursor():
        raise OperationalError("connection refused")

    monkeypatch.setattr(views.connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


@pytest.mark.parametrize("path", ["/", "/admin/", "/api/tasks/1"])
def test_pages_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code in (302, 401, 403)
    if response.status_code == 302:
        assert "login" in response["Location"]


def test_the_login_page_and_static_files_are_public(client):
    assert client.get(reverse("login")).status_code == 200
    response = client.get("/static/css/app.css")
    assert response.status_code == 200


def test_admin_never_renders_a_stored_password_and_blank_keeps_it(client, admin_user):
    client.force_login(admin_user)
    account = AccountFactory(source_password=SECRET, destination_password=SECRET + "-dst")
    url = reverse("admin:tasks_account_change", args=[account.pk])

    page = client.get(url)
    assert page.status_code == 200
    assert SECRET.encode() not in page.content

    response = client.post(
        url,
        {
            "task": account.task_id,
            "source_user": "renamed@source.test",
            "source_password": "",
            "destination_user": account.destination_user,
            "destination_password": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    account = Account.objects.get(pk=account.pk)
    assert account.source_user == "renamed@source.test"
    assert account.source_password == SECRET
    assert account.destination_password == SECRET + "-dst"


@pytest.mark.parametrize("model", ["endpoint", "task", "account", "run", "accountrun", "folderstate"])
def test_admin_lists_every_model(client, admin_user, model):
    client.force_login(admin_user)
    app = "tasks" if model in {"endpoint", "task", "account"} else "runs"
    assert client.get(reverse(f"admin:{app}_{model}_changelist")).status_code == 200
