"""Live progress of analyses (issue 13, part 5): the status JSON the pages poll, and the pages' hooks."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from custody.models import LogEntry
from forensics import services

from .conftest import api_client_for, upload


@pytest.fixture
def item(as_alice, case_a):
    return upload(as_alice, case_a, b"a few bytes to analyse\n", name="note.txt").json()["id"]


@pytest.fixture
def three(alice, item):
    """Three analyses of the item: one will succeed, one fail, one stay queued."""
    from custody.models import Evidence

    evidence = Evidence.objects.get(pk=item)
    ok = services.request_analysis(actor=alice, evidence=evidence, analyzer="test.digest")
    bad = services.request_analysis(
        actor=alice, evidence=evidence, analyzer="test.digest", parameters={"fail": True}
    )
    waiting = services.request_analysis(actor=alice, evidence=evidence, analyzer="file.type")
    return ok, bad, waiting


def test_evidence_status_lists_each_analysis_and_where_it_stands(client, alice, item, three):
    ok, bad, waiting = three
    client.force_login(alice)
    body = client.get(f"/evidence/{item}/status.json").json()
    assert body["pending"] == 3 and body["counts"]["queued"] == 3
    assert [a["id"] for a in body["analyses"]] == [str(ok.pk), str(bad.pk), str(waiting.pk)]
    assert all(a["status"] == "queued" and a["elapsed_s"] is None for a in body["analyses"])

    assert services.run_analysis(ok.pk, worker="inline") == "succeeded"
    assert services.run_analysis(bad.pk, worker="inline") == "failed"
    entries = LogEntry.objects.count()
    response = client.get(f"/evidence/{item}/status.json")
    assert LogEntry.objects.count() == entries  # polling writes nothing to the log
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["pending"] == 1 and body["counts"] == {"queued": 1, "running": 0, "succeeded": 1, "failed": 1}
    rows = {a["id"]: a for a in body["analyses"]}
    assert rows[str(ok.pk)]["status"] == "succeeded" and rows[str(ok.pk)]["elapsed_s"] >= 0
    assert rows[str(ok.pk)]["error"] is None and rows[str(ok.pk)]["url"] == f"/analyses/{ok.pk}/"
    assert rows[str(bad.pk)]["error"] == "the input was refused on purpose"
    assert rows[str(waiting.pk)] | {"requested_at": None} == {
        "id": str(waiting.pk),
        "evidence": item,
        "analyzer": "file.type",
        "version": waiting.analyzer_version,
        "status": "queued",
        "attempts": 0,
        "url": f"/analyses/{waiting.pk}/",
        "requested_at": None,
        "started_at": None,
        "finished_at": None,
        "elapsed_s": None,
        "error": None,
    }

    case = client.get(f"/cases/{ok.evidence.case_id}/status.json").json()
    assert case["pending"] == 1 and {a["id"] for a in case["analyses"]} == set(rows)
    single = client.get(f"/analyses/{bad.pk}/status.json").json()
    assert single["pending"] == 0 and single["analyses"][0]["error"] == "the input was refused on purpose"


def _page(response) -> str:
    """The page without its per-render CSRF token (the header's log-out form)."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_status_is_for_the_case_members_only(client, as_alice, carol, dave, item, three):
    ok = three[0]
    urls = [
        f"/evidence/{item}/status.json",
        f"/cases/{ok.evidence.case_id}/status.json",
        f"/analyses/{ok.pk}/status.json",
    ]
    for url in urls:
        anonymous = client.get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    client.force_login(carol)  # an auditor of the case reads it
    assert all(client.get(url).status_code == 200 for url in urls)
    client.force_login(dave)  # an outsider: a real id answers as a random one
    for url, random in zip(
        urls,
        [
            f"/evidence/{uuid.uuid4()}/status.json",
            f"/cases/{uuid.uuid4()}/status.json",
            f"/analyses/{uuid.uuid4()}/status.json",
        ],
        strict=True,
    ):
        real, other = client.get(url), client.get(random)
        assert real.status_code == other.status_code == 404 and _page(real) == _page(other)


def test_pages_hand_the_status_url_to_the_script(client, alice, item, three):
    ok, bad, waiting = three
    client.force_login(alice)
    evidence_page = client.get(f"/evidence/{item}/").content.decode()
    assert f'data-status-url="/evidence/{item}/status.json"' in evidence_page
    assert f'<tr data-analysis="{waiting.pk}">' in evidence_page
    assert re.search(r'<script src="/static/custody/progress\.js[^"]*" defer></script>', evidence_page)
    case_page = client.get(f"/cases/{ok.evidence.case_id}/").content.decode()
    assert f'data-status-url="/cases/{ok.evidence.case_id}/status.json"' in case_page
    assert case_page.count('data-status="queued"') == 3
    analysis_page = client.get(f"/analyses/{waiting.pk}/").content.decode()
    assert 'data-reload-when-done="1"' in analysis_page
    # Without JavaScript the page still refreshes itself while the analysis is pending.
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in analysis_page
    services.run_analysis(bad.pk, worker="inline")
    done = client.get(f"/analyses/{bad.pk}/").content.decode()
    assert "http-equiv" not in done and "the input was refused on purpose" in done
    assert "failed: the input was refused on purpose" in client.get(f"/evidence/{item}/").content.decode()


def test_home_page_running_analyses_update_from_the_users_own_cases_only(
    client, alice, bob, case_b, item, three
):
    ok, bad, waiting = three
    from custody.models import Evidence

    theirs = upload(api_client_for(bob), case_b, b"bob's item\n", name="other.txt").json()["id"]
    hidden = services.request_analysis(
        actor=bob, evidence=Evidence.objects.get(pk=theirs), analyzer="file.type"
    )
    client.force_login(alice)
    home = client.get("/").content.decode()
    assert 'data-status-url="/status.json"' in home
    assert f'<tr data-analysis="{waiting.pk}">' in home and home.count('data-status="queued"') == 3
    assert re.search(r'<script src="/static/custody/progress\.js[^"]*" defer></script>', home)
    services.run_analysis(ok.pk, worker="inline")
    body = client.get("/status.json").json()
    assert {a["id"] for a in body["analyses"]} == {str(ok.pk), str(bad.pk), str(waiting.pk)}
    assert body["pending"] == 2 and str(hidden.pk) not in json.dumps(body)
    client.force_login(bob)
    assert [a["id"] for a in client.get("/status.json").json()["analyses"]] == [str(hidden.pk)]
    client.logout()
    assert client.get("/status.json").status_code == 302
