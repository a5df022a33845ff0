"""The fixed cast and helpers shared by the tests.

Cast: alice (investigator, case A), bob (investigator, case B), carol
(auditor, case A), dave (investigator, no case), root (administrator).
Data is made through the services, as users would make it.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from custody import services
from custody.models import LogHead, Role

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


@pytest.fixture
def custody_db(db):
    """The database as the release step leaves it: log head row and signing keys."""
    LogHead.objects.get_or_create(pk=1)
    services.ensure_signing_keys()


def _user(username, role, cases=()):
    return services.create_user(
        actor=None, username=username, password=PASSWORD, role=role, cases=list(cases)
    )


@pytest.fixture
def root(custody_db):
    return _user("root", Role.ADMIN)


@pytest.fixture
def alice(custody_db):
    return _user("alice", Role.INVESTIGATOR)


@pytest.fixture
def bob(custody_db):
    return _user("bob", Role.INVESTIGATOR)


@pytest.fixture
def case_a(alice):
    return services.create_case(actor=alice, reference="A-1", title="Leaked recording")


@pytest.fixture
def case_b(bob):
    return services.create_case(actor=bob, reference="B-1", title="Other matter")


@pytest.fixture
def carol(case_a):
    return _user("carol", Role.AUDITOR, [case_a])


@pytest.fixture
def dave(custody_db):
    return _user("dave", Role.INVESTIGATOR)


def api_client_for(user, password: str = PASSWORD) -> APIClient:
    """A REST client holding a real token obtained through the API."""
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 201, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


@pytest.fixture
def as_alice(alice):
    return api_client_for(alice)


@pytest.fixture
def as_bob(bob):
    return api_client_for(bob)


@pytest.fixture
def as_carol(carol):
    return api_client_for(carol)


@pytest.fixture
def as_dave(dave):
    return api_client_for(dave)


@pytest.fixture
def as_root(root):
    return api_client_for(root)


def run_verify_log(*args: str) -> tuple[int, str]:
    """``manage.py verify_log --quiet ARGS`` as an auditor runs it: (exit code, what it printed)."""
    from django.core.management import call_command

    out = io.StringIO()
    try:
        call_command("verify_log", "--quiet", *args, stdout=out)
        return 0, out.getvalue()
    except SystemExit as exc:
        return exc.code, out.getvalue()


def upload(client, case, content: bytes = b"evidence bytes\n", name="clip.bin", **fields):
    """POST one file to the intake endpoint; returns the response."""
    data = {"file": SimpleUploadedFile(name, content), "case": str(case.pk if hasattr(case, "pk") else case)}
    data.update(fields)
    return client.post("/api/v1/evidence/", data, format="multipart")


@pytest.fixture
def evidence_a(as_alice, case_a):
    response = upload(as_alice, case_a, b"RIFF....WAVEfmt the meeting recording", name="meeting.wav")
    assert response.status_code == 201, response.content
    from custody.models import Evidence

    return Evidence.objects.get(pk=response.json()["id"])


# --- real processes --------------------------------------------------------


def subprocess_env(**extra) -> dict[str, str]:
    """Environment for a server or worker that must share the test database and data dir."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        CUSTODY_USE_TEST_DB="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def http_session():
    """A ``requests`` session that, like a browser or a load balancer, retries an idempotent
    request (GET, HEAD, ...) once more when the server closed the kept-alive connection just as
    the request went out: gunicorn's gthread worker can reset an idle keep-alive connection in
    that instant (benoitc/gunicorn#1698). POST and PATCH are never retried."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    retry = Retry(total=2, connect=2, read=2, status=0, redirect=0, backoff_factor=0.1)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def gunicorn_server(transactional_db, tmp_path):
    """The web process as the Procfile runs it (gunicorn), on the test database."""
    LogHead.objects.get_or_create(pk=1)
    services.ensure_signing_keys()
    server = start_gunicorn(tmp_path / "gunicorn.log")
    try:
        yield server
    finally:
        server.stop()


def start_gunicorn(
    log_path,
    port: int | None = None,
    workers: int = 1,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
):
    """Start gunicorn on the test database; the result has url, port, proc and stop().

    ``env``: extra environment variables (settings) for this server only.
    """
    port = port or free_port()
    log = open(log_path, "a")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "custody.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            "2",
            "--timeout",
            "600",
            *extra_args,
        ],
        cwd=ROOT,
        env=subprocess_env(**(env or {})),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def _stop():
        stop(proc)
        log.close()

    try:
        wait_for_port(port, proc)
    except BaseException:
        _stop()
        raise
    return type(
        "Server",
        (),
        {"url": f"http://127.0.0.1:{port}", "proc": proc, "port": port, "stop": staticmethod(_stop)},
    )


def start_worker(log_path, **env) -> subprocess.Popen:
    """A real Celery worker process (its own process group), on the configured broker and test DB.

    ``env``: extra environment variables (settings) for this worker only.
    """
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "custody",
                "worker",
                "--loglevel=INFO",
                "--concurrency=1",
                "--prefetch-multiplier=1",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            ],
            cwd=ROOT,
            env=subprocess_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text()[offset:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("worker did not start:\n" + log_path.read_text()[offset:])
        time.sleep(0.2)
    return proc


def kill_worker(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    """Stop the worker and its pool children at once (SIGKILL: as a crash or the OOM killer would)."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture
def celery_worker_proc(transactional_db, tmp_path):
    proc = start_worker(tmp_path / "worker.log")
    try:
        yield proc
    finally:
        kill_worker(proc, signal.SIGTERM)


