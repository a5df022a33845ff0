"""Witnessed checkpoints: cosignatures (custody.cosign), the witness (python -m custody.witness)
and the server submitting to it (custody.witnessing), with two real witness processes.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings as conf
from rest_framework.test import APIClient

from custody import cosign, keys, log, signing, tasks, witnessing
from custody.models import Cosignature, WitnessStatus

from .conftest import ROOT, force_login_verified, free_port, require_tool, stop, upload, wait_for_port

CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


# --- cosignatures, pure --------------------------------------------------------


def test_cosignature_round_trip():
    key, vkey = cosign.generate_key("witness.test/w1")
    line = cosign.sign(CHECKPOINT, "witness.test/w1", key, timestamp=1679315147)
    assert line.startswith("\u2014 witness.test/w1 ")
    assert cosign.verify(CHECKPOINT, line, vkey) == 1679315147
    blob = base64.b64decode(line.split(" ")[2])
    assert len(blob) == 4 + 8 + 64
    assert blob[:4] == cosign.parse_verifier_key(vkey).key_id
    assert int.from_bytes(blob[4:12], "big") == 1679315147
    # vkey: name + hex key id + base64(0x04 || key); key id over name, newline, 0x04, key
    name, hex_id, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x04 and len(raw) == 33
    assert hashlib.sha256(name.encode() + b"\n\x04" + raw[1:]).digest()[:4].hex() == hex_id


def test_cosignature_message_is_checked_by_openssl(tmp_path):
    openssl = require_tool("openssl")
    key, vkey = cosign.generate_key("witness.test/w1")
    line = cosign.sign(CHECKPOINT, "witness.test/w1", key)
    message, signature = cosign.openssl_material(CHECKPOINT, line)
    timestamp = cosign.parse_line(line).timestamp
    assert message == f"cosignature/v1\ntime {timestamp}\n{CHECKPOINT}".encode()
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(signature)
    (tmp_path / "pub.pem").write_text(cosign.public_key_pem(vkey))
    verify = [
        openssl,
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-rawin",
        "-in",
        "msg",
        "-sigfile",
        "sig",
    ]
    ok = subprocess.run(verify, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "msg").write_bytes(message.replace(b"20852163", b"20852164"))
    bad = subprocess.run(verify, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0


def test_tampered_checkpoint_or_timestamp_is_refused():
    key, vkey = cosign.generate_key("witness.test/w1")
    line = cosign.sign(CHECKPOINT, "witness.test/w1", key, timestamp=1000)
    with pytest.raises(ValueError, match="does not verify"):
        cosign.verify(CHECKPOINT.replace("20852163", "20852162"), line, vkey)
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[11] ^= 1  # the timestamp is signed too
    with pytest.raises(ValueError, match="does not verify"):
        cosign.verify(CHECKPOINT, f"\u2014 witness.test/w1 {signing.b64(bytes(blob))}", vkey)
    _, other_vkey = cosign.generate_key("witness.test/w1")
    with pytest.raises(ValueError, match="not by cosigner"):
        cosign.verify(CHECKPOINT, line, other_vkey)
    # A log (0x01) verifier key is not a cosigner key.
    log_vkey = signing.note_verifier_key("witness.test/w1", key.public_key())
    with pytest.raises(ValueError, match="0x04"):
        cosign.parse_verifier_key(log_vkey)


def test_cosignatures_in_a_note_ignore_unknown_keys():
    log_key = Ed25519PrivateKey.generate()
    note = signing.sign_note(CHECKPOINT, "example.com/behind-the-sofa", log_key)
    k1, v1 = cosign.generate_key("w1.test")
    k2, v2 = cosign.generate_key("w2.test")
    k3, _ = cosign.generate_key("w3.test")
    lines = [cosign.sign(CHECKPOINT, "w1.test", k1), cosign.sign(CHECKPOINT, "w3.test", k3)]
    found = cosign.cosignatures_by(
        cosign.add_signature_lines(note, lines),
        [cosign.parse_verifier_key(v1), cosign.parse_verifier_key(v2)],
    )
    assert set(found) == {v1}
    # The log's own signature still verifies on the cosigned note.
    assert (
        signing.verify_note(
            cosign.add_signature_lines(note, lines),
            signing.note_verifier_key("example.com/behind-the-sofa", log_key.public_key()),
        )
        == CHECKPOINT
    )


def test_witness_runs_without_django():
    code = (
        "import sys, custody, custody.witness\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'celery')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- witness processes ---------------------------------------------------------


class WitnessProc:
    """One `python -m custody.witness` process on a free loopback port."""

    def __init__(self, name: str, state: Path, log_vkey: str, more_vkeys: tuple[str, ...] = ()):
        self.name, self.state, self.log_vkey, self.more_vkeys = name, state, log_vkey, more_vkeys
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.vkey = ""

    def start(self) -> WitnessProc:
        self.stderr = open(self.state.parent / f"{self.state.name}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "custody.witness",
                "--name",
                self.name,
                "--listen",
                f"127.0.0.1:{self.port}",
                "--state",
                str(self.state),
                "--log-vkey",
                self.log_vkey,
                *[arg for vkey in self.more_vkeys for arg in ("--log-vkey", vkey)],
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.vkey = self.proc.stdout.readline().strip()
        wait_for_port(self.port, self.proc)
        assert (self.state / "vkey").read_text().strip() == self.vkey
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc.stdout.close()
            self.stderr.close()
            self.proc = None

    def log_text(self) -> str:
        return (self.state.parent / f"{self.state.name}.log").read_text()

    def post(self, body: str) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", "/add-checkpoint", body=body.encode())
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type"), response.read().decode()
        finally:
            conn.close()


@pytest.fixture
def log_vkey(custody_db) -> str:
    return keys.log_verifier_key()


def witness_pair(log_vkey: str, tmp_path: Path, settings):
    """Two witnesses trusting this server's log key, configured on the server (quorum: both)."""
    procs = [
        WitnessProc("w1.witness.test", tmp_path / "w1", log_vkey),
        WitnessProc("w2.witness.test", tmp_path / "w2", log_vkey),
    ]
    try:
        for proc in procs:
            proc.start()
        settings.CUSTODY_WITNESSES = [(p.url, p.vkey) for p in procs]
        settings.CUSTODY_WITNESS_QUORUM = 2
        settings.CUSTODY_WITNESS_TIMEOUT = 3
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
def witnesses(log_vkey, tmp_path, settings):
    yield from witness_pair(log_vkey, tmp_path, settings)


