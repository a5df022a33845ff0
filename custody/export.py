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
import zipfile
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string

from . import keys, log, signing, timestamps, witnessing
from .models import Checkpoint, Evidence, LogEntry, SigningKey, TrustRoot
from .storage import BlobMismatch, blob_store

logger = logging.getLogger(__name__)

TOOL = {"name": "custody-server", "version": "0.1.0"}
BAG_ALGORITHMS = ("sha256", "sha512")


def build_bundle(*, actor, evidence: Evidence, include_file: bool, client: str | None = None):
    """Log the export and prepare its zipped bag. Returns ``(chunks, filename)``: an iterator of the
    zip's bytes, which streams the evidence and artifacts from the blob store as it goes, and the
    name to offer. Nothing is copied to the local disk, whatever the size of the item; everything
    but the blobs (a few megabytes at most) is made here, before the first byte is sent."""
    from forensics.models import Analysis

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
    entries = list(LogEntry.objects.filter(evidence=evidence, index__lte=exported.index).order_by("index"))
    bag = Bag(f"evidence-{evidence.pk}")
    _write_payload(bag, evidence, include_file, checkpoint, entries, analyses, witnessed)
    bag.info = {
        "Source-Organization": settings.CUSTODY_LOG_ORIGIN,
        "External-Description": f"Custody export of evidence {evidence.pk} ({evidence.original_name})",
        "External-Identifier": f"sha256:{evidence.blob_id}",
    }
    # A store that is down or has lost a blob is told now, as an error response, not as a cut-off zip.
    store = blob_store()
    for sha256 in sorted({sha256 for sha256, _ in bag.blobs.values()}):
        if not store.exists(sha256):
            raise FileNotFoundError(f"blob {sha256} is not in the store ({store.describe()})")
    return bag.zipped(store), f"{bag.name}.zip"


class Bag:
    """A bag about to be zipped: its small files in memory, its blobs by name (streamed when zipped).

    Not bagit.make_bag, and no working directory: bagit changes the process's
    working directory while it works (os.chdir), which is process-wide, so two
    exports at once in one process (threads of a gunicorn worker) would find
    their relative paths moved under them. Here nothing is on disk at all.
    """

    def __init__(self, name: str):
        self.name = name
        self.files: dict[str, bytes] = {}  # path in the bag -> bytes
        self.blobs: dict[str, tuple[str, int]] = {}  # path in the bag -> (sha256, size)
        self.info: dict[str, str] = {}

    def text(self, path: str, text: str) -> None:
        self.files[path] = text.encode("utf-8")

    def json(self, path: str, value) -> None:
        self.text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")

    def blob(self, path: str, sha256: str, size: int) -> None:
        self.blobs[path] = (sha256, size)

    def zipped(self, store) -> Iterator[bytes]:
        """The bag as a zip, in pieces of about a megabyte: the small payload files first, then each
        blob as the store returns it (re-hashed on the way: bytes that no longer hash to the blob's
        name end the stream before the zip is complete, so no bag is ever made of them), then the
        manifests and the tag files. A BagIt bag (RFC 8493) whatever the order of its zip entries."""
        sink = _Sink()
        when = dt.datetime.now(dt.UTC).timetuple()[:6]

        def entry(path: str, size: int, stored: bool) -> zipfile.ZipInfo:
            info = zipfile.ZipInfo(f"{self.name}/{path}", date_time=when)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.file_size = size  # zip64 headers from the start when the size needs them
            info.external_attr = 0o644 << 16
            return info

        manifests: dict[str, dict[str, str]] = {algorithm: {} for algorithm in BAG_ALGORITHMS}
        with zipfile.ZipFile(sink, "w") as archive:
            for path in sorted(self.files):
                data = self.files[path]
                archive.writestr(entry(path, len(data), stored=False), data)
                for algorithm in BAG_ALGORITHMS:
                    manifests[algorithm][path] = hashlib.new(algorithm, data).hexdigest()
                yield from sink.drain()
            for path in sorted(self.blobs):
                sha256, size = self.blobs[path]
                # The evidence is stored as is: compressing gigabytes of media gains little and costs CPU.
                hashes = {algorithm: hashlib.new(algorithm) for algorithm in BAG_ALGORITHMS}
                with store.open(sha256) as src, archive.open(entry(path, size, stored=True), "w") as dst:
                    while chunk := src.read(_CHUNK):
                        for h in hashes.values():
                            h.update(chunk)
                        dst.write(chunk)
                        yield from sink.drain()
                if hashes["sha256"].hexdigest() != sha256:
                    logger.error(
                        "export of %s stopped: blob %s no longer hashes to its name", self.name, sha256
                    )
                    raise BlobMismatch(sha256, hashes["sha256"].hexdigest())
                for algorithm, h in hashes.items():
                    manifests[algorithm][path] = h.hexdigest()
            tags = self._tag_files(manifests)
            for path, data in tags.items():
                archive.writestr(entry(path, len(data), stored=False), data)
                yield from sink.drain()
        yield from sink.drain()

    def _tag_files(self, manifests: dict[str, dict[str, str]]) -> dict[str, bytes]:
        octets = sum(len(data) for path, data in self.files.items() if path.startswith("data/"))
        octets += sum(size for _, size in self.blobs.values())
        files = len(self.files) + len(self.blobs)
        info = {
            **self.info,
            "Bagging-Date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
            "Bag-Software-Agent": f"{TOOL['name']} {TOOL['version']}",
            "Payload-Oxum": f"{octets}.{files}",
        }
        # One line per tag: a line break inside a value would start a new tag.
        lines = (f"{key}: {' '.join(str(value).splitlines())}\n" for key, value in sorted(info.items()))
        tags = {
            "bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
            "bag-info.txt": "".join(lines).encode("utf-8"),
        }
        for algorithm, digests in manifests.items():
            text = "".join(f"{digests[path]}  {_manifest_path(path)}\n" for path in sorted(digests))
            tags[f"manifest-{algorithm}.txt"] = text.encode("utf-8")
        for algorithm in BAG_ALGORITHMS:
            text = "".join(
                f"{hashlib.new(algorithm, tags[name]).hexdigest()}  {_manifest_path(name)}\n"
                for name in sorted(tags)
            )
            tags[f"tagmanifest-{algorithm}.txt"] = text.encode("utf-8")
        return tags