@pytest.fixture
def fsynced(monkeypatch) -> list[Path]:
    """The paths os.fsync is called on from now on, in order (and it still syncs them)."""
    paths, real = [], os.fsync

    def fsync(fd):
        paths.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; the README's test command installs it")
    return path


@pytest.fixture(autouse=True)
def _append_only_triggers(request):
    """Keep the log's append-only triggers in place, except while a transactional test flushes.

    Transactional tests (real servers and workers) end with a flush of every
    table, which the triggers rightly refuse; they are dropped for the flush
    and re-installed at the start of the next test that uses the database.
    """
    from django.db import connection

    from custody import dbguard

    names = request.fixturenames
    if "transactional_db" in names:
        request.getfixturevalue("transactional_db")
    elif "db" in names:
        request.getfixturevalue("db")
    else:
        yield
        return
    dbguard.install(connection)
    yield
    if "transactional_db" in names:
        dbguard.remove(connection)


@pytest.fixture(autouse=True)
def _fresh_blob_store():
    """Blob files outlive rolled-back transactions: start each test with an empty store."""
    from custody.storage import blob_store, upload_staging

    shutil.rmtree(settings.CUSTODY_BLOB_DIR, ignore_errors=True)
    blob_store.cache_clear()
    upload_staging.cache_clear()
    yield


def pytest_collection_modifyitems(config, items):
    """Mark tests that touch neither the database nor the broker (`nodb`).

    They give the same answer on every backend, so the PostgreSQL + Redis run
    of .ci/run skips them (`-m "not nodb"`); the default run includes them.
    """
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if not names & {"db", "transactional_db", "django_db_setup"}:
            item.add_marker(pytest.mark.nodb)


def totp_code(device, key: bytes | None = None) -> str:
    """The code an authenticator app holding ``device``'s key shows for the next step the server accepts.

    Computed from the key (RFC 6238 through django_otp.oath), not asked of the
    server. A code is accepted once: the server takes only steps after the
    last one used, within its tolerance of now, so when the next step is
    beyond the tolerance this waits for the clock, as a user would.
    ``key``: another key than the device's (an attacker's copy read from the table).
    """
    from django_otp.oath import TOTP

    from custody.models import open_totp_key

    device.refresh_from_db()
    if key is None:
        key, _ = open_totp_key(device)  # stored encrypted (models.seal_totp_key)
    totp = TOTP(key, device.step, device.t0, device.digits)
    while True:
        now_t = totp.t()
        # The current step (not the oldest one tolerated): a code read off the
        # app stays good for the tolerance's steps after, so a test that posts
        # it a second or two later does not race a step boundary.
        step = max(now_t + device.drift, device.last_t + 1)
        if step <= now_t + device.drift + device.tolerance:
            break
        time.sleep(device.step - (time.time() - device.t0) % device.step + 0.05)
    totp.time = device.t0 + step * device.step
    return f"{totp.token():0{device.digits}d}"


def enrol_second_factor(user) -> tuple[object, list[str]]:
    """Enrol a TOTP device through the service, as the enrolment page does: (device, recovery codes)."""
    from custody import second_factor

    return second_factor.enrol(user=user, code=totp_code(second_factor.start_enrolment(user)))


def force_login_verified(client, user) -> None:
    """``client.force_login`` for a user who must have a second factor (administrators).

    Enrols one if the user has none, then marks the session as having given
    its code, as django_otp.login does after the code page.
    """
    from django_otp import DEVICE_ID_SESSION_KEY

    from custody import second_factor

    device = second_factor.totp_device(user) or enrol_second_factor(user)[0]
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


def busy_writeback_helper(monkeypatch):
    """Replace the writeback helper (uploads._Writeback) by one that holds its descriptor until released.

    Returns (started, release, its descriptors): a helper still busy with the disk after the
    request that started it has answered."""
    import threading

    from custody import uploads

    started, release, fds = threading.Event(), threading.Event(), []

    def busy_helper(state, fd):  # still busy with the disk after the request has ended
        fds.append(fd)
        started.set()
        release.wait(10)
        os.close(fd)

    monkeypatch.setattr(uploads._Writeback, "WINDOW", 4096)
    monkeypatch.setattr(uploads, "_give_writeback_hints", busy_helper)
    return started, release, fds
