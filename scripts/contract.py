"""The API contract against a live server: schemathesis on a throwaway instance.

Starts the web process as the Procfile runs it (gunicorn, on loopback, one
worker) on a fresh data dir with SQLite, makes a user with an API token, a
case with evidence, a pending handover, a queued analysis and a half-sent
resumable upload through the API, then runs schemathesis on the served
OpenAPI schema, authenticated with the token. Path parameters are drawn half
the time from those real ids (a schemathesis dictionary), so the detail
endpoints answer with data as well as 404.

Checks: no 5xx, every status code, content type, header and body as the
schema states them. Bounded: at most --max-examples cases per operation and
--budget seconds for the whole run (more is a failure). Exit status: 0 when
every check passed, 1 otherwise.

The instance is thrown away afterwards; nothing it does reaches another
database or data dir (DATABASE_URL and CELERY_BROKER_URL are cleared). The
one operation left out is revoking the token (DELETE /api/v1/auth/token/):
it would end the run's authentication; tests/test_schema_contract.py covers it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
# Revoking the run's own token would end its authentication. "Run every
# applicable analyzer" on a case or an item runs, on this eager server (no
# worker: analyses run inside the request), every analyzer on every item the
# run has uploaded by then: minutes of analysis in one request, beyond the
# request timeout, which measures the analyzers and not the contract (with a
# worker it only queues them). tests/test_schema_contract.py calls both and
# validates their answers against the schema.
EXCLUDED_OPERATIONS = [
    "v1_auth_token_destroy",
    "v1_cases_analyses_all_create",
    "v1_evidence_analyses_all_create",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"error: no {name!r} line in the Procfile")


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DATABASE_MIGRATE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        CUSTODY_DATA_DIR=str(data_dir),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        CUSTODY_KEY_PASSPHRASE=secrets.token_urlsafe(20),
        CUSTODY_KEY_SCRYPT_N="1024",  # throwaway keys: a cheap KDF
        # Generous limits: the run is about the contract, not the throttles
        # (429 is in the schema and tests/test_login_limits.py tests them).
        CUSTODY_AUTH_RATE="100000/min",
        CUSTODY_PUBLIC_RATE="100000/min",
        WEB_BIND="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        # Analyses run inside the request (no worker to start), so results,
        # artifacts and publication have data too.
        CELERY_TASK_ALWAYS_EAGER="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=10)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"error: the server did not answer at {url} within {timeout:.0f} s")


def seed(base: str, username: str, password: str, add_receiver) -> dict[str, list[str]]:
    """Data for the interesting endpoints, made through the API; returns the ids by parameter name."""

    def ok(response: requests.Response, *codes: int) -> requests.Response:
        if response.status_code not in codes:
            raise SystemExit(
                f"error: seeding {response.request.method} {response.url}: "
                f"{response.status_code} {response.text[:300]}"
            )
        return response

    token = ok(
        requests.post(
            f"{base}/api/v1/auth/token/", json={"username": username, "password": password}, timeout=60
        ),
        201,
    ).json()["token"]
    s = requests.Session()
    s.headers["Authorization"] = f"Token {token}"
    case = ok(
        s.post(f"{base}/api/v1/cases/", json={"reference": "CT-1", "title": "Contract run"}), 201
    ).json()
    evidence = []
    for name, content in [("note.txt", b"contract run\n"), ("data.bin", os.urandom(2048))]:
        item = ok(
            s.post(f"{base}/api/v1/evidence/", data={"case": case["id"]}, files={"file": (name, content)}),
            201,
        ).json()
        evidence.append(item)
    add_receiver(case["reference"])  # a member of the case, who may take custody
    transfer = ok(
        s.post(
            f"{base}/api/v1/evidence/{evidence[0]['id']}/transfers/",
            json={"to_user": "receiver", "purpose": "contract run", "location": "lab"},
        ),
        201,
    ).json()
    analysis = ok(
        s.post(f"{base}/api/v1/evidence/{evidence[1]['id']}/analyses/", json={"analyzer": "file.entropy"}),
        202,
    ).json()
    analysis = ok(s.get(f"{base}/api/v1/analyses/{analysis['id']}/"), 200).json()
    if analysis["status"] != "succeeded":
        raise SystemExit(f"error: seeding: the analysis {analysis['status']}: {analysis['error']}")
    ok(s.post(f"{base}/api/v1/analyses/{analysis['id']}/publish/", json={}), 200)
    meta = "case " + base64.b64encode(case["id"].encode()).decode()
    created = ok(
        s.post(
            f"{base}/api/v1/uploads/",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100", "Upload-Metadata": meta},
        ),
        201,
    )
    upload_id = created.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    ok(
        s.patch(
            created.headers["Location"],
            data=b"x" * 40,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        ),
        204,
    )
    ids = {
        "token": [token],
        "case_id": [case["id"], case["reference"]],
        "evidence_id": [e["id"] for e in evidence],
        "transfer_id": [transfer["id"]],
        "upload_id": [upload_id],
        "analysis_id": [analysis["id"]],
        "sha256": [a["sha256"] for a in analysis["artifacts"]] + [e["sha256"] for e in evidence],
    }
    return ids


def write_config(path: Path, ids: dict[str, list[str]]) -> None:
    """A schemathesis.toml: real ids for path parameters half the time."""
    lines = []
    for name, values in ids.items():
        if name == "token":
            continue
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for name in ids:
        if name != "token":
            lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=int(os.getenv("CONTRACT_MAX_EXAMPLES", "10")))
    parser.add_argument(
        "--budget", type=float, default=float(os.getenv("CONTRACT_BUDGET_SECONDS", "300")), help="seconds"
    )
    parser.add_argument("--seed", type=int, default=int(os.getenv("CONTRACT_SEED", "12")))
    parser.add_argument("--mode", choices=["positive", "negative", "all"], default="all")
    parser.add_argument("--report-dir", default=None, help="keep schemathesis' JUnit report here")
    args = parser.parse_args()
    if args.max_examples < 1 or args.budget <= 0:
        parser.error("--max-examples must be at least 1 and --budget positive")

    data_dir = Path(tempfile.mkdtemp(prefix="custody-contract-"))
    port = free_port()
    env = server_env(data_dir, port)
    base = f"http://127.0.0.1:{port}"
    server = None
    try:
        with open(data_dir / "release.log", "wb") as release_log:
            release = subprocess.run(
                ["sh", "-c", procfile_line("release")],
                cwd=ROOT,
                env=env,
                stdout=release_log,
                stderr=subprocess.STDOUT,
            )
        if release.returncode != 0:
            print((data_dir / "release.log").read_text(errors="replace"), file=sys.stderr)
            raise SystemExit("error: the Procfile's release step failed")
        password = secrets.token_urlsafe(16)

        def create_user(name: str, *extra: str) -> None:
            subprocess.run(
                [PYTHON, "manage.py", "create_user", name, "--role", "investigator", *extra],
                cwd=ROOT,
                env={**env, "CUSTODY_PASSWORD": password},
                check=True,
                stdout=subprocess.DEVNULL,
            )

        create_user("contract")
        log = open(data_dir / "server.log", "wb")
        server = subprocess.Popen(
            ["sh", "-c", "exec " + procfile_line("web")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(f"{base}/api/v1/keys/", server)
        ids = seed(base, "contract", password, lambda reference: create_user("receiver", "--case", reference))
        config = data_dir / "schemathesis.toml"
        write_config(config, ids)
        command = [
            str(BIN / "st"),
            "--config-file",
            str(config),
            "run",
            f"{base}/api/schema/",
            "--header",
            f"Authorization: Token {ids['token'][0]}",
            "--checks",
            CHECKS,
            "--mode",
            args.mode,
            "--max-examples",
            str(args.max_examples),
            "--seed",
            str(args.seed),
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
        ]
        for operation in EXCLUDED_OPERATIONS:
            command += ["--exclude-operation-id", operation]
        if args.report_dir:
            command += ["--report", "junit", "--report-dir", args.report_dir]
        print(
            f"schemathesis on {base} (at most {args.max_examples} cases per operation, {args.budget:.0f} s)"
        )
        started = time.monotonic()
        try:
            result = subprocess.run(
                command,
                cwd=data_dir,
                timeout=args.budget,
                env={
                    **os.environ,
                    "SCHEMATHESIS_HOOKS": "contract_hooks",
                    "PYTHONPATH": str(ROOT / "scripts"),
                },
            )
        except subprocess.TimeoutExpired:
            print(f"error: schemathesis did not finish within {args.budget:.0f} s", file=sys.stderr)
            return 1
        print(f"schemathesis took {time.monotonic() - started:.0f} s and exited with {result.returncode}")
        if result.returncode != 0:
            tail = (data_dir / "server.log").read_text(errors="replace")[-4000:]
            print("--- the server's log (end) ---\n" + tail, file=sys.stderr)
        return 0 if result.returncode == 0 else 1
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