def forged_checkpoint(size: int, root: bytes) -> str:
    """A checkpoint signed with the real log key but not matching the log: what a lying operator sends."""
    row, key = keys.active_private_key("log")
    return signing.sign_note(log.checkpoint_text(conf.CUSTODY_LOG_ORIGIN, size, root), row.name, key)


def grow(client, case, count: int) -> None:
    for i in range(count):
        assert upload(client, case, f"item {i} {time.monotonic_ns()}".encode()).status_code == 201


def served_checkpoint() -> str:
    response = APIClient().get("/api/v1/log/checkpoint")
    assert response.status_code == 200
    return response.content.decode()


def openssl_verify_line(tmp_path: Path, body: str, line: str, vkey: str) -> None:
    openssl = require_tool("openssl")
    message, signature = cosign.openssl_material(body, line)
    (tmp_path / "m").write_bytes(message)
    (tmp_path / "s").write_bytes(signature)
    (tmp_path / "k.pem").write_text(cosign.public_key_pem(vkey))
    result = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "k.pem", "-rawin", "-in", "m", "-sigfile", "s"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_witnesses_cosign_and_checkpoint_serves_cosignatures(witnesses, as_alice, case_a, tmp_path, log_vkey):
    grow(as_alice, case_a, 3)
    outcomes = witnessing.witness_checkpoints()
    assert [o.state for o in outcomes] == ["ok", "ok"], [o.message for o in outcomes]
    first = log.latest_checkpoint()
    assert Cosignature.objects.filter(checkpoint=first).count() == 2

    note = served_checkpoint()
    body, lines = cosign.split_note(note)
    assert body == first.note.split("\n\n")[0] + "\n"
    assert len(lines) == 3  # the log's signature, then one per witness
    assert signing.verify_note(note, log_vkey) == body  # the log's signature still verifies
    for proc in witnesses:
        line = next(x for x in lines if x.startswith(f"\u2014 {proc.name} "))
        openssl_verify_line(tmp_path, body, line, proc.vkey)

    status = APIClient().get("/api/v1/log/witnesses/").json()
    assert status["final"] is True and status["quorum"] == 2 and status["cosignatures"] == 2
    assert status["checkpoint"]["size"] == first.size
    assert {w["name"]: w["last_cosigned_size"] for w in status["witnesses"]} == {
        "w1.witness.test": first.size,
        "w2.witness.test": first.size,
    }

    # The log grows: the next round carries a consistency proof from the cosigned size.
    grow(as_alice, case_a, 4)
    outcomes = witnessing.witness_checkpoints()
    assert [o.state for o in outcomes] == ["ok", "ok"], [o.message for o in outcomes]
    second = log.latest_checkpoint()
    assert second.size > first.size
    assert set(WitnessStatus.objects.values_list("last_cosigned_size", flat=True)) == {second.size}
    assert APIClient().get("/api/v1/log/witnesses/").json()["final"] is True
    assert "cosigned" in witnesses[0].log_text() and f"at size {second.size} (was {first.size})" in (
        witnesses[0].log_text()
    )
    # Nothing new to cosign: no request is sent again.
    assert [o.message for o in witnessing.witness_checkpoints()] == ["already cosigned"] * 2
    final = APIClient().get("/api/v1/log/checkpoint", {"final": "1"})
    assert final.status_code == 200 and final.content.decode() == served_checkpoint()


