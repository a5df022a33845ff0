"""Failed-login limits: the client address, the lockout answer, the API throttles.

django-axes counts failures per account and per client address in the
database (shared by every gunicorn worker); this module tells it where a
request comes from and what a locked-out client is told. The DRF throttles
use the same address, so a forged X-Forwarded-For cannot dodge either.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle

LOCKED_MESSAGE = "this account or address is temporarily locked after too many failed logins; try again in {minutes} minutes"


def client_ip(request) -> str | None:
    """REMOTE_ADDR, or the X-Forwarded-For client when REMOTE_ADDR is a trusted proxy.

    X-Forwarded-For is read from the right: each proxy appends the address it
    got the request from, so the first untrusted address from the right is
    the client; anything left of it was written by the client and may be forged.
    """
    meta = getattr(request, "META", {})
    remote = meta.get("REMOTE_ADDR") or None
    trusted = settings.CUSTODY_TRUSTED_PROXIES
    if remote is None or remote not in trusted:
        return remote
    hops = [h.strip() for h in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else remote


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """The answer to a locked-out login (AXES_LOCKOUT_CALLABLE): 429, the same whatever the password."""
    message = LOCKED_MESSAGE.format(minutes=settings.CUSTODY_LOGIN_COOLOFF_MINUTES)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=429)
    return HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")


class AddressThrottleMixin:
    def get_ident(self, request) -> str:
        return client_ip(request) or ""


class AuthThrottle(AddressThrottleMixin, ScopedRateThrottle):
    """The token endpoint's rate limit (scope from the view), per client address."""


class PublicThrottle(AddressThrottleMixin, AnonRateThrottle):
    """Rate limit for the endpoints anyone may call (per client address)."""

    scope = "public"
