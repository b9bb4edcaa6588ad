from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_repeated_wrong_passwords_lock_the_login_even_with_the_right_one_after(client, admin_user):
    url = reverse("login")
    for _ in range(3):
        response = client.post(url, {"username": "admin", "password": "wrong"})
        assert response.status_code in (200, 429)
    response = client.post(url, {"username": "admin", "password": "correct horse battery staple"})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_a_successful_login_before_the_limit_resets_the_count(client, admin_user):
    url = reverse("login")
    client.post(url, {"username": "admin", "password": "wrong"})
    client.post(url, {"username": "admin", "password": "wrong"})
    assert client.post(url, {"username": "admin", "password": "correct horse battery staple"}).status_code == 302