def test_rolled_back_log_is_refused_and_reported(witnesses, as_alice, case_a, caplog, settings, client, root):
    # Signed in first: enrolling root's second factor adds log entries.
    force_login_verified(client, root)
    grow(as_alice, case_a, 2)
    size, _ = log.tree_head()
    # w1 already cosigned a bigger tree from this log: the log is now showing less.
    status, _, _ = witnesses[0].post("old 0\n\n" + forged_checkpoint(size + 100, b"\x07" * 32))
    assert status == 200
    with caplog.at_level(logging.ERROR, logger="custody.witnessing"):
        outcomes = witnessing.witness_checkpoints()
    assert [o.state for o in outcomes] == ["refused", "ok"]
    row = WitnessStatus.objects.get(witness_name="w1.witness.test")
    assert row.state == "refused" and "ROLLBACK" in row.last_error and str(size + 100) in row.last_error
    assert any("REFUSED" in r.getMessage() and "ROLLBACK" in r.getMessage() for r in caplog.records)
    report = APIClient().get("/api/v1/log/witnesses/").json()
    assert report["final"] is False and report["cosignatures"] == 1
    w1 = next(w for w in report["witnesses"] if w["name"] == "w1.witness.test")
    assert w1["state"] == "refused" and "ROLLBACK" in w1["last_error"]
    # Administrators see the refusal in the admin, first and flagged.
    page = client.get("/admin/custody/witnessstatus/")
    assert page.status_code == 200 and b"REFUSED" in page.content and b"ROLLBACK" in page.content
    assert client.get("/admin/custody/cosignature/").status_code == 200
    assert b'name="_save"' not in client.get(f"/admin/custody/witnessstatus/{row.pk}/change/").content
    # With a quorum of one, the other witness's cosignature makes it final.
    settings.CUSTODY_WITNESS_QUORUM = 1
    assert APIClient().get("/api/v1/log/witnesses/").json()["final"] is True


