"""Offline verifier for export bundles, and a monitor for the live log.

Needs only Python and the ``cryptography`` package: no Django, no server.

    python -m custody.verify BUNDLE.zip [--file MY_COPY] [--log-vkey VKEY] [--keys KEYS.json]
    python -m custody.verify --log https://custody.example.org --since checkpoint.txt [--vkey VKEY]

The bundle check: BagIt manifests; the keys (key ids recomputed); the signed
checkpoint; every log entry's inclusion proof against it; the intake receipt
and every analysis result (signatures, subjects, artifacts, and that each is
recorded in the log); and the evidence file's hashes against the receipt
(when the file is in the bundle, or given with --file). Each failure is
named; the exit status is 1 if there is any.

Keys found in a bundle are only as trustworthy as the bundle: pass
``--log-vkey`` (or ``--keys``) obtained independently, e.g. from the server's
/api/v1/keys/ at another time, to pin them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from . import merkle, signing

INTAKE_TYPE = "urn:custody-server:intake-receipt:v1"
RESULT_TYPE = "urn:custody-server:analysis-result:v1"


class Report:
    def __init__(self) -> None:
        self.lines: list[tuple[bool, str]] = []

    def ok(self, text: str) -> None:
        self.lines.append((True, text))

    def fail(self, text: str) -> None:
        self.lines.append((False, text))

    def check(self, condition: bool, good: str, bad: str) -> bool:
        (self.ok if condition else self.fail)(good if condition else bad)
        return condition

    @property
    def failures(self) -> list[str]:
        return [text for good, text in self.lines if not good]

    def render(self) -> str:
        out = [("  ok    " if good else "  FAIL  ") + text for good, text in self.lines]
        failures = self.failures
        out.append("")
        out.append(f"FAILED: {len(failures)} problem(s)" if failures else "VERIFIED: every check passed")
        return "\n".join(out)


def _file_digests(path: Path) -> dict[str, str]:
    hashes = {name: hashlib.new(name) for name in ("sha256", "sha1", "md5", "sha512")}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


# --- BagIt (RFC 8493) -----------------------------------------------------------


def check_bag(root: Path, report: Report) -> None:
    if not report.check(
        (root / "bagit.txt").is_file(), "bagit.txt present", "not a bag: bagit.txt is missing"
    ):
        return
    manifests = sorted(root.glob("manifest-*.txt"))
    if not report.check(bool(manifests), "payload manifest present", "bag has no payload manifest"):
        return
    listed: set[str] = set()
    for manifest in manifests:
        algorithm = manifest.name[len("manifest-") : -len(".txt")]
        bad = _check_manifest(root, manifest, algorithm, listed)
        report.check(
            not bad,
            f"{manifest.name}: every payload file matches",
            f"{manifest.name}: " + "; ".join(bad[:10]),
        )
    present = {p.relative_to(root).as_posix() for p in (root / "data").rglob("*") if p.is_file()}
    extra = sorted(present - listed)
    report.check(not extra, "no unlisted payload files", f"payload files not in the manifest: {extra[:10]}")
    for tagmanifest in sorted(root.glob("tagmanifest-*.txt")):
        algorithm = tagmanifest.name[len("tagmanifest-") : -len(".txt")]
        bad = _check_manifest(root, tagmanifest, algorithm, set())
        report.check(
            not bad, f"{tagmanifest.name}: tag files match", f"{tagmanifest.name}: " + "; ".join(bad[:10])
        )


def _check_manifest(root: Path, manifest: Path, algorithm: str, listed: set[str]) -> list[str]:
    problems = []
    if algorithm not in ("sha256", "sha512", "sha1", "md5"):
        return [f"unsupported algorithm {algorithm}"]
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = urllib.parse.unquote(name.strip()) if "%" in name else name.strip()
        listed.add(name)
        path = (root / name).resolve()
        if root.resolve() not in path.parents:
            problems.append(f"{name}: outside the bag")
            continue
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        h = hashlib.new(algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != digest.lower():
            problems.append(f"{name}: content differs from the manifest")
    return problems


# --- keys -------------------------------------------------------------------------


def load_keys(path: Path, report: Report, pinned_vkey: str | None):
    """Returns ({keyid: (purpose, key)}, log vkey) after recomputing every key id."""
    doc = json.loads(path.read_text())
    keys = {}
    for entry in doc.get("keys", []):
        try:
            key = signing.load_public_key_pem(entry["public_key_pem"])
        except (KeyError, ValueError) as exc:
            report.fail(f"key {entry.get('keyid', '?')[:16]}: not a valid Ed25519 public key ({exc})")
            continue
        if signing.dsse_keyid(key) != entry.get("keyid"):
            report.fail(f"key {entry.get('keyid', '?')[:16]}: its key id does not match the key")
            continue
        keys[entry["keyid"]] = (entry.get("purpose"), key)
    report.ok(f"{len(keys)} public key(s) with matching key ids")
    vkey = doc.get("log_vkey", "")
    if pinned_vkey:
        report.check(
            vkey == pinned_vkey,
            "log verifier key matches the pinned one",
            "the bundle's log verifier key differs from the pinned one",
        )
        vkey = pinned_vkey
    else:
        report.ok("keys taken from the bundle (pin them with --log-vkey/--keys from an independent source)")
    try:
        _, _, log_key = signing.parse_verifier_key(vkey)
        if not any(
            signing.raw_public_key(k) == signing.raw_public_key(log_key)
            for p, k in keys.values()
            if p == "log"
        ):
            report.fail("the log verifier key is not among the bundle's log keys")
    except ValueError as exc:
        report.fail(f"log verifier key: {exc}")
    return keys, vkey


def _keys_for(keys: dict, purpose: str) -> dict:
    return {keyid: key for keyid, (p, key) in keys.items() if p == purpose}


# --- checkpoint and log -------------------------------------------------------------


def parse_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """Verify a signed checkpoint; return (origin, size, root). Raises ValueError."""
    text = signing.verify_note(note, vkey)
    lines = text.split("\n")
    if len(lines) < 4:
        raise ValueError("checkpoint body has fewer than three lines")
    try:
        size, root = int(lines[1]), signing.b64decode(lines[2])
    except ValueError:
        raise ValueError("malformed checkpoint size or root") from None
    if len(root) != 32:
        raise ValueError("checkpoint root is not 32 bytes")
    return lines[0], size, root


def check_entries(path: Path, size: int, root: bytes, report: Report) -> dict[int, dict]:
    entries: dict[int, dict] = {}
    bad = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            leaf = base64.b64decode(record["leaf"], validate=True)
            proof = [base64.b64decode(h, validate=True) for h in record["inclusion_proof"]]
            index = record["index"]
            entry = json.loads(leaf)
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(f"line {number}: malformed ({exc})")
            continue
        if entry.get("index") != index:
            bad.append(f"entry {index}: the leaf says index {entry.get('index')}")
        elif not merkle.verify_inclusion(merkle.leaf_hash(leaf), index, size, proof, root):
            bad.append(f"entry {index}: inclusion proof does not lead to the checkpoint's root")
        else:
            entries[index] = entry
    report.check(
        not bad,
        f"{len(entries)} log entries, each proven included in the checkpoint",
        "log entries: " + "; ".join(bad[:10]),
    )
    return entries


# --- the bundle ---------------------------------------------------------------------


def verify_bundle(
    bundle: Path, own_file: Path | None = None, log_vkey: str | None = None, keys_file: Path | None = None
) -> Report:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="custody-verify-") as tmp:
        root = _open_bundle(bundle, Path(tmp), report)
        if root is None:
            return report
        check_bag(root, report)
        data = root / "data"
        keys_path = keys_file or data / "keys" / "keys.json"
        if not report.check(keys_path.is_file(), "keys present", f"{keys_path} is missing"):
            return report
        keys, vkey = load_keys(keys_path, report, log_vkey)

        try:
            origin, size, tree_root = parse_checkpoint((data / "log" / "checkpoint.txt").read_text(), vkey)
            report.ok(f"checkpoint signed by the log key: {origin}, {size} entries")
        except (OSError, ValueError) as exc:
            report.fail(f"checkpoint: {exc}")
            return report
        entries = check_entries(data / "log" / "entries.jsonl", size, tree_root, report)

        item = json.loads((data / "evidence.json").read_text())
        sha256 = item.get("sha256")
        receipt = _check_receipt(data / "receipt.dsse.json", keys, item, entries, report)

        evidence_files = sorted((data / "evidence").glob("*")) if (data / "evidence").is_dir() else []
        candidates = [("bundled file", p) for p in evidence_files] + (
            [("your file", own_file)] if own_file else []
        )
        if not candidates:
            report.ok(
                "evidence file not in the bundle: hash your copy and compare with the receipt (or use --file)"
            )
        for label, path in candidates:
            digests = _file_digests(path)
            expected = receipt or {}
            report.check(
                all(digests[n] == expected.get(n) for n in ("sha256", "sha1", "md5")),
                f"{label}: SHA-256, SHA-1 and MD5 match the signed receipt",
                f"{label}: hashes differ from the signed receipt (sha256 {digests['sha256']})",
            )

        for result in (
            sorted((data / "analyses").glob("*/result.dsse.json")) if (data / "analyses").is_dir() else []
        ):
            _check_result(result, keys, sha256, entries, report)
    return report


def _open_bundle(bundle: Path, tmp: Path, report: Report) -> Path | None:
    if bundle.is_dir():
        return bundle
    try:
        with zipfile.ZipFile(bundle) as archive:
            for info in archive.infolist():
                target = (tmp / info.filename).resolve()
                if tmp.resolve() not in target.parents and target != tmp.resolve():
                    report.fail(f"bundle entry {info.filename!r} points outside the bundle")
                    return None
            archive.extractall(tmp)
    except (zipfile.BadZipFile, OSError) as exc:
        report.fail(f"cannot open the bundle: {exc}")
        return None
    tops = [p for p in tmp.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 and not (tmp / "bagit.txt").exists() else tmp


def _check_receipt(path: Path, keys: dict, item: dict, entries: dict, report: Report) -> dict | None:
    try:
        envelope = json.loads(path.read_text())
        payload, keyid = signing.dsse_verify(envelope, _keys_for(keys, "intake"))
        statement = json.loads(payload)
    except (OSError, ValueError) as exc:
        report.fail(f"intake receipt: {exc}")
        return None
    report.ok(f"intake receipt signed by intake key {keyid[:16]}")
    digest = statement["subject"][0]["digest"]
    predicate = statement.get("predicate", {})
    report.check(
        statement.get("predicateType") == INTAKE_TYPE and digest.get("sha256") == item.get("sha256"),
        "receipt names the bundled item's SHA-256",
        "receipt names other bytes than evidence.json",
    )
    index = predicate.get("log", {}).get("index")
    entry = entries.get(index)
    report.check(
        entry is not None
        and entry.get("action") == "evidence.received"
        and (entry.get("evidence") or {}).get("sha256") == digest.get("sha256"),
        f"the intake is log entry {index}, proven in the log",
        f"the receipt's intake entry {index} is not among the proven log entries",
    )
    return digest


def _check_result(path: Path, keys: dict, sha256: str, entries: dict, report: Report) -> None:
    name = path.parent.name
    try:
        envelope = json.loads(path.read_text())
        payload, keyid = signing.dsse_verify(envelope, _keys_for(keys, "results"))
        statement = json.loads(payload)
    except (OSError, ValueError) as exc:
        report.fail(f"analysis {name}: {exc}")
        return
    predicate = statement.get("predicate", {})
    analyzer = predicate.get("analyzer", {})
    label = f"analysis {name} ({analyzer.get('name')} {analyzer.get('version')})"
    report.ok(f"{label}: signed by results key {keyid[:16]}")
    report.check(
        statement.get("predicateType") == RESULT_TYPE
        and statement["subject"][0]["digest"].get("sha256") == sha256,
        f"{label}: about the bundled item's SHA-256",
        f"{label}: about other bytes",
    )
    statement_sha256 = hashlib.sha256(payload).hexdigest()
    logged = [
        e
        for e in entries.values()
        if e.get("action") == "analysis.completed"
        and e["details"].get("statement_sha256") == statement_sha256
    ]
    report.check(
        bool(logged),
        f"{label}: recorded in log entry {logged[0]['index'] if logged else '?'}",
        f"{label}: no proven log entry records this statement",
    )
    for artifact in predicate.get("artifacts", []):
        digest = artifact["digest"]["sha256"]
        files = list(path.parent.glob(f"artifacts/{digest}*"))
        report.check(
            bool(files) and _file_digests(files[0])["sha256"] == digest,
            f"{label}: artifact {artifact['name']} matches its signed digest",
            f"{label}: artifact {artifact['name']} is missing or altered",
        )


# --- monitoring the live log ------------------------------------------------------


def _get(url: str) -> bytes:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "custody-verify"})  # noqa: S310 - checked above
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return response.read()


def monitor(base_url: str, state: Path, vkey: str | None) -> Report:
    """Check the log's current checkpoint against the one kept in ``state``; keep the new one."""
    report = Report()
    base_url = base_url.rstrip("/")
    vkey_file = state.with_name(state.name + ".vkey")
    if vkey is None and vkey_file.exists():
        vkey = vkey_file.read_text().strip()
    if vkey is None:
        report.fail(f"no verifier key: pass --vkey (from a source you trust) or keep one in {vkey_file}")
        return report
    try:
        note = _get(f"{base_url}/api/v1/log/checkpoint").decode()
        origin, size, root = parse_checkpoint(note, vkey)
    except (urllib.error.URLError, ValueError, UnicodeDecodeError) as exc:
        report.fail(f"current checkpoint: {exc}")
        return report
    report.ok(f"current checkpoint signed by the log key: {origin}, {size} entries")
    if state.exists():
        try:
            old_origin, old_size, old_root = parse_checkpoint(state.read_text(), vkey)
        except ValueError as exc:
            report.fail(f"kept checkpoint {state}: {exc}")
            return report
        if old_origin != origin:
            report.fail(f"origin changed from {old_origin} to {origin}")
        elif size < old_size:
            report.fail(f"the log shrank from {old_size} to {size} entries: history was rewritten")
        elif size == old_size:
            report.check(
                root == old_root,
                "same size, same root: nothing new",
                "same size but a different root: the log forked",
            )
        else:
            try:
                body = json.loads(
                    _get(f"{base_url}/api/v1/log/proof/consistency/?first={old_size}&second={size}")
                )
                proof = [base64.b64decode(h, validate=True) for h in body["hashes"]]
                consistent = merkle.verify_consistency(old_size, size, old_root, root, proof)
            except (urllib.error.URLError, ValueError, KeyError) as exc:
                consistent = False
                report.fail(f"consistency proof: {exc}")
            report.check(
                consistent,
                f"consistent with the kept checkpoint of {old_size} entries",
                f"NOT consistent with the kept checkpoint of {old_size} entries: history was rewritten",
            )
    else:
        report.ok(f"first run: keeping this checkpoint in {state}")
    if not report.failures:
        tmp = state.with_name(state.name + ".tmp")
        tmp.write_text(note)
        os.replace(tmp, state)
        vkey_file.write_text(vkey + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m custody.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", type=Path, help="export bundle (.zip or directory)")
    parser.add_argument(
        "--file", type=Path, help="your own copy of the evidence file, to compare with the receipt"
    )
    parser.add_argument("--log-vkey", help="the log's verifier key, obtained independently")
    parser.add_argument(
        "--keys", type=Path, help="keys.json obtained independently (instead of the bundle's)"
    )
    parser.add_argument("--log", metavar="URL", help="monitor a live log at this server URL")
    parser.add_argument(
        "--since", type=Path, metavar="CHECKPOINT_FILE", help="checkpoint kept from the last run"
    )
    parser.add_argument("--vkey", help="the log's verifier key (monitoring)")
    args = parser.parse_args(argv)
    if args.log:
        if not args.since:
            parser.error("--log needs --since CHECKPOINT_FILE")
        report = monitor(args.log, args.since, args.vkey)
    elif args.bundle:
        report = verify_bundle(args.bundle, args.file, args.log_vkey, args.keys)
    else:
        parser.error("give a BUNDLE, or --log URL --since CHECKPOINT_FILE")
    print(report.render())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
