"""Least disclosure (issue 12, part 7): no existence oracle, account entries to administrators only.

Probing the id of an item or case in a case you cannot see must look, from
outside, exactly like probing an id that does not exist: the same answer, the
same growth of the public checkpoint, the same view of the log, and no
difference in time beyond noise.
"""

from __future__ import annotations

import base64
import hashlib
import statistics
import time
import uuid

import pytest
from rest_framework.test import APIClient

from custody import services
from custody.models import LogEntry, Role

from .conftest import api_client_for
from .test_log_api import parse_and_verify_checkpoint, verify_inclusion

PUBLIC = APIClient()


def checkpoint_size() -> int:
    note = PUBLIC.get("/api/v1/log/checkpoint").content.decode()
    return int(note.splitlines()[1])


def entries(client, start: int, end: int | None = None) -> list[dict]:
    params = {"start": start} if end is None else {"start": start, "end": end}
    response = client.get("/api/v1/log/entries/", params)
    assert response.status_code == 200, response.content
    return response.json()


PROBES = [
    ("GET", "/api/v1/evidence/{evidence}/"),
    ("GET", "/api/v1/evidence/{evidence}/receipt/"),
    ("GET", "/api/v1/evidence/{evidence}/content/"),
    ("POST", "/api/v1/evidence/{evidence}/transfers/"),
    ("GET", "/api/v1/cases/{case}/"),
    ("POST", "/api/v1/cases/{case}/analyses/"),
]


@pytest.mark.parametrize("method,template", PROBES)
def test_a_real_id_of_another_case_and_a_random_id_look_the_same(as_dave, evidence_a, method, template):
    real = template.format(evidence=evidence_a.pk, case=evidence_a.case_id)
    random = template.format(evidence=uuid.uuid4(), case=uuid.uuid4())
    seen = []
    for path in (real, random):
        size = checkpoint_size()
        response = as_dave.generic(method, path, "{}", content_type="application/json")
        grown = checkpoint_size() - size
        # What dave can read of the entries his probe added.
        added = [
            {k: v for k, v in e.items() if k not in ("index", "leaf_hash")} for e in entries(as_dave, size)
        ]
        seen.append((response.status_code, response.json(), grown, added))
    assert seen[0] == seen[1]
    status, body, grown, added = seen[0]
    assert status == 404 and grown == 1  # every refused probe is one entry, real or not
    assert added == [{"redacted": True}]


def test_the_refusal_of_a_real_id_shows_to_the_case_and_of_a_random_one_to_auditors(
    as_dave, as_alice, evidence_a, custody_db
):
    start = checkpoint_size()
    as_dave.get(f"/api/v1/evidence/{evidence_a.pk}/")
    random = uuid.uuid4()
    as_dave.get(f"/api/v1/evidence/{random}/")
    real_entry, random_entry = LogEntry.objects.filter(index__gte=start).order_by("index")
    assert real_entry.action == random_entry.action == "access.refused"
    assert real_entry.case_id == evidence_a.case_id and random_entry.case_id is None
    # The case's members see who knocked on their item, and from where.
    shown = {e["index"]: e for e in entries(as_alice, start)}
    entry = shown[real_entry.index]["entry"]
    assert entry["actor"]["username"] == "dave" and entry["details"] == {
        "requested": "evidence",
        "id": str(evidence_a.pk),
    }
    assert shown[random_entry.index].get("redacted")  # not alice's business
    # An auditor (of no case) sees the knocks on ids that do not exist.
    services.create_user(actor=None, username="frank", password="x" * 12, role=Role.AUDITOR)
    as_frank = api_client_for(type("U", (), {"username": "frank"}), "x" * 12)
    shown = {e["index"]: e for e in entries(as_frank, start)}
    assert shown[random_entry.index]["entry"]["details"] == {"requested": "evidence", "id": str(random)}
    assert shown[real_entry.index].get("redacted")


def test_refusals_from_another_site_are_still_not_logged(client, dave, evidence_a):
    client.force_login(dave)
    size = checkpoint_size()
    for evidence in (evidence_a.pk, uuid.uuid4()):
        response = client.get(f"/evidence/{evidence}/receipt/", HTTP_SEC_FETCH_SITE="cross-site")
        assert response.status_code == 404
    assert checkpoint_size() == size


