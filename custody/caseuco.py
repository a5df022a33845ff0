"""CASE/UCO JSON-LD for an export bundle: one evidence item, its chain of custody, its analyses.

Pure: plain dicts in, a JSON-LD dict out (standard library only, no Django),
so the bundle's description can be rebuilt and checked anywhere.

The mapping follows the CASE community examples (casework/CASE-Examples,
``forensic_lifecycle`` and ``Oresteia``) in CASE 1.x / UCO 1.x terms:

- the case is a ``case-investigation:Investigation`` whose ``uco-core:object``
  lists every node of the document;
- the item is a ``uco-observable:File`` with a ``FileFacet`` (name, size) and a
  ``ContentDataFacet`` (size, media type, SHA-256 / SHA-1 / MD5 as ``uco-types:Hash``);
- custody is a chain of ``case-investigation:ProvenanceRecord``: one made by the
  intake, one more by each accepted handover (the Oresteia "transferred" pattern);
- every log entry is a ``case-investigation:InvestigativeAction`` named after the
  entry's action, at the entry's time, performed by the actor's
  ``uco-identity:Identity`` (the server's ``uco-tool:Tool`` when the server acted
  alone), with the server as instrument, the file and its current provenance
  record as objects, a handover's place as ``uco-location:Location``;
- every analysis is an InvestigativeAction whose instrument is the analyzer
  (a ``uco-tool:AnalyticTool``, configured by its parameters through a
  ``uco-tool:ConfiguredTool``), whose object is the file and whose results are
  the artifacts, the signed DSSE envelope and the in-toto statement it signs;
  the log entries about that analysis are its sub-actions.

UCO 1.x differs from older examples in three ways this module follows: action
properties sit on the action itself (``uco-action:ActionReferencesFacet`` was
removed in UCO 1.0), every node including facets and hashes has an IRI (blank
nodes are refused), and ``types:hashMethod`` is a plain ``xsd:string`` from the
HashNameVocab list (a typed vocabulary literal draws a warning since UCO 1.4).

Node IRIs end in a UUID, as UCO advises: the item's, case's and analyses' own
UUIDs, or a UUIDv5 derived from what the node stands for (a log entry's
canonical JSON, a hash's value, a user name...). The same input always gives
the same document.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any

KB = "urn:custody-server:kb:"

CONTEXT = {
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-configuration": "https://ontology.unifiedcyberontology.org/uco/configuration/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-location": "https://ontology.unifiedcyberontology.org/uco/location/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}

# HashNameVocab spellings of the item's digests, in the order they are listed.
HASH_NAMES = (("sha256", "SHA256"), ("sha1", "SHA1"), ("md5", "MD5"))

# Fixed namespace for derived UUIDs: changing it changes every derived IRI.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://custody-server/caseuco/1")

STATEMENT_MEDIA_TYPE = "application/vnd.in-toto+json"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


def build_case_uco(
    item: dict, entries: list[dict], analyses: list[dict], tool: dict, *, kb: str = KB
) -> dict:
    """Return a JSON-LD document (a dict ready for json.dump) describing the item, its chain of custody and analyses."""
    return _Builder(item, tool, kb).build(entries, analyses)


# --- small helpers -----------------------------------------------------------------


def _uuid(*parts: Any) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def _own_uuid(value: Any, kind: str) -> str:
    """A node's own UUID when it has one (items, cases, analyses), else one derived from it."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return _uuid(kind, value)


def _ref(iri: str) -> dict:
    return {"@id": iri}


def _refs(iris) -> list[dict]:
    seen, out = set(), []
    for iri in iris:
        if iri and iri not in seen:
            seen.add(iri)
            out.append(_ref(iri))
    return out


def _datetime(value: str) -> dict:
    return {"@type": "xsd:dateTime", "@value": value}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _canonical(value)


def _username(who: Any) -> str | None:
    if isinstance(who, dict):
        return who.get("username") or None
    return who or None


def _analyzer_of(details: dict) -> tuple[str | None, str | None]:
    """Name and version of the analyzer named by an entry's details, either spelling."""
    analyzer = details.get("analyzer")
    if isinstance(analyzer, dict):
        return analyzer.get("name"), analyzer.get("version")
    return analyzer, details.get("version")


