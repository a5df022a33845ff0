"""A busy custody history with every kind of log entry, made through the services and the API."""

from __future__ import annotations

import datetime as dt

from django.test import RequestFactory
from django.utils import timezone

from custody import log, services
from custody.models import Evidence, Role, User
from forensics import services as analyses
from forensics.models import Analysis

from .conftest import PASSWORD, api_client_for, upload


def busy_history(alice, bob, case_a, case_b) -> dict:
    """Return the objects made, by name. Every action type the services know appears at least once."""
    as_alice = api_client_for(alice)
    as_bob = api_client_for(bob)
    root = services.create_user(actor=None, username="root", password=PASSWORD, role=Role.ADMIN)
    erin = services.create_user(
        actor=root,
        username="erin",
        password=PASSWORD,
        role=Role.AUDITOR,
        email="erin@example.org",
        cases=[case_a],
    )
    services.set_role(actor=root, user=erin, role=Role.INVESTIGATOR)
    services.set_active(actor=root, user=erin, active=False)
    services.set_active(actor=root, user=erin, active=True)
    services.add_member(actor=alice, case=case_a, user=bob)
    services.remove_member(actor=root, case=case_a, user=bob)
    services.add_member(actor=alice, case=case_a, user=bob)

    token_row, _ = services.issue_token(user=erin, label="acquisition laptop")
    services.revoke_token(actor=erin, token=token_row)

    first = upload(as_alice, case_a, b"the leaked recording\n" * 50, name="leak.ogg", source="witness B")
    second = upload(
        as_alice, case_a, b"the leaked recording\n" * 50, name="copy.ogg", description="same bytes"
    )
    other = upload(as_bob, case_b, b"%PDF-1.4 other matter", name="memo.pdf")
    assert first.status_code == second.status_code == other.status_code == 201
    item = Evidence.objects.get(pk=first.json()["id"])
    copy = Evidence.objects.get(pk=second.json()["id"])

    as_alice.get(f"/api/v1/evidence/{item.pk}/")
    as_alice.get(f"/api/v1/evidence/{item.pk}/content/?reason=expert+review")
    as_bob.get(f"/api/v1/evidence/{other.json()['id']}/")
    assert as_alice.get(f"/api/v1/evidence/{other.json()['id']}/").status_code == 404  # access.refused
    services.check_fixity(evidence=item, actor=alice)

    transfer = services.release_custody(
        actor=alice, evidence=item, to_user=bob, purpose="lab examination", location="lab 2"
    )
    services.decide_transfer(actor=bob, transfer=transfer, accept=True, note="sealed bag intact")
    refused = services.release_custody(
        actor=alice, evidence=copy, to_user=erin, purpose="review", location="office"
    )
    services.decide_transfer(actor=erin, transfer=refused, accept=False, note="not mine")

    done = analyses.request_analysis(
        actor=bob, evidence=item, analyzer="test.digest", parameters={"delay": 0.01}
    )
    assert analyses.run_analysis(done.pk, "worker-1") == "succeeded"
    failed = analyses.request_analysis(
        actor=alice, evidence=copy, analyzer="test.digest", parameters={"fail": True}
    )
    assert analyses.run_analysis(failed.pk, "worker-1") == "failed"
    stale = analyses.request_analysis(actor=alice, evidence=copy, analyzer="test.digest")
    analyses.claim(stale.pk, "worker-that-dies")
    Analysis.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - dt.timedelta(hours=1))
    assert analyses.sweep_stale() == [str(stale.pk)]
    assert analyses.run_analysis(stale.pk, "worker-2") == "succeeded"
    analyses.publish_result(actor=bob, analysis=Analysis.objects.get(pk=done.pk))

    services.rotate_signing_key(actor=root, purpose="intake")
    third = upload(as_alice, case_a, b"after the rotation", name="late.wav")
    assert third.status_code == 201
    log.latest_checkpoint()
    return {
        "root": root,
        "erin": erin,
        "item": item,
        "copy": copy,
        "other": Evidence.objects.get(pk=other.json()["id"]),
        "transfer": transfer,
        "done": Analysis.objects.get(pk=done.pk),
        "failed": Analysis.objects.get(pk=failed.pk),
        "stale": Analysis.objects.get(pk=stale.pk),
    }


def request_for(user):
    request = RequestFactory().get("/")
    request.user = user
    request.META["REMOTE_ADDR"] = "192.0.2.7"
    return request


__all__ = ["busy_history", "request_for", "User"]
