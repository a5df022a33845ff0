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


def run_verifier(*args, pinned=True) -> subprocess.CompletedProcess:
    """The offline verifier, pinned to the server's trust root as an auditor saved it (``pinned``)."""
    if pinned is True:
        pinned = save_trust_root()
    extra = ["--trust-root", pinned] if pinned else []
    return subprocess.run(
        [sys.executable, "-c", NO_SERVER, *map(str, args), *map(str, extra)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def save_trust_root() -> Path:
    """What an auditor does once, out of band: save the server's trust root (here: its newest version)."""
    import tempfile

    from custody.models import TrustRoot

    path = Path(tempfile.mkdtemp(prefix="pinned-")) / "root.json"
    path.write_text(json.dumps(TrustRoot.objects.order_by("-version").first().envelope))
    return path


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
    assert "VERIFIED against trust root version 1" in result.stdout
    assert "SHA-256, SHA-1 and MD5 match the signed receipt" in result.stdout
    assert "form one unbroken chain from the intake" in result.stdout
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
    "receipt": (
        lambda d: _edit_payload(d / "receipt.dsse.json"),
        "intake receipt differs from what log entry",
    ),
    "result": (
        lambda d: _edit_payload(next(d.glob("analyses/*/result.dsse.json"))),
        "the statement's SHA-256 differs from the logged one",
    ),
    "log entry": (lambda d: _edit_entry(d / "log" / "entries.jsonl"), "inclusion proof does not lead"),
    "proof": (lambda d: _edit_proof(d / "log" / "entries.jsonl"), "inclusion proof does not lead"),
    "checkpoint": (
        lambda d: _edit_checkpoint(d / "log" / "checkpoint.txt"),
        "checkpoint: not signed by any log key of the trust root",
    ),
    "evidence.json": (lambda d: _edit_item(d / "evidence.json"), "evidence.json: custodian"),
}


def _edit_item(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["custodian"] = "mallory"
    path.write_text(json.dumps(doc))


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


def test_keys_json_in_the_bundle_is_not_trusted(as_alice, rich_item, tmp_path):
    """keys/ is there for checks by hand with openssl; the verifier takes keys from the trust root only."""
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    _edit_key(bag_dir / "data" / "keys" / "keys.json")
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 0 and "VERIFIED against trust root" in result.stdout, result.stdout


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


def run_monitor(url: str, state: Path, *extra) -> subprocess.CompletedProcess:
    """``python -m custody.verify --log URL --since STATE ...`` as a cron job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "custody.verify", "--log", url, "--since", str(state), *map(str, extra)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )


@pytest.mark.slow
def test_monitor_follows_the_log_and_reports_rewritten_history(gunicorn_server, alice, case_a, tmp_path):
    client = api_client_for(alice)
    upload(client, case_a, b"first")
    vkey = client.get("/api/v1/keys/").json()["log_vkey"]
    state = tmp_path / "kept-checkpoint.txt"

    def monitor(*extra):
        return run_monitor(gunicorn_server.url, state, *extra)

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
    result = run_verifier(pinned=None)
    assert result.returncode == 2 and "BUNDLE" in result.stderr
    result = run_verifier("--log", "http://127.0.0.1:9", pinned=None)
    assert result.returncode == 2 and "--since" in result.stderr


def test_the_verifier_needs_only_cryptography():
    modules = ("verify", "signing", "merkle", "projection", "trustroot")
    # Module-level imports only: projection imports Django lazily, in the functions the server uses.
    top = [
        line
        for m in modules
        for line in (ROOT / "custody" / f"{m}.py").read_text().splitlines()
        if line.startswith(("import ", "from "))
    ]
    for forbidden in ("django", "rest_framework", "celery"):
        assert not [line for line in top if forbidden in line]
    init = (ROOT / "custody" / "__init__.py").read_text()
    assert not [line for line in init.splitlines() if line.startswith(("import ", "from "))]


# --- a hostile auditor's forgeries: each refused with its reason ---------------------


def test_without_a_trust_root_nothing_is_verified(as_alice, rich_item, tmp_path):
    zip_path = export(as_alice, rich_item["id"], tmp_path)
    result = run_verifier(zip_path, pinned=None)
    assert result.returncode == 2 and "VERIFIED" not in result.stdout
    assert "NOT VERIFIED: no trust root given" in result.stderr
    result = run_verifier(zip_path, "--internal-only", pinned=None)
    assert result.returncode == 0, result.stdout
    assert "CONSISTENT, NOT VERIFIED" in result.stdout and "\nVERIFIED" not in result.stdout


def _resign_receipt(data: Path, key, change) -> None:
    from custody import signing

    path = data / "receipt.dsse.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    change(statement["predicate"])
    path.write_text(json.dumps(signing.sign_statement(statement, key)))


def test_bundle_forged_with_the_forgers_own_keys_is_refused(as_alice, rich_item, tmp_path):
    """A new trust root version with the forger's key, placed in the bundle: the pinned root never signed it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from custody import signing, trustroot
    from custody.models import TrustRoot

    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    data = bag_dir / "data"
    mallory = Ed25519PrivateKey.generate()
    current = TrustRoot.objects.order_by("-version").first().envelope
    doc = json.loads(base64.b64decode(current["payload"]))
    doc.update(version=doc["version"] + 1, previous=f"sha256:{trustroot.fingerprint(current)}")
    doc["keys"].append(
        {
            "keyid": signing.dsse_keyid(mallory.public_key()),
            "purpose": "intake",
            "name": "mallory",
            "public_key_pem": signing.public_key_pem(mallory.public_key()),
            "valid_from": "2000-01-01T00:00:00.000000Z",
            "valid_until": None,
        }
    )
    (data / "trust-root" / f"{doc['version']:06d}.json").write_text(
        json.dumps(trustroot.sign(doc, [mallory]))
    )
    _resign_receipt(data, mallory, lambda p: p.update(submitter={"id": 99, "username": "mallory"}))
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1, result.stdout
    assert (
        f"trust root: trust root version {doc['version']} (keys of the root it replaces): not signed by key"
        in (result.stdout)
    )


def test_receipt_resigned_by_an_extra_key_in_the_bundle_is_refused(as_alice, rich_item, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from custody import signing

    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    data = bag_dir / "data"
    extra = Ed25519PrivateKey.generate()
    keys = json.loads((data / "keys" / "keys.json").read_text())
    keys["keys"].append(
        {
            "keyid": signing.dsse_keyid(extra.public_key()),
            "purpose": "intake",
            "public_key_pem": signing.public_key_pem(extra.public_key()),
        }
    )
    (data / "keys" / "keys.json").write_text(json.dumps(keys))
    _resign_receipt(data, extra, lambda p: p.update(received_at="2020-01-01T00:00:00.000000Z"))
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1 and "intake receipt differs from what log entry" in result.stdout, (
        result.stdout
    )


@pytest.mark.parametrize(
    "field,value",
    [
        ("submitter", {"id": 99, "username": "mallory"}),
        ("case", {"id": "x", "reference": "Z-9"}),
        ("original_name", "other.wav"),
        ("size", 1),
        ("media_type", "audio/x-forged"),
        ("received_at", "2020-01-01"),
    ],
)
def test_receipt_field_changed_even_with_the_servers_own_key_is_refused(
    as_alice, rich_item, tmp_path, field, value
):
    """Even the holder of the intake key cannot change a receipt: it must be the one its log entry implies."""
    from custody import keys

    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    _, intake_key = keys.active_private_key("intake")
    _resign_receipt(bag_dir / "data", intake_key, lambda p: p.update({field: value}))
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1 and "intake receipt differs from what log entry" in result.stdout, (
        result.stdout
    )


def test_entry_signature_stripped_or_moved_is_refused(as_alice, rich_item, tmp_path):
    """Each entry must carry the log key's signature over its own leaf: not blank, not another entry's."""
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    path = bag_dir / "data" / "log" / "entries.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0]["signature"] = ""
    records[1]["signature"] = records[2]["signature"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1, result.stdout
    for record in records[:2]:
        assert f"entry {record['index']}: not signed by a log key of the trust root" in result.stdout


def test_dropped_download_entry_is_refused(as_alice, rich_item, tmp_path):
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    path = bag_dir / "data" / "log" / "entries.jsonl"
    lines = path.read_text().splitlines()
    kept = [
        line for line in lines if b"evidence.downloaded" not in base64.b64decode(json.loads(line)["leaf"])
    ]
    assert len(kept) == len(lines) - 1
    path.write_text("\n".join(kept) + "\n")
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1, result.stdout
    assert "entries were dropped, added or reordered" in result.stdout


def test_reordered_entries_are_refused(as_alice, rich_item, tmp_path):
    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    path = bag_dir / "data" / "log" / "entries.jsonl"
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    # Swap the indexes two entries claim (their leaves then no longer prove inclusion at the new place).
    records[1]["index"], records[2]["index"] = records[2]["index"], records[1]["index"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1 and "the leaf says index" in result.stdout, result.stdout


def test_rolled_back_checkpoint_is_refused(as_alice, rich_item, tmp_path):
    """An older, genuinely signed checkpoint, with proofs rebuilt for it and the later entries left out."""
    from custody import log, signing
    from custody.models import Checkpoint

    bag_dir = unpack(export(as_alice, rich_item["id"], tmp_path))
    data = bag_dir / "data"
    records = [json.loads(line) for line in (data / "log" / "entries.jsonl").read_text().splitlines()]
    older = log.checkpoint_at(records[2]["index"] + 1)
    assert Checkpoint.objects.filter(size=older.size).exists()
    kept = []
    for record in records[:3]:
        record["inclusion_proof"] = [signing.b64(h) for h in log.inclusion_proof(record["index"], older.size)]
        kept.append(record)
    (data / "log" / "entries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    (data / "log" / "checkpoint.txt").write_text(older.note)
    remanifest(bag_dir)
    result = run_verifier(bag_dir)
    assert result.returncode == 1, result.stdout
    assert "not at the export entry that closes the checkpoint" in result.stdout


def test_a_trust_root_from_another_server_refuses_the_bundle(as_alice, rich_item, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from custody import signing, trustroot
    from custody.models import TrustRoot

    doc = json.loads(base64.b64decode(TrustRoot.objects.get(version=1).envelope["payload"]))
    other = Ed25519PrivateKey.generate()
    doc["keys"] = [
        {
            "keyid": signing.dsse_keyid(other.public_key()),
            "purpose": "log",
            "name": doc["origin"],
            "vkey": signing.note_verifier_key(doc["origin"], other.public_key()),
            "public_key_pem": signing.public_key_pem(other.public_key()),
            "valid_from": "2000-01-01T00:00:00.000000Z",
            "valid_until": None,
        }
    ]
    pinned = tmp_path / "other-root.json"
    pinned.write_text(json.dumps(trustroot.sign(doc, [other])))
    result = run_verifier(export(as_alice, rich_item["id"], tmp_path), pinned=pinned)
    assert result.returncode == 1, result.stdout


def test_old_bundle_verifies_after_every_key_is_rotated(as_alice, rich_item, tmp_path):
    """A bundle exported before the rotations, checked against the root pinned after them (and before)."""
    from custody import services

    old_root = save_trust_root()
    zip_path = export(as_alice, rich_item["id"], tmp_path)
    for purpose in ("log", "intake", "results"):
        services.rotate_signing_key(actor=None, purpose=purpose)
    new_root = save_trust_root()
    for pinned in (old_root, new_root):
        result = run_verifier(zip_path, pinned=pinned)
        assert result.returncode == 0, result.stdout
    # A bundle exported now carries the chain: pinned to version 1, the verifier follows it to version 4.
    (tmp_path / "new").mkdir()
    result = run_verifier(export(as_alice, rich_item["id"], tmp_path / "new"), pinned=old_root)
    assert result.returncode == 0, result.stdout
    assert "VERIFIED against trust root version 4" in result.stdout


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


@pytest.mark.slow
def test_monitor_pinned_to_a_trust_root_follows_a_log_key_rotation(gunicorn_server, alice, case_a, tmp_path):
    """With --vkey the monitor would fail after a rotation; pinned to the trust root it steps over it."""
    from custody import services

    client = api_client_for(alice)
    upload(client, case_a, b"before the rotation")
    pinned = save_trust_root()
    state = tmp_path / "kept-checkpoint.txt"

    def monitor():
        return run_monitor(gunicorn_server.url, state, "--trust-root", pinned)

    first = monitor()
    assert first.returncode == 0 and "first run" in first.stdout, first.stdout + first.stderr
    services.rotate_signing_key(actor=None, purpose="log")
    upload(client, case_a, b"after the rotation")
    second = monitor()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "trust root version 2" in second.stdout and "signed by version 1" in second.stdout
    assert "consistent with the kept checkpoint" in second.stdout


# --- streamed: nothing on the local disk, bytes re-hashed on the way ----------------------


def test_export_streams_the_evidence_without_a_local_copy(as_alice, case_a, settings, tmp_path, monkeypatch):
    """The zip is made as it is sent: the evidence goes from the store into the response a piece at
    a time, no file is written for it, and a size that needs zip64 gets zip64 headers from the start."""
    import zipfile as zipmodule

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(scratch)
    data = os.urandom(6 * 1024 * 1024 + 7)
    body = upload(as_alice, case_a, data, name="clip.bin").json()
    monkeypatch.setattr(zipmodule, "ZIP64_LIMIT", 1 << 20)  # as if the item were over 4 GiB
    response = as_alice.get(f"/api/v1/evidence/{body['id']}/export/", {"include_file": "1"})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response.streaming and not response.has_header("Content-Length")
    assert f'filename="evidence-{body["id"]}.zip"' in response["Content-Disposition"]
    pieces = []
    for piece in response.streaming_content:
        pieces.append(piece)
        assert list(scratch.iterdir()) == []  # nothing of the bundle is ever on the local disk
    assert max(len(p) for p in pieces) <= 2 * 1024 * 1024  # streamed, never held whole
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(b"".join(pieces))
    with zipfile.ZipFile(bundle) as archive:
        assert archive.testzip() is None
        (name,) = [n for n in archive.namelist() if "/data/evidence/" in n]
        info = archive.getinfo(name)
        assert info.compress_type == zipfile.ZIP_STORED and info.file_size == len(data)
        assert b"\x01\x00" in info.extra[:2]  # the zip64 extra field
    unzip = subprocess.run(["unzip", "-tq", str(bundle)], capture_output=True, text=True)
    if unzip.returncode != 127:  # an independent reader, where installed
        assert unzip.returncode == 0, unzip.stdout + unzip.stderr
    bag_dir = unpack(bundle)
    bagit.Bag(str(bag_dir)).validate()
    assert (bag_dir / "data" / "evidence" / body["sha256"]).read_bytes() == data
    assert run_verifier(str(bundle)).returncode == 0


def test_export_of_bytes_that_no_longer_match_their_hash_never_completes(as_alice, case_a, tmp_path):
    """A blob altered in the store is found while it streams: the zip stops before its central
    directory, so what the client got is not a bundle at all, and the error is logged."""
    import stat

    from custody.storage import BlobMismatch, blob_store

    data = os.urandom(3 * 1024 * 1024)
    body = upload(as_alice, case_a, data, name="clip.bin").json()
    path = blob_store().path(body["sha256"])
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(2 * 1024 * 1024)
        f.write(b"\x00altered\x00")
    response = as_alice.get(f"/api/v1/evidence/{body['id']}/export/", {"include_file": "1"})
    assert response.status_code == 200  # the bytes are checked as they go, not before
    got = []
    with pytest.raises(BlobMismatch):
        for piece in response.streaming_content:
            got.append(piece)
    partial = tmp_path / "partial.zip"
    partial.write_bytes(b"".join(got))
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(partial)


def test_export_of_a_missing_blob_is_refused_before_any_byte(as_alice, case_a):
    import stat

    from custody.storage import blob_store

    body = upload(as_alice, case_a, b"soon gone\n", name="clip.bin").json()
    path = blob_store().path(body["sha256"])
    os.chmod(path.parent, stat.S_IRWXU)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=body["sha256"]):
        as_alice.get(f"/api/v1/evidence/{body['id']}/export/", {"include_file": "1"})
    # Without the file the bundle needs no blob and is made as usual.
    assert as_alice.get(f"/api/v1/evidence/{body['id']}/export/", {"include_file": "0"}).status_code == 200
