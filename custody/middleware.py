"""Response headers the project adds itself (CSP comes from django-csp)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class NoStoreForAuthenticatedMiddleware:
    """``Cache-Control: no-store`` on every answer to an authenticated request.

    Case pages, evidence and API answers must not stay in a shared cache or on
    the client's disk. A request counts as authenticated when the user is
    signed in (a session, or a token: DRF sets the user on the Django request
    when it authenticates one) or when it carries credentials at all, even
    refused ones. Static files are answered by WhiteNoise before this runs,
    so they stay cacheable.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (user is not None and user.is_authenticated) or "HTTP_AUTHORIZATION" in request.META:
            response["Cache-Control"] = "no-store"
        return response
