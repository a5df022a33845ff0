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

from . import merkle, projection, signing, trustroot

INTAKE_TYPE = "urn:custody-server:intake-receipt:v1"
RESULT_TYPE = "urn:custody-server:analysis-result:v1"


class Report:
    def __init__(self) -> None:
        self.lines: list[tuple[bool, str]] = []
        self.trust = None  # the Trust a bundle was checked against

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
        if failures:
            out.append(f"FAILED: {len(failures)} problem(s)")
        elif self.trust is not None and not self.trust.anchored:
            out.append(
                "CONSISTENT, NOT VERIFIED: the internal checks passed, but the keys came from the bundle "
                "itself (anyone can make such a bundle); pass --trust-root with the root you pinned"
            )
        elif self.trust is not None:
            root = self.trust.root
            out.append(f"VERIFIED against trust root version {root.version} (sha256:{root.fingerprint})")
        else:
            out.append("VERIFIED: every check passed")
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


# --- trust ----------------------------------------------------------------------------


class Trust:
    """What the bundle is checked against: the newest trust root reached from the pinned one."""

    def __init__(self, root: trustroot.Root, anchored: bool):
        self.root = root
        self.anchored = anchored  # False: internal checks only, the root came from the bundle itself

    def key_for(self, keyid: str, purpose: str, time: str, what: str, report: Report):
        ok, why = self.root.key_valid_at(keyid, purpose, time)
        report.check(ok, f"{what}: {why}", f"{what}: {why}")
        return self.root.public_key(keyid) if ok else None

    def log_keys(self) -> list[dict]:
        return [k for k in self.root.doc["keys"] if k["purpose"] == "log"]


def load_trust(data: Path, pinned: dict | None, report: Report) -> Trust | None:
    chain = []
    for path in sorted((data / "trust-root").glob("*.json")) if (data / "trust-root").is_dir() else []:
        try:
            chain.append(json.loads(path.read_text()))
        except ValueError as exc:
            report.fail(f"{path.name}: not JSON ({exc})")
    try:
        if pinned is None:
            if not chain:
                report.fail("the bundle carries no trust root")
                return None
            start = trustroot.load_pinned(chain[0])
            report.ok(
                f"INTERNAL CHECK ONLY: starting from the bundle's own trust root version {start.version}"
            )
        else:
            start = trustroot.load_pinned(pinned)
            report.ok(f"pinned trust root version {start.version}, fingerprint sha256:{start.fingerprint}")
        newest, steps = trustroot.follow(start, chain)
    except (trustroot.TrustRootError, ValueError, KeyError, TypeError) as exc:
        report.fail(f"trust root: {exc}")
        return None
    for step in steps:
        report.ok(step)
    return Trust(newest, anchored=pinned is not None)


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


def check_checkpoint(note: str, trust: Trust, report: Report) -> tuple[int, bytes] | None:
    for key in trust.log_keys():
        try:
            origin, size, root = parse_checkpoint(note, key["vkey"])
        except ValueError:
            continue
        if not report.check(
            origin == trust.root.doc["origin"],
            f"checkpoint signed by log key {key['keyid'][:16]} of the trust root: {origin}, {size} entries",
            f"checkpoint is for origin {origin!r}, the trust root's log is {trust.root.doc['origin']!r}",
        ):
            return None
        return size, root
    report.fail("checkpoint: not signed by any log key of the trust root")
    return None


