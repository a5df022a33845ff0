"""The public statement: what a published result shows to anyone, and nothing more.

The internal result (forensics/services.py ``complete``) is for the case: it
names the evidence and the analysis by id, the log entry that requested it,
and every other item it read (a reference recording by id and SHA-256).
Publishing must not hand those to the world, so at publish time this module
builds a second in-toto Statement v1, signed with the same results key:

- subject: the evidence's SHA-256 only (anyone holding the file can check it);
- predicate (``urn:custody-server:published-result:v1``): analyzer, parameters
  without evidence references, the other items read replaced by a label
  ("reference recording"; their SHA-256 only if the publisher chose to
  disclose it), findings with every evidence id replaced the same way, limits,
  times, artifacts by digest, and the SHA-256 of the internal statement, so a
  court later given the full statement can link the two.

The statement's bytes are a blob and the ``result.published`` log entry
records their digest and signature (``log_details``), so the public statement
is derivable from the log and the blobs, like the internal one. Building is
deterministic: the same analysis and options give the same bytes.

Pure apart from reading the analysis row, the results key and the blob store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from custody import keys, signing
from custody.models import SigningKey
from custody.services import ServiceError
from custody.storage import blob_store

from . import analyzers
from .models import Analysis

PUBLISHED_PREDICATE_TYPE = "urn:custody-server:published-result:v1"
REFERENCE_LABEL = "reference recording"


class PublicationError(ServiceError):
    """The public statement would reveal something it must not: nothing is published."""

    def __init__(self, detail: str):
        super().__init__(detail, 409)


@dataclass(frozen=True)
class PublicStatement:
    envelope: dict
    payload: bytes
    sha256: str

    def log_details(self) -> dict:
        """What the ``result.published`` entry records (strings and bools only: no floats in leaves)."""
        signature = self.envelope["signatures"][0]
        return {
            "public_statement_sha256": self.sha256,
            "public_keyid": signature["keyid"],
            "public_sig": signature["sig"],
        }


def _label(name: str) -> str:
    # "reference" is the only evidence parameter today; any other says which one it is.
    return REFERENCE_LABEL if name == "reference" else f"{name.replace('_', ' ')} (another recording)"


def signed_internal_payload(analysis: Analysis) -> bytes:
    """The internal statement's bytes, checked against the ``analysis.completed`` entry the server
    signed for this analysis (its digest, signature, item and analyzer): never only as the row
    holds them, or findings written into the row would be signed again for the public."""
    from custody import log
    from custody.models import LogEntry

    entry = log.signed_entry(LogEntry.objects.filter(index=analysis.result_log_index).first())
    details = entry.get("details") or {}
    if (
        entry.get("action") != "analysis.completed"
        or details.get("analysis") != str(analysis.pk)
        or details.get("analyzer") != analysis.analyzer
        or (entry.get("evidence") or {}).get("id") != str(analysis.evidence_id)
    ):
        raise PublicationError(
            f"analysis {analysis.pk}: no signed analysis.completed entry of this analysis and item backs the "
            "stored result; nothing is published (run verify_log)"
        )
    payload = signing.b64decode(analysis.envelope["payload"])
    signatures = analysis.envelope.get("signatures") or [{}]
    if hashlib.sha256(payload).hexdigest() != details.get("statement_sha256") or signatures[0].get(
        "sig"
    ) != details.get("sig"):
        raise PublicationError(
            f"analysis {analysis.pk}: the stored result is not the statement entry {entry['index']} records as "
            "signed; nothing is published (run verify_log)"
        )
    return payload


def build(analysis: Analysis, *, disclose_references: bool = False) -> PublicStatement:
    """Build, sign and store the public statement of a succeeded analysis."""
    internal_payload = signed_internal_payload(analysis)
    internal = json.loads(internal_payload)
    predicate = internal["predicate"]
    references = predicate.get("references") or {}
    module = analyzers.get(analysis.analyzer)
    evidence_params = set(references)
    if module is not None:
        evidence_params |= {n for n, rule in module.PARAMETERS.items() if rule.get("type") == "evidence"}

    # Every identifier the internal statement may carry, and what replaces it.
    replace: dict[str, str] = {
        str(analysis.pk): "this analysis",
        str(analysis.evidence_id): "this file",
    }
    hidden_digests: set[str] = set()
    for name in sorted(evidence_params):
        ref = references.get(name) or {}
        for value in (ref.get("id"), (predicate.get("parameters") or {}).get(name)):
            if isinstance(value, str) and value:
                replace[value] = _label(name)
        if ref.get("sha256") and not disclose_references:
            hidden_digests.add(ref["sha256"])
            replace[ref["sha256"]] = _label(name)

    public_refs = {}
    for name in sorted(evidence_params):
        entry: dict[str, Any] = {"label": _label(name)}
        sha = (references.get(name) or {}).get("sha256")
        if disclose_references and sha:
            entry["digest"] = {"sha256": sha}
        public_refs[name] = entry

    subject_sha = internal["subject"][0]["digest"]["sha256"]
    statement = signing.in_toto_statement(
        subject=[{"name": "evidence", "digest": {"sha256": subject_sha}}],
        predicate_type=PUBLISHED_PREDICATE_TYPE,
        predicate={
            "analyzer": predicate["analyzer"],
            "parameters": {
                k: v for k, v in (predicate.get("parameters") or {}).items() if k not in evidence_params
            },
            "references": public_refs,
            "disclosed_references": bool(disclose_references),
            "libraries": predicate.get("libraries", {}),
            "started_at": predicate["started_at"],
            "finished_at": predicate["finished_at"],
            "findings": _scrub(predicate.get("findings", []), replace, hidden_digests),
            "artifacts": predicate.get("artifacts", []),
            "limits": predicate.get("limits", []),
            # The link to the full result: its exact bytes hash to this.
            "internal_statement": {
                "predicateType": internal["predicateType"],
                "digest": {"sha256": hashlib.sha256(internal_payload).hexdigest()},
            },
        },
    )
    # Fail closed: a finding shape nobody foresaw must not leak an id. The
    # subject's own SHA-256 is public by design; everything replaced is not.
    text = json.dumps(statement)
    leaked = [secret for secret in replace if secret != subject_sha and secret in text]
    if leaked:
        raise PublicationError("the public statement would still name an evidence or analysis identifier")

    key_row, key = keys.active_private_key(SigningKey.Purpose.RESULTS)
    envelope = signing.sign_statement(statement, key)
    payload = signing.b64decode(envelope["payload"])
    sha256 = hashlib.sha256(payload).hexdigest()
    # Content-addressed: harmless if the publishing transaction then fails.
    blob_store().put_bytes(payload, sha256)
    return PublicStatement(envelope=envelope, payload=payload, sha256=sha256)


def _scrub(value: Any, replace: dict[str, str], hidden_digests: set[str]) -> Any:
    """Findings with identifiers replaced by labels and undisclosed digests dropped.

    ``{"evidence": <reference id>}`` becomes ``{"evidence": "reference recording"}``;
    a ``"sha256"`` key holding an undisclosed reference digest is left out;
    any other string mentioning an identifier has it replaced by its label.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "sha256" and v in hidden_digests:
                continue
            out[k] = _scrub(v, replace, hidden_digests)
        return out
    if isinstance(value, list):
        return [_scrub(v, replace, hidden_digests) for v in value]
    if isinstance(value, str):
        for secret, label in replace.items():
            if secret in value:
                value = value.replace(secret, label)
        return value
    return value


