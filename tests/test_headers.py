"""Security headers: the Content-Security-Policy, no-store for signed-in users, HSTS behind TLS."""

import json

import pytest

from .test_settings import run_python


def csp_directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}


def assert_strict_policy(response) -> None:
    directives = csp_directives(response)
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]


def test_signed_in_page_has_the_policy_and_is_not_stored(client, alice, case_a):
    client.force_login(alice)
    response = client.get(f"/cases/{case_a.pk}/")
    assert response.status_code == 200
    assert_strict_policy(response)
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_style_or_handler(client, alice, evidence_a):
    client.force_login(alice)
    evidence = evidence_a.pk
    for path in [
        "/",
        f"/cases/{evidence_a.case_id}/",
        f"/evidence/{evidence}/",
        f"/evidence/{evidence}/report/",
        "/verify/",
        "/search/?q=meeting",
        "/?q=A-1",
    ]:
        response = client.get(path, follow=True)
        assert response.status_code == 200, path
        body = response.content.decode()
        assert "<script>" not in body and "<style" not in body and "style=" not in body, path
        assert " onclick=" not in body and " onload=" not in body, path


def test_anonymous_public_page_has_the_policy_and_no_no_store(client, custody_db):
    response = client.get("/verify/")
    assert response.status_code == 200
    assert_strict_policy(response)
    assert "no-store" not in response.get("Cache-Control", "")


def test_api_answer_to_a_token_is_not_stored(as_alice, case_a):
    response = as_alice.get("/api/v1/cases/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" in response


def test_api_answer_refusing_a_bad_token_is_not_stored_either(client, custody_db):
    response = client.get("/api/v1/cases/", HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code in (401, 403)
    assert response["Cache-Control"] == "no-store"


def test_static_file_stays_cacheable_for_a_signed_in_user(client, alice):
    client.force_login(alice)
    response = client.get("/static/custody/verify.js")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


def test_swagger_ui_script_is_served_from_a_url_not_inline(client, custody_db):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert_strict_policy(page)
    body = page.content.decode()
    assert "<script>" not in body and "<style" not in body
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_redoc_alone_may_use_inline_styles_and_blob_workers(client, custody_db):
    response = client.get("/api/redoc/")
    assert response.status_code == 200
    directives = csp_directives(response)
    assert directives["style-src"] == ["'self'", "'unsafe-inline'"]
    assert directives["script-src"] == ["'self'"]
    assert "blob:" in directives["worker-src"]
    assert directives["img-src"] == ["'self'", "data:", "https://cdn.redoc.ly"]
    assert b"fonts.googleapis" not in response.content


SECURITY_SETTINGS = (
    "import json, custody.settings as s; print(json.dumps({k: getattr(s, k) for k in ("
    "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SESSION_COOKIE_SECURE',"
    " 'CSRF_COOKIE_SECURE', 'SECURE_PROXY_SSL_HEADER', 'SECURE_SSL_REDIRECT')}))"
)


def security_settings(tmp_path, **env) -> dict:
    done = run_python(SECURITY_SETTINGS, tmp_path, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_custody_tls_turns_on_hsts_and_secure_cookies(tmp_path):
    assert security_settings(tmp_path, CUSTODY_TLS="1") == {
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        # The proxy's header is believed only when a trusted proxy is declared.
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_SSL_REDIRECT": False,
    }


def test_without_custody_tls_nothing_assumes_https(tmp_path):
    found = security_settings(tmp_path)
    assert found["SECURE_HSTS_SECONDS"] == 0
    assert not found["SESSION_COOKIE_SECURE"] and not found["CSRF_COOKIE_SECURE"]
    assert not found["SECURE_SSL_REDIRECT"]


def test_custody_tls_with_a_trusted_proxy_and_redirect(tmp_path):
    found = security_settings(
        tmp_path, CUSTODY_TLS="1", CUSTODY_BEHIND_TLS_PROXY="1", CUSTODY_SSL_REDIRECT="1"
    )
    assert found["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert found["SECURE_SSL_REDIRECT"] is True


def test_hsts_header_on_a_request_through_the_trusted_proxy(client, alice, settings):
    settings.SECURE_HSTS_SECONDS = 365 * 24 * 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_custody_tls_rejects_a_bad_value(tmp_path, value):
    done = run_python(SECURITY_SETTINGS, tmp_path, CUSTODY_TLS=value)
    assert done.returncode != 0 and "CUSTODY_TLS must be a boolean" in done.stderr


def test_head_answers_carry_headers_and_no_body_under_gunicorn(gunicorn_server):
    """A body after a HEAD answer would be read by a client as the next answer on the connection."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(gunicorn_server.url)
    for path in ("/api/v1/keys/", "/verify/", "/api/v1/evidence/"):
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 "), head[:40]
        assert body == b"", (path, body[:80])
