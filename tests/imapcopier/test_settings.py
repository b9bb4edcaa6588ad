"""Start-up configuration: each case runs `manage.py check` in a fresh process, as an operator would."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "IMAPCOPIER_FERNET_KEYS", "DATABASE_URL"}
    }
    base["IMAPCOPIER_DATA_DIR"] = str(tmp_path / "data")
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_start_without_an_encryption_key_fails_and_says_what_to_set(
    tmp_path,
):
    result = manage(tmp_path, "check", DEBUG="0")
    assert result.returncode == 2
    assert "IMAPCOPIER_FERNET_KEYS is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_start_generates_one_private_key_and_reuses_it(tmp_path):
    first = manage(tmp_path, "check", DEBUG="1")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "data" / "fernet.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    Fernet(key.strip().encode())  # a valid key

    second = manage(tmp_path, "check", DEBUG="1")
    assert second.returncode == 0, second.stderr
    assert key_file.read_text() == key
    assert stat.S_IMODE((tmp_path / "data" / "secret_key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be one of"),
        ({"Q_WORKERS": "four"}, "Q_WORKERS must be a whole number"),
        ({"Q_WORKERS": "0"}, "Q_WORKERS must be at least 1"),
        ({"DATABASE_URL": "mysql://db/imap"}, "DATABASE_URL must start with one of"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL must start with one of"),
        (
            {"IMAPCOPIER_FERNET_KEYS": "not-a-key"},
            "key number 1 is not a valid Fernet key",
        ),
        (
            {"CSRF_TRUSTED_ORIGINS": "imapcopier.example.com"},
            "CSRF_TRUSTED_ORIGINS entries need a scheme",
        ),
        (
            {
                "DATABASE_URL": "postgresql://db/imap",
                "IMAPCOPIER_FERNET_KEYS": Fernet.generate_key().decode(),
            },
            "SECRET_KEY is not set",
        ),
    ],
)
def test_a_malformed_setting_stops_start_up_with_a_clear_message(tmp_path, env, expected):
    env.setdefault("IMAPCOPIER_FERNET_KEYS", Fernet.generate_key().decode())
    result = manage(tmp_path, "check", **env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_key_list_never_prints_the_keys(tmp_path):
    good = Fernet.generate_key().decode()
    result = manage(tmp_path, "check", IMAPCOPIER_FERNET_KEYS=f"{good},broken-key")
    assert result.returncode == 2
    assert "key number 2" in result.stderr
    assert good not in result.stderr and "broken-key" not in result.stderr


PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "prod-" + "x7Kq" * 16,
    "SECURE_COOKIES": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_PRELOAD": "1",
    "USE_X_FORWARDED_PROTO": "1",
    "ALLOWED_HOSTS": "imapcopier.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://imapcopier.example.com",
}


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        IMAPCOPIER_FERNET_KEYS=Fernet.generate_key().decode(),
        **PRODUCTION,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_a_process_keeps_its_database_connection_from_one_job_to_the_next():
    """django-q2 calls close_old_connections() around every job and every poll of its ORM broker. With
    connections kept for no time (SQLite's setting until issue 14), each of those opened a new connection
    and ran its PRAGMAs again: a sixth of a 200-account run's cluster CPU in bench/many.py."""
    from django.db import close_old_connections, connection

    from tasks.models import Task

    Task.objects.exists()
    first = connection.connection
    close_old_connections()  # what django-q2 does between two jobs
    Task.objects.exists()
    assert connection.connection is first