def envelope_from_entry(details: dict) -> dict | None:
    """The public statement's DSSE envelope, rebuilt from its blob and the publication entry.

    None for a publication made before public statements existed: its full
    statement is not served (see README, "What a published result reveals").
    """
    sha256 = details.get("public_statement_sha256")
    if not sha256:
        return None
    with blob_store().open(sha256) as f:
        payload = f.read()
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise PublicationError(f"the stored public statement {sha256} no longer matches its digest")
    return {
        "payload": signing.b64(payload),
        "payloadType": signing.IN_TOTO_PAYLOAD_TYPE,
        "signatures": [{"keyid": details["public_keyid"], "sig": details["public_sig"]}],
    }


def public_results(sha256: str) -> dict:
    """Every published result about a file hash, as the public API and page show it.

    Only the public statement, its log entry (leaf bytes) and that entry's
    inclusion proof in the newest checkpoint, with the checkpoint's witnesses.
    """
    from custody import log, witnessing
    from custody.models import LogEntry

    rows = list(
        Analysis.objects.filter(evidence__blob_id=sha256, published_at__isnull=False).order_by("published_at")
    )
    leaves = dict(
        LogEntry.objects.filter(index__in=[a.publish_log_index for a in rows]).values_list("index", "leaf")
    )
    checkpoint = log.latest_checkpoint() if rows else None
    results = []
    for a in rows:
        leaf = bytes(leaves[a.publish_log_index])
        details = json.loads(leaf).get("details") or {}
        envelope = envelope_from_entry(details)
        if envelope is None:
            continue  # published before public statements: nothing public to show
        statement = json.loads(signing.b64decode(envelope["payload"]))
        results.append(
            {
                "analyzer": a.analyzer,
                "analyzer_version": a.analyzer_version,
                "published_at": log.format_time(a.published_at),
                "envelope": envelope,
                "statement_sha256": details["public_statement_sha256"],
                "statement": statement,
                "artifacts": [
                    {"name": x["name"], "media_type": x["media_type"], "sha256": x["digest"]["sha256"]}
                    for x in statement["predicate"]["artifacts"]
                ],
                # The public log entry that records the publication, and its
                # inclusion proof in the tree of the checkpoint below.
                "log": {
                    "index": a.publish_log_index,
                    "leaf": signing.b64(leaf),
                    "size": checkpoint.size,
                    "inclusion_proof": [
                        signing.b64(h) for h in log.inclusion_proof(a.publish_log_index, checkpoint.size)
                    ],
                },
            }
        )
    return {
        "sha256": sha256,
        "results": results,
        "checkpoint": witnessing.cosigned_note(checkpoint) if results else None,
        "witnesses": witnessing.finality(checkpoint) if results else None,
    }
