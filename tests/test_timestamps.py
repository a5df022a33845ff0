"""RFC 3161 time-stamps on checkpoints, against a real TSA: `openssl ts -reply` behind HTTP.

Each test PKI (a CA, and a TSA certificate with the critical timeStamping
extended key usage) is made here with openssl; the TSA is a threaded stdlib
HTTP server on a loopback port that answers every query with
`openssl ts -reply`. Tokens are checked by ``verify_token`` and by
`openssl ts -verify`, as an auditor would.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from custody import log, tasks, timestamps
from custody.models import Timestamp

from .conftest import force_login_verified, free_port, require_tool, upload

OPENSSL_CONFIG = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ tsa_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def make_tsa_pki(directory: Path, name: str) -> Path:
    """A CA (ca.pem) and a TSA certificate it issued (tsa.pem, tsa.key), plus the ts config."""
    require_tool("openssl")
    directory.mkdir(parents=True)
    config = directory / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG.format(dir=directory))
    (directory / "serial").write_text("01\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", f"/CN={name} Root CA", "-days", "30", "-config", str(config), "-extensions", "ca_ext",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-new", *ec, "-keyout", "tsa.key", "-out", "tsa.csr",
        "-subj", f"/CN={name} TSA", "-config", str(config),
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tsa.pem", "-days", "30", "-extfile", str(config), "-extensions", "tsa_ext",
        cwd=directory,
    )  # fmt: skip
    return directory


class TSA:
    """`openssl ts -reply` behind a threaded HTTP server on 127.0.0.1.

    ``replay``: answer every query with the first reply made (an attacker
    replaying an old token, whose nonce is not ours).
    """

    def __init__(self, pki: Path, port: int = 0, replay: bool = False) -> None:
        self.pki, self.replay, self.requests = pki, replay, 0
        self._lock = threading.Lock()  # openssl ts -reply rewrites the serial file
        self._first_reply: bytes | None = None
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers["Content-Length"]))
                reply = tsa.answer(query, self.headers.get("Content-Type"))
                if reply is None:
                    self.send_error(400, "expected application/timestamp-query")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsa"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, query: bytes, content_type: str | None) -> bytes | None:
        if content_type != "application/timestamp-query":
            return None
        with self._lock:
            self.requests += 1
            if self.replay and self._first_reply is not None:
                return self._first_reply
            n = self.requests
            (self.pki / f"q{n}.tsq").write_bytes(query)
            _openssl(
                "ts", "-reply", "-config", "openssl.cnf", "-queryfile", f"q{n}.tsq", "-out", f"r{n}.tsr",
                cwd=self.pki,
            )  # fmt: skip
            reply = (self.pki / f"r{n}.tsr").read_bytes()
            self._first_reply = self._first_reply or reply
            return reply

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa") / "trusted", "Test")


@pytest.fixture(scope="module")
def rogue_pki(tmp_path_factory) -> Path:
    """A TSA under a CA nobody configured."""
    return make_tsa_pki(tmp_path_factory.mktemp("tsa") / "rogue", "Rogue")


@pytest.fixture
def tsa(pki):
    server = TSA(pki)
    yield server
    server.stop()


def configure(settings, *urls: str, ca: Path) -> None:
    settings.CUSTODY_TSA_URLS = list(urls)
    settings.CUSTODY_TSA_CA_FILES = [ca / "ca.pem"]
    settings.CUSTODY_TSA_TIMEOUT = 5


@pytest.fixture
def checkpoint(evidence_a):
    """A signed checkpoint over a log that holds an intake."""
    return log.latest_checkpoint()


def test_checkpoint_is_stamped_and_token_stored(settings, tsa, pki, checkpoint):
    configure(settings, tsa.url, ca=pki)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    run = timestamps.stamp_newest_checkpoint()

    assert run.size == checkpoint.size and run.stamped == [tsa.url] and run.failed == {}
    row = Timestamp.objects.get(checkpoint=checkpoint)
    assert row.tsa_url == tsa.url
    gen_time = timestamps.verify_token(
        bytes(row.token), timestamps.checkpoint_body(checkpoint.note), (pki / "ca.pem").read_bytes()
    )
    assert gen_time == row.gen_time
    assert before - dt.timedelta(seconds=2) <= gen_time <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    # Already stamped by this TSA: the next run asks nobody.
    assert timestamps.stamp_newest_checkpoint().stamped == []
    assert tsa.requests == 1


def test_stamped_bytes_are_the_checkpoint_body(checkpoint):
    body = timestamps.checkpoint_body(checkpoint.note)
    size, root = log.tree_head()
    assert body == log.checkpoint_text(log.settings.CUSTODY_LOG_ORIGIN, size, root).encode()
    assert checkpoint.note.startswith(body.decode() + "\n\u2014 ")


def test_token_verifies_with_openssl_ts(settings, tsa, pki, checkpoint, tmp_path):
    configure(settings, tsa.url, ca=pki)
    timestamps.stamp_newest_checkpoint()
    listed = APIClient().get(f"/api/v1/log/timestamps/?size={checkpoint.size}").json()
    # As the README tells an auditor: the body is the note up to the blank line.
    (tmp_path / "checkpoint.txt").write_text(listed["checkpoint"])
    subprocess.run("sed '/^$/,$d' checkpoint.txt > body.txt", shell=True, cwd=tmp_path, check=True)  # noqa: S602, S607
    (tmp_path / "token.tst").write_bytes(base64.b64decode(listed["timestamps"][0]["token"]))

    result = subprocess.run(
        ["openssl", "ts", "-verify", "-data", "body.txt", "-in", "token.tst", "-token_in",
         "-CAfile", str(pki / "ca.pem"), "-untrusted", str(pki / "tsa.pem")],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification: OK" in result.stdout
    assert (tmp_path / "body.txt").read_bytes() == timestamps.checkpoint_body(checkpoint.note)


def test_token_over_other_bytes_is_refused(settings, tsa, pki, checkpoint, alice, as_alice, case_a):
    configure(settings, tsa.url, ca=pki)
    timestamps.stamp_newest_checkpoint()
    token = bytes(Timestamp.objects.get().token)
    ca = (pki / "ca.pem").read_bytes()
    assert upload(as_alice, case_a, b"more").status_code == 201
    newer = log.latest_checkpoint()

    for other in (timestamps.checkpoint_body(newer.note), newer.note.encode(), b"other bytes"):
        with pytest.raises(ValueError, match="refused: Mismatch between messages"):
            timestamps.verify_token(token, other, ca)


def test_token_from_tsa_outside_configured_ca_is_refused(settings, pki, rogue_pki, checkpoint):
    rogue = TSA(rogue_pki)
    try:
        configure(settings, rogue.url, ca=pki)
        run = timestamps.stamp_newest_checkpoint()
        assert run.stamped == [] and "refused" in run.failed[rogue.url]
        assert not Timestamp.objects.exists()
        # A genuine token of the rogue TSA, checked against our CA.
        body = timestamps.checkpoint_body(checkpoint.note)
        token, _ = timestamps.request_token(rogue.url, body, (rogue_pki / "ca.pem").read_bytes(), 5)
    finally:
        rogue.stop()
    assert timestamps.verify_token(token, body, (rogue_pki / "ca.pem").read_bytes())
    with pytest.raises(ValueError, match="refused: Error while verifying certificates"):
        timestamps.verify_token(token, body, (pki / "ca.pem").read_bytes())
    # Pinning the TSA's own certificate is not an anchor either: the chain must reach a CA.
    with pytest.raises(ValueError, match="refused"):
        timestamps.verify_token(token, body, (rogue_pki / "tsa.pem").read_bytes())


def test_replayed_reply_is_refused(settings, pki, checkpoint):
    replayer = TSA(pki, replay=True)
    try:
        configure(settings, replayer.url, ca=pki)
        body = timestamps.checkpoint_body(checkpoint.note)
        timestamps.request_token(replayer.url, body, (pki / "ca.pem").read_bytes(), 5)  # the first is fresh
        with pytest.raises(timestamps.TSAError, match="Nonce mismatch"):
            timestamps.request_token(replayer.url, body, (pki / "ca.pem").read_bytes(), 5)
    finally:
        replayer.stop()


def test_tsa_down_delays_the_stamp_never_intake(settings, pki, as_alice, case_a, checkpoint):
    port = free_port()
    url = f"http://127.0.0.1:{port}/tsa"
    configure(settings, url, ca=pki)

    # Nothing listens: the task retries (eagerly here), gives up, stores nothing.
    result = tasks.timestamp_checkpoints.apply()
    assert result.failed() and isinstance(result.result, timestamps.TSAError)
    assert not Timestamp.objects.exists()
    # Intake and checkpoints go on regardless.
    assert upload(as_alice, case_a, b"while the TSA is down").status_code == 201
    newest = log.latest_checkpoint()
    assert newest.size > checkpoint.size

    server = TSA(pki, port=port)
    try:
        assert tasks.timestamp_checkpoints.apply().get() == 1
    finally:
        server.stop()
    row = Timestamp.objects.get()
    assert row.checkpoint_id == newest.size and row.tsa_url == url


def test_one_tsa_down_does_not_hold_back_another(settings, tsa, pki, checkpoint):
    down = f"http://127.0.0.1:{free_port()}/tsa"
    configure(settings, down, tsa.url, ca=pki)

    run = timestamps.stamp_newest_checkpoint()

    assert run.stamped == [tsa.url] and list(run.failed) == [down]
    assert [t["tsa_url"] for t in timestamps.tokens_for(checkpoint.size)] == [tsa.url]


def test_without_tsa_nothing_is_stamped(settings, checkpoint):
    settings.CUSTODY_TSA_URLS = []
    assert tasks.timestamp_checkpoints.apply().get() == 0
    assert timestamps.tokens_for(checkpoint.size) == []


def test_api_lists_tokens_for_a_checkpoint(settings, tsa, pki, checkpoint):
    configure(settings, tsa.url, ca=pki)
    timestamps.stamp_newest_checkpoint()
    client = APIClient()  # public, like the checkpoint

    body = client.get(f"/api/v1/log/timestamps/?size={checkpoint.size}").json()

    assert body["size"] == checkpoint.size and body["checkpoint"] == checkpoint.note
    assert body["stamped"] == timestamps.message_digest(timestamps.checkpoint_body(checkpoint.note))
    [entry] = body["timestamps"]
    assert base64.b64decode(entry["token"]) == bytes(Timestamp.objects.get().token)
    assert entry["tsa_url"] == tsa.url
    assert client.get("/api/v1/log/timestamps/").json()["size"] == checkpoint.size
    missing = client.get(f"/api/v1/log/timestamps/?size={checkpoint.size + 1000}")
    assert missing.status_code == 404 and "detail" in missing.json()
    assert client.get("/api/v1/log/timestamps/?size=x").status_code == 400


def test_malformed_tokens_are_refused(pki):
    ca = (pki / "ca.pem").read_bytes()
    for junk in (b"", b"not DER", b"\x30\x03\x02\x01\x00", bytes(300)):
        with pytest.raises(ValueError, match="not an RFC 3161 time-stamp token"):
            timestamps.verify_token(junk, b"x", ca)
    with pytest.raises(ValueError, match="TSA CA certificates"):
        timestamps.verify_token(b"\x30\x00", b"x", b"no certificates here")


def test_beat_schedules_the_task(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["timestamp-checkpoints"]
    assert entry["task"] == tasks.timestamp_checkpoints.name == "custody.timestamp_checkpoints"


@pytest.mark.parametrize("tamper", [False, True])
def test_readme_timestamp_check(settings, tsa, pki, checkpoint, tmp_path, tamper):
    from .test_auditor_by_hand import run_block

    configure(settings, tsa.url, ca=pki)
    timestamps.stamp_newest_checkpoint()
    listed = APIClient().get(f"/api/v1/log/timestamps/?size={checkpoint.size}").json()
    if tamper:  # a checkpoint claiming one more entry than was stamped
        lines = listed["checkpoint"].split("\n")
        lines[1] = str(int(lines[1]) + 1)
        listed["checkpoint"] = "\n".join(lines)
    (tmp_path / "timestamps.json").write_text(json.dumps(listed))
    shutil.copy(pki / "ca.pem", tmp_path / "tsa-ca.pem")

    result = run_block("timestamp", tmp_path)

    if tamper:
        assert result.returncode != 0 and "Verification: FAILED" in result.stdout
    else:
        assert result.returncode == 0, result.stderr + result.stdout
        assert "Verification: OK" in result.stdout
        gen_time = Timestamp.objects.get().gen_time
        assert f"Time stamp: {gen_time:%b} {gen_time.day:2d} {gen_time:%H:%M:%S %Y} GMT" in result.stdout


@pytest.mark.slow
def test_real_worker_stamps_the_checkpoint(transactional_db, monkeypatch, tmp_path, pki, alice, case_a):
    """The task as beat queues it, run by a real Celery worker process configured from the environment."""
    from .conftest import api_client_for, kill_worker, start_worker
    from .test_worker import wait_for

    server = TSA(pki)
    monkeypatch.setenv("CUSTODY_TSA_URLS", server.url)
    monkeypatch.setenv("CUSTODY_TSA_CA_FILES", str(pki / "ca.pem"))
    worker = start_worker(tmp_path / "worker.log")
    try:
        assert upload(api_client_for(alice), case_a, b"stamped by the worker").status_code == 201
        checkpoint = log.latest_checkpoint()
        tasks.timestamp_checkpoints.delay()
        assert wait_for(lambda: Timestamp.objects.exists(), timeout=60), (tmp_path / "worker.log").read_text()
    finally:
        kill_worker(worker, signal.SIGTERM)
        server.stop()
    row = Timestamp.objects.get()
    assert row.checkpoint_id == checkpoint.size and row.tsa_url == server.url
    timestamps.verify_token(
        bytes(row.token), timestamps.checkpoint_body(checkpoint.note), (pki / "ca.pem").read_bytes()
    )


def test_admin_lists_timestamps_read_only(client, root, settings, tsa, pki, checkpoint):
    configure(settings, tsa.url, ca=pki)
    timestamps.stamp_newest_checkpoint()
    force_login_verified(client, root)
    page = client.get("/admin/custody/timestamp/")
    assert page.status_code == 200 and tsa.url in page.content.decode()
    assert client.get("/admin/custody/timestamp/add/").status_code == 403


def test_verify_log_checks_every_token(settings, tsa, pki, checkpoint):
    from custody import audit

    configure(settings, tsa.url, ca=pki)
    timestamps.stamp_newest_checkpoint()
    report = audit.verify(check_blobs=False)
    assert report.ok, report.problems
    assert report.timestamps == 1
    # One flipped bit in the stored token (the signature covers it).
    row = Timestamp.objects.get()
    Timestamp.objects.filter(pk=row.pk).update(
        token=bytes(row.token)[:-1] + bytes([bytes(row.token)[-1] ^ 1])
    )
    report = audit.verify(check_blobs=False)
    assert any(
        f"time-stamp by {tsa.url} of checkpoint {checkpoint.size}: does not verify" in p
        for p in report.problems
    )
