"""The OpenAPI schema is the contract: every operation, called once with real data, answers as it says.

Each call goes through DRF's test client, and its answer is checked against
the schema the server serves: the status code is one the operation lists, the
headers it marks required are there, the Content-Type is a listed one, and a
JSON body validates against the listed schema (components resolved, OpenAPI
3.0 ``nullable`` honoured, formats checked). A final test checks that every
operation in the schema was called. scripts/contract.py does the same with
schemathesis' generated requests against a live server.
"""

from __future__ import annotations

import base64
import re

import jsonschema
import pytest
import yaml
from rest_framework.test import APIClient

from custody import services
from forensics import services as analyses

from .conftest import api_client_for, upload

CALLED: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def _openapi30_to_json_schema(node):
    """OpenAPI 3.0's ``nullable: true`` is JSON Schema's ``null`` type; the rest carries over."""
    if isinstance(node, list):
        return [_openapi30_to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi30_to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _template_for(schema, path: str) -> str:
    for template in schema["paths"]:
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} is not in the schema")


def check(schema, response, expected: int | None = None):
    """Assert ``response`` is one the schema allows for its request; returns it."""
    request = response.wsgi_request
    method, path = request.method.lower(), request.path
    template = _template_for(schema, path)
    operation = schema["paths"][template].get(method)
    assert operation is not None, f"{method.upper()} {template} is not in the schema"
    CALLED.add((method, template))
    code = str(response.status_code)
    if expected is not None:
        assert response.status_code == expected, (response.status_code, response.content[:500])
    assert code in operation["responses"], f"{method.upper()} {path}: {code} is not in the schema"
    declared = operation["responses"][code]
    for name, header in declared.get("headers", {}).items():
        if header.get("required"):
            assert response.has_header(name), f"{method.upper()} {path} {code}: no {name} header"
    content = declared.get("content")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    if not content:
        assert body == b"", f"{method.upper()} {path} {code}: a body where the schema says none"
        return response
    media_type = response["Content-Type"].split(";")[0].strip()
    listed = next(
        (
            m
            for m in content
            if m == media_type or m == "*/*" or (m.endswith("/*") and media_type.startswith(m[:-1]))
        ),
        None,
    )
    assert listed, f"{method.upper()} {path} {code}: {media_type} is not one of {list(content)}"
    if media_type == "application/json":
        root = _openapi30_to_json_schema({"components": schema["components"], **content[listed]["schema"]})
        validator = jsonschema.Draft202012Validator(
            root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        errors = sorted(validator.iter_errors(response.json()), key=str)
        assert not errors, f"{method.upper()} {path} {code}: " + "; ".join(e.message for e in errors[:5])
    return response


@pytest.fixture
def world(as_alice, as_carol, as_dave, case_a, evidence_a, bob, root):
    """An item with a pending handover, a succeeded and published analysis, and a half-sent tus upload."""
    erin = services.create_user(
        actor=None, username="erin", password="x" * 12, role="investigator", cases=[case_a]
    )
    analysis_id = as_alice.post(
        f"/api/v1/evidence/{evidence_a.pk}/analyses/", {"analyzer": "test.digest"}, format="json"
    ).json()["id"]
    assert analyses.run_analysis(analysis_id, worker="inline") == "succeeded"
    return {"analysis": analysis_id, "as_erin": api_client_for(erin, "x" * 12)}


TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}


