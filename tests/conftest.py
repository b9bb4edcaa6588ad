from __future__ import annotations

import pytest

# IMAP test bed (a private Dovecot on loopback) lives in its own module.
pytest_plugins = [
    "tests.support.imap_fixtures",
    "tests.support.server_fixtures",
    "tests.support.oauth_fixtures",
]


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse battery staple")
