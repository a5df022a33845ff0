"""The README's by-hand checks, run exactly as written, with standard tools only."""

import base64
import json
import re
import subprocess

import pytest
from rest_framework.test import APIClient

from custody import log

from .conftest import ROOT, require_tool, upload


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- check: {name} -->\n```(?:bash|sh)\n(.*?)```", text, re.S)
    assert match, f"README.md has no block marked 'check: {name}'"
    return match.group(1)


def run_block(name: str, cwd) -> subprocess.CompletedProcess:
    for tool in ("bash", "jq", "openssl", "base64"):
        require_tool(tool)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block(name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_readme_receipt_check_verifies_and_catches_a_change(as_alice, case_a, tmp_path):
    body = upload(as_alice, case_a, b"by hand").json()
    (tmp_path / "receipt.json").write_text(
        json.dumps(as_alice.get(f"/api/v1/evidence/{body['id']}/receipt/").json())
    )
    (tmp_path / "keys.json").write_text(json.dumps(APIClient().get("/api/v1/keys/").json()))
    result = run_block("receipt", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Signature Verified Successfully" in result.stdout
    assert body["sha256"] in result.stdout

    envelope = json.loads((tmp_path / "receipt.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["size"] += 1
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (tmp_path / "receipt.json").write_text(json.dumps(envelope))
    result = run_block("receipt", tmp_path)
    assert result.returncode != 0 and "Signature Verification Failure" in result.stdout


@pytest.mark.parametrize("tamper", [False, True])
def test_readme_checkpoint_check(as_alice, case_a, tmp_path, tamper):
    upload(as_alice, case_a, b"for the checkpoint")
    note = APIClient().get("/api/v1/log/checkpoint").content.decode()
    assert note == log.latest_checkpoint().note
    if tamper:
        lines = note.split("\n")
        lines[1] = str(int(lines[1]) + 1)
        note = "\n".join(lines)
    (tmp_path / "checkpoint.txt").write_text(note)
    (tmp_path / "keys.json").write_text(json.dumps(APIClient().get("/api/v1/keys/").json()))
    result = run_block("checkpoint", tmp_path)
    if tamper:
        assert result.returncode != 0 and "Signature Verification Failure" in result.stdout
    else:
        assert result.returncode == 0, result.stderr + result.stdout
        assert "Signature Verified Successfully" in result.stdout
