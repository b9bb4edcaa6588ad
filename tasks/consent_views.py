"""Each user's consent (issue 16): the page a consent link opens and the provider's way back.

Neither needs an operator login: the user who owns the mailbox opens them. The link is signed
(tasks/oauth.py consent_token) and the PKCE verifier waits in the user's session until the provider
sends them back with a code.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from tasks import oauth, services

_SESSION_KEY = "imapcopier_consent"


def _redirect_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("tasks:consent_callback"))


@require_GET
@login_not_required  # the mailbox's user opens it, not an operator
def consent_start(request: HttpRequest, token: str) -> HttpResponse:
    try:
        account, side = oauth.consent_target(token)
    except oauth.ConsentError as exc:
        return render(request, "tasks/consent.html", {"problem": str(exc)}, status=400)
    url, state, verifier = oauth.begin_consent(account, side, _redirect_uri(request))
    pending = request.session.get(_SESSION_KEY, {})
    pending[state] = {
        "account": account.pk,
        "side": side,
        "verifier": verifier,
        "generation": getattr(account, f"{side}_consents"),
    }
    request.session[_SESSION_KEY] = pending
    endpoint = getattr(account.task, side)
    return render(
        request,
        "tasks/consent.html",
        {"authorize_url": url, "mailbox": getattr(account, f"{side}_user"), "endpoint": endpoint, "side": side},
    )


@require_GET
@login_not_required
def consent_callback(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(_SESSION_KEY, {})
    waiting = pending.pop(request.GET.get("state", ""), None)
    request.session[_SESSION_KEY] = pending
    if waiting is None:
        problem = "This answer does not belong to a consent started in this browser; open your consent link again."
        return render(request, "tasks/consent.html", {"problem": problem}, status=400)
    if "error" in request.GET:
        words = oauth.provider_words(request.GET.get("error", ""), request.GET.get("error_description", ""))
        return render(request, "tasks/consent.html", {"problem": f"No consent was given: {words}"}, status=400)
    try:
        account, side = oauth.consent_account(waiting["account"], waiting["side"], waiting.get("generation"))
        result = services.finish_consent(
            account,
            side,
            code=request.GET.get("code", ""),
            verifier=waiting["verifier"],
            redirect_uri=_redirect_uri(request),
        )
    except oauth.ConsentError as exc:
        return render(request, "tasks/consent.html", {"problem": str(exc)}, status=400)
    return render(
        request,
        "tasks/consent.html",
        {"done": True, "mailbox": getattr(account, f"{side}_user"), "pending": None if result.ok else result.message},
    )
