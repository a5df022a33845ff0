"""Large uploads through the real web process (gunicorn, as the Procfile runs it).

The hashes the server computes while streaming must equal what the
coreutils tools say about the same file, and the web process must not hold
the file in memory: its RSS (master and workers, sampled every 50 ms) grows
by far less than the file size during the upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
from django.conf import settings

from custody.models import Evidence
from custody.storage import blob_store

from .conftest import PASSWORD, require_tool

pytestmark = pytest.mark.slow

FILE_SIZE = 300 << 20  # 300 MiB
MAX_GROWTH = 64 << 20  # bytes of RSS growth allowed: a fifth of the file
MB = 1 << 20


# --- helpers --------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """The gunicorn master and its workers."""
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids.extend(int(p) for p in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return pids


def tree_rss(pid: int) -> int:
    return sum(rss_bytes(p) for p in process_tree(pid))


class RssSampler(threading.Thread):
    """Peak RSS of a process tree, sampled every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.baseline = tree_rss(pid)
        self.peak = self.baseline
        self.samples = 0
        self.workers_seen: set[int] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        pids = process_tree(self.pid)
        self.workers_seen.update(pids[1:])
        self.peak = max(self.peak, sum(rss_bytes(p) for p in pids))
        self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def make_file(path, size: int) -> None:
    """Random bytes (a 16 MiB random block repeated) with a unique head; made in about a second."""
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        f.write(os.urandom(64))
        left = size - 64
        while left > 0:
            f.write(block[:left])
            left -= min(left, len(block))


def tool(name: str, path) -> str:
    out = subprocess.run([require_tool(name), str(path)], check=True, capture_output=True, text=True)
    return out.stdout.split()[0]