def check_finality(data: Path, note: str, size: int, root: bytes, trust: Trust, report: Report) -> None:
    """Final: a quorum of the trust root's witnesses cosigned this checkpoint, or a later one consistent with it."""
    witnesses = trust.root.doc.get("witnesses") or []
    if not witnesses:
        report.ok("the trust root names no witnesses: the checkpoint rests on the log key alone")
        return
    from . import cosign

    quorum = trust.root.doc.get("witness_quorum") or len(witnesses)
    cosigners = [cosign.parse_verifier_key(w["vkey"]) for w in witnesses]
    witnessed, how = note, f"this checkpoint ({size} entries)"
    later = data / "log" / "witnessed-checkpoint.txt"
    if later.is_file():
        try:
            witnessed = later.read_text(encoding="utf-8")
            w_size, w_root = check_checkpoint(witnessed, trust, Report()) or (None, None)
            proof = json.loads((data / "log" / "consistency.json").read_text())
            hashes = [base64.b64decode(h, validate=True) for h in proof["hashes"]]
            if w_size is None or not merkle.verify_consistency(size, w_size, root, w_root, hashes):
                report.fail(
                    "the later witnessed checkpoint is not signed by the log, or not consistent with this one"
                )
                return
            how = f"the later checkpoint of {w_size} entries, proven consistent with this one"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.fail(f"witnessed checkpoint: {exc}")
            return
    try:
        found = cosign.cosignatures_by(witnessed, cosigners)
    except ValueError as exc:
        report.fail(f"witness cosignature: {exc}")
        return
    names = sorted(c.name for c in cosigners if c.vkey in found)
    report.check(
        len(found) >= quorum,
        f"final: {how} is cosigned by {len(found)} of {len(witnesses)} witnesses of the trust root "
        f"(quorum {quorum}): {', '.join(names)}",
        f"NOT final: {how} is cosigned by {len(found)} of {len(witnesses)} witnesses, the trust root "
        f"requires {quorum} ({', '.join(names) or 'none'}); export again once the witnesses have cosigned",
    )


def check_entries(path: Path, size: int, root: bytes, trust: Trust, report: Report) -> dict[int, dict]:
    """Every entry proven included in the checkpoint and signed by a log key valid at its time."""
    entries: dict[int, dict] = {}
    bad = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            leaf = base64.b64decode(record["leaf"], validate=True)
            proof = [base64.b64decode(h, validate=True) for h in record["inclusion_proof"]]
            signature = base64.b64decode(record.get("signature") or "", validate=True)
            index = record["index"]
            entry = json.loads(leaf)
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(f"line {number}: malformed ({exc})")
            continue
        leaf_hash = merkle.leaf_hash(leaf)
        if entry.get("index") != index:
            bad.append(f"entry {index}: the leaf says index {entry.get('index')}")
        elif not merkle.verify_inclusion(leaf_hash, index, size, proof, root):
            bad.append(f"entry {index}: inclusion proof does not lead to the checkpoint's root")
        elif not _entry_signed(leaf_hash, signature, entry.get("time", ""), trust):
            bad.append(f"entry {index}: not signed by a log key of the trust root valid at its time")
        else:
            entry["_leaf_hash"] = leaf_hash.hex()
            entries[index] = entry
    report.check(
        not bad,
        f"{len(entries)} log entries, each proven included in the checkpoint and signed by the log key",
        "log entries: " + "; ".join(bad[:10]),
    )
    return entries


def _entry_signed(leaf_hash: bytes, signature: bytes, time: str, trust: Trust) -> bool:
    message = signing.entry_message(leaf_hash)
    for key in trust.log_keys():
        if not trust.root.key_valid_at(key["keyid"], "log", time)[0]:
            continue
        try:
            signing.load_public_key_pem(key["public_key_pem"]).verify(signature, message)
            return True
        except Exception:  # noqa: BLE001, S112 - at a rotation two keys are valid; try the next
            continue
    return False


def check_chain(entries: dict[int, dict], size: int, report: Report) -> list[dict]:
    """The item's entries form one hash chain, from its intake to the export that made the bundle.

    Each entry about the item names the previous one (index and leaf hash);
    the last is the export entry, the newest leaf of the checkpoint: so no
    entry about the item up to the export can be missing, added or moved.
    """
    ordered = [entries[i] for i in sorted(entries)]
    if not ordered:
        report.fail("the bundle holds no log entries about the item")
        return []
    problems = []
    first = ordered[0]
    if first.get("action") != "evidence.received" or first.get("prev") is not None:
        problems.append(
            f"the chain starts at entry {first.get('index')} ({first.get('action')}), not at the intake"
        )
    for before, entry in zip(ordered, ordered[1:], strict=False):
        expected = {"index": before["index"], "hash": before["_leaf_hash"]}
        if entry.get("prev") != expected:
            problems.append(
                f"entry {entry['index']} names {entry.get('prev')} as the previous entry about the item, "
                f"the bundle's previous entry is {before['index']}: entries were dropped, added or reordered"
            )
    last = ordered[-1]
    if last.get("action") != "evidence.exported" or last["index"] != size - 1:
        problems.append(
            f"the chain ends at entry {last['index']} ({last.get('action')}), not at the export entry that "
            f"closes the checkpoint (entry {size - 1}): later entries may be missing"
        )
    report.check(
        not problems,
        f"complete: the {len(ordered)} entries about the item form one unbroken chain from the intake "
        f"(entry {first['index']}) to this export (entry {last['index']})",
        "item chain: " + "; ".join(problems[:5]),
    )
    return ordered


