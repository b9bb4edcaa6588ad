"""The container's HEALTHCHECK passes under the README's production settings (issue 15, finding 3).

The web role runs as the image runs it (docker-entrypoint.sh web: migrate, then gunicorn) with the
documented production settings, and the Dockerfile's own HEALTHCHECK command is run against it. Before,
it got 400 (Host 127.0.0.1 is not allowed) and, with 127.0.0.1 allowed, a 301 to https.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def healthcheck_command() -> str:
    """The shell command of the Dockerfile's HEALTHCHECK (its CMD, joined across the line break)."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    (command,) = re.findall(r"^HEALTHCHECK .*? CMD (.+)$", dockerfile, re.M)
    return command.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(tmp_path: Path, port: int, allowed_hosts: str) -> dict[str, str]:
    """README "Production" settings, on a private SQLite file instead of PostgreSQL + Redis."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "IMAPCOPIER_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'imapcopier.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        "DEBUG": "0",
        "SECRET_KEY": "production-test-" + Fernet.generate_key().decode(),
        "IMAPCOPIER_FERNET_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": allowed_hosts,
        "CSRF_TRUSTED_ORIGINS": "https://imapcopier.example.com",
        "USE_X_FORWARDED_PROTO": "1",
        "SECURE_COOKIES": "1",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "LOG_FORMAT": "json",
        "PORT": str(port),
        "WEB_WORKERS": "1",
    }


class Web:
    def __init__(self, process: subprocess.Popen[bytes], port: int, env: dict[str, str], log: Path) -> None:
        self.process, self.port, self.env, self.log = process, port, env, log

    def get(self, path: str, host: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Host": host, **(headers or {})}
        )
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=5) as answer:
                return answer.status, dict(answer.headers)
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def start_web(tmp_path: Path, allowed_hosts: str) -> Web:
    port = free_port()
    env = production_env(tmp_path, port, allowed_hosts)
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["sh", str(ROOT / "docker-entrypoint.sh"), "web"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 90
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return Web(process, port, env, log)
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the web role did not start:\n" + log.read_text()
        time.sleep(0.3)


@pytest.fixture(params=["imapcopier.example.com", "imapcopier.example.com,127.0.0.1"])
def web(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Web]:
    server = start_web(tmp_path, request.param)
    yield server
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)


def test_the_dockerfile_healthcheck_passes_under_production_settings(web):
    check = subprocess.run(["sh", "-c", healthcheck_command()], env=web.env, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "DisallowedHost" not in web.log.read_text()


def test_other_paths_keep_the_host_check_and_the_https_redirect(web):
    assert web.get("/healthz", "evil.example")[0] == 200
    assert web.get("/api/tasks/1", "evil.example")[0] == 400
    status, headers = web.get("/api/tasks/1", "imapcopier.example.com")
    assert status == 301 and headers["Location"] == "https://imapcopier.example.com/api/tasks/1"
    # Through the proxy (https): the API itself answers (401: no token).
    assert web.get("/api/tasks/1", "imapcopier.example.com", {"X-Forwarded-Proto": "https"})[0] == 401
