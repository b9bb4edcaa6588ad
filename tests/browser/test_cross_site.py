"""A page on another site cannot start or cancel a run (issue 15, finding 1), in real headless Chromium.

The operator is logged in to the product (session cookie) and has also answered the browser's login
prompt for an API URL once (Playwright's http_credentials answer a Basic challenge as the operator
would). Then a page on another site (localhost, while the product is 127.0.0.1: another site to the
browser) auto-submits `enctype="text/plain"` forms at the run and cancel endpoints. Nothing may change.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from tests.browser.conftest import VIEWPORT, log_in

pytestmark = pytest.mark.browser

SETUP = """
from django.utils import timezone
from runs.models import Run
from tasks.models import Account, Endpoint, Task
ok = Account.TestStatus.OK
source = Endpoint.objects.create(label="csrf source", host="127.0.0.1", port=9, security="plain")
target = Endpoint.objects.create(label="csrf target", host="127.0.0.1", port=9, security="plain")
idle = Task.objects.create(name="csrf idle", source=source, destination=target)
Account.objects.create(task=idle, source_user="a", source_password="p", destination_user="b",
                       destination_password="q", source_test_status=ok, destination_test_status=ok)
busy = Task.objects.create(name="csrf busy", source=source, destination=target, status=Task.Status.RUNNING)
run = Run.objects.create(task=busy, trigger=Run.Trigger.MANUAL, status=Run.Status.RUNNING)
print(idle.pk, run.pk)
"""

STATE = """
from runs.models import Run
import json
print(json.dumps({"runs_of_idle": Run.objects.filter(task_id={idle}).count(),
                  "cancel_requested": Run.objects.get(pk={run}).cancel_requested,
                  "status": Run.objects.get(pk={run}).status}))
"""


def attack_page(action: str) -> bytes:
    # text/plain makes the body `{"x":"=y"}`: a JSON body no same-origin policy stops a form from sending.
    return f"""<!doctype html><html><body>
<form id="f" method="post" action="{action}" enctype="text/plain">
<input type="hidden" name='{{"interval_seconds": 3600, "x":"' value='"}}'>
</form><script>document.getElementById("f").submit();</script></body></html>""".encode()


@pytest.fixture
def other_site() -> Iterator[dict[str, bytes] | str]:
    """A tiny web server on localhost (the product is on 127.0.0.1): serves pages[path]."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = pages.get(self.path, b"not found")
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield pages, f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_cross_site_form_cannot_start_or_cancel_a_run(browser, product, other_site):
    pages, other_url = other_site
    idle_id, run_id = product.manage("shell", "-c", SETUP).splitlines()[-1].split()
    pages["/start"] = attack_page(f"{product.url}/api/tasks/{idle_id}/run")
    pages["/cancel"] = attack_page(f"{product.url}/api/runs/{run_id}/cancel")

    context = browser.new_context(
        viewport=VIEWPORT,
        http_credentials={"username": product.admin_username, "password": product.admin_password},
    )
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        log_in(page, product.url, product.admin_username, product.admin_password)
        # The operator opens an API URL once: it answers with the session, and asks for nothing else.
        answer = page.goto(f"{product.url}/api/tasks/{idle_id}")
        assert answer.status == 200
        assert "Basic" not in (answer.headers.get("www-authenticate") or "")

        for path in ("/start", "/cancel"):
            with page.expect_response(lambda r: "/api/" in r.url and r.request.method == "POST") as posted:
                page.goto(f"{other_url}{path}")
            response = posted.value
            assert response.status in (401, 403), f"{path}: {response.status} {response.text()}"
            assert "Basic" not in (response.headers.get("www-authenticate") or "")
    finally:
        context.close()

    output = product.manage("shell", "-c", STATE.replace("{idle}", idle_id).replace("{run}", run_id))
    state = json.loads(output.splitlines()[-1])
    assert state == {"runs_of_idle": 0, "cancel_requested": False, "status": "running"}