# --- the bundle ---------------------------------------------------------------------


def verify_bundle(bundle: Path, own_file: Path | None = None, pinned: dict | None = None) -> Report:
    """Check a bundle against a pinned trust root (``pinned=None``: internal consistency only)."""
    report = Report()
    with tempfile.TemporaryDirectory(prefix="custody-verify-") as tmp:
        root = _open_bundle(bundle, Path(tmp), report)
        if root is None:
            return report
        check_bag(root, report)
        data = root / "data"
        trust = load_trust(data, pinned, report)
        if trust is None:
            return report
        report.trust = trust
        try:
            note = (data / "log" / "checkpoint.txt").read_text(encoding="utf-8")
        except OSError as exc:
            report.fail(f"checkpoint: {exc}")
            return report
        head = check_checkpoint(note, trust, report)
        if head is None:
            return report
        size, tree_root = head
        check_finality(data, note, size, tree_root, trust, report)
        _check_timestamps(data, note, trust, report)
        entries = check_entries(data / "log" / "entries.jsonl", size, tree_root, trust, report)
        chain = check_chain(entries, size, report)
        if not chain or chain[0].get("action") != "evidence.received":
            report.fail("without its proven intake entry, nothing else about the item can be checked")
            return report
        intake = chain[0]
        try:
            item = json.loads((data / "evidence.json").read_text())
            _check_item(item, chain, report)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.fail(f"evidence.json or the item's entries are malformed ({exc!r})")
        receipt = _check_receipt(data / "receipt.dsse.json", intake, trust, report)

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

        results = (
            sorted((data / "analyses").glob("*/result.dsse.json")) if (data / "analyses").is_dir() else []
        )
        completed = {
            e["details"].get("analysis"): e for e in chain if e.get("action") == "analysis.completed"
        }
        requested = {
            e["details"].get("analysis"): e for e in chain if e.get("action") == "analysis.requested"
        }
        for result in results:
            _check_result(result, intake, completed, requested, trust, report)
    return report


def _check_timestamps(data: Path, note: str, trust: Trust, report: Report) -> None:
    path = data / "log" / "timestamps.json"
    tokens = json.loads(path.read_text()) if path.is_file() else []
    certificates = "".join((trust.root.doc.get("tsa") or {}).get("certificates") or [])
    if not tokens:
        report.ok(
            "no RFC 3161 time-stamp in the bundle: the checkpoint's time rests on the server and witnesses"
        )
        return
    try:
        from . import timestamps
    except ImportError:
        report.ok("time-stamps present but not checked: install rfc3161-client to check them")
        return
    body = note.split("\n\n", 1)[0].encode() + b"\n"
    for token in tokens:
        label = f"time-stamp by {token.get('tsa_url')}"
        if not certificates:
            report.fail(f"{label}: the trust root names no time-stamp authority to check it against")
            continue
        try:
            gen_time = timestamps.verify_token(base64.b64decode(token["token"]), body, certificates)
            report.ok(f"{label}: the checkpoint existed at {gen_time.isoformat()} (TSA of the trust root)")
        except (ValueError, KeyError) as exc:
            report.fail(f"{label}: {exc}")


def _check_item(item: dict, chain: list[dict], report: Report) -> None:
    """evidence.json states what the log says of the item, field by field."""
    intake = chain[0]
    d = intake["details"]
    custodian = intake["actor"]["username"]
    for entry in chain:
        if entry.get("action") == "custody.accepted":
            custodian = entry["details"]["to"]["username"]
    expected = {
        "id": intake["evidence"]["id"],
        "sha256": intake["evidence"]["sha256"],
        "sha1": d["sha1"],
        "md5": d["md5"],
        "size": d["size"],
        "original_name": d["original_name"],
        "media_type": d["media_type"],
        "source": d["source"],
        "description": d["description"],
        "received_at": intake["time"],
        "log_index": intake["index"],
        "submitted_by": intake["actor"]["username"],
        "custodian": custodian,
    }
    differ = [
        f"{k}: evidence.json says {item.get(k)!r}, the log {v!r}"
        for k, v in expected.items()
        if item.get(k) != v
    ]
    case = item.get("case") or {}
    if {"id": case.get("id"), "reference": case.get("reference")} != intake["case"]:
        differ.append(f"case: evidence.json says {case}, the log {intake['case']}")
    report.check(
        not differ,
        "evidence.json states what the log says of the item (name, hashes, size, case, submitter, custodian)",
        "evidence.json: " + "; ".join(differ[:5]),
    )


