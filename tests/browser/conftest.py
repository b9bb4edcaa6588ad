"""Browser fixtures: headless Debian Chromium driven by Playwright, against the real product.

browser            module: one Chromium (Debian's /usr/bin/chromium; Playwright cannot download one here)
page               a fresh browser context and page (1366x860, a laptop screen), closed after the test
product            module: the whole product in subprocesses, as bin/start runs it: a private data dir and
                   SQLite file, `migrate`, an admin login, the web server and a django-q2 cluster.
                   Attributes: url, admin_username, admin_password, manage(*args), stop().
logged_in_page     a page logged in to `product` as the admin
live_page          a page logged in to pytest-django's live_server (for tests that set up the database
                   themselves; jobs do not run there unless the test arranges it)
screenshot(page, name)   saves test-artifacts/screenshots/<name>.png (full page)

Every test here is marked `browser` by the caller: `pytestmark = pytest.mark.browser`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1366, "height": 860}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium package", pytrace=False)
    # Playwright's sync API keeps an event loop in the test thread; Django's ORM refuses to run in a
    # thread with a running loop unless told it is safe (it is: the loop is Playwright's). Set only
    # while the browser lives (module scope), so it never leaks into other tests' subprocesses
    # (`check --deploy` flags it).
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="Europe/Berlin")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: object, name: str) -> Path:
    """Save a full-page screenshot as a test artifact (look at them: users judge the product by these)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: object, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


# ------------------------------------------------------------------ the product in subprocesses


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Product:
    """imapcopier running in subprocesses on a private SQLite database, like bin/start runs it."""

    admin_username = "operator"
    admin_password = "browser-test-login-1"

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="imapcopier-browser-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # On a PostgreSQL pass (DATABASE_URL=postgresql://...), the product gets a database of its own there.
        self.pg_admin_url = ""
        database_url = f"sqlite:///{self.data_dir / 'imapcopier.sqlite3'}"
        if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
            base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
            self.pg_admin_url, self.pg_name = f"{base}/postgres", f"imapcopier_product_{self.port}"
            database_url = f"{base}/{self.pg_name}"
        self.env = {
            **os.environ,
            "IMAPCOPIER_DATA_DIR": str(self.data_dir),
            "DATABASE_URL": database_url,
            "DEBUG": "0",
            "IMAPCOPIER_MANIFEST_STATIC": "0",
            "Q_WORKERS": "2",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SUPERUSER_PASSWORD": self.admin_password,
        }
        self.env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = self.data_dir / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", *args],
                    cwd=ROOT,
                    env=env or self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    def _pg(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True) as connection:
            connection.execute(statement)

    def start(self) -> None:
        if self.pg_admin_url:
            self._pg(f'DROP DATABASE IF EXISTS "{self.pg_name}"')
            self._pg(f'CREATE DATABASE "{self.pg_name}"')
        self.manage("migrate", "--noinput", "-v0")
        self.manage(
            "createsuperuser",
            "--noinput",
            "--username",
            self.admin_username,
            "--email",
            "operator@example.test",
        )
        self._spawn("web", "runserver", "--noreload", "--insecure", f"127.0.0.1:{self.port}")
        self._spawn("cluster", "qcluster")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the web server did not come up:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for log in self.logs:
            if log.exists():
                text = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self.pg_admin_url:
            self._pg(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def product() -> Iterator[Product]:
    server = Product()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def logged_in_page(page: object, product: Product) -> object:
    log_in(page, product.url, product.admin_username, product.admin_password)
    return page


@pytest.fixture
def live_page(page: object, live_server: object, admin_user: object) -> object:
    log_in(page, live_server.url, "admin", "correct horse battery staple")
    return page


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed browser test's report carries the product's logs (web server and cluster), for a
    failure seen only in CI."""
    report = yield
    product = getattr(item, "funcargs", {}).get("product")
    if report.when == "call" and report.failed and isinstance(product, Product):
        report.sections.append(("product logs", product.log_tail(200)))
    return report
