"""The Dockerfile, checked without a container engine (none runs on our machines).

Its COPY sources must exist, the package must build with every app, migration and command in it, and the
entrypoint's roles must start from a copy of the image's /app tree: `web` migrates and serves /healthz,
and stops on SIGTERM because it execs the server (PID 1 in the container).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def copy_sources() -> list[str]:
    return [src for line in re.findall(r"^COPY (.+)$", DOCKERFILE, re.M) for src in line.split()[:-1]]


def test_the_image_runs_as_a_non_root_user_with_a_health_check():
    assert re.search(r"^USER imapcopier$", DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    assert 'ENTRYPOINT ["docker-entrypoint.sh"]' in DOCKERFILE
    entrypoint = (ROOT / "docker-entrypoint.sh").read_text()
    assert "exec gunicorn" in entrypoint and "exec python manage.py qcluster" in entrypoint


def test_every_copied_path_exists():
    for src in copy_sources():
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is missing"


def test_the_package_builds_with_every_app_migration_and_command(tmp_path):
    # Build from a copy, as the image does, so setuptools' build/ folder never lands in the work tree.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "data", "build", "staticfiles", "__pycache__", "*.egg-info"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("imapcopier-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in [
        "imapcopier/settings.py",
        "tasks/migrations/0001_initial.py",
        "runs/migrations/0001_initial.py",
        "runs/engine/types.py",
        "tasks/management/commands/rotate_credentials.py",
        "imapcopier/apitokens/migrations/0001_api_tokens.py",
        "scheduling/notifications/jobs.py",
        "runs/management/commands/qcluster.py",
    ]:
        assert expected in names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_web_role_migrates_serves_healthz_and_stops_on_sigterm(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    for src in copy_sources():
        source = ROOT / src
        if source.is_dir():
            shutil.copytree(source, app / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, app / src)
    port = free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "IMAPCOPIER_DATA_DIR": str(tmp_path / "data"),
        "STATIC_ROOT": str(app / "staticfiles"),
        "IMAPCOPIER_FERNET_KEYS": Fernet.generate_key().decode(),
        "SECRET_KEY": "container-test-" + "k" * 40,
        "PORT": str(port),
        "WEB_WORKERS": "1",
    }
    # The build step of the Dockerfile.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=app,
        env={**env, "DEBUG": "1"},
        check=True,
        timeout=120,
    )
    assert list((app / "staticfiles").rglob("app.css"))

    server = subprocess.Popen(
        ["sh", str(app / "docker-entrypoint.sh"), "web"],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "the web role did not answer /healthz"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/css/app.css", timeout=5) as response:
            assert response.status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert (tmp_path / "data" / "imapcopier.sqlite3").exists()  # migrate ran
