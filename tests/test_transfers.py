"""Custody handovers in two logged steps, with the bytes re-hashed at each; the custody report."""

import json
import os
import stat

import pytest

from custody import services
from custody.models import Evidence, LogEntry, Transfer
from custody.permissions import Forbidden
from custody.storage import blob_store

from .conftest import api_client_for


@pytest.fixture
def erin(case_a):
    """A second investigator in case A, to receive custody."""
    from custody.models import Role

    return services.create_user(
        actor=None, username="erin", password="pw erin 12345", role=Role.INVESTIGATOR, cases=[case_a]
    )


def release(client, evidence, to="erin", **extra):
    body = {"to_user": to, "purpose": "audio analysis", "location": "lab 2, room 14", **extra}
    return client.post(f"/api/v1/evidence/{evidence.pk}/transfers/", body, format="json")


def last_entry() -> dict:
    return json.loads(bytes(LogEntry.objects.order_by("-index").first().leaf))


def test_release_then_accept_moves_custody_with_two_log_entries(as_alice, erin, evidence_a):
    response = release(as_alice, evidence_a)
    assert response.status_code == 201, response.content
    transfer = response.json()
    assert transfer["status"] == "pending" and transfer["to_user"] == "erin"
    released = last_entry()
    assert released["action"] == "custody.released"
    assert (
        released["details"]["from"]["username"] == "alice" and released["details"]["to"]["username"] == "erin"
    )
    assert (
        released["details"]["purpose"] == "audio analysis"
        and released["details"]["location"] == "lab 2, room 14"
    )
    assert released["details"]["fixity"] == {
        "ok": True,
        "sha256": evidence_a.sha256,
        "size": evidence_a.blob.size,
    }

    shown = as_alice.get(f"/api/v1/evidence/{evidence_a.pk}/").json()
    assert shown["custodian"] == "alice" and shown["pending_transfer"]["id"] == transfer["id"]

    as_erin = api_client_for(erin, password="pw erin 12345")
    assert as_erin.get("/api/v1/transfers/", {"status": "pending"}).json()[0]["id"] == transfer["id"]
    response = as_erin.post(
        f"/api/v1/transfers/{transfer['id']}/accept/", {"note": "sealed bag intact"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    accepted = last_entry()
    assert accepted["action"] == "custody.accepted" and accepted["reason"] == "sealed bag intact"
    assert accepted["details"]["release_entry"] == released["index"] and accepted["details"]["fixity"]["ok"]
    shown = as_alice.get(f"/api/v1/evidence/{evidence_a.pk}/").json()
    assert shown["custodian"] == "erin" and shown["pending_transfer"] is None


def test_receiver_can_refuse_and_custody_stays(as_alice, erin, evidence_a):
    transfer = release(as_alice, evidence_a).json()
    as_erin = api_client_for(erin, password="pw erin 12345")
    response = as_erin.post(
        f"/api/v1/transfers/{transfer['id']}/refuse/", {"note": "seal broken"}, format="json"
    )
    assert response.json()["status"] == "refused"
    assert last_entry()["action"] == "custody.refused"
    evidence_a.refresh_from_db()
    assert evidence_a.custodian.username == "alice"
    assert as_erin.post(f"/api/v1/transfers/{transfer['id']}/accept/").status_code == 409


def test_only_custodian_releases_and_only_receiver_decides(as_alice, as_carol, erin, evidence_a, case_a):
    as_erin = api_client_for(erin, password="pw erin 12345")
    assert release(as_erin, evidence_a, to="alice").status_code == 403  # erin is not the custodian
    assert release(as_carol, evidence_a).status_code == 403  # auditors are read-only
    transfer = release(as_alice, evidence_a).json()
    assert release(as_alice, evidence_a).status_code == 409  # one pending handover at a time
    assert as_alice.post(f"/api/v1/transfers/{transfer['id']}/accept/").status_code == 403


@pytest.mark.parametrize(
    "body, message",
    [
        ({"to_user": "carol"}, "cannot take custody"),  # an auditor
        ({"to_user": "dave"}, "cannot take custody"),  # not in the case
        ({"to_user": "nobody"}, "cannot take custody"),  # no such user: the same words
        ({"to_user": "alice"}, "already has custody"),
        ({"purpose": "  "}, "purpose"),
    ],
)
def test_bad_handovers_are_refused_clearly(as_alice, carol, dave, evidence_a, body, message):
    response = release(as_alice, evidence_a, **body)
    assert response.status_code == 400 and message in response.json()["detail"]
    assert not Transfer.objects.exists()


def test_handover_is_refused_when_the_bytes_changed(as_alice, erin, evidence_a):
    path = blob_store().path(evidence_a.sha256)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.write(b"X")
    response = release(as_alice, evidence_a)
    assert response.status_code == 409 and "no longer match" in response.json()["detail"]
    entry = last_entry()
    assert entry["action"] == "fixity.checked" and entry["details"]["ok"] is False
    assert not Transfer.objects.exists()


def test_outsider_cannot_see_or_act_on_transfers(as_alice, as_dave, erin, evidence_a):
    transfer = release(as_alice, evidence_a).json()
    assert as_dave.get(f"/api/v1/evidence/{evidence_a.pk}/transfers/").status_code == 404
    assert as_dave.post(f"/api/v1/transfers/{transfer['id']}/accept/").status_code == 404
    assert as_dave.get("/api/v1/transfers/").json() == []


def test_refused_access_is_logged_but_still_a_404(as_dave, dave, evidence_a):
    assert as_dave.get(f"/api/v1/evidence/{evidence_a.pk}/").status_code == 404
    entry = last_entry()
    assert entry["action"] == "access.refused" and entry["actor"]["username"] == "dave"
    assert entry["evidence"]["id"] == str(evidence_a.pk)
    assert entry["client"] == "127.0.0.1"  # who tried, from where
    before = LogEntry.objects.count()
    as_dave.get("/api/v1/evidence/00000000-0000-0000-0000-000000000000/")
    # Misses are logged too, the same way: the log's size must not tell which ids exist.
    assert LogEntry.objects.count() == before + 1
    miss = last_entry()
    assert miss["action"] == "access.refused" and miss["evidence"] is None and miss["case"] is None
    assert miss["details"] == {"requested": "evidence", "id": "00000000-0000-0000-0000-000000000000"}


def test_web_handover_and_printable_report(client, alice, erin, evidence_a):
    client.force_login(alice)
    page = client.get(f"/evidence/{evidence_a.pk}/")
    assert b'id="transfer-form"' in page.content and b"Current custodian: <strong>alice" in page.content
    response = client.post(
        f"/evidence/{evidence_a.pk}/transfer/",
        {"to_user": "erin", "purpose": "second opinion", "location": "HQ"},
    )
    assert response.status_code == 302
    client.force_login(erin)
    page = client.get(f"/evidence/{evidence_a.pk}/")
    assert b'id="pending-transfer"' in page.content and b'id="decision-form"' in page.content
    transfer = Transfer.objects.get()
    client.post(f"/transfers/{transfer.pk}/accept/", {"note": "received in person"})
    report = client.get(f"/evidence/{evidence_a.pk}/report/")
    assert report.status_code == 200
    html = report.content.decode()
    for action in ["evidence.received", "custody.released", "custody.accepted"]:
        assert action in html
    assert "received in person" in html and "second opinion" in html
    assert "\u2014 custody.localhost/log " in html
    # Its print layout is in a stylesheet of its own (the CSP allows no inline style).
    assert "custody/report.css" in html
    assert "@media print" in client.get("/static/custody/report.css").getvalue().decode()
    assert evidence_a.sha256 in html


def test_release_checks_the_custodian_again_under_the_row_lock(alice, erin, evidence_a):
    """A release decided on a stale view (custody moved meanwhile) must not hand over someone else's item."""
    stale = Evidence.objects.get(pk=evidence_a.pk)  # alice holds it in this view
    transfer = services.release_custody(
        actor=alice, evidence=evidence_a, to_user=erin, purpose="lab", location="2"
    )
    services.decide_transfer(actor=erin, transfer=transfer, accept=True)
    assert Evidence.objects.get(pk=evidence_a.pk).custodian == erin
    with pytest.raises(Forbidden, match=r"only the current custodian \(erin\)"):
        services.release_custody(actor=alice, evidence=stale, to_user=erin, purpose="again", location="2")
    assert Transfer.objects.count() == 1


def test_accept_refuses_when_custody_moved_since_the_release(alice, erin, root, evidence_a):
    """Accepting re-reads the item under its row lock: if its custodian is not the one who released it, no move."""
    first = services.release_custody(
        actor=alice, evidence=evidence_a, to_user=erin, purpose="lab", location="2"
    )
    # The handover and the item disagree (a table changed behind the log's back).
    Transfer.objects.filter(pk=first.pk).update(from_user=root)
    # The signed release says alice released it: the row's sender is not believed.
    with pytest.raises(
        services.ServiceError, match="no signed release entry of this item, sender and receiver"
    ):
        services.decide_transfer(actor=erin, transfer=Transfer.objects.get(pk=first.pk), accept=True)
    assert Evidence.objects.get(pk=evidence_a.pk).custodian == alice
    # Put back, the release is what the log says; the item's custodian moved meanwhile (in the table
    # alone): still no move.
    Transfer.objects.filter(pk=first.pk).update(from_user=alice)
    Evidence.objects.filter(pk=evidence_a.pk).update(custodian=root)
    with pytest.raises(services.ServiceError, match="not the one its signed log entries give it"):
        services.decide_transfer(actor=erin, transfer=Transfer.objects.get(pk=first.pk), accept=True)