def test_forked_log_is_refused_and_reported(witnesses, as_alice, case_a, caplog):
    grow(as_alice, case_a, 3)
    size, root = log.tree_head()
    other_root = bytes(b ^ 0xFF for b in root)
    # Both witnesses were shown another history of the same size, signed by the same key (a split view).
    for proc in witnesses:
        assert proc.post("old 0\n\n" + forged_checkpoint(size, other_root))[0] == 200
    with caplog.at_level(logging.ERROR, logger="custody.witnessing"):
        outcomes = witnessing.witness_checkpoints()
    assert [o.state for o in outcomes] == ["refused", "refused"]
    row = WitnessStatus.objects.get(witness_name="w1.witness.test")
    assert "FORK" in row.last_error and f"size {size}" in row.last_error
    assert "FORK" in witnesses[0].log_text()
    assert any("FORK" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)

    # The log grows on its own branch: the consistency proof from the witness's root fails (422).
    grow(as_alice, case_a, 2)
    WitnessStatus.objects.update(last_cosigned_size=size)  # as if the server had believed it
    outcomes = witnessing.witness_checkpoints()
    assert [o.state for o in outcomes] == ["refused", "refused"]
    row.refresh_from_db()
    assert "FORK" in row.last_error and "consistency proof" in row.last_error
    assert not Cosignature.objects.exists()
    assert APIClient().get("/api/v1/log/witnesses/").json()["final"] is False
    assert APIClient().get("/api/v1/log/checkpoint", {"final": "1"}).status_code == 404
    assert list((witnesses[0].state / "evidence").iterdir())  # the witness kept the refused request


def test_conflict_answer_is_followed_by_a_resend(witnesses, as_alice, case_a):
    grow(as_alice, case_a, 2)
    # w1 cosigned the real checkpoint before, but the server has no record of it (lost row).
    checkpoint = log.latest_checkpoint()
    assert witnesses[0].post("old 0\n\n" + checkpoint.note)[0] == 200
    grow(as_alice, case_a, 3)
    outcomes = witnessing.witness_checkpoints()
    assert [o.state for o in outcomes] == ["ok", "ok"], [o.message for o in outcomes]
    w1_log = witnesses[0].log_text()
    assert f"old size 0 is not the latest cosigned size {checkpoint.size}" in w1_log
    assert f"(was {checkpoint.size})" in w1_log


def test_witness_down_delays_finality_never_intake(witnesses, as_alice, case_a, settings):
    dead = free_port()  # nothing listens there
    settings.CUSTODY_WITNESSES = [
        (witnesses[0].url, witnesses[0].vkey),
        (f"http://127.0.0.1:{dead}", witnesses[1].vkey),
    ]
    grow(as_alice, case_a, 1)
    summary = tasks.witness_checkpoints.apply().get()  # retries, then gives up until the next beat
    assert summary == {"w1.witness.test": "ok", "w2.witness.test": "unreachable"}
    assert upload(as_alice, case_a, b"intake does not wait for witnesses").status_code == 201
    report = APIClient().get("/api/v1/log/witnesses/").json()
    assert report["final"] is False
    w2 = next(w for w in report["witnesses"] if w["name"] == "w2.witness.test")
    assert w2["state"] == "unreachable" and "unreachable" in w2["last_error"]
    # The newest checkpoint is served without cosignatures; the older one keeps w1's.
    assert len(cosign.split_note(served_checkpoint())[1]) == 1


def test_witness_state_survives_restart(witnesses, as_alice, case_a):
    grow(as_alice, case_a, 2)
    assert [o.state for o in witnessing.witness_checkpoints()] == ["ok", "ok"]
    size = log.latest_checkpoint().size
    w1 = witnesses[0]
    vkey = w1.vkey
    w1.stop()
    w1.start()
    assert w1.vkey == vkey  # same key, loaded from the state directory
    status, content_type, body = w1.post("old 0\n\n" + log.latest_checkpoint().note)
    assert (status, content_type, body) == (409, "text/x.tlog.size", f"{size}\n")
    # A rollback to a smaller tree is still refused after the restart.
    smaller = forged_checkpoint(size - 1, b"\x01" * 32)
    assert w1.post(f"old {size}\n\n{smaller}")[0] == 400


