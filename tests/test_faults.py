"""Faults, nothing lost: real services stopped, restarted or filled up under load.

Each test runs its own services on loopback (a private PostgreSQL cluster,
a private redis-server, a tmpfs data dir), never the shared ones other
tests use, and drives a real gunicorn (and Celery worker) through the REST
API. After each fault ``nothing_lost`` checks what the issue asks: the log
verifies (``manage.py verify_log``), its indexes are dense, every receipt a
client was given names a log entry that exists and bytes that are stored
(the blob file is hashed again), and no temporary upload is left behind.

Killed web and worker processes, the object store down and resuming after
a restart are covered elsewhere: tests/test_upload_sweep.py,
tests/test_analyses.py, tests/test_s3.py and tests/test_tus.py.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
import requests

from .conftest import ROOT, free_port, http_session, kill_worker, start_gunicorn, start_worker, subprocess_env

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PASSWORD = "faults are not failures"
TIMEOUT = 10  # seconds for any one request of a client


# --- private services ----------------------------------------------------------------


class Postgres:
    """A private PostgreSQL cluster in a temporary directory, on a free loopback port.

    Trust authentication on 127.0.0.1 only; fsync stays on (the default), so a
    restart keeps exactly what was committed.
    """

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            pytest.fail("the PostgreSQL server is not installed; ./scripts/test installs it (postgresql)")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="custody-faults-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL will not run as root: the cluster is the postgres user's
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = on\nmax_connections = 40\n"
            )
        self.start()

    def _run(self, tool: str, *args) -> None:
        subprocess.run(
            [*self.as_owner, self.bin / tool, *map(str, args)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def pg_ctl(self, *args) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.dir / "server.log", "-w", "-t", "30", *args)

    def start(self) -> None:
        self.pg_ctl("start")

    def restart(self, mode: str = "immediate") -> None:
        """``immediate``: the server stops at once, as in a crash, and recovers from its WAL."""
        self.pg_ctl("restart", "-m", mode)

    def destroy(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=db, autocommit=True, connect_timeout=10
        )


class Redis:
    """A private redis-server on a free loopback port, as the machine's default runs it: no persistence."""

    def __init__(self):
        self.path = shutil.which("redis-server")
        if self.path is None:
            pytest.fail("redis-server is not installed; ./scripts/test installs it (redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="custody-faults-redis-"))
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    def kill(self) -> None:
        """SIGKILL: whatever it held in memory (the queued messages) is gone."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def destroy(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server on {port} exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


TEMPLATE = "custody_template"


@pytest.fixture(scope="module")
def postgres():
    """One private cluster for the module, with the project's schema migrated once into a template."""
    pg = Postgres()
    try:
        with pg.connect() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        data_dir = Path(tempfile.mkdtemp(prefix="custody-faults-template-"))
        manage(site_env(pg, TEMPLATE, data_dir), "migrate")
        shutil.rmtree(data_dir)
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def redis():
    server = Redis()
    try:
        yield server
    finally:
        server.destroy()


# --- a site: its own database, data dir and users ----------------------------------------------------


def site_env(pg: Postgres, db: str, data_dir: Path, **settings) -> dict[str, str]:
    return subprocess_env(
        **{
            "CUSTODY_USE_TEST_DB": "0",  # this database, not the test session's
            "CUSTODY_DATA_DIR": str(data_dir),
            "DATABASE_URL": pg.url(db),
            "DATABASE_MIGRATE_URL": "",
            "CELERY_BROKER_URL": "filesystem://",
            **settings,
        }
    )


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


BOOTSTRAP = f"""
from custody import services
from custody.models import LogHead, Role
LogHead.objects.get_or_create(pk=1)
services.ensure_signing_keys()
alice = services.create_user(actor=None, username="alice", password={PASSWORD!r}, role=Role.INVESTIGATOR)
print(services.create_case(actor=alice, reference="F-1", title="Faults").pk)
"""


class Site:
    """The project deployed on a database of its own (copied from the migrated template)."""

    def __init__(self, pg: Postgres, name: str, data_dir: Path | None = None, **settings):
        self.pg, self.db = pg, f"custody_{name}"
        with pg.connect() as conn:
            conn.execute(f"CREATE DATABASE {self.db} TEMPLATE {TEMPLATE}")
        self.data = data_dir or Path(tempfile.mkdtemp(prefix=f"custody-faults-{name}-"))
        self.env = site_env(pg, self.db, self.data, **settings)
        self.settings = {
            k: v for k, v in self.env.items() if k.startswith(("CUSTODY_", "DATABASE", "CELERY"))
        }
        self.case = manage(self.env, "shell", "-c", BOOTSTRAP).stdout.strip().splitlines()[-1]
        self.receipts: list[dict] = []  # every intake answer (201) a client was given
        self.server = None
        self._own_data = data_dir is None

    def serve(self, log_path: Path) -> None:
        self.server = start_gunicorn(log_path, env=self.settings)

    def client(self) -> Client:
        return Client(self)

    def query(self, sql: str, *params) -> list[tuple]:
        with self.pg.connect(self.db) as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self._own_data:
            shutil.rmtree(self.data, ignore_errors=True)


class Client:
    """One API client (its own connection pool and token), as an investigator's tool would be."""

    def __init__(self, site: Site):
        self.site, self.http = site, http_session()
        response = self.http.post(
            site.server.url + "/api/v1/auth/token/",
            json={"username": "alice", "password": PASSWORD},
            timeout=TIMEOUT,
        )
        assert response.status_code == 201, response.text
        self.http.headers["Authorization"] = f"Token {response.json()['token']}"

    def upload(self, data: bytes, name: str = "clip.bin") -> requests.Response:
        response = self.http.post(
            self.site.server.url + "/api/v1/evidence/",
            data={"case": self.site.case},
            files={"file": (name, data)},
            timeout=TIMEOUT,
        )
        if response.status_code == 201:
            self.site.receipts.append(response.json())
        return response

    def analyse(self, evidence_id: str, **parameters) -> requests.Response:
        return self.http.post(
            f"{self.site.server.url}/api/v1/evidence/{evidence_id}/analyses/",
            json={"analyzer": "test.digest", "parameters": parameters},
            timeout=TIMEOUT,
        )


# --- the check after every fault -------------------------------------------------------------------


def nothing_lost(site: Site) -> None:
    """The log verifies and is dense; every receipt names its log entry and stored bytes; no temp files."""
    done = manage(site.env, "verify_log", "--quiet", "--no-witnesses", check=False)
    assert done.returncode == 0, f"verify_log failed:\n{done.stdout}\n{done.stderr}"

    indexes = [row[0] for row in site.query('SELECT "index" FROM custody_logentry ORDER BY "index"')]
    assert indexes and indexes == list(range(indexes[0], indexes[0] + len(indexes))), "the log has gaps"

    for body in site.receipts:
        statement = json.loads(base64.b64decode(body["receipt"]["payload"]))
        assert statement["subject"][0]["digest"]["sha256"] == body["sha256"]
        assert statement["predicate"]["log"]["index"] == body["log_index"]
        rows = site.query(
            "SELECT e.blob_id, e.log_index, l.action FROM custody_evidence e "
            'JOIN custody_logentry l ON l."index" = e.log_index WHERE e.id = %s',
            body["id"],
        )
        assert rows == [(body["sha256"], body["log_index"], "evidence.received")], body["id"]
        sha = body["sha256"]
        blob = site.data / "blobs" / "sha256" / sha[:2] / sha[2:4] / sha
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha, (
            f"{blob} does not hold the receipt's bytes"
        )
        assert blob.stat().st_size == body["size"]

    assert temp_uploads(site) == []


def temp_uploads(site: Site) -> list[str]:
    return sorted(p.name for p in (site.data / "tmp").glob("upload-*"))


def assert_clean_failure(response: requests.Response) -> None:
    """A refusal the client can act on: a 5xx in JSON with a detail, never a page or a traceback."""
    assert response.status_code >= 500, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    assert response.json()["detail"]
    assert "Traceback" not in response.text


# --- PostgreSQL restarted under upload and log load -----------------------------------------------------------


def test_postgres_restarted_under_upload_and_log_load(postgres, tmp_path):
    site = Site(postgres, "pgrestart")
    site.serve(tmp_path / "gunicorn.log")
    try:
        outcomes: list[tuple[str, int | str]] = []  # (what, HTTP status or connection error)
        queued: list[str] = []  # analyses a client was told are queued
        stop = threading.Event()

        def load(client: Client, n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                data = os.urandom(32 * 1024) + f"client {n} upload {i}".encode()
                try:
                    response = client.upload(data, name=f"c{n}-{i}.bin")
                    outcomes.append(("upload", response.status_code))
                    if response.status_code != 201:
                        assert_clean_failure(response)
                        time.sleep(0.1)
                        continue
                    response = client.analyse(response.json()["id"])
                    outcomes.append(("analysis", response.status_code))
                    if response.status_code == 202:
                        queued.append(response.json()["id"])
                    else:
                        assert_clean_failure(response)
                except requests.ConnectionError as exc:  # the web process itself must not fail
                    outcomes.append(("connection error", repr(exc)))
                    time.sleep(0.05)

        errors: list[BaseException] = []

        def guarded(client: Client, n: int) -> None:
            try:
                load(client, n)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(site.client(), n)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        before = len(outcomes)
        postgres.restart("immediate")  # a crash: in-flight transactions are lost, committed ones kept
        time.sleep(2.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        assert [o for o in outcomes if o[0] == "connection error"] == []
        assert before > 0 and len(outcomes) > before
        assert ("upload", 201) in outcomes[before:], "nothing succeeded after the restart"

        # The same server answers again, at once: each of its threads notices
        # that its kept connection died with the server, and reconnects.
        postgres.restart("fast")  # now while nothing runs: the first request must not fail
        client = site.client()
        for i in range(6):
            response = client.upload(f"after the restart {i}".encode())
            assert response.status_code == 201, response.text
            response = client.analyse(response.json()["id"])
            assert response.status_code == 202, response.text
            queued.append(response.json()["id"])
        assert site.server.proc.poll() is None

        nothing_lost(site)
        # Every analysis a client was told is queued is recorded, with its log entry.
        recorded = dict(site.query("SELECT id::text, request_log_index FROM forensics_analysis"))
        assert set(queued) <= set(recorded)
        (entries,) = site.query(
            'SELECT count(*) FROM custody_logentry WHERE "index" = ANY(%s) AND action = %s',
            [recorded[a] for a in queued],
            "analysis.requested",
        )[0]
        assert entries == len(queued)
    finally:
        site.close()


# --- Redis restarted: queued analyses are not lost ----------------------------------------------------


def test_redis_restarted_queued_analyses_run_once(postgres, redis, tmp_path):
    site = Site(
        postgres,
        "redisrestart",
        CELERY_BROKER_URL=redis.url,
        CUSTODY_ANALYSIS_RESEND_SECONDS="2",
        CUSTODY_SWEEP_INTERVAL="1",
    )
    site.serve(tmp_path / "gunicorn.log")
    beat = worker = None
    try:
        client = site.client()
        evidence = [client.upload(f"queued while no worker runs {i}".encode()).json()["id"] for i in range(3)]
        analyses = []
        for evidence_id in evidence:  # the worker is not running: the messages wait in Redis
            response = client.analyse(evidence_id)
            assert response.status_code == 202, response.text
            analyses.append(response.json()["id"])

        redis.kill()  # Redis restarted without persistence: the queued messages are gone
        # A request while the broker is down is still recorded (the message is sent later).
        response = client.analyse(evidence[0], delay=0.01)
        assert response.status_code == 202, response.text
        analyses.append(response.json()["id"])
        redis.start()

        # The worker and the periodic sweep (beat) come back; the sweep re-sends what Redis lost.
        with open(tmp_path / "beat.log", "w") as beat_log:
            beat = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "custody", "beat", "--loglevel=INFO"],
                cwd=ROOT,
                env=site.env,
                stdout=beat_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = start_worker(tmp_path / "worker.log", **site.settings)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            statuses = dict(site.query("SELECT id::text, status FROM forensics_analysis"))
            if all(statuses.get(a) == "succeeded" for a in analyses):
                break
            time.sleep(0.3)
        assert [statuses.get(a) for a in analyses] == ["succeeded"] * len(analyses), statuses

        # Exactly one result each, whatever duplicate messages the re-sending made.
        for analysis_id in analyses:
            actions = [
                row[0]
                for row in site.query(
                    "SELECT action FROM custody_logentry"
                    " WHERE convert_from(leaf, 'UTF8')::jsonb->'details'->>'analysis' = %s",
                    analysis_id,
                )
            ]
            assert actions.count("analysis.completed") == 1, actions
            assert actions.count("analysis.started") == 1, actions
        nothing_lost(site)
    finally:
        if beat is not None:
            kill_worker(beat, signal.SIGTERM)
        if worker is not None:
            kill_worker(worker, signal.SIGTERM)
        site.close()


# --- the disk full during an upload ---------------------------------------------------------------------


def send_slowly(url: str, token: str, case: str, size: int, pause_at: int, during_pause) -> tuple[int, dict]:
    """POST a multipart upload of ``size`` bytes, calling ``during_pause`` after ``pause_at`` of them.

    Stops sending as soon as the server answers (as curl does), and returns (status, JSON body).
    """
    host, port = url.removeprefix("http://").split(":")
    boundary = "faultsboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="case"\r\n\r\n{case}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = (
        f"POST /api/v1/evidence/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + size + len(tail)}\r\nConnection: close\r\n\r\n"
    ).encode()
    chunk = os.urandom(256 * 1024)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request + head)
        sent = 0
        try:
            while sent < size:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered: stop sending
                if sent >= pause_at and during_pause is not None:
                    during_pause()
                    during_pause = None
                    time.sleep(0.3)
                piece = chunk[: min(len(chunk), size - sent)]
                sock.sendall(piece)
                sent += len(piece)
            else:
                sock.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    header, _, body = answer.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(body)


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_disk_full_during_an_upload(postgres, tmp_path):
    data_dir = Path(tempfile.mkdtemp(prefix="custody-faults-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(data_dir)], capture_output=True
    )
    if mounted.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.skip(f"cannot mount a small filesystem for the data dir (needs root): {mounted.stderr!r}")
    site = None
    try:
        # A reserve of 1 MiB (the default 256 MiB is more than this whole disk).
        site = Site(postgres, "diskfull", data_dir=data_dir, CUSTODY_FREE_SPACE_RESERVE_BYTES=str(1 << 20))
        site.serve(tmp_path / "gunicorn.log")
        client = site.client()
        assert client.upload(b"kept before the disk filled").status_code == 201
        entries = site.query("SELECT count(*) FROM custody_logentry")[0][0]
        items = site.query("SELECT count(*) FROM custody_evidence")[0][0]
        token = client.http.headers["Authorization"].split()[1]

        # Larger than the free space from the start: refused before the body is read.
        status, body = send_slowly(site.server.url, token, site.case, 64 << 20, 1 << 40, None)
        assert status in (413, 507) and "nothing was kept" in body["detail"], body

        # Room for it at the start; another writer fills the disk while it arrives.
        filler = data_dir / "filler"

        def fill_the_disk() -> None:
            # Once the server holds 4 MiB of the upload, another writer takes the space that is free
            # at that moment, and no more. Not "until the disk is full": the server may still be
            # writing what it has buffered, and it refuses as soon as the rest of the upload would
            # not fit, which can be while the filler is writing; a filler that went on until ENOSPC
            # would then take the space the refusal freed as well, and the next upload found a
            # full disk whatever the server did. Bounded, the filler leaves exactly what the
            # server held when it began (4 MiB or more), free again if, and only if, the server
            # has let go of it.
            deadline = time.monotonic() + TIMEOUT
            while (
                not (held := [p.stat().st_size for p in (site.data / "tmp").glob("upload-*")])
                or max(held) < 4 << 20
            ):
                assert time.monotonic() < deadline, f"the server wrote {held} of the upload in {TIMEOUT} s"
                time.sleep(0.05)
            room = shutil.disk_usage(data_dir).free
            with open(filler, "wb", buffering=0) as f:
                try:
                    while room > 0:
                        room -= f.write(b"\0" * min(room, 1 << 20))
                except OSError:  # the server wrote meanwhile: the disk is full before the filler's share
                    pass

        status, body = send_slowly(site.server.url, token, site.case, 24 << 20, 8 << 20, fill_the_disk)
        assert status in (413, 507) and "nothing was kept" in body["detail"], body

        # Nothing of either upload is kept: no evidence, no log entry, no temporary file.
        assert site.query("SELECT count(*) FROM custody_logentry")[0][0] == entries
        assert site.query("SELECT count(*) FROM custody_evidence")[0][0] == items
        assert temp_uploads(site) == []
        # The server goes on: the space the refused upload held is free by the time it answers,
        # and the next upload is accepted at once.
        assert shutil.disk_usage(data_dir).free >= 4 << 20
        response = client.upload(b"a small file after the refusal")
        assert response.status_code == 201, response.text
        filler.unlink()
        nothing_lost(site)
    finally:
        if site is not None:
            site.close()
        subprocess.run(["umount", "-l", str(data_dir)], check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
