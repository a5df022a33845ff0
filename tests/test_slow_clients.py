"""Slow clients against the production setup (issue 12, part 1).

The Procfile's `proxy`, `app` and `transfer` processes, started by honcho as
`./scripts/serve --production` starts them (nginx from deploy/nginx.py in
front of two gunicorn pools), on loopback and the test database. Then 400
connections trickle requests at it: 200 send their header one line a second
and never finish it, 100 send an ordinary body (POST /api/v1/cases/) one byte
a second, and 100 send an evidence upload one byte a second, which nginx
streams to the `transfer` pool as it arrives; each reconnects when the server
drops it. They come from 50 loopback addresses (127.0.1.x), so the
per-address connection limits are not what keeps the server answering.
Meanwhile another client makes sequential GET /api/v1/keys/ requests: the
99th percentile must stay under 1 s. The same attack against the quick-start
`web` process (gunicorn alone) leaves that client with no answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.db import connections

from tests.conftest import PASSWORD, ROOT, free_port, require_tool, subprocess_env, wait_for_port

HEADER_TRICKLERS = 200
BODY_TRICKLERS = 100
UPLOAD_TRICKLERS = 100
SOURCES = 50  # attacking addresses, 127.0.1.1 to 127.0.1.50
TRICKLE_INTERVAL = 1.0  # seconds between the bytes (or header lines) a trickler sends
STAGGER = 0.02  # seconds between the starts of two tricklers of a kind
PROBES = 100
PROBE_EVERY = 0.15  # seconds from one probe's start to the next: the attack outlasts nginx's header timeout
P99_LIMIT = 1.0
PROBE_TIMEOUT = 5.0
# gunicorn alone: a few probes are enough to show it, each given this long.
CONTRAST_PROBES = 5
CONTRAST_TIMEOUT = 3.0


def _raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        pytest.fail(f"the test needs {needed} open files; the limit is {soft}")


class Honcho:
    """Procfile processes under honcho, in their own process group."""

    def __init__(self, processes: list[str], env: dict[str, str], log_path: Path, ports: list[int]):
        self.log = open(log_path, "w")
        # -p: honcho gives each process a PORT of its own from this base (the `web` line uses it).
        command = ["honcho", "-f", str(ROOT / "Procfile"), "start", "-p", str(ports[0]), *processes]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            for port in ports:
                wait_for_port(port, self.proc, timeout=60)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # honcho passes it on to every process
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever did not stop in time
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


def _env(**extra) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = subprocess_env(**extra)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


class Attack:
    """Connections that trickle requests, reconnecting whenever the server drops one."""

    def __init__(self, port: int, token: str, case_id: str):
        self.port, self.token, self.case_id = port, token, case_id
        self.open = 0  # connections open right now
        self.opened = 0
        self.dropped = {"header": 0, "body": 0, "upload": 0}  # connections the server closed or answered
        self.answers: dict[bytes, int] = {}  # their first line
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    def _requests(self, kind: str) -> tuple[bytes, bytes]:
        """(what is sent at once, what is then sent a piece at a time, forever)."""
        host = f"Host: 127.0.0.1:{self.port}\r\n"
        if kind == "header":
            return f"GET /api/v1/keys/ HTTP/1.1\r\n{host}".encode(), b"X-Slow: 1\r\n"
        auth = f"Authorization: Token {self.token}\r\n"
        if kind == "body":
            return (
                f"POST /api/v1/cases/ HTTP/1.1\r\n{host}{auth}Content-Type: application/json\r\n"
                "Content-Length: 1000000\r\n\r\n".encode()
            ), b" "
        boundary = "slowslowslow"
        start = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="case"\r\n\r\n{self.case_id}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        return (
            f"POST /api/v1/evidence/ HTTP/1.1\r\n{host}{auth}"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: 100000000\r\n\r\n{start}".encode()
        ), b"x"

    async def _trickle(self, kind: str, index: int) -> None:
        source = f"127.0.1.{index % SOURCES + 1}"
        first, piece = self._requests(kind)
        # Staggered starts (over 4 s), so nginx's timeouts do not drop them all at one moment.
        await asyncio.sleep(index * STAGGER)
        while not self._stopping:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
            except OSError:
                await asyncio.sleep(0.2)  # could not connect: try again soon
                continue
            self.opened += 1
            self.open += 1
            try:
                writer.write(first)
                await writer.drain()
                while not self._stopping:
                    try:
                        answer = await asyncio.wait_for(reader.read(4096), TRICKLE_INTERVAL)
                    except TimeoutError:
                        writer.write(piece)
                        await writer.drain()
                    else:
                        # An answer (such as 408 or 429) or the end: the server let go.
                        line = answer.split(b"\r\n", 1)[0]
                        self.answers[line] = self.answers.get(line, 0) + 1
                        break
            except OSError:
                pass  # reset by the server: reconnect at once
            finally:
                self.open -= 1
                if not self._stopping:
                    self.dropped[kind] += 1
                writer.close()

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._trickle("header", i)) for i in range(HEADER_TRICKLERS)]
        tasks += [asyncio.create_task(self._trickle("body", i)) for i in range(BODY_TRICKLERS)]
        tasks += [asyncio.create_task(self._trickle("upload", i)) for i in range(UPLOAD_TRICKLERS)]
        while not self._stopping:
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self):
        self._thread.start()
        deadline = time.monotonic() + 20
        total = HEADER_TRICKLERS + BODY_TRICKLERS + UPLOAD_TRICKLERS
        while self.open < total and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.open == total, f"only {self.open} of {total} attacking connections opened"
        # Let the uploads reach the transfer pool and the trickles settle in.
        time.sleep(3 * TRICKLE_INTERVAL)
        return self

    def __exit__(self, *exc):
        self._stopping = True
        self._thread.join(timeout=15)
        if not self._thread.is_alive():
            self._loop.close()


def probe(port: int, timeout: float) -> float:
    """One GET /api/v1/keys/ by a new client: seconds to the whole 200 answer (timeout if none)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=("127.0.0.2", 0))
    try:
        conn.request("GET", "/api/v1/keys/")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:300])
        assert b"log_vkey" in body
    except TimeoutError:
        return timeout
    finally:
        conn.close()
    return time.perf_counter() - start


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[98]