def get_token(url: str) -> str:
    request = urllib.request.Request(  # noqa: S310 (the test's own server on 127.0.0.1)
        f"{url}/api/v1/auth/token/",
        data=json.dumps({"username": "alice", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.load(response)["token"]


def curl_upload(url: str, token: str, path, case) -> tuple[int, dict]:
    result = subprocess.run(
        [
            require_tool("curl"),
            "-sS",
            "-H",
            "Expect:",
            "-H",
            f"Authorization: Token {token}",
            "-F",
            f"file=@{path}",
            "-F",
            f"case={case.pk}",
            "-w",
            "\n%{http_code}",
            f"{url}/api/v1/evidence/",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    body, _, code = result.stdout.rpartition("\n")
    return int(code), json.loads(body) if body.startswith("{") else {"raw": body}


def multipart(case, name: str, content: bytes) -> tuple[bytes, bytes, str]:
    """(head, tail, content type) of a one-file multipart body; the content goes between."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="case"\r\n\r\n{case.pk}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


def read_response(stream) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from a buffered socket file."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers.get("content-length", 0)))


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def temp_files() -> set[str]:
    """What is in the upload temp dir (other tests may leave unrelated things there: compare sets)."""
    return set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR))


# --- tests -----------------------------------------------------------------------


def test_large_upload_matches_coreutils_and_memory_stays_flat(gunicorn_server, alice, case_a, tmp_path):
    url = gunicorn_server.url
    token = get_token(url)
    temp_before = temp_files()
    path = tmp_path / "disk.img"
    make_file(path, FILE_SIZE)

    # A small upload first: the worker's one-time work (imports, database
    # connection, signing key) is not the upload path being measured.
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(100_000))
    assert curl_upload(url, token, small, case_a)[0] == 201

    sampler = RssSampler(gunicorn_server.proc.pid)
    sampler.start()
    started = time.monotonic()
    try:
        code, body = curl_upload(url, token, path, case_a)
    finally:
        sampler.stop()
    elapsed = time.monotonic() - started
    assert code == 201, body

    expected = {"sha256": tool("sha256sum", path), "sha1": tool("sha1sum", path), "md5": tool("md5sum", path)}
    assert {name: body[name] for name in expected} == expected
    assert body["size"] == FILE_SIZE

    # The bytes stored are the bytes sent, and the temporary file is gone
    # (the server closes it just after sending the response).
    blob = blob_store().path(expected["sha256"])
    assert blob.stat().st_size == FILE_SIZE
    assert tool("sha256sum", blob) == expected["sha256"]
    wait_until(lambda: temp_files() <= temp_before)
    assert temp_files() <= temp_before

    # Memory: sampled often enough to see a buffered copy of the file, and
    # the peak stays far below the file size.
    assert sampler.workers_seen, "no gunicorn worker found under the master"
    assert sampler.samples >= max(5, int(elapsed / 0.05) // 4), (sampler.samples, elapsed)
    assert sampler.growth < MAX_GROWTH, (
        f"web process RSS grew by {sampler.growth / MB:.0f} MiB during a {FILE_SIZE / MB:.0f} MiB upload "
        f"(baseline {sampler.baseline / MB:.0f} MiB, peak {sampler.peak / MB:.0f} MiB)"
    )


def test_keep_alive_connection_continues_after_uploads(gunicorn_server, alice, case_a):
    """The next request on a connection is read from exactly where an upload's body ended.

    A small body arrives whole with the headers (gunicorn has buffered it);
    a large one mostly comes off the socket after them.
    """
    token = get_token(gunicorn_server.url)
    detail = (
        f"GET /api/v1/cases/{case_a.pk}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=60) as sock:
        stream = sock.makefile("rb")
        for i, content in enumerate([b"small evidence\n", os.urandom(3 << 20)]):
            head, tail, content_type = multipart(case_a, f"item{i}.bin", content)
            body = head + content + tail
            sock.sendall(
                (
                    f"POST /api/v1/evidence/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            status, headers, answer = read_response(stream)
            assert status == 201, answer
            assert json.loads(answer)["sha256"] == hashlib.sha256(content).hexdigest()
            assert headers.get("connection", "").lower() != "close"
            sock.sendall(detail)
            status, _, answer = read_response(stream)
            assert status == 200, answer
            assert json.loads(answer)["reference"] == case_a.reference


def test_upload_cut_short_through_the_server_keeps_nothing(gunicorn_server, alice, case_a):
    """The client stops sending halfway and closes its side: 400, no record, no temporary file."""
    token = get_token(gunicorn_server.url)
    temp_before = temp_files()
    content = os.urandom(20 << 20)
    head, tail, content_type = multipart(case_a, "cut.bin", content)
    request = (
        f"POST /api/v1/evidence/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(head) + len(content) + len(tail)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=60) as sock:
        sock.sendall(request + head + content[: 8 << 20])
        sock.shutdown(socket.SHUT_WR)
        status, _, answer = read_response(sock.makefile("rb"))
    assert status == 400, answer
    assert Evidence.objects.count() == 0
    wait_until(lambda: temp_files() <= temp_before)
    assert temp_files() <= temp_before


def test_connection_reset_mid_upload_leaves_no_threads_or_files(gunicorn_server, alice, case_a):
    """A client that resets the connection mid-body: the parser raises, and the handler's
    hashing and writeback threads and its partial temporary file still go away."""
    token = get_token(gunicorn_server.url)
    (worker,) = process_tree(gunicorn_server.proc.pid)[1:]
    threads_before = len(os.listdir(f"/proc/{worker}/task"))
    temp_before = temp_files()
    block = os.urandom(1 << 20)
    for _ in range(2):
        head, _, content_type = multipart(case_a, "reset.bin", b"")
        request = (
            f"POST /api/v1/evidence/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(head) + (200 << 20)}\r\n\r\n"
        ).encode()
        sock = socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=60)
        sock.sendall(request + head)
        for _ in range(40):  # past the first writeback window (32 MiB)
            sock.sendall(block)
        time.sleep(0.3)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST: the server's next recv raises ConnectionResetError

    def threads() -> int:
        return len(os.listdir(f"/proc/{worker}/task"))

    # Three threads per upload would leak (two hashing, one writeback), six in
    # all; the worker's own thread pool may grow by its size (--threads 2).
    wait_until(lambda: threads() <= threads_before + 2 and temp_files() <= temp_before, timeout=15)
    assert temp_files() <= temp_before
    assert threads() <= threads_before + 2, (threads_before, threads())
    assert Evidence.objects.count() == 0
