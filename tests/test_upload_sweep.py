"""Temporary multipart uploads of a web process that died mid-upload are removed, never a live one's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from custody import uploads
from custody.models import Evidence

from .conftest import api_client_for


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_only_files_of_dead_processes_on_this_host_are_swept(tmp_path, settings):
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path
    host = socket.gethostname()
    dead = tmp_path / f"upload-{host}-{_dead_pid()}-abc.upload.wav"
    live = tmp_path / f"upload-{host}-{os.getpid()}-def.upload.wav"
    young = tmp_path / f"upload-{host}-{_dead_pid()}-ghi.upload"
    other_host = tmp_path / f"upload-{host}x-{_dead_pid()}-jkl.upload"
    unrelated = tmp_path / "verify-scratch.sqlite3"
    for path in (dead, live, young, other_host, unrelated):
        path.write_bytes(b"partial evidence")
    for path in (dead, live, other_host, unrelated):
        _age(path, 3600)
    assert uploads.sweep_abandoned(grace_seconds=60) == 1
    assert not dead.exists()
    assert live.exists() and young.exists() and other_host.exists() and unrelated.exists()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                found.append(int(entry.name))
    return found


def test_web_worker_killed_mid_upload_leaves_nothing_once_swept(gunicorn_server, alice, case_a):
    token = api_client_for(alice)._credentials["HTTP_AUTHORIZATION"]
    url = urlsplit(gunicorn_server.url)
    boundary = "sweeptest"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="case"\r\n\r\n{case_a.pk}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="call.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    declared = len(head) + (64 << 20) + len(f"\r\n--{boundary}--\r\n")
    temp_dir = Path(settings.FILE_UPLOAD_TEMP_DIR)
    before = set(temp_dir.glob("upload-*")) if temp_dir.exists() else set()
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.sendall(
        (
            f"POST /api/v1/evidence/ HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n"
        ).encode()
        + head
    )
    for _ in range(8):  # 8 MiB of the 64 declared, then the web process dies
        sock.sendall(os.urandom(1 << 20))
    deadline = time.monotonic() + 20
    while not (partial := set(temp_dir.glob("upload-*")) - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(partial) == 1, "the upload's temporary file should exist while it arrives"
    (path,) = partial
    # A live upload is never swept, however old its file looks.
    _age(path, 3600)
    assert uploads.sweep_abandoned(grace_seconds=0) == 0 and path.exists()
    for worker in _children(gunicorn_server.proc.pid):
        os.kill(worker, signal.SIGKILL)
    sock.close()
    writer = int(path.name[len(f"upload-{socket.gethostname()}-") :].split("-", 1)[0])
    deadline = time.monotonic() + 20
    while Path(f"/proc/{writer}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # gunicorn's master reaps it (and starts another worker)
    assert not Path(f"/proc/{writer}").exists()
    assert path.exists(), "SIGKILL leaves the file behind: nothing of the process ran"
    assert not Evidence.objects.exists()  # no evidence without its bytes
    assert uploads.sweep_abandoned(grace_seconds=0) == 1
    assert not path.exists()
