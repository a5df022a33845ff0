"""Who sees what: outsiders get 404 for a case and everything in it, everywhere."""

import pytest

from custody.models import LogEntry

from .conftest import upload


@pytest.fixture
def paths(case_a, evidence_a):
    c, e = case_a.pk, evidence_a.pk
    return {
        "api": [
            f"/api/v1/cases/{c}/",
            f"/api/v1/evidence/{e}/",
            f"/api/v1/evidence/{e}/content/?reason=x",
            f"/api/v1/evidence/{e}/receipt/",
            f"/api/v1/evidence/?case={c}",
        ],
        "web": [f"/cases/{c}/", f"/evidence/{e}/", f"/evidence/{e}/receipt/"],
        "web_post": [f"/cases/{c}/", f"/evidence/{e}/download/", f"/cases/{c}/members/"],
    }


def test_outsider_gets_404_for_case_and_everything_in_it(as_dave, dave, paths, client):
    for path in paths["api"]:
        response = as_dave.get(path)
        assert response.status_code == 404, path
        assert "detail" in response.json()
    assert upload(as_dave, paths["api"][0].split("/")[4]).status_code == 404
    client.force_login(dave)
    for path in paths["web"]:
        assert client.get(path).status_code == 404, path
    for path in paths["web_post"]:
        assert client.post(path, {"reason": "x", "username": "dave"}).status_code == 404, path


def test_investigator_of_another_case_gets_404(as_bob, paths):
    for path in paths["api"]:
        assert as_bob.get(path).status_code == 404, path


def test_outsider_list_shows_nothing(as_dave, evidence_a):
    assert as_dave.get("/api/v1/cases/").json() == []
    assert as_dave.get("/api/v1/evidence/").json()["results"] == []


def test_nonexistent_and_malformed_ids_are_404_not_500(as_alice, case_a):
    for path in [
        "/api/v1/evidence/not-a-uuid/",
        "/api/v1/cases/00000000-0000-0000-0000-000000000000/",
        "/api/v1/evidence/%00/receipt/",
    ]:
        assert as_alice.get(path).status_code == 404, path


def test_member_and_admin_see_the_case(as_alice, as_root, as_carol, paths):
    for client in (as_alice, as_root, as_carol):
        for path in paths["api"]:
            assert client.get(path).status_code == 200, path


def test_anonymous_requests_are_401(client, paths):
    from rest_framework.test import APIClient

    for path in paths["api"]:
        assert APIClient().get(path).status_code == 401, path
    assert client.get(paths["web"][0]).status_code == 302  # to the login page


def test_auditor_is_read_only(as_carol, case_a, evidence_a):
    assert as_carol.post("/api/v1/cases/", {"reference": "X", "title": "t"}, format="json").status_code == 403
    assert upload(as_carol, case_a).status_code == 403


def test_viewing_metadata_is_logged(as_carol, carol, evidence_a):
    as_carol.get(f"/api/v1/evidence/{evidence_a.pk}/")
    entry = LogEntry.objects.order_by("-index").first()
    assert (entry.action, entry.actor_id, entry.evidence_id) == ("evidence.viewed", carol.pk, evidence_a.pk)


def test_member_can_add_member_and_outsider_then_sees_case(alice, dave, case_a, as_dave, client):
    client.force_login(alice)
    response = client.post(f"/cases/{case_a.pk}/members/", {"username": "dave"})
    assert response.status_code == 302
    assert as_dave.get(f"/api/v1/cases/{case_a.pk}/").status_code == 200
    assert LogEntry.objects.filter(action="case.member_added", case=case_a).count() == 2
