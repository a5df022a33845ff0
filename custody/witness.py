"""A C2SP tlog-witness for custody logs, run by a third party with Python + ``cryptography``.

    python -m custody.witness --name witness.example.org/w1 --listen 127.0.0.1:7380 \\
        --state /var/lib/custody-witness --log-vkey 'custody.example.org/log+1a2b3c4d+AU...'

On first run a witness key is created in the state directory; its verifier
key (the line the log operator puts in CUSTODY_WITNESSES) is printed and
written to ``STATE/vkey``. Set CUSTODY_WITNESS_PASSPHRASE (or
CUSTODY_WITNESS_PASSPHRASE_FILE) to keep the key encrypted at rest.

One endpoint, ``POST /add-checkpoint`` (c2sp.org/tlog-witness): body
``old <size>\\n``, up to 63 base64 consistency proof lines, a blank line,
the signed checkpoint. The witness checks, in the spec's order, the
origin (404), the log's signature with the pinned key (403), old <= new
(400), old == the size it last cosigned (409, body: that size), the RFC
9162 consistency proof from its stored root (422; same size with another
root: 409), then records the new checkpoint durably and only then answers
with its cosignature line. It never cosigns a smaller tree after a larger
one, nor two trees that are not consistent, across restarts too, as long
as its state directory survives: a witness whose state is lost must be
retired (new name and key), not restarted empty.

No Django anywhere on this import path (``custody/__init__.py`` imports
nothing): the package's pure modules are all it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import cosign, merkle, signing

logger = logging.getLogger("custody.witness")

# 63 proof lines of 45 bytes plus a checkpoint with a few signatures fit in a
# few KiB; anything much larger is not an add-checkpoint request.
MAX_BODY = 64 * 1024
MAX_PROOF_LINES = 63
# Refused requests that carry a valid log signature are kept as evidence of
# log misbehaviour (the spec allows it); capped so a log cannot fill the disk.
MAX_EVIDENCE_FILES = 1000
SIZE_CONTENT_TYPE = "text/x.tlog.size"


class Refusal(Exception):
    """A request the witness refuses, with the HTTP status the spec gives."""

    def __init__(self, status: int, message: str, body: str | None = None, content_type: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = body if body is not None else message + "\n"
        self.content_type = content_type or "text/plain; charset=utf-8"


# --- durable files ----------------------------------------------------------


def write_durably(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never half.

    Temp file in the same directory, fsync, rename over, fsync the directory
    (the rename itself is only durable once the directory is synced).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _passphrase() -> str | None:
    value = os.environ.get("CUSTODY_WITNESS_PASSPHRASE")
    if value:
        return value
    path = os.environ.get("CUSTODY_WITNESS_PASSPHRASE_FILE")
    return Path(path).read_text().strip() if path else None


def load_or_create_key(state: Path, name: str) -> tuple[Ed25519PrivateKey, str, bool]:
    """The witness key from ``state/key`` (created on first run); returns (key, vkey, created).

    The name is part of the witness's identity (key id, vkey): a state
    directory keeps the name it was created with, and another name is refused
    rather than silently making the same key sign under two names (the
    cosignature/v1 message does not commit to the name).
    """
    key_file, name_file = state / "key", state / "name"
    created = False
    passphrase = _passphrase()
    if key_file.exists():
        blob = key_file.read_bytes()
        if blob.startswith(b"{"):
            if not passphrase:
                raise SystemExit("the witness key is encrypted: set CUSTODY_WITNESS_PASSPHRASE")
            key = signing.decrypt_private_key(blob, passphrase)
        else:
            loaded = serialization.load_pem_private_key(blob, password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise SystemExit(f"{key_file} does not hold an Ed25519 key")
            key = loaded
        recorded = name_file.read_text().strip() if name_file.exists() else name
        if recorded != name:
            raise SystemExit(
                f"this state directory belongs to witness {recorded!r}, not {name!r}; "
                "a new name needs a new state directory (and key)"
            )
    else:
        key, _ = cosign.generate_key(name)
        if passphrase:
            blob = signing.encrypt_private_key(key, passphrase)
        else:
            blob = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        write_durably(key_file, blob, mode=0o600)
        created = True
    vkey = cosign.verifier_key(name, key.public_key())
    write_durably(name_file, name.encode() + b"\n")
    write_durably(state / "vkey", vkey.encode() + b"\n")
    return key, vkey, created


# --- the witness ------------------------------------------------------------


class Witness:
    """Checks add-checkpoint requests and keeps the latest cosigned checkpoint per origin."""

    def __init__(self, name: str, key: Ed25519PrivateKey, state: Path, logs: dict[str, list[str]]):
        self.name = name
        self.key = key
        self.state = state
        # origin -> the log's verifier keys (signed-note, Ed25519); several
        # while a log rotates its key, any one of them is enough.
        self.logs = logs
        (state / "origins").mkdir(parents=True, exist_ok=True)
        (state / "evidence").mkdir(parents=True, exist_ok=True)
        # One lock per origin: checking old size against the record and
        # writing the new record must be one step, or a slower request for a
        # smaller tree can roll the record back after a bigger one (the race
        # the spec describes).
        self._locks = {origin: threading.Lock() for origin in logs}

    def _record_path(self, origin: str) -> Path:
        # Origins contain "/" and may be long: the file is named by a hash
        # and holds the origin itself.
        return self.state / "origins" / (hashlib.sha256(origin.encode()).hexdigest() + ".json")

    def recorded(self, origin: str) -> tuple[int, bytes]:
        """(size, root) of the latest checkpoint cosigned for ``origin``; (0, b"") if none."""
        path = self._record_path(origin)
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return 0, b""
        if doc.get("origin") != origin:
            raise RuntimeError(f"{path} records another origin: the state directory is damaged")
        return int(doc["size"]), signing.b64decode(doc["root"])

    def _record(self, checkpoint: cosign.Checkpoint, note: str) -> None:
        doc = {
            "origin": checkpoint.origin,
            "size": checkpoint.size,
            "root": signing.b64(checkpoint.root),
            "checkpoint": note,  # as received, with the log's signature: proof of what was cosigned
            "recorded_at": int(time.time()),
        }
        write_durably(self._record_path(checkpoint.origin), signing.canonical_json(doc))

    def _keep_evidence(self, origin: str, body: bytes, reason: str) -> None:
        folder = self.state / "evidence"
        try:
            if sum(1 for _ in folder.iterdir()) >= MAX_EVIDENCE_FILES:
                return
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            digest = hashlib.sha256(body).hexdigest()[:16]
            name = f"{stamp}-{hashlib.sha256(origin.encode()).hexdigest()[:12]}-{digest}.txt"
            write_durably(folder / name, f"# refused: {reason}\n".encode() + body)
        except OSError as exc:  # evidence is a courtesy; never fail the answer over it
            logger.warning("could not keep evidence of a refused request: %s", exc)

    def add_checkpoint(self, body: bytes) -> str:
        """Handle one add-checkpoint body; return the response body (cosignature lines) or raise Refusal."""
        old_size, proof, note = parse_request(body)
        try:
            text, _ = cosign.split_note(note)
        except ValueError as exc:
            raise Refusal(HTTPStatus.BAD_REQUEST, f"malformed checkpoint: {exc}") from None
        origin = text.split("\n", 1)[0]
        vkeys = self.logs.get(origin)
        if not vkeys:
            raise Refusal(HTTPStatus.NOT_FOUND, f"unknown log origin {origin[:200]!r}")
        problems = []
        for vkey in vkeys:
            try:
                signing.verify_note(note, vkey)
                break
            except ValueError as exc:
                problems.append(str(exc))
        else:
            raise Refusal(
                HTTPStatus.FORBIDDEN, f"checkpoint not signed by the log's key: {'; '.join(problems)}"
            )
        try:
            checkpoint = cosign.parse_checkpoint_body(text)
        except ValueError as exc:
            raise Refusal(HTTPStatus.BAD_REQUEST, f"malformed checkpoint: {exc}") from None
        if old_size > checkpoint.size:
            raise Refusal(
                HTTPStatus.BAD_REQUEST,
                f"old size {old_size} is larger than the checkpoint size {checkpoint.size}",
            )
        with self._locks[origin]:
            size, root = self.recorded(origin)
            if old_size != size:
                raise Refusal(
                    HTTPStatus.CONFLICT,
                    f"old size {old_size} is not the latest cosigned size {size}",
                    body=f"{size}\n",
                    content_type=SIZE_CONTENT_TYPE,
                )
            if old_size == 0:
                if proof:
                    raise Refusal(
                        HTTPStatus.UNPROCESSABLE_ENTITY, "the proof must be empty when old size is 0"
                    )
            elif old_size == checkpoint.size:
                if checkpoint.root != root:
                    self._keep_evidence(origin, body, "same size, different root")
                    logger.error(
                        "FORK: %s at size %d has root %s, cosigned root was %s",
                        origin,
                        size,
                        signing.b64(checkpoint.root),
                        signing.b64(root),
                    )
                    raise Refusal(
                        HTTPStatus.CONFLICT,
                        f"checkpoint at size {size} has a different root than the one cosigned",
                        body=f"{size}\n",
                        content_type=SIZE_CONTENT_TYPE,
                    )
                if proof:
                    raise Refusal(HTTPStatus.UNPROCESSABLE_ENTITY, "the proof must be empty for equal sizes")
            elif not merkle.verify_consistency(old_size, checkpoint.size, root, checkpoint.root, proof):
                self._keep_evidence(origin, body, "consistency proof does not verify")
                logger.error(
                    "consistency proof from %d to %d for %s does not verify: fork or bad proof",
                    old_size,
                    checkpoint.size,
                    origin,
                )
                raise Refusal(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    f"consistency proof from {old_size} to {checkpoint.size} does not verify",
                )
            # Durable before the answer: a cosignature the witness could
            # forget after a crash would let it cosign a rollback later.
            self._record(checkpoint, note)
        line = cosign.sign(checkpoint.body, self.name, self.key)
        logger.info("cosigned %s at size %d (was %d)", origin, checkpoint.size, old_size)
        return line + "\n"


def parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, proof hashes, signed checkpoint note) of an add-checkpoint body; Refusal(400) if malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(HTTPStatus.BAD_REQUEST, "request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise Refusal(HTTPStatus.BAD_REQUEST, "request body has no blank line before the checkpoint")
    lines = head.split("\n")
    old_line, proof_lines = lines[0], lines[1:]
    old_text = old_line[4:] if old_line.startswith("old ") else ""
    if not (old_text.isascii() and old_text.isdigit()) or (old_text != "0" and old_text.startswith("0")):
        raise Refusal(HTTPStatus.BAD_REQUEST, "first line must be 'old <size>' (decimal, no leading zeros)")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in proof_lines:
        try:
            digest = signing.b64decode(line)
        except ValueError:
            raise Refusal(HTTPStatus.BAD_REQUEST, "a consistency proof line is not base64") from None
        if len(digest) != merkle.HASH_SIZE:
            raise Refusal(HTTPStatus.BAD_REQUEST, "a consistency proof line is not a 32-byte hash")
        proof.append(digest)
    return int(old_text), proof, note


# --- HTTP -------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server_version = "custody-witness/1"
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec recommends
    timeout = 30  # a client that stops sending mid-request is dropped, not waited on forever
    witness: Witness  # set on the subclass made by serve()

    def _send(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/add-checkpoint":
            self._send(HTTPStatus.NOT_FOUND, "not found; POST /add-checkpoint\n")
            return
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length\n")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._send(HTTPStatus.LENGTH_REQUIRED, "Content-Length required\n")
            return
        if not 0 <= length <= MAX_BODY:
            # The body is not read: close rather than leave it in the stream.
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body is limited to {MAX_BODY} bytes\n")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return
        try:
            answer = self.witness.add_checkpoint(body)
        except Refusal as refusal:
            logger.warning("refused (%d): %s", refusal.status, refusal.args[0])
            self._send(refusal.status, refusal.body, refusal.content_type)
            return
        except Exception:
            logger.exception("add-checkpoint failed")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; nothing was cosigned\n")
            return
        self._send(HTTPStatus.OK, answer)

    def do_GET(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "POST /add-checkpoint\n")

    def log_message(self, format: str, *args) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def serve(witness: Witness, host: str, port: int) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``witness`` (call serve_forever on it)."""
    handler = type("BoundHandler", (Handler,), {"witness": witness})
    server_class = ThreadingHTTPServer
    if ":" in host:  # an IPv6 address
        server_class = type(
            "ThreadingHTTPServer6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6}
        )
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("--listen takes HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m custody.witness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="witness key name, e.g. witness.example.org/w1")
    parser.add_argument("--listen", required=True, type=_parse_listen, metavar="HOST:PORT")
    parser.add_argument("--state", required=True, type=Path, metavar="DIR", help="key and per-log state")
    parser.add_argument(
        "--log-vkey",
        required=True,
        action="append",
        metavar="VKEY",
        help="a log's verifier key; repeat for several logs, or for a log's old and new key",
    )
    parser.add_argument(
        "--origin", help="the log's origin line, if not the name in its verifier key(s); one log then"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    logs: dict[str, list[str]] = {}
    for vkey in args.log_vkey:
        try:
            log_name, _, _ = signing.parse_verifier_key(vkey)
        except ValueError as exc:
            parser.error(f"--log-vkey {vkey[:60]!r}: {exc}")
        # C2SP convention: a log's key name is its origin.
        logs.setdefault(args.origin or log_name, []).append(vkey)
    try:
        cosign.verifier_key(args.name, Ed25519PrivateKey.generate().public_key())
    except ValueError as exc:
        parser.error(f"--name: {exc}")

    state: Path = args.state
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    # One process per state directory: two would each hold their own lock
    # and could cosign a rollback between them.
    lock = open(state / "lock", "w")  # held (and locked) for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another witness process is using {state}", file=sys.stderr)
        return 1
    key, vkey, created = load_or_create_key(state, args.name)
    print(vkey, flush=True)
    logger.info("%s witness key %s", "created" if created else "loaded", vkey)
    witness = Witness(args.name, key, state, logs)
    for origin in logs:
        size, _ = witness.recorded(origin)
        logger.info("log %s: latest cosigned size %d", origin, size)
    host, port = args.listen
    server = serve(witness, host, port)
    logger.info("listening on %s:%d", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop_on_sigterm(signum, frame) -> None:
    # SIGTERM (systemd, tests) stops like Ctrl-C: the server closes its socket.
    raise KeyboardInterrupt


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