_CHUNK = 1 << 20


class _Sink:
    """Where the zip writes: bytes collected until drained (a stream without seek, so zipfile uses
    data descriptors and never goes back)."""

    def __init__(self):
        self._parts: list[bytes] = []
        self._offset = 0

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        if self._parts:
            data, self._parts = b"".join(self._parts), []
            yield data


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
    bag: Bag,
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
    bag.json("data/evidence.json", item)
    bag.json("data/receipt.dsse.json", evidence.receipt)
    if include_file:
        bag.blob(f"data/evidence/{blob.sha256}", blob.sha256, blob.size)

    bag.text("data/log/checkpoint.txt", witnessing.cosigned_note(checkpoint))
    if witnessed is not None and witnessed.size != checkpoint.size:
        # The witnesses cosigned a later tree: it and a consistency proof make this checkpoint final.
        bag.text("data/log/witnessed-checkpoint.txt", witnessing.cosigned_note(witnessed))
        bag.json(
            "data/log/consistency.json",
            {
                "first": checkpoint.size,
                "second": witnessed.size,
                "hashes": [signing.b64(h) for h in log.consistency_proof(checkpoint.size, witnessed.size)],
            },
        )
    lines = []
    for entry in entries:
        proof = log.inclusion_proof(entry.index, checkpoint.size)
        record = {
            "index": entry.index,
            "leaf": signing.b64(bytes(entry.leaf)),
            "inclusion_proof": [signing.b64(h) for h in proof],
            "signature": signing.b64(bytes(entry.signature)),
        }
        lines.append(json.dumps(record, sort_keys=True) + "\n")
    bag.text("data/log/entries.jsonl", "".join(lines))

    bag.text("data/log/timestamps.json", json.dumps(timestamps.tokens_for(checkpoint.size), indent=2) + "\n")
    # The whole trust root chain: a verifier pinned to any version follows it to the newest.
    for version in TrustRoot.objects.order_by("version"):
        bag.json(f"data/trust-root/{version.version:06d}.json", version.envelope)

    rows = list(SigningKey.objects.order_by("purpose", "valid_from"))
    bag.json(
        "data/keys/keys.json",
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
        bag.text(f"data/keys/{k.purpose}-{k.keyid[:16]}.pem", k.public_key_pem)

    described = []
    for analysis in analyses:
        folder = f"data/analyses/{analysis.pk}"
        bag.json(f"{folder}/result.dsse.json", analysis.envelope)
        published = _published_envelope(analysis)
        if published is not None:
            # What the public was shown: its predicate's internal_statement digest links it to this result.
            bag.json(f"{folder}/published.dsse.json", published)
        artifacts = []
        for artifact in analysis.artifacts.all():
            ext = mimetypes.guess_extension(artifact.media_type) or ".bin"
            bag.blob(f"{folder}/artifacts/{artifact.blob_id}{ext}", artifact.blob_id, artifact.blob.size)
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

    bag.json(
        "data/case-uco.jsonld", caseuco.build_case_uco(item, [e.decoded for e in entries], described, TOOL)
    )

    report_rows = [{"entry": e, "decoded": e.decoded, "checkpoint": checkpoint} for e in entries]
    bag.text(
        "data/report.html",
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
    )
    bag.text(
        "data/README.txt",
        render_to_string(
            "custody/bundle_readme.txt",
            {
                "item": item,
                "checkpoint_size": checkpoint.size,
                "analyses": described,
            },
        ),
    )


def _published_envelope(analysis) -> dict | None:
    """The public statement of a published analysis (forensics/publication.py), from its log entry."""
    from forensics import publication

    if analysis.publish_log_index is None:
        return None
    entry = LogEntry.objects.get(index=analysis.publish_log_index).decoded
    return publication.envelope_from_entry(entry.get("details") or {})


def _manifest_path(name: str) -> str:
    # RFC 8493 section 2.1.3: percent-encode what would break a manifest line.
    return name.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
