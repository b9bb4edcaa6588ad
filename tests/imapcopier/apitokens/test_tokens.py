"""API tokens (issue 15, finding 1): made in the UI and by `manage.py apitoken`, shown once, stored as a
digest, sent as `Authorization: Bearer`; revoked tokens and inactive users are refused; a browser's
session request that changes state is refused when the browser says it comes from another site."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from imapcopier.apitokens.models import ApiToken, digest
from imapcopier.apitokens.services import create_token
from runs.models import Run
from tasks.models import Task
from tests.support.factories import AccountFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def ready_task() -> Task:
    task = TaskFactory()
    AccountFactory(task=task, tested=True)
    return task


def bearer(text: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {text}"}


def all_database_text() -> str:
    """Every value of every row of the token table, as text: where a leaked token would show."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        return repr(cursor.fetchall())


def test_command_creates_a_token_that_starts_a_run_without_csrf(admin_user):
    out = io.StringIO()
    call_command("apitoken", "create", "admin", "--name", "nightly", stdout=out, stderr=io.StringIO())
    text = out.getvalue().strip()
    assert text.startswith("imc_") and len(text) > 40
    token = ApiToken.objects.get()
    assert token.name == "nightly" and token.user == admin_user
    # Stored as a digest: the token itself is nowhere in the table.
    assert token.digest == digest(text)
    assert text not in all_database_text()

    task = ready_task()
    response = Client(enforce_csrf_checks=True).post(f"/api/tasks/{task.pk}/run", headers=bearer(text))
    assert response.status_code == 202
    assert Run.objects.filter(task=task).count() == 1
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_command_lists_without_the_token_and_revokes(admin_user):
    token, text = create_token(admin_user, "ci", now=timezone.now())
    out = io.StringIO()
    call_command("apitoken", "list", stdout=out)
    assert "ci" in out.getvalue() and token.hint in out.getvalue()
    assert text not in out.getvalue()
    out = io.StringIO()
    call_command("apitoken", "revoke", str(token.pk), stdout=out)
    assert "revoked" in out.getvalue()
    task = ready_task()
    response = Client().post(f"/api/tasks/{task.pk}/run", headers=bearer(text))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked API token"}
    assert not Run.objects.exists()


def test_command_refuses_unknown_users_and_tokens(db):
    with pytest.raises(CommandError, match="no active user"):
        call_command("apitoken", "create", "nobody", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no token"):
        call_command("apitoken", "revoke", "4242", stdout=io.StringIO())


@pytest.mark.parametrize("header", ["Bearer imc_not-a-token", "Bearer ", "Bearer something-else", "bearer imc_x"])
def test_unknown_or_malformed_tokens_are_401(admin_user, header):
    task = ready_task()
    response = Client().post(f"/api/tasks/{task.pk}/run", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked API token"}
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Run.objects.exists()


def test_a_token_of_a_deactivated_user_is_refused(admin_user):
    _token, text = create_token(admin_user, "old", now=timezone.now())
    admin_user.is_active = False
    admin_user.save()
    task = ready_task()
    assert Client().get(f"/api/tasks/{task.pk}", headers=bearer(text)).status_code == 401


def test_ui_shows_a_new_token_once_and_then_only_its_hint(admin_client, admin_user):
    response = admin_client.post(reverse("apitokens:create"), {"name": "backup <script>"})
    assert response.status_code == 201
    token = ApiToken.objects.get(user=admin_user)
    page = response.content.decode()
    text = page.split('id="new-token">')[1].split("<")[0]
    assert token.digest == digest(text)
    assert "backup &lt;script&gt;" in page and "backup <script>" not in page
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]

    listing = admin_client.get(reverse("apitokens:list")).content.decode()
    assert text not in listing
    assert token.hint in listing
    assert Client().get(f"/api/tasks/{ready_task().pk}", headers=bearer(text)).status_code == 200


def test_ui_revokes_a_token_and_only_the_users_own(admin_client, admin_user, django_user_model):
    mine, my_text = create_token(admin_user, "mine", now=timezone.now())
    other_user = django_user_model.objects.create_user("other", password="another long password 7")
    theirs, _ = create_token(other_user, "theirs", now=timezone.now())

    response = admin_client.post(reverse("apitokens:revoke", args=[theirs.pk]))
    assert response.status_code == 302
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert "theirs" not in admin_client.get(reverse("apitokens:list")).content.decode()

    admin_client.post(reverse("apitokens:revoke", args=[mine.pk]))
    mine.refresh_from_db()
    assert mine.revoked_at is not None
    assert Client().get(f"/api/tasks/{ready_task().pk}", headers=bearer(my_text)).status_code == 401


def test_token_pages_need_a_login_and_post(client, admin_client):
    assert client.get(reverse("apitokens:list")).status_code == 302
    assert client.post(reverse("apitokens:create"), {"name": "x"}).status_code == 302
    assert not ApiToken.objects.exists()
    assert admin_client.get(reverse("apitokens:create")).status_code == 405


def session_client(user) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    csrf = client.get("/login/").cookies["csrftoken"].value
    return client, csrf


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
)
def test_session_requests_from_another_site_cannot_start_or_cancel(admin_user, headers):
    task = ready_task()
    running = RunFactory(status=Run.Status.RUNNING)
    client, csrf = session_client(admin_user)
    started = client.post(f"/api/tasks/{task.pk}/run", headers={"X-CSRFToken": csrf, **headers})
    assert started.status_code == 403
    assert started.json() == {"error": "cross-site request refused: a request from another site needs an API token"}
    cancelled = client.post(f"/api/runs/{running.pk}/cancel", headers={"X-CSRFToken": csrf, **headers})
    assert cancelled.status_code == 403
    assert not Run.objects.filter(task=task).exists()
    running.refresh_from_db()
    assert not running.cancel_requested


def test_session_requests_from_the_same_origin_still_work(admin_user):
    task = ready_task()
    client, csrf = session_client(admin_user)
    headers = {"X-CSRFToken": csrf, "Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
    assert client.post(f"/api/tasks/{task.pk}/run", headers=headers).status_code == 202


def test_a_token_request_passes_whatever_the_fetch_headers_say(admin_user):
    _token, text = create_token(admin_user, "ci", now=timezone.now())
    task = ready_task()
    headers = {**bearer(text), "Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"}
    assert Client().post(f"/api/tasks/{task.pk}/run", headers=headers).status_code == 202


def test_reading_from_another_site_with_a_session_is_allowed_but_writes_are_not(admin_user):
    task = ready_task()
    client, _csrf = session_client(admin_user)
    assert client.get(f"/api/tasks/{task.pk}", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    body = json.dumps({"interval_seconds": 3600})
    response = client.put(
        f"/api/tasks/{task.pk}/schedule",
        data=body,
        content_type="application/json",
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
