"""Answer the container's local health check before the host check and the HTTPS redirect.

The Dockerfile's HEALTHCHECK fetches http://127.0.0.1:8000/healthz inside the container. Under the
README's production settings that request would fail twice over: its Host (127.0.0.1) is not in
ALLOWED_HOSTS (400, DisallowedHost logged as an ERROR every 30 s), and SECURE_SSL_REDIRECT sends plain
HTTP to https:// (301 to a port without TLS). /healthz shows nothing about the site and changes
nothing, so this middleware, first in MIDDLEWARE, answers it before either check runs (issue 15,
finding 3). Every other path goes through them as before.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from imapcopier import views

HEALTH_PATH = "/healthz"


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == HEALTH_PATH:
            return views.healthz(request)
        return self.get_response(request)