# --- the builder -----------------------------------------------------------------------


class _Builder:
    def __init__(self, item: dict, tool: dict, kb: str):
        self.item = item
        self.kb = kb
        self.nodes: dict[str, dict] = {}  # @id -> node, in the order they were made
        self.accounts: dict[str, set[str]] = {}  # username -> account ids seen
        self.action_by_index: dict[int, str] = {}
        self.analyses: dict[str, dict] = {}  # id -> analysis, in the order they ran
        self.versions: dict[str, str] = {}  # analysis id -> analyzer version
        self.blobs: dict[str, dict] = {}  # @id of a file known by its hash -> what is known of it
        self.server = self._tool(tool.get("name", "custody-server"), tool.get("version"), server=True)

    # nodes -----------------------------------------------------------------------

    def _add(self, node: dict) -> str:
        iri = node["@id"]
        if iri not in self.nodes:
            self.nodes[iri] = node
        return iri

    def _iri(self, kind: str, *key: Any) -> str:
        return f"kb:{kind}-{_uuid(kind, *key)}"

    def _facet_iri(self, parent: str, kind: str, key: str = "") -> str:
        # Like case_utils.inherent_uuid: a facet's UUID is derived from its object's.
        return f"kb:{kind}-{uuid.uuid5(uuid.UUID(parent[-36:]), kind + key)}"

    def _hash(self, facet: str, method: str, value: str) -> dict:
        return {
            "@id": self._facet_iri(facet, f"hash-{method.lower()}"),
            "@type": "uco-types:Hash",
            "uco-types:hashMethod": method,
            "uco-types:hashValue": {"@type": "xsd:hexBinary", "@value": value.lower()},
        }

    def _content_facet(self, obj: str, hashes, size: int | None, media_type: str | None) -> dict:
        facet = self._facet_iri(obj, "content-data-facet")
        node: dict[str, Any] = {"@id": facet, "@type": "uco-observable:ContentDataFacet"}
        if media_type:
            node["uco-observable:mimeType"] = media_type
        if size is not None:
            node["uco-observable:sizeInBytes"] = int(size)
        listed = [self._hash(facet, method, value) for method, value in hashes if value]
        if listed:
            node["uco-observable:hash"] = listed
        return node

    def _file_facet(self, obj: str, names, size: int | None = None, path: str | None = None) -> dict:
        node: dict[str, Any] = {
            "@id": self._facet_iri(obj, "file-facet"),
            "@type": "uco-observable:FileFacet",
        }
        names = sorted(set(n for n in names if n))
        if names:
            node["uco-observable:fileName"] = names[0] if len(names) == 1 else names
        if path:
            node["uco-observable:filePath"] = path
        if size is not None:
            node["uco-observable:sizeInBytes"] = int(size)
        return node

    def _tool(self, name: str, version: str | None, *, server: bool = False) -> str:
        iri = self._iri("tool", name, version or "")
        node = {
            "@id": iri,
            "@type": "uco-tool:Tool" if server else "uco-tool:AnalyticTool",
            "uco-core:name": name,
            "uco-tool:toolType": "chain-of-custody server" if server else "forensic analyzer",
        }
        if version:
            node["uco-tool:version"] = version
        return self._add(node)

    def _identity(self, who: Any) -> str | None:
        """The Identity behind a user of the server (their account on it is added by ``_account``)."""
        name = _username(who)
        if name is None:
            return None
        ids = self.accounts.setdefault(name, set())
        if isinstance(who, dict) and who.get("id") is not None:
            ids.add(str(who["id"]))
        return self._add(
            {"@id": self._iri("identity", name), "@type": "uco-identity:Identity", "uco-core:name": name}
        )

    def _location(self, text: str | None) -> str | None:
        if not text:
            return None
        return self._add(
            {"@id": self._iri("location", text), "@type": "uco-location:Location", "uco-core:name": text}
        )

    def _client(self, client: str | None) -> str | None:
        """The client's IP address as an observable (None if it is not an IP address)."""
        try:
            address = ipaddress.ip_address(client or "")
        except ValueError:
            return None
        v = address.version
        iri = self._iri("ip-address", str(address))
        return self._add(
            {
                "@id": iri,
                "@type": f"uco-observable:IPv{v}Address",
                "uco-core:hasFacet": [
                    {
                        "@id": self._facet_iri(iri, f"ipv{v}-address-facet"),
                        "@type": f"uco-observable:IPv{v}AddressFacet",
                        "uco-observable:addressValue": str(address),
                    }
                ],
            }
        )

    def _blob(self, sha256: str, names=(), media_type: str | None = None, size: int | None = None) -> str:
        """A derived file (an artifact, an export bundle) known by its SHA-256; facets come at the end."""
        sha256 = sha256.lower()
        iri = self._iri("file", "sha256", sha256)
        known = self.blobs.setdefault(
            iri, {"sha256": sha256, "names": set(), "media_type": None, "size": None}
        )
        known["names"].update(n for n in names if n)
        known["media_type"] = known["media_type"] or media_type
        if known["size"] is None:
            known["size"] = size
        return self._add({"@id": iri, "@type": "uco-observable:File"})

    def _finish_blobs(self) -> None:
        for iri, known in self.blobs.items():
            facets = []
            if known["names"]:
                facets.append(self._file_facet(iri, known["names"], known["size"]))
            facets.append(
                self._content_facet(iri, [("SHA256", known["sha256"])], known["size"], known["media_type"])
            )
            self.nodes[iri]["uco-core:hasFacet"] = facets

    def _statement(self, sha256: str) -> str:
        """The in-toto statement a result envelope signs, known by its SHA-256."""
        iri = self._iri("statement", sha256.lower())
        return self._add(
            {
                "@id": iri,
                "@type": "uco-observable:ContentData",
                "uco-core:description": "in-toto Statement v1 (the payload of a DSSE envelope) recording an analysis result",
                "uco-core:hasFacet": [
                    self._content_facet(iri, [("SHA256", sha256)], None, STATEMENT_MEDIA_TYPE)
                ],
            }
        )

    # the document -------------------------------------------------------------------------

    def build(self, entries: list[dict], analyses: list[dict]) -> dict:
        item = self.item
        case = item.get("case") or {}
        self.file = self._evidence_file()
        self.custody = self._first_provenance_record()
        for analysis in sorted(analyses, key=lambda a: (a.get("started_at") or "", str(a.get("id")))):
            self.analyses[str(analysis["id"])] = analysis
        ordered = sorted(entries, key=lambda e: e["index"])
        # Some entries name the analyzer without its version (started, failed): take it from the others.
        self.versions.update({key: a["analyzer"].get("version") for key, a in self.analyses.items()})
        for entry in ordered:
            details = entry.get("details") or {}
            version = _analyzer_of(details)[1]
            if details.get("analysis") and version:
                self.versions.setdefault(str(details["analysis"]), version)
        for entry in ordered:
            self._entry(entry)
        for analysis in self.analyses.values():
            self._analysis(analysis, ordered)
        for name, ids in sorted(self.accounts.items()):
            self._account(name, ids)
        self._finish_blobs()

        graph = []
        if case:
            investigation = {
                "@id": f"kb:investigation-{_own_uuid(case.get('id'), 'case')}",
                "@type": "case-investigation:Investigation",
                "uco-core:name": case.get("reference") or str(case.get("id")),
                "uco-core:object": _refs(self.nodes),
            }
            if case.get("title"):
                investigation["uco-core:description"] = case["title"]
            graph.append(investigation)
        graph.extend(self.nodes.values())
        return {"@context": {"kb": self.kb, **CONTEXT}, "@graph": graph}

    def _evidence_file(self) -> str:
        item = self.item
        iri = f"kb:file-{_own_uuid(item.get('id'), 'evidence')}"
        node: dict[str, Any] = {"@id": iri, "@type": "uco-observable:File"}
        if item.get("description"):
            node["uco-core:description"] = item["description"]
        node["uco-core:hasFacet"] = [
            self._file_facet(iri, [item.get("original_name")], item.get("size")),
            self._content_facet(
                iri,
                [(label, item.get(key)) for key, label in HASH_NAMES],
                item.get("size"),
                item.get("media_type"),
            ),
        ]
        return self._add(node)

    def _first_provenance_record(self) -> str:
        item = self.item
        case = item.get("case") or {}
        parts = [f"Evidence item {item.get('id')} ({item.get('original_name')})"]
        if case:
            parts.append(f"case {case.get('reference')}")
        if item.get("received_at"):
            parts.append(f"received {item['received_at']}")
        if item.get("submitted_by"):
            parts.append(f"submitted by {item['submitted_by']}")
            self._identity(item["submitted_by"])
        if item.get("source"):
            parts.append(f"source: {item['source']}")
        if item.get("receipt_keyid"):
            parts.append(f"intake receipt (data/receipt.dsse.json) signed by key {item['receipt_keyid']}")
        return self._add(
            {
                "@id": self._iri("provenance-record", item.get("id"), "intake"),
                "@type": "case-investigation:ProvenanceRecord",
                "uco-core:description": "; ".join(parts),
                "case-investigation:exhibitNumber": str(item.get("id")),
                "uco-core:object": [_ref(self.file)],
            }
        )

    def _about_item(self, entry: dict) -> bool:
        evidence = entry.get("evidence")
        if not evidence:
            return False
        if evidence.get("id") is not None:
            return str(evidence["id"]) == str(self.item.get("id"))
        return (evidence.get("sha256") or "").lower() == (self.item.get("sha256") or "").lower()

    def _entry(self, entry: dict) -> None:
        index, action = entry["index"], entry["action"]
        details = entry.get("details") or {}
        about_item = self._about_item(entry)
        iri = f"kb:log-entry-{index}-{_uuid('log-entry', _canonical(entry))}"
        self.action_by_index[index] = iri

        performer = self._identity(entry.get("actor")) or self.server
        instruments = [self.server, self._client(entry.get("client"))]
        objects = [self.file, self.custody] if about_item else []
        results: list[str] = []
        participants: list[str | None] = []
        informed_by: list[int] = []
        location = None
        status = None
        summary = [f"custody log entry {index}: {action}"]
        if entry.get("actor"):
            summary.append(f"by {_username(entry['actor'])}")

        if action == "evidence.received":
            objects = [self.file]
            results = [self.custody]
        elif action.startswith("custody."):
            giver, taker = details.get("from"), details.get("to")
            participants = [self._identity(giver), self._identity(taker)]
            location = self._location(details.get("location"))
            summary.append(f"from {_username(giver)} to {_username(taker)}")
            if details.get("purpose"):
                summary.append(f"purpose: {details['purpose']}")
            if details.get("location"):
                summary.append(f"location: {details['location']}")
            fixity = details.get("fixity")
            if isinstance(fixity, dict):
                summary.append(
                    f"fixity re-checked before this step: {'ok' if fixity.get('ok') else 'FAILED'}"
                )
            if isinstance(details.get("release_entry"), int):
                informed_by.append(details["release_entry"])
            if action == "custody.accepted" and about_item:
                self.custody = self._add(
                    {
                        "@id": self._iri("provenance-record", self.item.get("id"), "accepted", index),
                        "@type": "case-investigation:ProvenanceRecord",
                        "uco-core:description": (
                            f"In the custody of {_username(taker)} from {entry.get('time')} "
                            f"(custody log entry {index}), handed over by {_username(giver)}"
                        ),
                        "case-investigation:exhibitNumber": str(self.item.get("id")),
                        "uco-core:object": [_ref(self.file)],
                    }
                )
                results = [self.custody]
        elif action.startswith("analysis.") or action == "result.published":
            name, version = _analyzer_of(details)
            known = self.analyses.get(str(details.get("analysis")))
            version = version or self.versions.get(str(details.get("analysis")))
            if name:
                instruments.append(self._tool(name, version))
                summary.append(f"analyzer {name} {version or ''}".rstrip())
            if details.get("analysis"):
                summary.append(f"analysis {details['analysis']}")
            statement = details.get("statement_sha256")
            if action == "analysis.completed":
                status = "Success"
                if statement:
                    results.append(self._statement(statement))
                if known:
                    results.append(self._envelope(known))
                for artifact in details.get("artifacts") or []:
                    results.append(self._blob(artifact["sha256"]))
                if "findings" in details:
                    summary.append(f"{details['findings']} findings")
            elif action == "analysis.failed":
                status = "Fail"
                if details.get("reason"):
                    summary.append(f"failure: {_text(details['reason'])}")
            elif action == "result.published":
                if statement:
                    objects.append(self._statement(statement))
                    summary.append(f"statement sha256 {statement} published for public verification")
                if known:
                    objects.append(self._envelope(known))
                if isinstance(details.get("result_entry"), int):
                    informed_by.append(details["result_entry"])
            elif action == "analysis.requested" and details.get("parameters"):
                summary.append(f"parameters: {_canonical(details['parameters'])}")
        elif action == "fixity.checked":
            ok = bool(details.get("ok"))
            status = "Success" if ok else "Fail"
            if "error" in details:
                summary.append(f"fixity check FAILED: {details['error']}")
            else:
                summary.append(
                    f"fixity check {'passed' if ok else 'FAILED'}: stored bytes sha256 "
                    f"{details.get('sha256')}, {details.get('size')} bytes"
                )
        elif action == "evidence.exported":
            if details.get("bag_sha256"):
                results.append(self._blob(details["bag_sha256"], media_type="application/zip"))
            summary.append(f"export bundle: {_canonical(details)}")
        elif details:
            summary.append(f"details: {_canonical(details)}")
        if entry.get("reason"):
            summary.append(f"reason: {entry['reason']}")
        if entry.get("client"):
            summary.append(f"client {entry['client']}")

        node: dict[str, Any] = {
            "@id": iri,
            "@type": "case-investigation:InvestigativeAction",
            "uco-core:name": action,
            "uco-core:description": "; ".join(summary),
            "uco-action:startTime": _datetime(entry["time"]),
            "uco-action:endTime": _datetime(entry["time"]),
            "uco-action:performer": _ref(performer),
            "uco-action:instrument": _refs(instruments),
        }
        participants = [p for p in participants if p and p != performer]
        if participants:
            node["uco-action:participant"] = _refs(participants)
        if location:
            node["uco-action:location"] = [_ref(location)]
        if objects:
            node["uco-action:object"] = _refs(objects)
        if results:
            node["uco-action:result"] = _refs(results)
        if status:
            node["uco-action:actionStatus"] = status
        informed = [self.action_by_index[i] for i in informed_by if i in self.action_by_index]
        if informed:
            node["case-investigation:wasInformedBy"] = _refs(informed)
        node["uco-core:externalReference"] = [
            {
                "@id": self._facet_iri(iri, "external-reference"),
                "@type": "uco-core:ExternalReference",
                "uco-core:definingContext": "custody-server log entry index (RFC 9162 leaf index)",
                "uco-core:externalIdentifier": str(index),
            }
        ]
        self._add(node)

    def _envelope(self, analysis: dict) -> str:
        iri = f"kb:file-{_uuid('envelope', analysis['id'])}"
        path = analysis.get("envelope_path")
        return self._add(
            {
                "@id": iri,
                "@type": "uco-observable:File",
                "uco-core:description": "DSSE envelope: the server's Ed25519 signature over the analysis result statement",
                "uco-core:hasFacet": [
                    self._file_facet(
                        iri, [path.rsplit("/", 1)[-1] if path else "result.dsse.json"], path=path
                    ),
                    self._content_facet(iri, [], None, ENVELOPE_MEDIA_TYPE),
                ],
            }
        )

    def _analysis(self, analysis: dict, entries: list[dict]) -> None:
        analyzer = analysis.get("analyzer") or {}
        base = self._tool(analyzer.get("name"), analyzer.get("version"))
        instrument = base
        parameters = analysis.get("parameters") or {}
        if parameters:
            instrument = self._configured_tool(analysis, base, parameters)
        mine = [e for e in entries if str((e.get("details") or {}).get("analysis")) == str(analysis["id"])]
        requester = next((e.get("actor") for e in mine if e["action"] == "analysis.requested"), None)

        results = []
        for artifact in sorted(
            analysis.get("artifacts") or [], key=lambda a: (a["sha256"], a.get("name") or "")
        ):
            results.append(
                self._blob(
                    artifact["sha256"],
                    [artifact.get("name")],
                    artifact.get("media_type"),
                    artifact.get("size"),
                )
            )
        results.append(self._envelope(analysis))
        if analysis.get("statement_sha256"):
            results.append(self._statement(analysis["statement_sha256"]))

        description = (
            f"Analysis {analysis['id']} of the evidence by {analyzer.get('name')} {analyzer.get('version')}: "
            f"{analysis.get('findings_count', 0)} findings, {len(analysis.get('artifacts') or [])} artifacts; "
            f"signed result in {analysis.get('envelope_path')} "
            f"(statement sha256 {analysis.get('statement_sha256')})"
        )
        node: dict[str, Any] = {
            "@id": f"kb:analysis-{_own_uuid(analysis['id'], 'analysis')}",
            "@type": "case-investigation:InvestigativeAction",
            "uco-core:name": f"analysis {analyzer.get('name')}",
            "uco-core:description": description,
        }
        if analysis.get("started_at"):
            node["uco-action:startTime"] = _datetime(analysis["started_at"])
        if analysis.get("finished_at"):
            node["uco-action:endTime"] = _datetime(analysis["finished_at"])
        node["uco-action:actionStatus"] = "Success"
        performer = self._identity(requester)
        if performer:
            node["uco-action:performer"] = _ref(performer)
        node["uco-action:instrument"] = _refs([instrument, self.server])
        node["uco-action:object"] = [_ref(self.file)]
        node["uco-action:result"] = _refs(results)
        subactions = [self.action_by_index[e["index"]] for e in mine if e["index"] in self.action_by_index]
        if subactions:
            node["uco-action:subaction"] = _refs(subactions)
        self._add(node)

    def _configured_tool(self, analysis: dict, base: str, parameters: dict) -> str:
        analyzer = analysis["analyzer"]
        configuration = f"kb:configuration-{_uuid('configuration', analysis['id'])}"
        entries = [
            {
                "@id": self._facet_iri(configuration, "configuration-entry", f"\x1f{key}"),
                "@type": "uco-configuration:ConfigurationEntry",
                "uco-configuration:itemName": str(key),
                "uco-configuration:itemValue": _text(parameters[key]),
            }
            for key in sorted(parameters, key=str)
        ]
        self._add(
            {
                "@id": configuration,
                "@type": "uco-configuration:Configuration",
                "uco-configuration:configurationEntry": entries,
            }
        )
        node = {
            "@id": f"kb:configured-tool-{_uuid('configured-tool', analysis['id'])}",
            "@type": "uco-tool:ConfiguredTool",
            "uco-core:name": analyzer.get("name"),
            "uco-tool:toolType": "forensic analyzer",
            "uco-configuration:isConfigurationOf": _ref(base),
            "uco-configuration:usesConfiguration": _ref(configuration),
        }
        if analyzer.get("version"):
            node["uco-tool:version"] = analyzer["version"]
        return self._add(node)

    def _account(self, name: str, ids: set[str]) -> None:
        """The user's account on this server, owned by their Identity."""
        identity = self._iri("identity", name)
        iri = self._iri("account", name)
        account_facet: dict[str, Any] = {
            "@id": self._facet_iri(iri, "account-facet"),
            "@type": "uco-observable:AccountFacet",
            "uco-observable:owner": _ref(identity),
        }
        if ids:
            account_facet["uco-observable:accountIdentifier"] = sorted(ids)[0]
        self._add(
            {
                "@id": iri,
                "@type": "uco-observable:ApplicationAccount",
                "uco-core:hasFacet": [
                    account_facet,
                    {
                        "@id": self._facet_iri(iri, "digital-account-facet"),
                        "@type": "uco-observable:DigitalAccountFacet",
                        "uco-observable:accountLogin": name,
                    },
                ],
            }
        )
