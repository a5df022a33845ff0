"""Several hosts: two web nodes and a worker, each with its own data directory, sharing only
PostgreSQL, Redis and the object store (issue: "Beyond one machine").

Everything is real and on loopback: a private PostgreSQL cluster and
redis-server (tests/test_faults.py), SeaweedFS (tests/s3_fixtures.py), and
the processes started from the example Procfiles in deploy/multihost/ as a
host would start them (``sh -c`` on the line, with the shared settings of
deploy/multihost/shared.env.example filled in for this machine). The
release step runs once, on node A; the key directory it made is then
copied to node B and the worker, as the README says to.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import requests

from . import s3_fixtures
from .conftest import ROOT, free_port, http_session, subprocess_env, wait_for_port
from .s3_fixtures import LOCKED, PLAIN
from .test_faults import BOOTSTRAP, PASSWORD, Postgres, Redis, manage

pytestmark = pytest.mark.slow  # and nodb (tests/conftest.py): its services are its own
seaweed = s3_fixtures.seaweed  # the server starts only for tests that ask for it

DEPLOY = ROOT / "deploy" / "multihost"
TIMEOUT = 30


def procfile_command(name: str, process: str) -> str:
    for line in (DEPLOY / name).read_text().splitlines():
        if line.startswith(f"{process}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {process} line in {name}")


def shared_names() -> set[str]:
    lines = (DEPLOY / "shared.env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


class Host:
    """One host: its own data directory, the shared settings, processes started from a Procfile line."""

    def __init__(self, name: str, shared: dict[str, str], root: Path):
        self.name, self.data = name, root / name
        self.data.mkdir(mode=0o700)
        self.env = subprocess_env(
            **shared,
            CUSTODY_USE_TEST_DB="0",
            CUSTODY_DATA_DIR=str(self.data),
            CUSTODY_KEY_DIR=str(self.data / "keys"),  # each host's own copy
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            WEB_CONCURRENCY="1",
            WORKER_CONCURRENCY="1",
        )
        self.procs: list[subprocess.Popen] = []
        self.url = ""

    def start(self, procfile: str, process: str, **extra) -> subprocess.Popen:
        log = open(self.data.parent / f"{self.name}-{process}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            ["sh", "-c", procfile_command(procfile, process)],
            cwd=ROOT,
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def serve(self) -> None:
        port = free_port()
        proc = self.start("Procfile.web", "web", PORT=str(port), WEB_BIND="127.0.0.1")
        wait_for_port(port, proc, timeout=60)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=20)


@pytest.fixture
def hosts(seaweed):
    pg, redis = Postgres(), Redis()
    root = Path(tempfile.mkdtemp(prefix="custody-hosts-"))
    prefix = f"hosts-{uuid.uuid4().hex[:12]}"
    shared = {
        "DATABASE_URL": pg.url("custody"),
        "DATABASE_MIGRATE_URL": "",
        "CELERY_BROKER_URL": redis.url,
        "CUSTODY_BLOB_STORE": f"s3://{LOCKED}/{prefix}",
        "CUSTODY_UPLOAD_STAGING": f"s3://{PLAIN}/{prefix}",
        "CUSTODY_S3_ENDPOINT_URL": seaweed.endpoint,
        "AWS_ACCESS_KEY_ID": s3_fixtures.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": s3_fixtures.SECRET_KEY,
        "AWS_REGION": s3_fixtures.REGION,
        "DJANGO_SECRET_KEY": "shared by every host of this test",
        "CUSTODY_KEY_PASSPHRASE": "the keys' passphrase, shared",
        "CUSTODY_LOG_ORIGIN": "hosts.test/log",
    }
    # The example names every setting the hosts share (CUSTODY_KEY_DIR is a copy on each).
    assert shared.keys() - {"DATABASE_MIGRATE_URL"} == shared_names() - {"CUSTODY_KEY_DIR"}
    made = {name: Host(name, shared, root) for name in ("web-a", "web-b", "worker")}
    try:
        with pg.connect() as conn:
            conn.execute("CREATE DATABASE custody")
        a = made["web-a"]
        manage(a.env, "migrate")
        case = manage(a.env, "shell", "-c", BOOTSTRAP).stdout.strip().splitlines()[-1]
        manage(a.env, "check_blob_store")
        for other in ("web-b", "worker"):
            shutil.copytree(a.data / "keys", made[other].data / "keys")
        made["web-a"].serve()
        made["web-b"].serve()
        made["worker"].start("Procfile.worker", "worker")
        yield made, case, pg
    finally:
        for host in made.values():
            host.stop()
        redis.destroy()
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


def session(host: Host, token: str | None = None) -> requests.Session:
    http = http_session()
    if token is None:
        answer = http.post(
            host.url + "/api/v1/auth/token/",
            json={"username": "alice", "password": PASSWORD},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 201, answer.text
        token = answer.json()["token"]
    http.headers["Authorization"] = f"Token {token}"
    http.token = token
    return http


def tus_metadata(**values) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def test_two_web_nodes_and_a_worker_share_only_the_database_broker_and_store(hosts):
    made, case, pg = hosts
    a, b, worker = made["web-a"], made["web-b"], made["worker"]
    on_a = session(a)
    on_b = session(b, on_a.token)  # a token made on one node works on the other: it is in the database

    # Uploaded on A, downloaded on B.
    content = os.urandom(3 * 1024 * 1024 + 5)
    sha256 = hashlib.sha256(content).hexdigest()
    answer = on_a.post(
        a.url + "/api/v1/evidence/",
        data={"case": case},
        files={"file": ("clip.bin", content)},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 201, answer.text
    evidence = answer.json()
    assert evidence["sha256"] == sha256
    download = on_b.get(f"{b.url}/api/v1/evidence/{evidence['id']}/content/", timeout=TIMEOUT)
    assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == sha256

    # Analysed: asked on B, run by the worker host, read on A with its picture from the store.
    answer = on_b.post(
        f"{b.url}/api/v1/evidence/{evidence['id']}/analyses/",
        json={"analyzer": "file.entropy", "parameters": {}},
        timeout=TIMEOUT,
    )
    assert answer.status_code in (201, 202), answer.text
    analysis_id = answer.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        analysis = on_a.get(f"{a.url}/api/v1/analyses/{analysis_id}/", timeout=TIMEOUT).json()
        if analysis["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert analysis["status"] == "succeeded", analysis
    worker_log = (worker.data.parent / "worker-worker.log").read_text()
    assert re.search(
        r"Task forensics\.run_analysis\[[-0-9a-f]+\] succeeded", worker_log
    )  # the worker host ran it
    artifact = analysis["artifacts"][0]
    picture = on_a.get(
        f"{a.url}/api/v1/analyses/{analysis_id}/artifacts/{artifact['sha256']}/", timeout=TIMEOUT
    )
    assert picture.status_code == 200 and hashlib.sha256(picture.content).hexdigest() == artifact["sha256"]

    # Exported through A: the bag holds the file and the worker's signed result.
    bundle = on_a.get(f"{a.url}/api/v1/evidence/{evidence['id']}/export/?include_file=1", timeout=60)
    assert bundle.status_code == 200, bundle.text[:300]
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as bag:
        names = bag.namelist()
        (stored,) = [n for n in names if n.endswith(f"/data/evidence/{sha256}")]
        assert hashlib.sha256(bag.read(stored)).hexdigest() == sha256
        assert any(f"/data/analyses/{analysis_id}/" in n for n in names), names

    # A resumable upload started on A and finished on B.
    content2 = os.urandom(5 * 1024 * 1024 + 11)
    tus = {"Tus-Resumable": "1.0.0"}
    created = on_a.post(
        a.url + "/api/v1/uploads/",
        headers={**tus, "Upload-Length": str(len(content2)), "Upload-Metadata": tus_metadata(case=case)},
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    path = "/api/" + created.headers["Location"].split("/api/", 1)[1]
    octets = {**tus, "Content-Type": "application/offset+octet-stream"}
    half = 2 * 1024 * 1024
    first = on_a.patch(
        a.url + path, data=content2[:half], headers={**octets, "Upload-Offset": "0"}, timeout=60
    )
    assert first.status_code == 204, first.text
    assert on_b.head(b.url + path, headers=tus, timeout=TIMEOUT).headers["Upload-Offset"] == str(half)

    # While a PATCH is in flight on A, another for the same upload on B waits its turn (423), changing nothing.
    slow = http.client.HTTPConnection("127.0.0.1", int(a.url.rsplit(":", 1)[1]), timeout=TIMEOUT)
    slow.putrequest("PATCH", path)
    for name, value in {
        **octets,
        "Upload-Offset": str(half),
        "Content-Length": str(1024 * 1024),
        "Authorization": f"Token {on_a.token}",
    }.items():
        slow.putheader(name, value)
    slow.endheaders()
    slow.send(content2[half : half + 4096])
    deadline = time.monotonic() + 10
    while not upload_locked(pg, path):  # until A holds it (probing B before would race A for the lock)
        assert time.monotonic() < deadline, "host A never took the upload's lock"
        time.sleep(0.05)
    busy = on_b.patch(b.url + path, data=b"x", headers={**octets, "Upload-Offset": str(half)}, timeout=60)
    assert busy.status_code == 423, (busy.status_code, busy.text)
    slow.send(content2[half + 4096 : half + 1024 * 1024])
    assert slow.getresponse().status == 204
    slow.close()
    half += 1024 * 1024
    rest = on_b.patch(
        b.url + path, data=content2[half:], headers={**octets, "Upload-Offset": str(half)}, timeout=60
    )
    assert rest.status_code == 204, rest.text
    second_id = rest.headers["Custody-Evidence"].rstrip("/").rsplit("/", 1)[1]
    second = on_a.get(f"{a.url}/api/v1/evidence/{second_id}/", timeout=TIMEOUT).json()
    assert second["sha256"] == hashlib.sha256(content2).hexdigest()
    assert second["sha1"] == hashlib.sha1(content2, usedforsecurity=False).hexdigest()
    back = on_a.get(f"{a.url}/api/v1/evidence/{second_id}/content/", timeout=TIMEOUT)
    assert back.content == content2

    # Nothing of the evidence stayed on any host: the store holds it. A's part of the
    # resumable upload finished on B is removed by A's sweeper (once expired: now, here).
    assert procfile_command("Procfile.web", "sweeper").startswith("python manage.py sweep_uploads ")
    swept = manage({**a.env, "CUSTODY_UPLOAD_EXPIRY_SECONDS": "0"}, "sweep_uploads")
    assert "swept 0 expired resumable upload(s)" in swept.stdout  # the upload is evidence, not expired
    for host in made.values():
        kept = [p for p in host.data.glob("blobs/**/*") if p.is_file()]
        kept += [p for p in host.data.glob("resumable/*")] + [p for p in host.data.glob("tmp/*")]
        assert kept == [], (host.name, kept)
    # The log verifies from any host.
    done = manage(worker.env, "verify_log", "--no-witnesses", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\bOK\b", done.stdout), done.stdout
    entries = json.loads(manage(b.env, "shell", "-c", COUNT_ENTRIES).stdout.strip().splitlines()[-1])
    assert entries["evidence.received"] == 2 and entries["analysis.completed"] >= 1, entries


def upload_locked(pg: Postgres, path: str) -> bool:
    """Whether a session holds the advisory lock custody/tus.py takes for the upload at ``path``."""
    key = int.from_bytes(uuid.UUID(path.rstrip("/").rsplit("/", 1)[1]).bytes[:8], "big")  # unsigned
    with pg.connect("custody") as conn:
        rows = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s AND objsubid = 1",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
    return rows[0] > 0


COUNT_ENTRIES = """
import json
from django.db.models import Count
from custody.models import LogEntry
print(json.dumps(dict(LogEntry.objects.values_list("action").annotate(n=Count("index")))))
"""
