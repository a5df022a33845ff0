"""Errors no view answered (handler500): no traceback, JSON on the API, 503 when the database is away."""

import pytest
from django.db import OperationalError
from django.test import Client

from custody import api


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (OperationalError("connection to server failed"), 503, "database is unavailable"),
        (RuntimeError("a bug"), 500, "internal error"),
    ],
)
def test_api_error_is_json_without_traceback(db, monkeypatch, error, status, words):
    def broken(self, request, *args, **kwargs):
        raise error

    monkeypatch.setattr(api.TrustRootView, "get", broken)
    response = Client(raise_request_exception=False).get("/api/v1/trust-root/")
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert words in response.json()["detail"] and "Traceback" not in response.content.decode()
    assert ("Retry-After" in response) == (status == 503)


def test_page_error_is_a_short_page_and_503_when_the_database_is_away(rf):
    from custody.views import server_error

    try:
        raise OperationalError("connection to server failed")
    except OperationalError:  # Django calls handler500 while handling the exception
        response = server_error(rf.get("/cases/"))
    assert response.status_code == 503 and response["Retry-After"]
    assert response["Content-Type"].startswith("text/html")
    assert b"database is unavailable" in response.content
