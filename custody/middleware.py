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


class HeadWithoutBodyMiddleware:
    """An answer to HEAD carries the GET answer's headers and no body (RFC 9110, 9.3.2).

    Django computes the GET answer for HEAD; gunicorn and wsgiref send its
    body as it is, which a client reusing the connection then reads as the
    start of the next answer. Outermost, so it sees the final answer;
    Content-Length stays that of the body a GET would get.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method == "HEAD":
            if response.streaming:
                response.streaming_content = []
            else:
                length = response.get("Content-Length")
                response.content = b""
                if length is not None:
                    response["Content-Length"] = length
        return response
