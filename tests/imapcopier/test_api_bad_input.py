"""Bad input to the JSON API answers JSON, never a 500 or an HTML page (issue 15, finding 6), and
GET /api/tasks/<id> pages its accounts instead of embedding every one."""

from __future__ import annotations

import pytest

from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db


def put_raw(client, task_id: int, body: bytes):
    return client.put(f"/api/tasks/{task_id}/schedule", data=body, content_type="application/json")


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_deeply_nested_json_is_400_json(admin_client, depth):
    task = TaskFactory()
    response = put_raw(admin_client, task.pk, b"[" * depth + b"]" * depth)
    assert response.status_code == 400
    assert response.json() == {"error": "request body is nested too deeply"}


def test_an_over_size_body_is_413_json(admin_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    task = TaskFactory()
    body = b'{"interval_seconds": 0, "pad": "' + b"x" * 2000 + b'"}'
    response = put_raw(admin_client, task.pk, body)
    assert response.status_code == 413
    assert response.json() == {"error": "request body is too large"}
    task.refresh_from_db()
    assert task.schedule_interval_seconds == 0


def test_task_accounts_come_in_pages(admin_client):
    task = TaskFactory()
    accounts = AccountFactory.create_batch(7, task=task)
    first = admin_client.get(f"/api/tasks/{task.pk}?per_page=3").json()
    assert [a["id"] for a in first["accounts"]] == [a.pk for a in accounts[:3]]
    assert first["accounts_page"] == {
        "page": 1,
        "per_page": 3,
        "total": 7,
        "pages": 3,
        "next": f"http://testserver/api/tasks/{task.pk}?page=2&per_page=3",
    }
    seen = [a["id"] for a in first["accounts"]]
    url = first["accounts_page"]["next"]
    while url:
        page = admin_client.get(url.removeprefix("http://testserver")).json()
        seen += [a["id"] for a in page["accounts"]]
        url = page["accounts_page"]["next"]
    assert seen == [a.pk for a in accounts]
    assert page["accounts_page"]["page"] == 3 and len(page["accounts"]) == 1


def test_the_default_page_holds_500_accounts(admin_client):
    task = TaskFactory()
    AccountFactory.create_batch(501, task=task)
    body = admin_client.get(f"/api/tasks/{task.pk}").json()
    assert len(body["accounts"]) == 500
    assert body["accounts_page"]["pages"] == 2 and body["accounts_page"]["total"] == 501


def test_a_task_without_accounts_has_one_empty_page(admin_client):
    task = TaskFactory()
    body = admin_client.get(f"/api/tasks/{task.pk}").json()
    assert body["accounts"] == []
    assert body["accounts_page"] == {"page": 1, "per_page": 500, "total": 0, "pages": 1, "next": None}


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("page=0", 400, "page must be between 1 and 1000000000"),
        ("page=abc", 400, "page must be a whole number"),
        ("per_page=0", 400, "per_page must be between 1 and 5000"),
        ("per_page=5001", 400, "per_page must be between 1 and 5000"),
        ("page=3", 404, "page 3 not found: the accounts fill 1 page(s)"),
    ],
)
def test_bad_page_parameters_are_json_errors(admin_client, query, status, message):
    task = TaskFactory()
    AccountFactory(task=task)
    response = admin_client.get(f"/api/tasks/{task.pk}?{query}")
    assert response.status_code == status
    assert response.json() == {"error": message}


def test_an_unknown_api_url_is_404_json(admin_client):
    response = admin_client.get("/api/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"error": "not found: no such API path or object"}
    assert admin_client.get("/no/such/page").headers["Content-Type"].startswith("text/html")


def test_a_disallowed_host_under_api_is_400_json(client):
    response = client.get("/api/tasks/1", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.json() == {"error": "bad request"}


def test_a_crash_under_api_is_500_json_without_details(admin_user, monkeypatch):
    from django.test import Client

    from imapcopier import api

    task = TaskFactory()
    monkeypatch.setattr(api, "task_json", lambda task: 1 / 0)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get(f"/api/tasks/{task.pk}")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
