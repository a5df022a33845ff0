"""Security: no logged side effects from a GET that carries only a session cookie,
and least disclosure (auditor writes, transfers, role changes)."""

import pytest
from django.test import Client

from custody import services
from custody.models import Evidence, LogEntry, ResumableUpload, Role

from .test_tus import create, patch, path_of

# --- 1. nothing logged by a GET that carries only a session cookie ---------------------


def _csrf_client(user) -> Client:
    """A browser-like client: session cookie, CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # the case list sets the CSRF cookie, as any page does
    return client


def test_forged_download_link_with_a_session_writes_nothing(client, alice, evidence_a):
    # What a link on another site makes a logged-in investigator's browser send.
    client.force_login(alice)
    before = LogEntry.objects.count()
    response = client.get(
        f"/api/v1/evidence/{evidence_a.pk}/content/", {"reason": "routine check (attacker's words)"}
    )
    assert response.status_code == 403
    assert "token" in response.json()["detail"] and "POST" in response.json()["detail"]
    assert LogEntry.objects.count() == before
    assert not LogEntry.objects.filter(action="evidence.downloaded").exists()


@pytest.mark.parametrize("suffix", ["", "export/"])
def test_other_logging_api_gets_refuse_a_session_alone(client, alice, evidence_a, suffix):
    client.force_login(alice)
    before = LogEntry.objects.count()
    response = client.get(f"/api/v1/evidence/{evidence_a.pk}/{suffix}")
    assert response.status_code == 403
    assert "detail" in response.json()
    assert LogEntry.objects.count() == before


def test_session_get_of_another_cases_item_logs_no_refusal(client, dave, evidence_a):
    # Not even an access.refused entry: the attacker could frame the victim with it.
    client.force_login(dave)
    before = LogEntry.objects.count()
    assert client.get(f"/api/v1/evidence/{evidence_a.pk}/content/?reason=x").status_code == 403
    assert LogEntry.objects.count() == before


def test_token_get_still_downloads(as_alice, alice, evidence_a):
    response = as_alice.get(f"/api/v1/evidence/{evidence_a.pk}/content/", {"reason": "lab copy"})
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"RIFF....WAVEfmt the meeting recording"
    entry = LogEntry.objects.order_by("-index").first()
    assert (entry.action, entry.actor_id, entry.decoded["reason"]) == (
        "evidence.downloaded",
        alice.pk,
        "lab copy",
    )


def test_session_post_with_csrf_downloads_and_without_csrf_is_refused(alice, evidence_a):
    client = _csrf_client(alice)
    url = f"/api/v1/evidence/{evidence_a.pk}/content/"
    before = LogEntry.objects.count()
    assert client.post(url, {"reason": "forged"}).status_code == 403  # no CSRF token
    assert LogEntry.objects.count() == before
    response = client.post(url, {"reason": "court copy"}, HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"RIFF....WAVEfmt the meeting recording"
    entry = LogEntry.objects.order_by("-index").first()
    assert (entry.action, entry.decoded["reason"]) == ("evidence.downloaded", "court copy")


def test_session_post_with_csrf_views_metadata_and_exports(alice, evidence_a):
    client = _csrf_client(alice)
    token = client.cookies["csrftoken"].value
    response = client.post(f"/api/v1/evidence/{evidence_a.pk}/", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200 and response.json()["id"] == str(evidence_a.pk)
    assert LogEntry.objects.order_by("-index").first().action == "evidence.viewed"
    response = client.post(f"/api/v1/evidence/{evidence_a.pk}/export/", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert LogEntry.objects.order_by("-index").first().action == "evidence.exported"


def test_auditor_may_download_by_post(carol, evidence_a):
    client = _csrf_client(carol)
    response = client.post(
        f"/api/v1/evidence/{evidence_a.pk}/content/",
        {"reason": "audit"},
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    assert response.status_code == 200


def test_web_export_is_a_post_form_with_csrf(alice, evidence_a):
    client = _csrf_client(alice)
    page = client.get(f"/evidence/{evidence_a.pk}/").content.decode()
    form = page[page.index('id="export-form"') - 200 : page.index('id="export-form"') + 400]
    assert 'method="post"' in form and "csrfmiddlewaretoken" in form
    before = LogEntry.objects.count()
    assert client.get(f"/evidence/{evidence_a.pk}/export/?include_file=1").status_code == 405
    assert client.post(f"/evidence/{evidence_a.pk}/export/", {"include_file": "1"}).status_code == 403
    assert LogEntry.objects.count() == before
    response = client.post(
        f"/evidence/{evidence_a.pk}/export/",
        {"include_file": "1", "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert LogEntry.objects.order_by("-index").first().action == "evidence.exported"


def test_web_download_form_posts_with_csrf(alice, evidence_a):
    client = _csrf_client(alice)
    page = client.get(f"/evidence/{evidence_a.pk}/").content.decode()
    action = f'action="/evidence/{evidence_a.pk}/download/"'
    form = page[page.index(action) - 40 : page.index(action) + 300]
    assert 'method="post"' in form and "csrfmiddlewaretoken" in form
    assert client.get(f"/evidence/{evidence_a.pk}/download/?reason=x").status_code == 405
    response = client.post(
        f"/evidence/{evidence_a.pk}/download/",
        {"reason": "court copy", "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 200
    assert LogEntry.objects.order_by("-index").first().decoded["reason"] == "court copy"


# --- 4. least disclosure -----------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("post", "/api/v1/cases/", {"reference": ""}),
        ("post", "/api/v1/cases/", "not json"),
        ("post", "/api/v1/evidence/", {}),
        ("post", "/api/v1/evidence/{e}/transfers/", {"to_user": ""}),
        ("post", "/api/v1/evidence/{e}/analyses/", {}),
        ("post", "/api/v1/cases/{c}/analyses/", {}),
        ("post", "/api/v1/analyses/00000000-0000-0000-0000-000000000000/publish/", {}),
        ("post", "/api/v1/transfers/not-a-uuid/accept/", {}),
        ("post", "/api/v1/uploads/", {}),
        ("put", "/api/v1/cases/", {}),
        ("patch", "/api/v1/cases/{c}/", {}),
        ("delete", "/api/v1/uploads/00000000-0000-0000-0000-000000000000/", {}),
    ],
)
def test_auditor_writes_are_403_before_validation(as_carol, case_a, evidence_a, method, path, body):
    path = path.format(c=case_a.pk, e=evidence_a.pk)
    before = LogEntry.objects.count()
    kwargs = {"format": "json"} if isinstance(body, dict) else {"content_type": "application/json"}
    response = getattr(as_carol, method)(path, body, **kwargs)
    assert response.status_code == 403, (path, response.content)
    assert response.json()["detail"] == "auditors have read-only access"
    assert LogEntry.objects.count() == before


def test_auditor_web_writes_are_403(client, carol, case_a, evidence_a):
    client.force_login(carol)
    for path, body in [
        ("/cases/new/", {}),
        (f"/cases/{case_a.pk}/members/", {"username": ""}),
        (f"/evidence/{evidence_a.pk}/transfer/", {}),
        (f"/evidence/{evidence_a.pk}/analyses/", {}),
    ]:
        assert client.post(path, body).status_code == 403, path


def test_transfer_to_unknown_user_says_what_a_refused_user_gets(as_alice, evidence_a, dave, carol):
    url = f"/api/v1/evidence/{evidence_a.pk}/transfers/"
    body = {"purpose": "lab", "location": "room 4"}
    unknown = as_alice.post(url, {**body, "to_user": "nosuchuser"}, format="json")
    outsider = as_alice.post(url, {**body, "to_user": "dave"}, format="json")
    auditor = as_alice.post(url, {**body, "to_user": "carol"}, format="json")
    assert unknown.status_code == outsider.status_code == auditor.status_code == 400
    assert "no active user" not in unknown.json()["detail"]
    assert unknown.json()["detail"].replace("nosuchuser", "X") == outsider.json()["detail"].replace(
        "dave", "X"
    )
    assert auditor.json()["detail"].replace("carol", "X") == outsider.json()["detail"].replace("dave", "X")


def test_transfer_to_unknown_user_by_non_custodian_is_refused_as_for_a_real_one(
    alice, bob, case_a, evidence_a, root
):
    from .conftest import api_client_for

    services.add_member(actor=root, case=case_a, user=bob)
    as_bob = api_client_for(bob)
    url = f"/api/v1/evidence/{evidence_a.pk}/transfers/"
    body = {"purpose": "lab", "location": "room 4"}
    unknown = as_bob.post(url, {**body, "to_user": "nosuchuser"}, format="json")
    real = as_bob.post(url, {**body, "to_user": "root"}, format="json")
    assert unknown.status_code == real.status_code == 403
    assert unknown.json() == real.json()


def test_role_changed_to_auditor_cannot_continue_an_upload(as_alice, alice, case_a):
    url = path_of(create(as_alice, case_a, 15)["Location"])
    assert patch(as_alice, url, b"12345", 0).status_code == 204
    services.set_role(actor=None, user=alice, role=Role.AUDITOR)
    response = patch(as_alice, url, b"67890", 5)
    assert response.status_code == 403
    assert ResumableUpload.objects.get().offset == 5
    assert not Evidence.objects.exists()


def test_investigator_removed_from_case_cannot_continue_an_upload(as_alice, alice, case_a):
    url = path_of(create(as_alice, case_a, 15)["Location"])
    assert patch(as_alice, url, b"12345", 0).status_code == 204
    services.remove_member(actor=None, case=case_a, user=alice)
    response = patch(as_alice, url, b"67890", 5)
    assert response.status_code in (403, 404)
    assert ResumableUpload.objects.get().offset == 5


# --- web pages: a link from another site writes nothing in the user's name --------------


def test_web_evidence_page_from_another_site_asks_first_and_logs_nothing(client, alice, evidence_a):
    client.force_login(alice)
    before = LogEntry.objects.count()
    response = client.get(f"/evidence/{evidence_a.pk}/", HTTP_SEC_FETCH_SITE="cross-site")
    assert response.status_code == 200
    assert b"confirm-open-link" in response.content and b"meeting.wav" not in response.content
    assert LogEntry.objects.count() == before
    # The same page for an id that does not exist: it tells nothing.
    other = client.get("/evidence/00000000-0000-0000-0000-000000000000/", HTTP_SEC_FETCH_SITE="cross-site")
    assert other.status_code == 200 and b"confirm-open-link" in other.content
    # Following the page's own link (same origin) opens and logs the view.
    response = client.get(f"/evidence/{evidence_a.pk}/", HTTP_SEC_FETCH_SITE="same-origin")
    assert response.status_code == 200 and b"meeting.wav" in response.content
    assert LogEntry.objects.order_by("-index").first().action == "evidence.viewed"


def test_refusal_from_another_site_is_not_logged_in_the_users_name(client, dave, evidence_a):
    client.force_login(dave)
    before = LogEntry.objects.count()
    for path in (f"/evidence/{evidence_a.pk}/receipt/", f"/api/v1/evidence/{evidence_a.pk}/receipt/"):
        assert client.get(path, HTTP_SEC_FETCH_SITE="cross-site").status_code == 404
    assert LogEntry.objects.count() == before
    # Asked from the server's own pages, the knock is logged as before.
    assert (
        client.get(f"/evidence/{evidence_a.pk}/receipt/", HTTP_SEC_FETCH_SITE="same-origin").status_code
        == 404
    )
    assert LogEntry.objects.order_by("-index").first().action == "access.refused"