def test_witness_refuses_bad_requests(witnesses, log_vkey):
    w1 = witnesses[0]
    stranger = Ed25519PrivateKey.generate()
    origin = conf.CUSTODY_LOG_ORIGIN
    text = log.checkpoint_text(origin, 5, b"\x02" * 32)
    row, _ = keys.active_private_key("log")
    assert w1.post("old 0\n\n" + signing.sign_note(text, row.name, stranger))[0] == 403
    other = signing.sign_note(log.checkpoint_text("other.example/log", 5, b"\x02" * 32), row.name, stranger)
    assert w1.post("old 0\n\n" + other)[0] == 404
    assert w1.post("old 6\n\n" + forged_checkpoint(5, b"\x02" * 32))[0] == 400
    assert w1.post("old 01\n\n" + forged_checkpoint(5, b"\x02" * 32))[0] == 400
    assert w1.post("old 0\nnot base64!\n\n" + forged_checkpoint(5, b"\x02" * 32))[0] == 400
    assert w1.post("old 0\n" + "AAAA\n" * 64 + "\n" + forged_checkpoint(5, b"\x02" * 32))[0] == 400
    assert (
        w1.post("old 0\n" + signing.b64(b"\x00" * 32) + "\n\n" + forged_checkpoint(5, b"\x02" * 32))[0] == 422
    )
    assert w1.post("x" * (65 * 1024))[0] == 413
    conn = http.client.HTTPConnection("127.0.0.1", w1.port, timeout=5)
    conn.request("GET", "/add-checkpoint")
    assert conn.getresponse().status == 405
    conn.close()
    # None of these moved the witness: a first real checkpoint is still taken from size 0.
    assert w1.post("old 0\n\n" + log.latest_checkpoint().note)[0] == 200


def test_witness_trusts_old_and_new_log_key_during_a_rotation(log_vkey, tmp_path):
    row, old_key = keys.active_private_key("log")
    new_key = Ed25519PrivateKey.generate()
    new_vkey = signing.note_verifier_key(row.name, new_key.public_key())
    proc = WitnessProc("w3.witness.test", tmp_path / "w3", log_vkey, (new_vkey,)).start()
    try:
        text = log.checkpoint_text(conf.CUSTODY_LOG_ORIGIN, 5, b"\x03" * 32)
        assert proc.post("old 0\n\n" + signing.sign_note(text, row.name, old_key))[0] == 200
        assert proc.post("old 5\n\n" + signing.sign_note(text, row.name, new_key))[0] == 200
        stranger = signing.sign_note(text, row.name, Ed25519PrivateKey.generate())
        assert proc.post("old 5\n\n" + stranger)[0] == 403
    finally:
        proc.stop()


def test_second_witness_process_on_the_same_state_is_refused(witnesses):
    w1 = witnesses[0]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "custody.witness",
            "--name",
            w1.name,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--state",
            str(w1.state),
            "--log-vkey",
            w1.log_vkey,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "another witness process" in result.stderr


