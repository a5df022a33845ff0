"""Export bundles: one BagIt bag (RFC 8493, zipped) per evidence item, checkable offline.

Layout of the bag's payload (data/):
    README.txt                 how to check everything by hand (openssl) or with custody.verify
    evidence.json              the item's metadata (name, hashes, size, case, custodian)
    evidence/<sha256>          the file itself, when asked for
    receipt.dsse.json          the signed intake receipt
    analyses/<id>/result.dsse.json, analyses/<id>/artifacts/<sha256>.<ext>
    log/entries.jsonl          every log entry about the item: exact leaf (base64) + inclusion proof
    log/checkpoint.txt         the signed checkpoint the proofs lead to
    keys/keys.json, keys/<keyid>.pem    the public keys (with ids and validity)
    case-uco.jsonld            CASE/UCO description of the chain of custody and the analyses
    report.html                the chain-of-custody report
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import mimetypes
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string

from . import keys, log, signing, timestamps, witnessing
from .models import Checkpoint, Evidence, LogEntry, SigningKey, TrustRoot
from .storage import LocalBlobStore, blob_store

logger = logging.getLogger(__name__)

TOOL = {"name": "custody-server", "version": "0.1.0"}
BAG_ALGORITHMS = ("sha256", "sha512")


def build_bundle(*, actor, evidence: Evidence, include_file: bool, client: str | None = None):
    """Build the zipped bag and log the export. Returns an open binary file (already unlinked)."""
    from forensics.models import Analysis

    workdir = Path(tempfile.mkdtemp(prefix="export-", dir=settings.FILE_UPLOAD_TEMP_DIR))
    try:
        analyses = list(
            Analysis.objects.filter(evidence=evidence, status=Analysis.Status.SUCCEEDED)
            .prefetch_related("artifacts__blob")
            .order_by("requested_at")
        )
        # The export is logged first and the bundle closes at it: the export
        # entry is the last leaf of the checkpoint the bundle presents, so the
        # item's hash chain from its intake to this entry proves the bundle
        # holds every entry about the item up to the export, none dropped.
        with transaction.atomic():
            exported = log.append(
                "evidence.exported",
                actor=actor,
                case=evidence.case,
                evidence=evidence,
                client=client,
                details={"include_file": include_file, "analyses": [str(a.pk) for a in analyses]},
            )
        checkpoint = log.checkpoint_at(exported.index + 1)
        timestamps.stamp_for_export(checkpoint)
        witnessed = _witnessed_for_export(checkpoint)
        bag_dir = workdir / f"evidence-{evidence.pk}"
        (bag_dir / "data").mkdir(parents=True)
        entries = list(
            LogEntry.objects.filter(evidence=evidence, index__lte=exported.index).order_by("index")
        )
        _write_payload(bag_dir / "data", evidence, include_file, checkpoint, entries, analyses, witnessed)
        make_bag(
            bag_dir,
            {
                "Source-Organization": settings.CUSTODY_LOG_ORIGIN,
                "External-Description": f"Custody export of evidence {evidence.pk} ({evidence.original_name})",
                "External-Identifier": f"sha256:{evidence.blob_id}",
            },
        )
        zip_path = workdir / f"{bag_dir.name}.zip"
        _zip(bag_dir, zip_path)
        handle = open(zip_path, "rb")  # noqa: SIM115 - handed to the response, which closes it
        return handle, zip_path.name
    finally:
        # The open handle keeps the zip's bytes readable after its name is gone.
        shutil.rmtree(workdir, ignore_errors=True)


def _copy_blob(sha256: str, target: Path) -> None:
    """Put blob ``sha256`` in the bag: a hard link to a local blob, else streamed from the store."""
    store = blob_store()
    if isinstance(store, LocalBlobStore):
        try:
            os.link(store.path(sha256), target)
            return
        except OSError:
            pass
    with store.open(sha256) as src, open(target, "xb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)


def _witnessed_for_export(checkpoint: Checkpoint) -> Checkpoint | None:
    """The newest checkpoint a witness quorum cosigned, at or beyond the export's (asking them now).

    A witness that is down only leaves the bundle not final: the verifier says
    so, and a later export of the same item will be.
    """
    if not witnessing.configured_witnesses():
        return None
    try:
        witnessing.witness_checkpoints()
    except Exception:  # noqa: BLE001 - witnesses never stop an export; their state is on the status page
        logger.exception("witnesses could not be asked during an export")
    final = witnessing.latest_final_checkpoint()
    return final if final is not None and final.size >= checkpoint.size else None


def _write_payload(
    root: Path,
    evidence: Evidence,
    include_file: bool,
    checkpoint: Checkpoint,
    entries: list[LogEntry],
    analyses,
    witnessed: Checkpoint | None = None,
) -> None:
    blob = evidence.blob
    item = {
        "id": str(evidence.pk),
        "original_name": evidence.original_name,
        "sha256": blob.sha256,
        "sha1": blob.sha1,
        "md5": blob.md5,
        "size": blob.size,
        "media_type": evidence.media_type,
        "received_at": log.format_time(evidence.received_at),
        "case": {
            "id": str(evidence.case.pk),
            "reference": evidence.case.reference,
            "title": evidence.case.title,
        },
        "submitted_by": evidence.submitted_by.username,
        "custodian": evidence.custodian.username,
        "source": evidence.source,
        "description": evidence.description,
        "log_index": evidence.log_index,
        "receipt_keyid": evidence.receipt["signatures"][0]["keyid"],
        "file_included": include_file,
    }
    _json(root / "evidence.json", item)
    _json(root / "receipt.dsse.json", evidence.receipt)
    if include_file:
        (root / "evidence").mkdir()
        _copy_blob(blob.sha256, root / "evidence" / blob.sha256)

    (root / "log").mkdir()
    (root / "log" / "checkpoint.txt").write_text(witnessing.cosigned_note(checkpoint), encoding="utf-8")
    if witnessed is not None and witnessed.size != checkpoint.size:
        # The witnesses cosigned a later tree: it and a consistency proof make this checkpoint final.
        (root / "log" / "witnessed-checkpoint.txt").write_text(
            witnessing.cosigned_note(witnessed), encoding="utf-8"
        )
        _json(
            root / "log" / "consistency.json",
            {
                "first": checkpoint.size,
                "second": witnessed.size,
                "hashes": [signing.b64(h) for h in log.consistency_proof(checkpoint.size, witnessed.size)],
            },
        )
    with open(root / "log" / "entries.jsonl", "w", encoding="utf-8") as f:
        for entry in entries:
            proof = log.inclusion_proof(entry.index, checkpoint.size)
            f.write(
                json.dumps(
                    {
                        "index": entry.index,
                        "leaf": signing.b64(bytes(entry.leaf)),
                        "inclusion_proof": [signing.b64(h) for h in proof],
                        "signature": signing.b64(bytes(entry.signature)),
                    },
                    sort_keys=True,
                )
                + "\n"
            )

    (root / "log" / "timestamps.json").write_text(
        json.dumps(timestamps.tokens_for(checkpoint.size), indent=2) + "\n", encoding="utf-8"
    )
    # The whole trust root chain: a verifier pinned to any version follows it to the newest.
    (root / "trust-root").mkdir()
    for version in TrustRoot.objects.order_by("version"):
        _json(root / "trust-root" / f"{version.version:06d}.json", version.envelope)

    (root / "keys").mkdir()
    rows = list(SigningKey.objects.order_by("purpose", "valid_from"))
    _json(
        root / "keys" / "keys.json",
        {
            "log_vkey": keys.log_verifier_key(),
            "keys": [
                {
                    "keyid": k.keyid,
                    "purpose": k.purpose,
                    "name": k.name,
                    "public_key_pem": k.public_key_pem,
                    "valid_from": log.format_time(k.valid_from),
                    "valid_until": log.format_time(k.valid_until) if k.valid_until else None,
                }
                for k in rows
            ],
        },
    )
    for k in rows:
        (root / "keys" / f"{k.purpose}-{k.keyid[:16]}.pem").write_text(k.public_key_pem)

    described = []
    for analysis in analyses:
        folder = root / "analyses" / str(analysis.pk)
        (folder / "artifacts").mkdir(parents=True)
        _json(folder / "result.dsse.json", analysis.envelope)
        published = _published_envelope(analysis)
        if published is not None:
            # What the public was shown: its predicate's internal_statement digest links it to this result.
            _json(folder / "published.dsse.json", published)
        artifacts = []
        for artifact in analysis.artifacts.all():
            ext = mimetypes.guess_extension(artifact.media_type) or ".bin"
            _copy_blob(artifact.blob_id, folder / "artifacts" / f"{artifact.blob_id}{ext}")
            artifacts.append(
                {
                    "name": artifact.name,
                    "media_type": artifact.media_type,
                    "sha256": artifact.blob_id,
                    "size": artifact.blob.size,
                }
            )
        predicate = json.loads(signing.b64decode(analysis.envelope["payload"]))["predicate"]
        described.append(
            {
                "id": str(analysis.pk),
                "analyzer": predicate["analyzer"],
                "started_at": predicate["started_at"],
                "finished_at": predicate["finished_at"],
                "parameters": predicate["parameters"],
                "findings_count": len(predicate["findings"]),
                "statement_sha256": analysis.statement_sha256,
                "artifacts": artifacts,
                "envelope_path": f"data/analyses/{analysis.pk}/result.dsse.json",
            }
        )
    from . import caseuco

    _json(
        root / "case-uco.jsonld", caseuco.build_case_uco(item, [e.decoded for e in entries], described, TOOL)
    )

    report_rows = [{"entry": e, "decoded": e.decoded, "checkpoint": checkpoint} for e in entries]
    (root / "report.html").write_text(
        render_to_string(
            "custody/evidence_report.html",
            {
                "evidence": evidence,
                "rows": report_rows,
                "latest": checkpoint,
                # The bundle's checkpoint, and the later one the witnesses cosigned if that is what makes it final.
                "covering": witnessing.checkpoint_panels(
                    [checkpoint]
                    + ([witnessed] if witnessed is not None and witnessed.size != checkpoint.size else [])
                ),
                "standalone": True,
            },
        ),
        encoding="utf-8",
    )
    (root / "README.txt").write_text(
        render_to_string(
            "custody/bundle_readme.txt",
            {
                "item": item,
                "checkpoint_size": checkpoint.size,
                "analyses": described,
            },
        ),
        encoding="utf-8",
    )


def _published_envelope(analysis) -> dict | None:
    """The public statement of a published analysis (forensics/publication.py), from its log entry."""
    from forensics import publication

    if analysis.publish_log_index is None:
        return None
    entry = LogEntry.objects.get(index=analysis.publish_log_index).decoded
    return publication.envelope_from_entry(entry.get("details") or {})


def make_bag(bag_dir: Path, info: dict[str, str]) -> None:
    """Make ``bag_dir``, whose payload is already in ``data/``, a BagIt bag (RFC 8493).

    Not bagit.make_bag: it changes the process's working directory while it
    works (os.chdir), and that is process-wide. Two exports at once in one
    process (threads of a gunicorn worker) would find their relative paths
    moved under them, into each other's bags. Here every path is absolute.
    """
    manifests: dict[str, list[str]] = {algorithm: [] for algorithm in BAG_ALGORITHMS}
    octets = files = 0
    for path in sorted(p for p in (bag_dir / "data").rglob("*") if p.is_file()):
        digests, size = _digests(path)
        name = _manifest_path(path.relative_to(bag_dir).as_posix())
        for algorithm in BAG_ALGORITHMS:
            manifests[algorithm].append(f"{digests[algorithm]}  {name}\n")
        octets, files = octets + size, files + 1
    (bag_dir / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", "utf-8")
    info = {
        **info,
        "Bagging-Date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "Bag-Software-Agent": f"{TOOL['name']} {TOOL['version']}",
        "Payload-Oxum": f"{octets}.{files}",
    }
    # One line per tag: a line break inside a value would start a new tag.
    lines = (f"{key}: {' '.join(str(value).splitlines())}\n" for key, value in sorted(info.items()))
    (bag_dir / "bag-info.txt").write_text("".join(lines), "utf-8")
    for algorithm, entries in manifests.items():
        (bag_dir / f"manifest-{algorithm}.txt").write_text("".join(entries), "utf-8")
    tag_files = sorted(p.name for p in bag_dir.iterdir() if p.is_file())
    for algorithm in BAG_ALGORITHMS:
        entries = [
            f"{_digests(bag_dir / name)[0][algorithm]}  {_manifest_path(name)}\n" for name in tag_files
        ]
        (bag_dir / f"tagmanifest-{algorithm}.txt").write_text("".join(entries), "utf-8")


def _manifest_path(name: str) -> str:
    # RFC 8493 section 2.1.3: percent-encode what would break a manifest line.
    return name.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _digests(path: Path) -> tuple[dict[str, str], int]:
    """The bag's digests of one file, in one read (the evidence may be gigabytes)."""
    hashes = {algorithm: hashlib.new(algorithm) for algorithm in BAG_ALGORITHMS}
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashes.values():
                h.update(chunk)
            size += len(chunk)
    return {algorithm: h.hexdigest() for algorithm, h in hashes.items()}, size


def _json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _zip(bag_dir: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(bag_dir.rglob("*")):
            if path.is_file():
                arcname = f"{bag_dir.name}/{path.relative_to(bag_dir).as_posix()}"
                # The evidence is stored as is: compressing gigabytes of media gains little and costs CPU.
                stored = path.parent.name == "evidence"
                archive.write(
                    path, arcname, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
