"""Who sends a JSON API request, and whether a browser sent it from another site.

Scripts send `Authorization: Bearer <token>` (imapcopier.apitokens.models). A browser uses its session, and a
state-changing request then needs the CSRF token and must not come from another site. No answer ever
carries a `WWW-Authenticate: Basic` challenge: a browser answers one with a login prompt and then
attaches those credentials by itself to every later request to the origin, cross-site form posts
included (issue 15, finding 1). HTTP Basic is therefore not accepted at all.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

# Answers Fetch Metadata gives for a request a browser made on behalf of another origin
# (https://www.w3.org/TR/fetch-metadata/#sec-fetch-site-header). "same-site" is another origin of the
# same site (a sibling subdomain, another port): not ours either.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
BEARER_CHALLENGE = 'Bearer realm="imapcopier"'


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), "" when the header is
    Bearer but empty, None when there is no Bearer header (other schemes are ignored)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def foreign_origin(request: HttpRequest) -> str | None:
    """Why a browser request looks cross-origin, or None when nothing says so.

    Looks at `Sec-Fetch-Site` (sent by every current browser) and then `Origin` (RFC 6454 §7): an
    origin other than this site's own, or one of CSRF_TRUSTED_ORIGINS, is foreign; so is "null"
    (sandboxed frames, file: pages). Requests without either header (curl, scripts) pass.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if fetch_site in FOREIGN_FETCH_SITES:
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    own = f"{request.scheme}://{request.get_host()}"
    if origin == own or origin in settings.CSRF_TRUSTED_ORIGINS:
        return None
    return "Origin is another site"