def test_bad_witness_setting_fails_loudly(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from custody.settings import env_witnesses

    _, vkey = cosign.generate_key("w.test")
    monkeypatch.setenv("CUSTODY_WITNESSES", f"http://127.0.0.1:1 {vkey}; https://w2.test/ {vkey}")
    assert env_witnesses("CUSTODY_WITNESSES") == [("http://127.0.0.1:1", vkey), ("https://w2.test", vkey)]
    monkeypatch.setenv("CUSTODY_WITNESSES", f"127.0.0.1:1 {vkey}")
    with pytest.raises(ImproperlyConfigured, match="URL VKEY"):
        env_witnesses("CUSTODY_WITNESSES")
    monkeypatch.setenv("CUSTODY_WITNESSES", "http://127.0.0.1:1 w.test+00000000+AAAA")
    with pytest.raises(ImproperlyConfigured):
        env_witnesses("CUSTODY_WITNESSES")


def test_witnessing_is_on_the_beat_schedule():
    entry = conf.CELERY_BEAT_SCHEDULE["witness"]
    assert entry["task"] == "custody.witness_checkpoints" == tasks.witness_checkpoints.name


@pytest.mark.slow
def test_real_worker_gets_checkpoints_cosigned(transactional_db, alice, case_a, tmp_path, monkeypatch):
    """The task in a real Celery worker, configured from the environment as in production."""
    from .conftest import api_client_for, kill_worker, start_worker

    upload(api_client_for(alice), case_a, b"to be witnessed")
    procs = [WitnessProc(f"w{i}.witness.test", tmp_path / f"w{i}", keys.log_verifier_key()) for i in (1, 2)]
    worker = None
    try:
        for proc in procs:
            proc.start()
        monkeypatch.setenv("CUSTODY_WITNESSES", ";".join(f"{p.url} {p.vkey}" for p in procs))
        worker = start_worker(tmp_path / "worker.log")
        tasks.witness_checkpoints.delay()
        deadline = time.monotonic() + 60
        while Cosignature.objects.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert Cosignature.objects.count() == 2, (tmp_path / "worker.log").read_text()[-3000:]
        size = log.latest_checkpoint().size
        assert set(Cosignature.objects.values_list("checkpoint_id", flat=True)) == {size}
    finally:
        if worker is not None:
            kill_worker(worker)
        for proc in procs:
            proc.stop()


def test_witness_server_error_counts_as_unreachable_not_refusal(custody_db, settings):
    """A witness's own failure (5xx) delays finality like an outage; it is not a verdict on the log."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Broken(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(503)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"busy\n")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _, vkey = cosign.generate_key("broken.witness.test")
        settings.CUSTODY_WITNESSES = [(f"http://127.0.0.1:{server.server_port}", vkey)]
        [outcome] = witnessing.witness_checkpoints()
        assert outcome.state == "unreachable" and outcome.transient and "503" in outcome.message
    finally:
        server.shutdown()
        server.server_close()


# --- what an auditor sees: verify_log, bundles, the offline verifier ---------------


def test_verify_log_reports_a_refusal_and_checks_every_cosignature(witnesses, as_alice, case_a):
    from custody import audit

    grow(as_alice, case_a, 2)
    witnessing.witness_checkpoints()
    report = audit.verify(check_blobs=False)
    assert report.ok and report.cosignatures == 2, report.problems
    row = Cosignature.objects.first()
    line = row.line[:-4] + ("AAA=" if row.line[-4:] != "AAA=" else "BBB=")
    Cosignature.objects.filter(pk=row.pk).update(line=line)
    problems = audit.verify(check_blobs=False).problems
    assert any(
        f"cosignature by {row.witness_name} of checkpoint {row.checkpoint_id}" in p for p in problems
    ), problems


def test_verify_log_reports_a_witness_refusal(witnesses, as_alice, case_a):
    from custody import audit

    grow(as_alice, case_a, 2)
    size, _ = log.tree_head()
    assert witnesses[1].post("old 0\n\n" + forged_checkpoint(size + 50, b"\x07" * 32))[0] == 200
    witnessing.witness_checkpoints()
    problems = audit.verify(check_blobs=False).problems
    assert any(
        "witness w2.witness.test REFUSED the log's checkpoint" in p and "ROLLBACK" in p for p in problems
    )


def _export(client, evidence_id, tmp_path) -> Path:
    response = client.get(f"/api/v1/evidence/{evidence_id}/export/", {"include_file": "1"})
    assert response.status_code == 200
    path = tmp_path / f"bundle-{time.monotonic_ns()}.zip"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def test_bundle_is_final_once_the_quorum_cosigned_and_says_so_otherwise(
    witnesses, as_alice, case_a, tmp_path
):
    import json

    from custody import services
    from custody.models import TrustRoot

    from .test_export import run_verifier

    services.update_trust_root()  # the witnesses are part of the root auditors pin
    pinned = tmp_path / "root.json"
    pinned.write_text(json.dumps(TrustRoot.objects.order_by("-version").first().envelope))
    item = upload(as_alice, case_a, b"witnessed bytes").json()["id"]
    result = run_verifier(_export(as_alice, item, tmp_path), pinned=pinned)
    assert result.returncode == 0, result.stdout
    assert "final: this checkpoint" in result.stdout and "cosigned by 2 of 2 witnesses" in result.stdout
    assert "w1.witness.test, w2.witness.test" in result.stdout

    witnesses[1].stop()  # one witness down: the export works, the bundle is not final
    result = run_verifier(_export(as_alice, item, tmp_path), pinned=pinned)
    assert result.returncode == 1, result.stdout
    assert "NOT final: this checkpoint" in result.stdout and "cosigned by 1 of 2 witnesses" in result.stdout