def token_for(port: int, username: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/api/v1/auth/token/",
            json.dumps({"username": username, "password": password}),
            {"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 201, body
        return body["token"]
    finally:
        conn.close()


@pytest.fixture
def attack_setup(transactional_db, alice, case_a):
    _raise_open_files_limit(4096)
    require_tool("nginx")
    connections.close_all()  # the servers write to the test database too
    return alice, case_a


def production_stack(tmp_path: Path, **extra) -> tuple[Honcho, int]:
    """The Procfile's proxy, app and transfer processes as ./scripts/serve --production runs them; (them, nginx's port)."""
    proxy_port, app_port, transfer_port = free_port(), free_port(), free_port()
    env = _env(
        PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
        APP_BIND=f"127.0.0.1:{app_port}",
        TRANSFER_BIND=f"127.0.0.1:{transfer_port}",
        PROXY_DIR=str(tmp_path / "nginx"),
        CUSTODY_TRUSTED_PROXIES="127.0.0.1",  # as ./scripts/serve --production sets it
        **extra,
    )
    stack = Honcho(
        ["proxy", "app", "transfer"], env, tmp_path / "honcho.log", [proxy_port, app_port, transfer_port]
    )
    return stack, proxy_port


@pytest.mark.slow
def test_production_stack_answers_others_while_400_connections_trickle(attack_setup, tmp_path):
    alice, case_a = attack_setup
    stack, proxy_port = production_stack(tmp_path, PROXY_ACCESS_LOG="off")
    try:
        probe(proxy_port, 30)  # each pool's first request loads Django
        token = token_for(proxy_port, alice.username, PASSWORD)
        with Attack(proxy_port, token, str(case_a.pk)) as attack:
            started = time.monotonic()
            times, open_during = [], []
            for i in range(PROBES):
                time.sleep(max(0.0, started + i * PROBE_EVERY - time.monotonic()))
                times.append(probe(proxy_port, PROBE_TIMEOUT))
                open_during.append(attack.open)
            attack_seconds = time.monotonic() - started
        log = (tmp_path / "honcho.log").read_text(errors="replace")
        # The attack was on the whole time: nearly all 400 connections open at
        # every probe (the few missing are the ones nginx had just dropped and
        # that were reconnecting).
        total = HEADER_TRICKLERS + BODY_TRICKLERS + UPLOAD_TRICKLERS
        assert min(open_during) >= 0.9 * total, (
            [n for n in open_during if n < total],
            attack.dropped,
            attack.answers,
        )
        worst = p99(times)
        print(
            f"\nproduction stack, {total} trickling connections from {SOURCES} addresses, {attack_seconds:.1f} s: "
            f"GET /api/v1/keys/ p50 {statistics.median(times) * 1000:.0f} ms, p99 {worst * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms; {attack.opened} connections opened, {attack.dropped} dropped by the server"
        )
        assert worst < P99_LIMIT, (worst, sorted(times)[-5:], log[-3000:])
    finally:
        stack.stop()


@pytest.mark.slow
def test_gunicorn_alone_is_starved_by_the_same_attack(attack_setup, tmp_path):
    """The contrast: the quick-start `web` process with no proxy answers nobody."""
    alice, case_a = attack_setup
    port = free_port()
    env = _env(WEB_BIND="127.0.0.1")
    web = Honcho(["web"], env, tmp_path / "honcho.log", [port])
    try:
        probe(port, 30)
        token = token_for(port, alice.username, PASSWORD)
        with Attack(port, token, str(case_a.pk)):
            times = [probe(port, CONTRAST_TIMEOUT) for _ in range(CONTRAST_PROBES)]
        print(
            f"\ngunicorn alone: GET /api/v1/keys/ took {', '.join(f'{t:.1f}' for t in times)} s (timeout {CONTRAST_TIMEOUT} s)"
        )
        assert statistics.median(times) >= CONTRAST_TIMEOUT, times
    finally:
        web.stop()


def _exchange(
    port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, source="127.0.0.3"
):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_production_stack_streams_uploads_to_the_transfer_pool(attack_setup, tmp_path):
    """Uploads (multipart, tus) and downloads pass through nginx unbuffered, in the `transfer` pool; two uploads per address."""
    alice, case_a = attack_setup
    # 127.0.0.5 stands for a TLS terminator in front of nginx.
    stack, port = production_stack(
        tmp_path, PROXY_FRONT="127.0.0.5", CUSTODY_TLS="1", CUSTODY_BEHIND_TLS_PROXY="1"
    )
    try:
        token = token_for(port, alice.username, PASSWORD)

        # The client address the application records and the scheme it sees:
        # a client's own X-Forwarded-For and X-Forwarded-Proto are replaced by
        # what nginx saw; the front proxy's are believed.
        # (X-Forwarded-Ssl: gunicorn reads it as a claim of https too.)
        forwarded = {
            "Content-Type": "application/json",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Ssl": "on",
        }
        wrong = b'{"username": "alice", "password": "wrong"}'
        for source, xff in (("127.0.0.7", "203.0.113.9"), ("127.0.0.5", "192.0.2.1, 198.51.100.7")):
            status, headers, _ = _exchange(
                port,
                "POST",
                "/api/v1/auth/token/",
                wrong,
                {**forwarded, "X-Forwarded-For": xff},
                source=source,
            )
            assert status == 401  # the wrong password (not gunicorn's 400 for contradicting scheme headers)
            # HSTS (CUSTODY_TLS=1) is sent only on what Django takes for https.
            assert ("Strict-Transport-Security" in headers) == (source == "127.0.0.5")
        assert sorted(AccessAttempt.objects.values_list("ip_address", flat=True)) == [
            "127.0.0.7",
            "198.51.100.7",
        ]

        auth = {"Authorization": f"Token {token}"}
        content = os.urandom(8 << 20)
        digest = hashlib.sha256(content).hexdigest()

        boundary = "b" + secrets.token_hex(8)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="case"\r\n\r\n{case_a.pk}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, _, answer = _exchange(
            port,
            "POST",
            "/api/v1/evidence/",
            body,
            {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert status == 201, answer[:500]
        assert json.loads(answer)["sha256"] == digest
        evidence_id = json.loads(answer)["id"]
        status, _, answer = _exchange(
            port, "GET", f"/api/v1/evidence/{evidence_id}/content/?reason=check", b"", auth
        )
        assert status == 200 and answer == content

        changed = b"\x00" + content[1:]
        tus = {**auth, "Tus-Resumable": "1.0.0"}
        metadata = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}"
            for k, v in (("case", str(case_a.pk)), ("filename", "b.bin"))
        )
        status, headers, answer = _exchange(
            port,
            "POST",
            "/api/v1/uploads/",
            b"",
            {**tus, "Upload-Length": str(len(changed)), "Upload-Metadata": metadata},
        )
        assert status == 201, answer[:500]
        path = "/" + headers["Location"].split("/", 3)[3]
        assert headers["Location"].startswith(f"http://127.0.0.1:{port}/")
        status, _, answer = _exchange(
            port,
            "PATCH",
            path,
            changed,
            {**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        )
        assert status == 204, answer[:500]
        status, _, answer = _exchange(port, "GET", path, b"", tus)
        assert (
            status == 200 and json.loads(answer)["evidence"]["sha256"] == hashlib.sha256(changed).hexdigest()
        )

        # Two unfinished uploads from one address: a third is refused at once.
        held = []
        head = (
            f"POST /api/v1/evidence/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
        try:
            for _ in range(3):
                sock = socket.create_connection(
                    ("127.0.0.1", port), timeout=10, source_address=("127.0.0.4", 0)
                )
                held.append(sock)
                sock.sendall(head)
                time.sleep(0.5)  # nginx has taken it in before the next one
            assert held[2].recv(200).startswith(b"HTTP/1.1 429 ")
            # An ordinary request from the same address is not limited by it.
            assert _exchange(port, "GET", "/api/v1/keys/", source="127.0.0.4")[0] == 200
        finally:
            for sock in held:
                sock.close()
    finally:
        stack.stop()
    log = (tmp_path / "honcho.log").read_text(errors="replace")
    pools = {
        request: {
            line.split("|", 1)[0].split()[-1] for line in log.splitlines() if f'"{request} HTTP/1.1" ' in line
        }
        for request in (
            "POST /api/v1/evidence/",
            f"PATCH {path}",
            f"GET /api/v1/evidence/{evidence_id}/content/?reason=check",
            "GET /api/v1/keys/",
        )
    }
    assert pools["POST /api/v1/evidence/"] == {"transfer.1", "proxy.1"}
    assert pools[f"PATCH {path}"] == {"transfer.1", "proxy.1"}
    assert pools[f"GET /api/v1/evidence/{evidence_id}/content/?reason=check"] == {"transfer.1", "proxy.1"}
    assert pools["GET /api/v1/keys/"] == {"app.1", "proxy.1"}


def _render(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "nginx.py"), "--render"],
        env={"PATH": os.environ["PATH"], "CUSTODY_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_nginx_config_follows_the_settings(tmp_path):
    require_tool("nginx")
    result = _render(
        tmp_path,
        PROXY_LISTEN="127.0.0.1:18000",
        APP_BIND="127.0.0.1:18001",
        TRANSFER_BIND="127.0.0.1:18002",
        CUSTODY_MAX_UPLOAD_BYTES="5000000",
        PROXY_HEADER_TIMEOUT="7s",
    )
    assert result.returncode == 0, result.stderr
    conf = Path(result.stdout.strip())
    assert conf == tmp_path / "nginx" / "nginx.conf"
    text = conf.read_text()
    assert "listen 127.0.0.1:18000;" in text
    assert "server 127.0.0.1:18001;" in text and "server 127.0.0.1:18002;" in text
    assert "client_header_timeout 7s;" in text
    # the largest file plus 1 MiB for the multipart framing, on the three upload locations
    assert text.count(f"client_max_body_size {5000000 + (1 << 20)};") == 3
    assert f"client_body_temp_path {tmp_path}/nginx/client_body;" in text
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "nginx").stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PROXY_LISTEN", "localhost:", "expected host:port"),
        ("TRANSFER_BIND", "127.0.0.1:70000", "port out of range"),
        ("CUSTODY_MAX_UPLOAD_BYTES", "1G", "expected a number of bytes"),
        ("PROXY_BODY_TIMEOUT", "soon", "expected a duration"),
        ("PROXY_UPLOADS_PER_ADDRESS", "0", "expected a whole number >= 1"),
        ("PROXY_DIR", "/tmp/a dir", "no spaces"),
        ("PROXY_FRONT", "10.0.0.1,lb.example", "expected an IP address or a CIDR range"),
    ],
)
def test_nginx_config_refuses_bad_settings(tmp_path, name, value, message):
    result = _render(tmp_path, **{name: value})
    assert result.returncode == 2
    assert f"deploy/nginx.py: {name}=" in result.stderr and message in result.stderr
    assert not (tmp_path / "nginx" / "nginx.conf").exists()
