"""404 answers (issue 12, item 10): a styled page for people, JSON for every /api/ path."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_an_unknown_page_is_a_styled_page_with_a_way_back(admin_client):
    response = admin_client.get("/tasks/999999/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<title>Not found · imapcopier</title>" in html
    assert 'href="/">Back to the tasks</a>' in html
    assert "css/app.css" in html


def test_the_path_shown_on_the_404_page_is_escaped(admin_client):
    response = admin_client.get("/nothing/<script>alert(1)</script>")
    assert response.status_code == 404
    assert b"<script>alert(1)" not in response.content
    assert b"&lt;script&gt;" in response.content


@pytest.mark.parametrize("signed_in", [True, False])
def test_unknown_api_paths_answer_json(client, admin_user, signed_in):
    if signed_in:
        client.force_login(admin_user)
    for path in ("/api/", "/api/nothing", "/api/tasks/1/unknown", "/api/tasks/abc"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {"error": "not found: no such API path or object"}
