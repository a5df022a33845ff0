"""OpenAPI schema, its documentation page, and the admin."""

import yaml

from custody.models import LogEntry

from .conftest import force_login_verified


def test_openapi_schema_lists_the_contract(client, custody_db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    for path in [
        "/api/v1/auth/token/",
        "/api/v1/cases/",
        "/api/v1/cases/{case_id}/",
        "/api/v1/evidence/",
        "/api/v1/evidence/{evidence_id}/",
        "/api/v1/evidence/{evidence_id}/content/",
        "/api/v1/evidence/{evidence_id}/receipt/",
        "/api/v1/keys/",
    ]:
        assert path in schema["paths"], path
    post = schema["paths"]["/api/v1/evidence/"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in post


def test_docs_page_is_self_hosted(client, custody_db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"cdn.jsdelivr" not in response.content


def test_admin_works_for_administrators_and_is_read_only_for_the_log(client, root, evidence_a):
    force_login_verified(client, root)
    assert client.get("/admin/").status_code == 200
    for path in [
        "/admin/custody/evidence/",
        "/admin/custody/logentry/",
        "/admin/custody/user/",
        "/admin/custody/case/",
        "/admin/custody/apitoken/",
        "/admin/custody/signingkey/",
        "/admin/custody/resumableupload/",
    ]:
        assert client.get(path).status_code == 200, path
    entry = LogEntry.objects.first()
    page = client.get(f"/admin/custody/logentry/{entry.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.post(f"/admin/custody/logentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403


def test_admin_refuses_non_admins(client, alice):
    client.force_login(alice)
    assert client.get("/admin/").status_code == 302
