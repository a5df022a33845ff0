"""The CASE/UCO JSON-LD of an export bundle: validated by case_validate (case-utils), offline, deterministic."""

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from custody.caseuco import build_case_uco

# The CASE release the document is written for; case-utils ships it (no network needed).
CASE_VERSION = "case-1.5.0"

ITEM_ID = "3f2b1c9e-8d7a-4b6c-9e5f-1a2b3c4d5e6f"
CASE = {"id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "reference": "CASE-2026-017"}
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
MD5 = "098f6bcd4621d373cade4e832627b4f6"
ANALYSIS = "77e4c0de-1234-4abc-9def-0123456789ab"
FAILED_ANALYSIS = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
STATEMENT = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
ELA_MAP = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
QTABLES = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
BAG = "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"
RECEIPT_KEYID = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
RESULT_KEYID = "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"

ALICE = {"id": 2, "username": "alice"}
BOB = {"id": 3, "username": "bob"}
DAVE = {"id": 5, "username": "dave"}  # an outsider
TOOL = {"name": "custody-server", "version": "0.1.0"}


def entry(index, time, action, actor, *, client="10.20.30.40", reason=None, details=None, public=False):
    """A decoded log leaf as custody.log writes it."""
    value = {
        "v": 1,
        "index": index,
        "time": time,
        "actor": actor,
        "action": action,
        "case": CASE,
        "evidence": {"id": ITEM_ID, "sha256": SHA256},
        "client": client,
        "reason": reason,
        "details": details or {},
    }
    if public:
        value.update(case=None, client=None, evidence={"sha256": SHA256}, public=True)
    return value


def inputs():
    """One item's life: intake, view, download, handover, two analyses (one failed), publish, fixity, export."""
    item = {
        "id": ITEM_ID,
        "original_name": 'IMG_0001 "quai" \u00e9t\u00e9.jpg',
        "sha256": SHA256,
        "sha1": SHA1,
        "md5": MD5,
        "size": 48213,
        "media_type": "image/jpeg",
        "received_at": "2026-11-25T11:36:58.545393Z",
        "case": {**CASE, "title": "Harbour warehouse fraud"},
        "submitted_by": "alice",
        "custodian": "bob",
        "source": "Phone of the complainant, seized 2026-11-24",
        "description": "Photo of the loading dock",
        "log_index": 4,
        "receipt_keyid": RECEIPT_KEYID,
        "file_included": True,
    }
    fixity = {"ok": True, "sha256": SHA256, "size": 48213}
    transfer = {"from": ALICE, "to": BOB, "purpose": "ELA examination", "location": "Evidence room 3, HQ"}
    entries = [
        entry(
            4,
            "2026-11-25T11:36:58.545393Z",
            "evidence.received",
            ALICE,
            details={"original_name": item["original_name"], "size": 48213},
        ),
        entry(5, "2026-11-25T11:40:02.000001Z", "evidence.viewed", ALICE),
        entry(6, "2026-11-25T11:41:10.120000Z", "evidence.downloaded", ALICE, reason="expert copy"),
        entry(
            7,
            "2026-11-25T12:00:00.000000Z",
            "custody.released",
            ALICE,
            details={**transfer, "fixity": fixity},
        ),
        entry(
            8,
            "2026-11-25T12:01:00.000000Z",
            "access.refused",
            DAVE,
            client="testclient",
        ),
        entry(
            9,
            "2026-11-25T12:05:00.000000Z",
            "custody.accepted",
            BOB,
            client="2001:db8::7",
            details={
                "transfer": "5d1f3c6a-0000-4000-8000-00000000000a",
                "release_entry": 7,
                **transfer,
                "fixity": fixity,
            },
        ),
        entry(
            10,
            "2026-11-25T12:10:00.000000Z",
            "analysis.requested",
            BOB,
            client="2001:db8::7",
            details={
                "analysis": ANALYSIS,
                "analyzer": "image.ela",
                "version": "1.0.0",
                "parameters": {"quality": 90, "scale": "1.5"},
            },
        ),
        entry(
            11,
            "2026-11-25T12:10:01.000000Z",
            "analysis.started",
            None,
            client=None,
            details={"analysis": ANALYSIS, "analyzer": "image.ela", "worker": "w1:42:1", "attempt": 1},
        ),
        entry(
            12,
            "2026-11-25T12:10:05.250000Z",
            "analysis.completed",
            None,
            client=None,
            details={
                "analysis": ANALYSIS,
                "analyzer": "image.ela",
                "version": "1.0.0",
                "statement_sha256": STATEMENT,
                "keyid": RESULT_KEYID,
                "findings": 3,
                "artifacts": [
                    {"sha256": ELA_MAP, "name": "ela.png", "media_type": "image/png"},
                    {"sha256": QTABLES, "name": "qtables.png", "media_type": "image/png"},
                ],
            },
        ),
        entry(
            13,
            "2026-11-25T12:11:00.000000Z",
            "analysis.requested",
            BOB,
            client="2001:db8::7",
            details={
                "analysis": FAILED_ANALYSIS,
                "analyzer": "audio.enf",
                "version": "0.3.0",
                "parameters": {},
            },
        ),
        entry(
            14,
            "2026-11-25T12:11:02.000000Z",
            "analysis.failed",
            None,
            client=None,
            details={
                "analysis": FAILED_ANALYSIS,
                "analyzer": "audio.enf",
                "reason": "the file has no audio stream",
            },
        ),
        entry(
            15,
            "2026-11-25T12:20:00.000000Z",
            "result.published",
            BOB,
            public=True,
            details={
                "analysis": ANALYSIS,
                "analyzer": {"name": "image.ela", "version": "1.0.0"},
                "statement_sha256": STATEMENT,
                "result_entry": 12,
            },
        ),
        entry(16, "2026-11-26T00:00:00.000000Z", "fixity.checked", None, client=None, details=fixity),
        entry(
            17,
            "2026-11-26T09:00:00.000000Z",
            "evidence.exported",
            BOB,
            client="2001:db8::7",
            details={
                "include_file": True,
                "checkpoint_size": 17,
                "bag_sha256": BAG,
                "entries": 13,
                "analyses": 1,
            },
        ),
        entry(
            18,
            "2026-11-26T09:30:00.000000Z",
            "analysis.requeued",
            None,
            client=None,
            details={"analysis": FAILED_ANALYSIS, "stale_worker": "w2:7:9", "attempt": 1},
        ),
    ]
    analyses = [
        {
            "id": ANALYSIS,
            "analyzer": {"name": "image.ela", "version": "1.0.0"},
            "started_at": "2026-11-25T12:10:01.000000Z",
            "finished_at": "2026-11-25T12:10:05.250000Z",
            "parameters": {"quality": 90, "scale": "1.5", "window": {"w": 8, "h": 8}},
            "findings_count": 3,
            "statement_sha256": STATEMENT,
            "artifacts": [
                {"name": "ela.png", "media_type": "image/png", "sha256": ELA_MAP, "size": 20481},
                {"name": "qtables.json", "media_type": "application/json", "sha256": QTABLES, "size": 512},
            ],
            "envelope_path": f"data/analyses/{ANALYSIS}/result.dsse.json",
        }
    ]
    return item, entries, analyses


def nodes(document):
    """Every node with an @id, however deeply nested."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            if "@type" in value and "@value" not in value:  # a node, not a typed literal
                found.append(value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(document["@graph"])
    return found


def references(value):
    if isinstance(value, dict):
        if set(value) == {"@id"}:
            yield value["@id"]
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


def test_same_inputs_give_the_same_document():
    item, entries, analyses = inputs()
    first = build_case_uco(item, entries, analyses, TOOL)
    shuffled = list(entries)
    random.Random(7).shuffle(shuffled)
    again = build_case_uco(item, shuffled, list(reversed(analyses)), TOOL)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    json.dumps(first, allow_nan=False)  # plain JSON: nothing json.dump could refuse


def test_every_log_entry_and_every_hash_is_in_the_document():
    item, entries, analyses = inputs()
    document = build_case_uco(item, entries, analyses, TOOL)
    text = json.dumps(document, ensure_ascii=False)
    hashes = [n["uco-types:hashValue"]["@value"] for n in nodes(document) if n["@type"] == "uco-types:Hash"]
    for digest in (SHA256, SHA1, MD5, STATEMENT, ELA_MAP, QTABLES, BAG):
        assert digest in hashes
    for method, digest in (("SHA256", SHA256), ("SHA1", SHA1), ("MD5", MD5)):
        assert any(
            n.get("uco-types:hashMethod") == method and n["uco-types:hashValue"]["@value"] == digest
            for n in nodes(document)
        )
    actions = {n["@id"]: n for n in nodes(document) if n["@type"] == "case-investigation:InvestigativeAction"}
    logged = {
        n["uco-core:externalReference"][0]["uco-core:externalIdentifier"]: n
        for n in actions.values()
        if "uco-core:externalReference" in n
    }
    assert sorted(logged, key=int) == [str(e["index"]) for e in entries]
    for e in entries:
        action = logged[str(e["index"])]
        assert action["uco-core:name"] == e["action"]
        assert action["uco-action:startTime"] == {"@type": "xsd:dateTime", "@value": e["time"]}
    assert {n.get("uco-observable:fileName") for n in nodes(document)} >= {item["original_name"], "ela.png"}
    assert item["receipt_keyid"] in text


def test_graph_is_closed_and_every_node_is_named_by_a_uuid():
    """No blank nodes, no dangling references, IRIs ending in a UUID: what UCO's shapes ask for."""
    item, entries, analyses = inputs()
    document = build_case_uco(item, entries, analyses, TOOL)
    assert document["@context"]["kb"] == "urn:custody-server:kb:"
    named = [n["@id"] for n in nodes(document)]
    assert len(named) == len(set(named)) == len(nodes(document))
    uuid_end = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-5][0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
    assert all(iri.startswith("kb:") and uuid_end.search(iri) for iri in named)
    assert set(references(document["@graph"])) <= set(named)
    investigation = document["@graph"][0]
    assert investigation["@type"] == "case-investigation:Investigation"
    assert {r["@id"] for r in investigation["uco-core:object"]} == {n["@id"] for n in document["@graph"][1:]}
    assert f"kb:file-{ITEM_ID}" in named and f"kb:analysis-{ANALYSIS}" in named


def test_custody_chain_and_analysis_are_linked():
    item, entries, analyses = inputs()
    by_id = {n["@id"]: n for n in nodes(build_case_uco(item, entries, analyses, TOOL))}
    by_index = {
        n["uco-core:externalReference"][0]["uco-core:externalIdentifier"]: n
        for n in by_id.values()
        if "uco-core:externalReference" in n
    }
    name = lambda ref: by_id[ref["@id"]].get("uco-core:name")  # noqa: E731

    received, released, accepted = by_index["4"], by_index["7"], by_index["9"]
    (first_record,) = received["uco-action:result"]
    assert by_id[first_record["@id"]]["@type"] == "case-investigation:ProvenanceRecord"
    assert first_record in released["uco-action:object"]
    (second_record,) = accepted["uco-action:result"]
    assert second_record != first_record and second_record in by_index["16"]["uco-action:object"]
    assert name(released["uco-action:performer"]) == "alice"
    assert [name(p) for p in released["uco-action:participant"]] == ["bob"]
    assert [name(loc) for loc in accepted["uco-action:location"]] == ["Evidence room 3, HQ"]
    assert accepted["case-investigation:wasInformedBy"] == [{"@id": released["@id"]}]
    assert "expert copy" in by_index["6"]["uco-core:description"]
    # The server acted alone: the server is the performer.
    assert name(by_index["16"]["uco-action:performer"]) == "custody-server"
    assert by_index["16"]["uco-action:actionStatus"] == "Success"
    assert by_index["14"]["uco-action:actionStatus"] == "Fail"

    analysis = by_id[f"kb:analysis-{ANALYSIS}"]
    assert name(analysis["uco-action:performer"]) == "bob"
    (configured, server) = [by_id[r["@id"]] for r in analysis["uco-action:instrument"]]
    assert configured["@type"] == "uco-tool:ConfiguredTool" and configured["uco-tool:version"] == "1.0.0"
    assert by_id[configured["uco-configuration:isConfigurationOf"]["@id"]]["@type"] == "uco-tool:AnalyticTool"
    settings = by_id[configured["uco-configuration:usesConfiguration"]["@id"]][
        "uco-configuration:configurationEntry"
    ]
    assert {(s["uco-configuration:itemName"], s["uco-configuration:itemValue"]) for s in settings} == {
        ("quality", "90"),
        ("scale", "1.5"),
        ("window", '{"h":8,"w":8}'),
    }
    assert server["@type"] == "uco-tool:Tool"
    assert analysis["uco-action:object"] == [{"@id": f"kb:file-{ITEM_ID}"}]
    assert {r["@id"] for r in analysis["uco-action:subaction"]} == {
        by_index[i]["@id"] for i in ("10", "11", "12", "15")
    }
    results = [by_id[r["@id"]] for r in analysis["uco-action:result"]]
    paths = [f.get("uco-observable:filePath") for r in results for f in r.get("uco-core:hasFacet", [])]
    assert f"data/analyses/{ANALYSIS}/result.dsse.json" in paths
    assert len(results) == 4  # two artifacts, the envelope, the statement it signs
    # The failed analysis's tool is the versioned one, though its failure entry names no version.
    failed_tools = [by_id[r["@id"]] for r in by_index["14"]["uco-action:instrument"]]
    assert [t.get("uco-tool:version") for t in failed_tools if t["@type"] == "uco-tool:AnalyticTool"] == [
        "0.3.0"
    ]


def case_validate() -> str:
    beside = Path(sys.executable).parent / "case_validate"
    found = str(beside) if beside.exists() else shutil.which("case_validate")
    assert found, "case_validate not found: install requirements-dev.txt (case-utils)"
    return found


# Loaded into case_validate's interpreter: any attempt to reach the network fails loudly.
NO_NETWORK = """
import socket, sys

def _refuse(*args, **kwargs):
    sys.stderr.write("NETWORK ACCESS ATTEMPTED\\n")
    raise OSError("no network during validation")

socket.socket.connect = socket.socket.connect_ex = _refuse
socket.getaddrinfo = socket.create_connection = _refuse
"""


@pytest.mark.slow
def test_case_validate_accepts_the_document_offline(tmp_path):
    item, entries, analyses = inputs()
    path = tmp_path / "case-uco.jsonld"
    path.write_text(
        json.dumps(
            build_case_uco(item, entries, analyses, TOOL), indent=2, sort_keys=True, ensure_ascii=False
        ),
        encoding="utf-8",
    )
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(NO_NETWORK)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [case_validate(), "--built-version", CASE_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    report = result.stdout + result.stderr
    # A nonexistent CASE/UCO term only draws a warning on stderr but still fails the exit code.
    assert result.returncode == 0, report
    assert "Conforms: True" in result.stdout, report
    assert "NETWORK ACCESS ATTEMPTED" not in report
    assert "NonExistentCDOConceptWarning" not in report, report
