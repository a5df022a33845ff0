"""Export bundles and the offline verifier: BagIt, CASE/UCO, every alteration caught, log monitoring."""

import base64
import copy
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import bagit
import pytest

from custody import dbguard, merkle
from custody.models import LogEntry, LogHead, TreeNode
from forensics import services as forensics

from .conftest import ROOT, api_client_for, subprocess_env, upload

# Run the verifier as an auditor would, with Django and the server's other
# dependencies made unimportable: only Python and `cryptography`.
NO_SERVER = (
    "import sys, runpy\n"
    "for name in ('django', 'rest_framework', 'celery', 'kombu', 'PIL', 'numpy', 'magic', 'psycopg'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['custody.verify'] + sys.argv[1:]\n"
    "runpy.run_module('custody.verify', run_name='__main__')\n"
)


def run_verifier(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_SERVER, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def rich_item(as_alice, alice, case_a):
    """An item with a download, a published analysis and a fixity check."""
    body = upload(as_alice, case_a, b"RIFF the clip bytes " * 500, name="clip.wav").json()
    as_alice.get(f"/api/v1/evidence/{body['id']}/content/", {"reason": "expert copy"})
    analysis_id = as_alice.post(
        f"/api/v1/evidence/{body['id']}/analyses/", {"analyzer": "test.digest"}, format="json"
    ).json()["id"]
    forensics.run_analysis(analysis_id, worker="inline")
    as_alice.post(f"/api/v1/analyses/{analysis_id}/publish/")
    return body


def export(client, evidence_id, tmp_path, include_file=True) -> Path:
    response = client.get(
        f"/api/v1/evidence/{evidence_id}/export/", {"include_file": "1" if include_file else "0"}
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    path = tmp_path / "bundle.zip"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def unpack(zip_path: Path) -> Path:
    target = zip_path.parent / "unpacked"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    (bag,) = list(target.iterdir())
    return bag


def test_bundle_is_a_valid_bag_with_every_part(as_alice, rich_item, tmp_path):
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    bag = bagit.Bag(str(bag_dir))
    bag.validate()  # the reference BagIt implementation agrees
    data = bag_dir / "data"
    assert (data / "evidence" / rich_item["sha256"]).read_bytes() == b"RIFF the clip bytes " * 500
    for part in [
        "README.txt",
        "evidence.json",
        "receipt.dsse.json",
        "log/checkpoint.txt",
        "log/entries.jsonl",
        "keys/keys.json",
        "case-uco.jsonld",
        "report.html",
    ]:
        assert (data / part).is_file(), part
    assert len(list(data.glob("analyses/*/result.dsse.json"))) == 1
    assert len(list(data.glob("analyses/*/artifacts/*"))) == 1
    actions = [
        json.loads(base64.b64decode(json.loads(line)["leaf"]))["action"]
        for line in (data / "log" / "entries.jsonl").read_text().splitlines()
    ]
    assert actions[:2] == ["evidence.received", "evidence.downloaded"]
    assert {"analysis.completed", "result.published"} <= set(actions)
    assert "openssl pkeyutl -verify" in (data / "README.txt").read_text()
    assert LogEntry.objects.filter(action="evidence.exported", evidence_id=rich_item["id"]).count() == 1


def test_bundle_without_the_file(as_alice, rich_item, tmp_path):
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path, include_file=False))
    assert not (bag_dir / "data" / "evidence").exists()
    result = run_verifier(bag_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "evidence file not in the bundle" in result.stdout


def test_offline_verifier_passes_a_clean_bundle_without_django(as_alice, rich_item, tmp_path):
    zip_path = export(as_alice, rich_item["id"], tmp_path)
    result = run_verifier(zip_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout
    assert "SHA-256, SHA-1 and MD5 match the signed receipt" in result.stdout
    mine = tmp_path / "my-copy.wav"
    mine.write_bytes(b"RIFF the clip bytes " * 500)
    assert run_verifier(zip_path, "--file", mine).returncode == 0
    mine.write_bytes(b"RIFF the clip bytez " * 500)
    result = run_verifier(zip_path, "--file", mine)
    assert result.returncode == 1 and "your file: hashes differ" in result.stdout


def remanifest(bag_dir: Path) -> None:
    """An attacker who alters a file also fixes the bag's manifests."""
    bag = bagit.Bag(str(bag_dir))
    bag.save(manifests=True)


def _flip_b64_json(path: Path, key_path, mutate) -> None:
    doc = json.loads(path.read_text())
    target = doc
    for k in key_path[:-1]:
        target = target[k]
    target[key_path[-1]] = mutate(target[key_path[-1]])
    path.write_text(json.dumps(doc))


def _edit_payload(envelope_path: Path) -> None:
    def mutate(payload):
        statement = json.loads(base64.b64decode(payload))
        statement["predicate"]["size" if "size" in statement["predicate"] else "findings"] = 1
        return base64.b64encode(json.dumps(statement).encode()).decode()

    _flip_b64_json(envelope_path, ["payload"], mutate)


def _edit_entry(entries_path: Path) -> None:
    lines = entries_path.read_text().splitlines()
    record = json.loads(lines[1])
    leaf = base64.b64decode(record["leaf"]).replace(b"expert copy", b"routine copy")
    record["leaf"] = base64.b64encode(leaf).decode()
    lines[1] = json.dumps(record)
    entries_path.write_text("\n".join(lines) + "\n")


def _edit_proof(entries_path: Path) -> None:
    lines = entries_path.read_text().splitlines()
    record = json.loads(lines[0])
    proof = base64.b64decode(record["inclusion_proof"][0])
    record["inclusion_proof"][0] = base64.b64encode(bytes([proof[0] ^ 1]) + proof[1:]).decode()
    lines[0] = json.dumps(record)
    entries_path.write_text("\n".join(lines) + "\n")


def _edit_checkpoint(path: Path) -> None:
    lines = path.read_text().split("\n")
    lines[1] = str(int(lines[1]) + 1)
    path.write_text("\n".join(lines))


def _edit_key(path: Path) -> None:
    doc = json.loads(path.read_text())
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from custody import signing

    intake = next(k for k in doc["keys"] if k["purpose"] == "intake")
    intake["public_key_pem"] = signing.public_key_pem(Ed25519PrivateKey.generate().public_key())
    path.write_text(json.dumps(doc))


def _edit_file(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))


ALTERATIONS = {
    "file byte": (
        lambda d: _edit_file(next((d / "evidence").iterdir())),
        "hashes differ from the signed receipt",
    ),
    "receipt": (lambda d: _edit_payload(d / "receipt.dsse.json"), "intake receipt: signature by key"),
    "result": (lambda d: _edit_payload(next(d.glob("analyses/*/result.dsse.json"))), "signature by key"),
    "log entry": (lambda d: _edit_entry(d / "log" / "entries.jsonl"), "inclusion proof does not lead"),
    "proof": (lambda d: _edit_proof(d / "log" / "entries.jsonl"), "inclusion proof does not lead"),
    "checkpoint": (lambda d: _edit_checkpoint(d / "log" / "checkpoint.txt"), "checkpoint: note signature"),
    "key": (lambda d: _edit_key(d / "keys" / "keys.json"), "key id does not match the key"),
}


@pytest.mark.parametrize("part", list(ALTERATIONS))
def test_every_alteration_is_caught_even_with_fixed_manifests(as_alice, rich_item, tmp_path, part):
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    alter, expected = ALTERATIONS[part]
    alter(bag_dir / "data")

    # As altered: the bag's own manifests already object.
    result = run_verifier(bag_dir)
    assert result.returncode == 1 and "content differs from the manifest" in result.stdout, result.stdout

    # With manifests recomputed by the attacker, the signatures and proofs still object.
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1, result.stdout
    assert "content differs from the manifest" not in result.stdout
    assert expected in result.stdout, result.stdout


def test_pinned_log_key_rejects_a_bundle_signed_by_another_log(as_alice, rich_item, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from custody import signing

    other = signing.note_verifier_key("custody.localhost/log", Ed25519PrivateKey.generate().public_key())
    result = run_verifier(export(as_alice, rich_item["id"], tmp_path), "--log-vkey", other)
    assert result.returncode == 1 and "differs from the pinned one" in result.stdout


def test_receipts_and_results_verify_with_securesystemslib(as_alice, rich_item):
    """An independent DSSE implementation agrees with ours."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    keys = {k["keyid"]: k for k in as_alice.get("/api/v1/keys/").json()["keys"]}
    analysis = as_alice.get(f"/api/v1/evidence/{rich_item['id']}/analyses/").json()[0]
    for envelope in (rich_item["receipt"], analysis["envelope"]):
        keyid = envelope["signatures"][0]["keyid"]
        public = load_pem_public_key(keys[keyid]["public_key_pem"].encode())
        key = SSlibKey.from_crypto(public, keyid=keyid, scheme="ed25519")
        # (from_dict rewrites the dicts it is given: hand it copies)
        verified = Envelope.from_dict(copy.deepcopy(envelope)).verify([key], 1)
        assert keyid in verified
        tampered = dict(copy.deepcopy(envelope), payload=base64.b64encode(b'{"_type":"forged"}').decode())
        with pytest.raises(Exception, match="(?i)verif|threshold"):
            Envelope.from_dict(tampered).verify([key], 1)


def test_case_uco_document_validates(as_alice, rich_item, tmp_path):
    import shutil

    case_validate = shutil.which("case_validate") or str(Path(sys.executable).parent / "case_validate")
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    result = subprocess.run(
        [case_validate, str(bag_dir / "data" / "case-uco.jsonld")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# --- monitoring the live log -----------------------------------------------------


def rewrite_history() -> None:
    """What a server operator with database rights could do: edit an entry and rebuild the tree."""
    from django.db import connection

    dbguard.remove(connection)
    entry = next(e for e in LogEntry.objects.order_by("index") if b'"alice"' in bytes(e.leaf))
    index = entry.index
    leaf = bytes(entry.leaf).replace(b'"alice"', b'"mallory"')
    LogEntry.objects.filter(index=index).update(leaf=leaf, leaf_hash=merkle.leaf_hash(leaf))
    TreeNode.objects.all().delete()
    frontier, nodes = [], []
    for i, h in enumerate(LogEntry.objects.order_by("index").values_list("leaf_hash", flat=True)):
        frontier, made = merkle.append_to_frontier(frontier, i, bytes(h))
        nodes += [TreeNode(level=lvl, index=j, hash=x) for lvl, j, x in made if lvl > 0]
    TreeNode.objects.bulk_create(nodes)
    LogHead.objects.filter(pk=1).update(frontier=b"".join(frontier), root=merkle.root_from_frontier(frontier))


@pytest.mark.slow
def test_monitor_follows_the_log_and_reports_rewritten_history(gunicorn_server, alice, case_a, tmp_path):
    client = api_client_for(alice)
    upload(client, case_a, b"first")
    vkey = client.get("/api/v1/keys/").json()["log_vkey"]
    state = tmp_path / "kept-checkpoint.txt"

    def monitor(*extra):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "custody.verify",
                "--log",
                gunicorn_server.url,
                "--since",
                str(state),
                *extra,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=subprocess_env(),
        )

    first = monitor("--vkey", vkey)
    assert first.returncode == 0 and "first run" in first.stdout, first.stdout + first.stderr
    kept_size = int(state.read_text().split("\n")[1])

    upload(client, case_a, b"second")
    second = monitor()  # the verifier key was kept beside the checkpoint
    assert second.returncode == 0, second.stdout
    assert f"consistent with the kept checkpoint of {kept_size} entries" in second.stdout
    assert int(state.read_text().split("\n")[1]) > kept_size

    kept = state.read_text()
    rewrite_history()
    upload(client, case_a, b"third")  # the server carries on, signing checkpoints of the rewritten tree
    third = monitor()
    assert third.returncode == 1 and "NOT consistent" in third.stdout, third.stdout
    assert state.read_text() == kept  # a bad checkpoint is never kept


def test_verifier_cli_usage_errors():
    result = run_verifier()
    assert result.returncode == 2 and "BUNDLE" in result.stderr
    result = run_verifier("--log", "http://127.0.0.1:9")
    assert result.returncode == 2 and "--since" in result.stderr


def test_the_verifier_needs_only_cryptography():
    source = (ROOT / "custody" / "verify.py").read_text() + (ROOT / "custody" / "signing.py").read_text()
    for forbidden in ("django", "rest_framework", "celery"):
        assert f"import {forbidden}" not in source and f"from {forbidden}" not in source
    init = (ROOT / "custody" / "__init__.py").read_text()
    assert not [line for line in init.splitlines() if line.startswith(("import ", "from "))]


# --- exports in parallel: nothing process-wide is touched ---------------------------------


def test_two_exports_at_once_in_one_process_never_change_directory(
    transactional_db, as_alice, alice, case_a, monkeypatch, tmp_path
):
    """The working directory is process-wide: an export that changed it (bagit.make_bag
    does) would move every relative path of every other thread, another export's included."""
    from django.db import connection

    ids = [upload(as_alice, case_a, os.urandom(300_000), name=f"clip-{i}.bin").json()["id"] for i in range(2)]
    clients = [api_client_for(alice) for _ in ids]
    cwd = os.getcwd()

    def chdir(path):
        raise AssertionError(f"os.chdir({path!r}) during an export")

    monkeypatch.setattr(os, "chdir", chdir)
    start = threading.Barrier(len(ids))
    bundles, errors = {}, []

    def run(client, evidence_id):
        try:
            start.wait(timeout=30)
            response = client.get(f"/api/v1/evidence/{evidence_id}/export/", {"include_file": "1"})
            assert response.status_code == 200, response.content
            bundles[evidence_id] = b"".join(response.streaming_content)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=pair) for pair in zip(clients, ids, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert os.getcwd() == cwd
    monkeypatch.undo()
    for evidence_id, bundle in bundles.items():
        zip_path = tmp_path / evidence_id / "bundle.zip"
        zip_path.parent.mkdir()
        zip_path.write_bytes(bundle)
        bag_dir = unpack(zip_path)
        bagit.Bag(str(bag_dir)).validate()
        assert json.loads((bag_dir / "data" / "evidence.json").read_text())["id"] == evidence_id
        result = run_verifier(zip_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert len(bundles) == 2
