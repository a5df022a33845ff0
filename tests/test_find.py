"""Find and act: case filter, search across visible cases, and the home page's lists (issue 13, part 6)."""

import re

import pytest

from custody import services
from custody.models import LogEntry, Role
from forensics import services as analyses

from .conftest import upload


@pytest.fixture
def erin(case_a):
    """A second investigator in case A, to receive custody."""
    return services.create_user(
        actor=None, username="erin", password="pw erin 12345", role=Role.INVESTIGATOR, cases=[case_a]
    )


@pytest.fixture
def photo_b(as_bob, case_b):
    response = upload(as_bob, case_b, b"\xff\xd8\xff bob's photo", name="harbour.jpg")
    assert response.status_code == 201, response.content
    return response.json()


def results(client, q):
    response = client.get("/search/", {"q": q})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>" not in html and "<style" not in html and "style=" not in html
    return html.split('id="results"', 1)[1] if 'id="results"' in html else ""


def test_search_by_name_sha_prefix_and_media_type(client, alice, evidence_a, photo_b):
    client.force_login(alice)
    link = f"/evidence/{evidence_a.pk}/"
    before = LogEntry.objects.count()
    for q in [
        "MEETING",
        "eting.w",
        evidence_a.sha256[:6],
        evidence_a.sha256.upper(),
        f"sha256:{evidence_a.sha256[:10]}",
    ]:
        found = results(client, q)
        assert link in found and "meeting.wav" in found and evidence_a.sha256[:12] in found, q
        assert "A-1" in found
    media = evidence_a.media_type
    assert link in results(client, media.split("/")[0] + "/")
    assert link not in results(client, evidence_a.sha256[:5])  # too short for a hash prefix
    assert link not in results(client, "video/")
    assert link not in results(client, "")
    # Viewing the results is a list, not a view of the items: the log does not grow.
    assert LogEntry.objects.count() == before


def test_outsider_cannot_find_other_cases_items(client, bob, evidence_a, photo_b):
    client.force_login(bob)
    before = LogEntry.objects.count()

    def page(q):
        html = client.get("/search/", {"q": q}).content.decode()
        # The logout form's CSRF token is masked afresh for every response.
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html).replace(q, "QUERY")

    for q, random in [
        (evidence_a.sha256[:6], "0f1e2d"),
        (evidence_a.sha256, "ab" * 32),
        ("meeting", "zzqqxx"),
        (evidence_a.media_type, "model/zzqqxx"),
    ]:
        answer = page(q)
        assert str(evidence_a.pk) not in answer and "meeting.wav" not in answer and "A-1" not in answer, q
        # The same answer as for a query that matches nothing anywhere.
        assert answer == page(random), q
    # Bob's own item is found.
    assert photo_b["id"] in results(client, "harbour")
    assert LogEntry.objects.count() == before


def test_auditor_finds_the_items_of_their_case(client, carol, evidence_a):
    client.force_login(carol)
    assert f"/evidence/{evidence_a.pk}/" in results(client, "meeting")


def test_case_list_filter(client, alice, bob, case_a, case_b, dave):
    services.add_member(actor=bob, case=case_b, user=alice)
    client.force_login(alice)

    def cases(q=None):
        html = client.get("/", {"q": q} if q is not None else {}).content.decode()
        return html.split('id="cases"', 1)[1]

    assert "A-1" in cases() and "B-1" in cases()
    assert "A-1" in cases("a-1") and "B-1" not in cases("a-1")
    assert "B-1" in cases("other MATTER") and "A-1" not in cases("other matter")
    assert "No case of yours matches" in cases("nothing like it")
    # Escaped, as everything else.
    assert "<b>x" not in cases("<b>x") and "&lt;b&gt;x" in cases("<b>x")
    client.force_login(dave)
    assert f"/cases/{case_a.pk}/" not in cases("A-1") and f"/cases/{case_b.pk}/" not in cases("")


def test_home_page_lists_handovers_recent_items_and_running_analyses(
    client, alice, bob, carol, erin, evidence_a
):
    transfer = services.release_custody(
        actor=alice, evidence=evidence_a, to_user=erin, purpose="second opinion", location="HQ"
    )
    # Queued (the test's transaction never commits, so no worker picks it up).
    analysis = analyses.request_analysis(actor=alice, evidence=evidence_a, analyzer="test.digest")
    before = LogEntry.objects.count()

    def section(user, name):
        client.force_login(user)
        response = client.get("/")
        assert response.status_code == 200
        html = response.content.decode()
        assert "<script>" not in html and "style=" not in html
        return html.split(f'id="{name}"', 1)[1].split("</section>", 1)[0]

    link = f"/evidence/{evidence_a.pk}/"
    waiting = section(erin, "waiting-handovers")
    assert link in waiting and "second opinion" in waiting and "alice" in waiting
    assert link not in section(alice, "waiting-handovers")  # the sender waits on no one
    assert link not in section(carol, "waiting-handovers")
    assert link not in section(bob, "waiting-handovers")

    assert link in section(alice, "recent-items")
    assert link not in section(erin, "recent-items")  # she did not submit it

    running = f"/analyses/{analysis.pk}/"
    assert running in section(alice, "running-analyses") and "test.digest" in section(
        alice, "running-analyses"
    )
    assert running in section(carol, "running-analyses")  # the auditor sees their case's analyses
    assert running not in section(bob, "running-analyses")
    assert "No analysis is queued or running" in section(bob, "running-analyses")

    assert LogEntry.objects.count() == before
    assert transfer.status == "pending"
