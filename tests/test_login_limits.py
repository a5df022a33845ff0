"""Failed-login limits (django-axes): per account and per address, shared by every process."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from custody.login_limits import client_ip
from custody.models import ApiToken

from .conftest import PASSWORD, start_gunicorn

LIMIT = 10  # CUSTODY_LOGIN_FAILURE_LIMIT's default, which the tests run with
WRONG = "not the password"


def _token(client, username, password, **extra):
    return client.post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json", **extra
    )


def _web_login(client, username, password, path="/login/", **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


def test_token_endpoint_locks_after_ten_failures_even_with_the_right_password(alice):
    client = APIClient()
    for _ in range(LIMIT - 1):
        assert _token(client, "alice", WRONG).status_code == 401
    # The tenth failure is the one that locks.
    assert _token(client, "alice", WRONG).status_code == 429
    for password in (PASSWORD, WRONG):
        response = _token(client, "alice", password)
        assert response.status_code == 429
        assert "temporarily locked" in response.json()["detail"]
    assert not ApiToken.objects.filter(user=alice).exists()


def test_right_password_answers_exactly_like_a_wrong_one_when_locked(alice):
    client = APIClient()
    for _ in range(LIMIT):
        _token(client, "alice", WRONG)
    right, wrong = _token(client, "alice", PASSWORD), _token(client, "alice", WRONG)
    assert (right.status_code, right.json()) == (wrong.status_code, wrong.json())


def test_nine_failures_then_the_right_password_logs_in(alice):
    client = APIClient()
    for _ in range(LIMIT - 1):
        _token(client, "alice", WRONG)
    assert _token(client, "alice", PASSWORD).status_code == 201


def test_web_login_locks_after_ten_failures(alice):
    client = Client()
    for _ in range(LIMIT - 1):
        assert _web_login(client, "alice", WRONG).status_code == 200  # the form again, with an error
    response = _web_login(client, "alice", PASSWORD)
    assert response.status_code == 302  # under the limit the right password still works
    client = Client()
    for _ in range(LIMIT):
        _web_login(client, "alice", WRONG)
    response = _web_login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert b"temporarily locked" in response.content
    assert "_auth_user_id" not in client.session


def test_admin_login_locks_after_ten_failures(root):
    client = Client()
    for _ in range(LIMIT):
        _web_login(client, "root", WRONG, path="/admin/login/")
    response = _web_login(client, "root", PASSWORD, path="/admin/login/")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_failures_on_the_web_count_for_the_api(alice):
    web = Client()
    for _ in range(LIMIT):
        _web_login(web, "alice", WRONG)
    assert _token(APIClient(), "alice", PASSWORD).status_code == 429


def test_locked_account_is_locked_from_every_address(alice):
    client = APIClient()
    for i in range(LIMIT):
        _token(client, "alice", WRONG, REMOTE_ADDR=f"198.51.100.{i + 1}")
    assert _token(client, "alice", PASSWORD, REMOTE_ADDR="203.0.113.9").status_code == 429


def test_one_address_trying_many_accounts_is_locked(alice, bob):
    client = APIClient()
    for i in range(LIMIT):
        _token(client, f"nobody{i}", WRONG, REMOTE_ADDR="198.51.100.7")
    assert _token(client, "bob", PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 429
    assert _token(client, "bob", PASSWORD, REMOTE_ADDR="198.51.100.8").status_code == 201


def test_rotating_forwarded_for_changes_nothing_without_a_trusted_proxy(alice, bob):
    client = APIClient()
    for i in range(LIMIT):
        _token(client, f"nobody{i}", WRONG, HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}")
    response = _token(client, "bob", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.200")
    assert response.status_code == 429


def test_forwarded_for_is_used_from_a_trusted_proxy(settings, alice, bob):
    settings.CUSTODY_TRUSTED_PROXIES = frozenset({"127.0.0.1"})
    client = APIClient()
    for i in range(LIMIT):
        _token(client, f"nobody{i}", WRONG, HTTP_X_FORWARDED_FOR="192.0.2.1")
    # The client behind the proxy is locked; another client behind the same proxy is not.
    assert _token(client, "bob", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.1").status_code == 429
    assert _token(client, "bob", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 201


def test_client_ip_reads_forwarded_for_from_the_right(settings):
    settings.CUSTODY_TRUSTED_PROXIES = frozenset({"10.0.0.1", "10.0.0.2"})

    def request(remote, xff=None):
        meta = {"REMOTE_ADDR": remote}
        if xff is not None:
            meta["HTTP_X_FORWARDED_FOR"] = xff
        return type("R", (), {"META": meta})()

    # What the client wrote itself (left of the real address) is ignored.
    assert client_ip(request("10.0.0.1", "6.6.6.6, 192.0.2.5")) == "192.0.2.5"
    assert client_ip(request("10.0.0.1", "192.0.2.5, 10.0.0.2")) == "192.0.2.5"
    assert client_ip(request("10.0.0.1")) == "10.0.0.1"
    assert client_ip(request("198.51.100.1", "192.0.2.5")) == "198.51.100.1"


def test_token_throttle_ignores_forwarded_for_without_a_trusted_proxy(settings, alice):
    from rest_framework.throttling import SimpleRateThrottle

    from custody.login_limits import AuthThrottle

    throttle = AuthThrottle()
    request = type("R", (), {"META": {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "192.0.2.9"}})()
    assert throttle.get_ident(request) == "127.0.0.1"
    settings.CUSTODY_TRUSTED_PROXIES = frozenset({"127.0.0.1"})
    assert throttle.get_ident(request) == "192.0.2.9"
    assert isinstance(throttle, SimpleRateThrottle)


@pytest.mark.slow
def test_two_gunicorn_workers_share_one_count(transactional_db, alice, tmp_path):
    import time

    import requests
    from axes.utils import reset

    log = tmp_path / "two.log"
    server = start_gunicorn(
        log, workers=2, extra_args=("--access-logfile", "-", "--access-logformat", "pid=%(p)s %(s)s")
    )
    url = f"{server.url}/api/v1/auth/token/"
    try:
        # Which worker takes a new connection is the kernel's choice: a round in
        # which one worker happened to take all LIMIT failures shows nothing, so
        # it is played again from a clean count (at most 5 rounds).
        for _ in range(5):
            reset()
            seen = log.stat().st_size
            # A new connection for each request, so either worker may take it.
            for _ in range(LIMIT):
                response = requests.post(url, json={"username": "alice", "password": WRONG}, timeout=30)
                assert response.status_code in (401, 429)
            answers = [
                requests.post(url, json={"username": "alice", "password": PASSWORD}, timeout=30)
                for _ in range(6)
            ]
            time.sleep(0.5)  # the access log line follows the answer
            with open(log) as f:
                f.seek(seen)
                served = re.findall(r"pid=<(\d+)> (\d+)", f.read())
            if len({pid for pid, _ in served[:LIMIT]}) == 2:
                break
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [429] * 6
    assert "temporarily locked" in answers[0].json()["detail"]
    assert len({pid for pid, _ in served}) == 2, served
    # Each worker alone saw fewer than LIMIT failures, yet both refuse.
    assert all(sum(1 for p, _ in served[:LIMIT] if p == pid) < LIMIT for pid, _ in served), served