def _check_receipt(path: Path, intake: dict, trust: Trust, report: Report) -> dict | None:
    """The receipt must be exactly the one the intake entry implies, signed by a trusted intake key."""
    try:
        envelope = json.loads(path.read_text())
        expected = projection.receipt_envelope(intake, trust.root.doc["origin"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.fail(f"intake receipt: {exc}")
        return None
    if not report.check(
        envelope == expected,
        f"intake receipt: every field (submitter, time, case, name, size, digests, media type, source) "
        f"is the one logged in entry {intake['index']}",
        f"intake receipt differs from what log entry {intake['index']} records "
        "(a field was changed or it was signed again)",
    ):
        return None
    keyid = envelope["signatures"][0]["keyid"]
    key = trust.key_for(keyid, "intake", intake["time"], "intake receipt", report)
    if key is None:
        return None
    try:
        payload, _ = signing.dsse_verify(envelope, {keyid: key})
    except ValueError as exc:
        report.fail(f"intake receipt: {exc}")
        return None
    report.ok("intake receipt: signature verifies")
    return json.loads(payload)["subject"][0]["digest"]


def _check_result(
    path: Path, intake: dict, completed: dict, requested: dict, trust: Trust, report: Report
) -> None:
    name = path.parent.name
    try:
        envelope = json.loads(path.read_text())
        payload = signing.b64decode(envelope["payload"])
        statement = json.loads(payload)
        predicate = statement["predicate"]
        analyzer = predicate["analyzer"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.fail(f"analysis {name}: malformed result ({exc})")
        return
    label = f"analysis {name} ({analyzer.get('name')} {analyzer.get('version')})"
    entry = completed.get(predicate.get("analysis"))
    if not report.check(
        entry is not None and predicate.get("analysis") == name,
        f"{label}: its completion is log entry {entry['index'] if entry else '?'} of the item's chain",
        f"{label}: no entry of the item's chain records this analysis",
    ):
        return
    d = entry["details"]
    signature = (envelope.get("signatures") or [{}])[0]
    request = requested.get(name) or {}
    differ = []
    if hashlib.sha256(payload).hexdigest() != d.get("statement_sha256"):
        differ.append("the statement's SHA-256 differs from the logged one")
    if signature.get("keyid") != d.get("keyid") or signature.get("sig") != d.get("sig"):
        differ.append("the signature differs from the logged one")
    if statement.get("predicateType") != RESULT_TYPE:
        differ.append(f"predicate type {statement.get('predicateType')!r}")
    if statement["subject"][0]["digest"].get("sha256") != intake["evidence"]["sha256"]:
        differ.append("it is about other bytes than the item")
    if [analyzer.get("name"), analyzer.get("version")] != [d.get("analyzer"), d.get("version")]:
        differ.append("the analyzer differs from the logged one")
    if request and (request.get("details") or {}).get("analyzer") != analyzer.get("name"):
        differ.append("the analyzer differs from the one requested")
    if not report.check(
        not differ,
        f"{label}: the statement, its signature and analyzer are the ones logged",
        f"{label}: " + "; ".join(differ),
    ):
        return
    key = trust.key_for(signature["keyid"], "results", entry["time"], f"{label}", report)
    if key is None:
        return
    try:
        signing.dsse_verify(envelope, {signature["keyid"]: key})
        report.ok(f"{label}: signature verifies")
    except ValueError as exc:
        report.fail(f"{label}: {exc}")
    for artifact in predicate.get("artifacts", []):
        digest = artifact["digest"]["sha256"]
        files = list(path.parent.glob(f"artifacts/{digest}*"))
        report.check(
            bool(files) and _file_digests(files[0])["sha256"] == digest,
            f"{label}: artifact {artifact['name']} matches its signed digest",
            f"{label}: artifact {artifact['name']} is missing or altered",
        )


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


# --- monitoring the live log ------------------------------------------------------


def _get(url: str) -> bytes:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "custody-verify"})  # noqa: S310 - checked above
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return response.read()


def _parse_with_any(note: str, vkeys: list[str]) -> tuple[str, int, bytes]:
    for vkey in vkeys:
        try:
            return parse_checkpoint(note, vkey)
        except ValueError:
            continue
    raise ValueError("not signed by any log key you trust")


def _log_vkeys_from_root(base_url: str, pinned: dict, report: Report) -> list[str] | None:
    """Follow the server's trust root chain from the pinned root; the log keys of the newest."""
    try:
        chain = json.loads(_get(f"{base_url}/api/v1/trust-root/chain/"))["versions"]
        newest, steps = trustroot.follow(trustroot.load_pinned(pinned), chain)
    except (urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        report.fail(f"trust root: {exc}")
        return None
    for step in steps:
        report.ok(step)
    report.ok(f"log keys from trust root version {newest.version} (sha256:{newest.fingerprint})")
    return newest.log_verifier_keys()


def monitor(base_url: str, state: Path, vkey: str | None, pinned: dict | None = None) -> Report:
    """Check the log's current checkpoint against the one kept in ``state``; keep the new one.

    With ``pinned`` (a trust root), the log's keys are those of the newest
    root reached from it, so a log key rotation is followed, not mistaken
    for a forgery; otherwise the one verifier key given or kept is used.
    """
    report = Report()
    base_url = base_url.rstrip("/")
    vkey_file = state.with_name(state.name + ".vkey")
    if pinned is not None:
        vkeys = _log_vkeys_from_root(base_url, pinned, report)
        if vkeys is None:
            return report
    else:
        if vkey is None and vkey_file.exists():
            vkey = vkey_file.read_text().strip()
        if vkey is None:
            report.fail(
                f"no verifier key: pass --trust-root or --vkey (from a source you trust), or keep one in {vkey_file}"
            )
            return report
        vkeys = [vkey]
    try:
        note = _get(f"{base_url}/api/v1/log/checkpoint").decode()
        origin, size, root = _parse_with_any(note, vkeys)
    except (urllib.error.URLError, ValueError, UnicodeDecodeError) as exc:
        report.fail(f"current checkpoint: {exc}")
        return report
    report.ok(f"current checkpoint signed by the log key: {origin}, {size} entries")
    if state.exists():
        try:
            old_origin, old_size, old_root = _parse_with_any(state.read_text(), vkeys)
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
        if pinned is None:
            vkey_file.write_text(vkeys[0] + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m custody.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", type=Path, help="export bundle (.zip or directory)")
    parser.add_argument(
        "--trust-root",
        type=Path,
        metavar="ROOT.json",
        help="the trust root you pinned out of band (GET /api/v1/trust-root/ at an earlier time)",
    )
    parser.add_argument(
        "--internal-only",
        action="store_true",
        help="without a trust root: run the internal-consistency checks only (never prints VERIFIED)",
    )
    parser.add_argument(
        "--file", type=Path, help="your own copy of the evidence file, to compare with the receipt"
    )
    parser.add_argument("--log", metavar="URL", help="monitor a live log at this server URL")
    parser.add_argument(
        "--since", type=Path, metavar="CHECKPOINT_FILE", help="checkpoint kept from the last run"
    )
    parser.add_argument("--vkey", help="the log's verifier key (monitoring)")
    args = parser.parse_args(argv)
    pinned = None
    if args.trust_root:
        try:
            pinned = json.loads(args.trust_root.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read the trust root {args.trust_root}: {exc}")
    if args.log:
        if not args.since:
            parser.error("--log needs --since CHECKPOINT_FILE")
        report = monitor(args.log, args.since, args.vkey, pinned)
    elif args.bundle:
        if pinned is None and not args.internal_only:
            print(
                "NOT VERIFIED: no trust root given. A bundle's own keys prove nothing: anyone can make a "
                "bundle that agrees with itself. Pass --trust-root ROOT.json (the root you saved from the "
                "server, a court file or another auditor, checked against its printed fingerprint), or "
                "--internal-only to run the internal-consistency checks alone.",
                file=sys.stderr,
            )
            return 2
        report = verify_bundle(args.bundle, args.file, pinned)
    else:
        parser.error("give a BUNDLE, or --log URL --since CHECKPOINT_FILE")
    print(report.render())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
