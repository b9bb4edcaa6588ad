from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from imapcopier.apitokens.models import ApiToken
from imapcopier.apitokens.services import create_token, revoke_token


@require_GET
@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "apitokens/token_list.html", {"tokens": tokens, "nav": "tokens"})


@require_POST
@login_required
@never_cache
def token_create(request: HttpRequest) -> HttpResponse:
    # The token is in this one answer and nowhere else: not in a redirect, a message or the session.
    token, text = create_token(request.user, request.POST.get("name", "")[:100], now=timezone.now())
    tokens = ApiToken.objects.filter(user=request.user)
    context = {"tokens": tokens, "nav": "tokens", "new_token": token, "new_token_text": text}
    return render(request, "apitokens/token_list.html", context, status=201)


@require_POST
@login_required
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    if revoke_token(pk, now=timezone.now(), user=request.user):
        messages.success(request, "Token revoked: scripts using it are refused from now on.")
    else:
        messages.info(request, "That token was already revoked.")
    return redirect("apitokens:list")