def test_every_operation_answers_as_the_schema_says(
    schema, world, as_alice, as_carol, as_dave, case_a, evidence_a
):
    public, ev, case = APIClient(), evidence_a.pk, case_a.pk
    analysis = world["analysis"]

    # Accounts.
    token = check(
        schema,
        public.post("/api/v1/auth/token/", {"username": "alice", "password": "nope"}, format="json"),
        401,
    )
    token = check(
        schema,
        public.post(
            "/api/v1/auth/token/",
            {"username": "alice", "password": "correct horse battery staple"},
            format="json",
        ),
        201,
    ).json()["token"]
    check(schema, public.post("/api/v1/auth/token/", {}, format="json"), 400)

    # Cases and evidence.
    check(schema, as_alice.get("/api/v1/cases/"), 200)
    check(schema, public.get("/api/v1/cases/"), 401)
    check(
        schema, as_alice.post("/api/v1/cases/", {"reference": "C-2", "title": "Second"}, format="json"), 201
    )
    check(schema, as_alice.post("/api/v1/cases/", {"reference": "C-2", "title": "Again"}, format="json"), 409)
    check(schema, as_carol.post("/api/v1/cases/", {"reference": "C-3", "title": "x"}, format="json"), 403)
    check(schema, as_alice.get(f"/api/v1/cases/{case}/"), 200)
    check(schema, as_dave.get(f"/api/v1/cases/{case}/"), 404)
    listed = check(schema, as_alice.get("/api/v1/evidence/", {"case": "A-1", "limit": 1}), 200).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == str(ev)
    check(schema, as_alice.get("/api/v1/evidence/", {"case": "nope"}), 404)
    check(schema, upload(as_alice, case, b"second item"), 201)
    check(schema, upload(as_alice, case, b"wrong", sha256="0" * 64), 422)
    check(schema, as_alice.post("/api/v1/evidence/", {"case": str(case)}, format="multipart"), 400)
    check(schema, as_alice.get(f"/api/v1/evidence/{ev}/"), 200)
    check(schema, as_dave.get(f"/api/v1/evidence/{ev}/"), 404)
    check(schema, as_alice.post(f"/api/v1/evidence/{ev}/"), 200)
    check(schema, as_alice.get(f"/api/v1/evidence/{ev}/content/", {"reason": "contract"}), 200)
    check(
        schema, as_alice.post(f"/api/v1/evidence/{ev}/content/", {"reason": "contract"}, format="json"), 200
    )
    check(schema, as_alice.get(f"/api/v1/evidence/{ev}/receipt/"), 200)
    check(schema, as_alice.get(f"/api/v1/evidence/{ev}/export/"), 200)
    check(schema, as_alice.post(f"/api/v1/evidence/{ev}/export/", {"include_file": True}, format="json"), 200)

    # Handovers.
    check(schema, as_alice.get(f"/api/v1/evidence/{ev}/transfers/"), 200)
    handover = {"to_user": "erin", "purpose": "lab", "location": "room 2"}
    transfer = check(schema, as_alice.post(f"/api/v1/evidence/{ev}/transfers/", handover, format="json"), 201)
    check(schema, as_alice.post(f"/api/v1/evidence/{ev}/transfers/", handover, format="json"), 409)
    transfer = transfer.json()["id"]
    check(schema, as_alice.get("/api/v1/transfers/", {"status": "pending"}), 200)
    as_erin = world["as_erin"]
    check(schema, as_alice.post(f"/api/v1/transfers/{transfer}/refuse/", {}, format="json"), 403)
    check(schema, as_erin.post(f"/api/v1/transfers/{transfer}/refuse/", {}, format="json"), 200)
    check(schema, as_erin.post(f"/api/v1/transfers/{transfer}/accept/", {}, format="json"), 409)

    # Analyses.
    analyzers = check(schema, as_carol.get("/api/v1/analyzers/"), 200).json()
    assert any(a["name"] == "test.digest" for a in analyzers)
    check(schema, as_alice.get(f"/api/v1/evidence/{ev}/analyses/"), 200)
    check(schema, as_alice.post(f"/api/v1/evidence/{ev}/analyses/", {"analyzer": "nope"}, format="json"), 400)
    check(
        schema,
        as_alice.post(f"/api/v1/cases/{case}/analyses/", {"analyzer": "test.digest"}, format="json"),
        202,
    )
    check(schema, as_alice.post(f"/api/v1/evidence/{ev}/analyses/all/"), 202)
    check(schema, as_carol.post(f"/api/v1/evidence/{ev}/analyses/all/"), 403)
    check(schema, as_alice.post(f"/api/v1/cases/{case}/analyses/all/"), 202)
    check(schema, as_dave.post(f"/api/v1/cases/{case}/analyses/all/"), 404)
    result = check(schema, as_alice.get(f"/api/v1/analyses/{analysis}/"), 200).json()
    artifact = result["artifacts"][0]["sha256"]
    check(schema, as_alice.get(f"/api/v1/analyses/{analysis}/artifacts/{artifact}/"), 200)
    check(schema, public.get(f"/api/v1/public/artifacts/{artifact}/"), 404)  # not published yet
    check(schema, as_alice.post(f"/api/v1/analyses/{analysis}/publish/", {}, format="json"), 200)
    check(schema, public.get(f"/api/v1/public/artifacts/{artifact}/"), 200)
    check(schema, public.get("/api/v1/public/results/", {"sha256": evidence_a.sha256}), 200)
    check(schema, public.get("/api/v1/public/results/", {"sha256": "nothex"}), 400)

    # Keys, trust root, the log.
    check(schema, public.get("/api/v1/keys/"), 200)
    check(schema, public.get("/api/v1/trust-root/"), 200)
    check(schema, public.get("/api/v1/trust-root/", {"version": 999}), 404)
    check(schema, public.get("/api/v1/trust-root/chain/"), 200)
    check(schema, public.get("/api/v1/log/checkpoint"), 200)
    check(schema, public.get("/api/v1/log/checkpoint", {"final": "1"}), 404)
    check(schema, public.get("/api/v1/log/witnesses/"), 200)
    entries = check(schema, as_dave.get("/api/v1/log/entries/"), 200).json()
    assert entries and all("leaf_hash" in e or "leaf" in e for e in entries)
    check(schema, as_alice.get("/api/v1/log/entries/", {"start": 0, "end": 3}), 200)
    check(schema, as_alice.get("/api/v1/log/entries/", {"start": "x"}), 400)
    check(schema, public.get("/api/v1/log/proof/inclusion/", {"index": 0}), 200)
    check(schema, public.get("/api/v1/log/proof/inclusion/"), 400)
    check(schema, public.get("/api/v1/log/proof/consistency/", {"first": 1}), 200)
    check(schema, public.get("/api/v1/log/timestamps/"), 200)
    check(schema, public.get("/api/v1/log/timestamps/", {"size": 10**6}), 404)

    # Resumable uploads (tus): the headers both ways.
    meta = (
        "case "
        + base64.b64encode(str(case).encode()).decode()
        + ",filename "
        + base64.b64encode(b"t.bin").decode()
    )
    created = check(
        schema,
        as_alice.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH="6", HTTP_UPLOAD_METADATA=meta, **TUS),
        201,
    )
    check(schema, as_alice.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH="6", HTTP_UPLOAD_METADATA=meta), 412)
    url = created["Location"].replace("http://testserver", "")
    check(schema, as_alice.head(url, **TUS), 200)
    missing = check(
        schema, as_alice.head("/api/v1/uploads/00000000-0000-0000-0000-000000000000/", **TUS), 404
    )
    assert missing.content == b""  # no body on a HEAD answer, errors included
    assert check(schema, as_alice.head(url), 412).content == b""
    check(schema, as_alice.get(url, **TUS), 200)
    patch = {"content_type": "application/offset+octet-stream", **TUS}
    check(schema, as_alice.patch(url, b"abc", HTTP_UPLOAD_OFFSET="1", **patch), 409)
    check(schema, as_alice.patch(url, b"abc", HTTP_UPLOAD_OFFSET="0", **patch), 204)
    done = check(schema, as_alice.patch(url, b"def", HTTP_UPLOAD_OFFSET="3", **patch), 204)
    assert done["Upload-Offset"] == "6" and done.has_header("Custody-Evidence")
    check(schema, as_alice.get(url, **TUS), 200)
    check(schema, as_alice.delete(url, **TUS), 204)
    check(schema, as_alice.get(url, **TUS), 404)
    check(schema, as_alice.get("/api/v1/uploads/not-a-uuid/", **TUS), 404)

    # Revoking the token used (last: it ends that token).
    revoker = APIClient()
    revoker.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    check(schema, revoker.delete("/api/v1/auth/token/"), 204)
    check(schema, revoker.get("/api/v1/cases/"), 401)


def test_every_operation_in_the_schema_was_called(schema):
    """Runs after the test above (file order): the contract test leaves out no operation."""
    operations = {
        (method, template)
        for template, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete", "head")
    }
    missing = sorted(operations - CALLED)
    assert CALLED, "the contract test did not run"
    assert not missing, f"operations the contract test does not call: {missing}"
