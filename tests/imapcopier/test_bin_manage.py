"""bin/manage (issue 12, item 10): any management command, with bin/start's data directory and secrets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bin_manage(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "IMAPCOPIER_FERNET_KEYS", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    env["IMAPCOPIER_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [str(ROOT / "bin" / "manage"), *args], cwd="/", env=env, capture_output=True, text=True, timeout=180
    )


SHOW_KEYS = (
    "from django.conf import settings; "
    "print('KEY', settings.IMAPCOPIER_FERNET_KEYS[0], settings.DATABASES['default']['NAME'])"
)


def test_bin_manage_runs_commands_with_the_installations_one_set_of_keys(tmp_path):
    data = tmp_path / "data"
    migrate = bin_manage(data, "migrate", "--noinput", "-v0")
    assert migrate.returncode == 0, migrate.stderr
    secrets = (data / "secrets.env").read_text()
    assert oct((data / "secrets.env").stat().st_mode & 0o777) == "0o600"
    key = next(line.split("=", 1)[1] for line in secrets.splitlines() if line.startswith("IMAPCOPIER_FERNET_KEYS="))
    shown = bin_manage(data, "shell", "-c", SHOW_KEYS)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if line.startswith("KEY ")]
    _, used_key, database = line.split()
    assert used_key == key  # the key bin/start made, not a second one
    assert database == str(data / "imapcopier.sqlite3")
    assert (data / "secrets.env").read_text() == secrets  # made once, kept
    assert not (data / "fernet.key").exists()  # no development key beside it


def test_bin_manage_passes_the_commands_exit_status(tmp_path):
    assert bin_manage(tmp_path / "data", "migrate", "--noinput", "-v0").returncode == 0
    result = bin_manage(tmp_path / "data", "runtask", "no such task")
    assert result.returncode == 1
    assert "no such task" in result.stderr and "Traceback" not in result.stderr