def test_probe_timing_does_not_tell_a_real_id_from_a_random_one(as_dave, evidence_a):
    """Medians over interleaved probes; a generous bound: the machine is shared and noisy."""
    rounds = 25
    times = {"real": [], "random": []}
    for _ in range(rounds):
        for kind in ("real", "random"):
            target = evidence_a.pk if kind == "real" else uuid.uuid4()
            started = time.perf_counter()
            response = as_dave.get(f"/api/v1/evidence/{target}/")
            times[kind].append(time.perf_counter() - started)
            assert response.status_code == 404
    real, random = statistics.median(times["real"]), statistics.median(times["random"])
    print(f"probe medians over {rounds} each: real id {real * 1000:.1f} ms, random id {random * 1000:.1f} ms")
    # Both write one entry: the medians agree within half the smaller one (or 5 ms).
    assert abs(real - random) <= max(0.5 * min(real, random), 0.005), (real, random)


def test_account_and_token_entries_are_in_full_to_administrators_only(as_alice, as_root, case_a, custody_db):
    services.create_user(actor=None, username="frank", password="x" * 12, role=Role.AUDITOR)
    as_frank = api_client_for(type("U", (), {"username": "frank"}), "x" * 12)
    size = checkpoint_size()
    account = set(
        LogEntry.objects.filter(action__regex=r"^(user|token)\.", index__lt=size).values_list(
            "index", flat=True
        )
    )
    assert account, "the fixtures made accounts and tokens"
    full = {e["index"]: e for e in entries(as_root, 0, size)}
    note = PUBLIC.get("/api/v1/log/checkpoint").content.decode()
    vkey = PUBLIC.get("/api/v1/keys/").json()["log_vkey"]
    _, checked_size, root = parse_and_verify_checkpoint(note, vkey)
    for viewer in (as_frank, as_alice):
        shown = {e["index"]: e for e in entries(viewer, 0, size)}
        for index in account:
            item = shown[index]
            # No username, role or address: only the leaf hash.
            assert item == {"index": index, "redacted": True, "leaf_hash": item["leaf_hash"]}
            # The administrator's full entry is that leaf, and the leaf is in the signed tree.
            leaf = base64.b64decode(full[index]["leaf"])
            leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
            assert base64.b64encode(leaf_hash).decode() == item["leaf_hash"]
            proof = PUBLIC.get("/api/v1/log/proof/inclusion/", {"index": index, "size": checked_size}).json()
            hashes = [base64.b64decode(h) for h in proof["hashes"]]
            assert verify_inclusion(leaf_hash, index, checked_size, hashes, root)
    assert all("entry" in full[i] for i in account)
    actions = {full[i]["entry"]["action"] for i in account}
    assert {"user.created", "token.issued"} <= actions


# ------------------------------------------- case references reveal nothing


def test_a_reference_used_by_a_case_you_cannot_see_is_not_revealed(as_alice, as_bob, as_root, case_a):
    """Case references are unique among the cases a user can see, so creating one tells nothing
    about cases the creator may not see; a duplicate among one's own cases is still refused."""
    mine = as_bob.post("/api/v1/cases/", {"reference": "A-1", "title": "Bob's own A-1"}, format="json")
    other = as_bob.post("/api/v1/cases/", {"reference": "Z-404", "title": "Nobody has this"}, format="json")
    assert mine.status_code == other.status_code == 201
    assert set(mine.json()) == set(other.json())
    again = as_alice.post("/api/v1/cases/", {"reference": "A-1", "title": "twice"}, format="json")
    assert again.status_code == 409 and "you already have" in again.json()["detail"]
    # each investigator names their own case by reference
    assert as_alice.get("/api/v1/evidence/?case=A-1").status_code == 200
    assert as_bob.get("/api/v1/evidence/?case=A-1").status_code == 200
    # an administrator sees both: the reference alone is ambiguous, the id is not
    ambiguous = as_root.get("/api/v1/evidence/?case=A-1")
    assert ambiguous.status_code == 409 and "give the case id" in ambiguous.json()["detail"]
    assert as_root.get(f"/api/v1/evidence/?case={case_a.id}").status_code == 200
    assert (
        as_root.post("/api/v1/cases/", {"reference": "Z-404", "title": "x"}, format="json").status_code == 409
    )
