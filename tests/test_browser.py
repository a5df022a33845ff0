"""End-to-end tests of the web UI in a real browser.

Debian's Chromium, driven through Playwright's sync API, talks to the real web
process (gunicorn, the ``gunicorn_server`` fixture) on the test database. The
cast and cases are made through the services before the browser acts; what
the pages show is checked against independent computation (hashlib on the
bytes the test uploaded, a DSSE signature check with ``cryptography``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import zipfile
from pathlib import Path

import bagit
import pytest
from django.conf import settings

from custody.models import Evidence, LogEntry

from .conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


# --- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module: Debian's, never one Playwright downloads.

    Playwright's sync API keeps an asyncio loop marked running in this thread
    for as long as the browser lives, and Django then refuses ORM calls ("cannot
    call this from an async context"), although nothing here is async: the
    fixtures and checks run synchronously between browser actions. So ORM
    calls are allowed for exactly that lifetime, teardowns included.
    """
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium); "
            "the README's test command installs it"
        )
    from playwright.sync_api import sync_playwright

    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


# Each page reports what its Content-Security-Policy blocked: the event to the
# console (Chromium also logs its own "Refused to ..." line there).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


def is_csp_violation(text: str) -> bool:
    return "CSP violation" in text or "Content Security Policy" in text


@pytest.fixture
def new_page(browser):
    """A factory of pages, each in its own browser context (its own cookies).

    Every test using it fails if any page broke its Content-Security-Policy.
    """
    contexts = []
    violations = []

    def make(base_url: str):
        context = browser.new_context(
            base_url=base_url, accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: is_csp_violation(m.text) and violations.append(f"{page.url}: {m.text}"))
        page.on("pageerror", lambda e: is_csp_violation(str(e)) and violations.append(f"{page.url}: {e}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert violations == [], "Content-Security-Policy violations:\n" + "\n".join(violations)


# --- helpers -----------------------------------------------------------------


def log_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    assert "/login/" not in page.url, page.content()
    assert page.locator("header .who").inner_text().startswith(username)


def fact(page, label: str) -> str:
    """The <dd> after the <dt> named ``label`` in the evidence facts list."""
    dd = page.locator(
        f"xpath=//dl[@id='evidence-facts']/dt[normalize-space()='{label}']/following-sibling::dd[1]"
    )
    return dd.inner_text().strip()


def log_actions(page) -> list[tuple[str, str]]:
    """(actor, action) of each row of the custody log table."""
    rows = page.locator("#log tbody tr")
    result = []
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        result.append((cells.nth(2).inner_text().strip(), cells.nth(3).inner_text().strip()))
    return result


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def blob_files() -> list[Path]:
    root = Path(settings.CUSTODY_BLOB_DIR)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def verify_dsse(envelope: dict, public_key_pem: str) -> bytes:
    """Check a DSSE v1 signature independently of the app's code; return the payload."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    payload = base64.b64decode(envelope["payload"], validate=True)
    payload_type = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    public_key = load_pem_public_key(public_key_pem.encode())
    public_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae)  # raises if bad
    return payload


# --- tests -------------------------------------------------------------------


def test_investigator_creates_case_uploads_downloads_and_gets_receipt(
    gunicorn_server, alice, new_page, tmp_path
):
    content = os.urandom(3 * 1024 * 1024 + 17)
    upload_path = tmp_path / "interview-2026.bin"
    upload_path.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    sha1 = hashlib.sha1(content).hexdigest()  # noqa: S324 - checking the page, not securing anything
    md5 = hashlib.md5(content).hexdigest()  # noqa: S324

    page = new_page(gunicorn_server.url)
    log_in(page, "alice")

    # Create a case through the form.
    page.click("text=New case")
    page.wait_for_url("**/cases/new/")
    page.fill("input[name=reference]", "2026-0042")
    page.fill("input[name=title]", "Browser intake")
    page.fill("textarea[name=description]", "Made by the browser test.")
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    match = re.search(r"/cases/([0-9a-f-]{36})/$", page.url)
    assert match, page.url
    case_id = match.group(1)
    assert page.locator("h1").inner_text() == "2026-0042: Browser intake"
    assert "Case 2026-0042 created." in page.locator(".messages").inner_text()
    assert page.locator("#evidence tbody").inner_text().strip() == "No evidence yet."

    # Upload a few MB through the upload form, declaring the right hash.
    form = page.locator("#upload-form")
    form.locator("input[name=file]").set_input_files(upload_path)
    form.locator("textarea[name=description]").fill("Audio of the interview")
    form.locator("input[name=source]").fill("USB stick, seal 0042-A")
    form.locator("input[name=sha256]").fill(sha256.upper())
    with page.expect_navigation(timeout=60_000):
        form.locator("button[type=submit]").click()
    match = re.search(r"/evidence/([0-9a-f-]{36})/$", page.url)
    assert match, page.url
    evidence_id = match.group(1)

    # The evidence page shows the digests hashlib computes for the bytes.
    assert page.locator("h1").inner_text() == "interview-2026.bin"
    assert page.locator("#sha256").inner_text().strip() == sha256
    assert fact(page, "SHA-1") == sha1
    assert fact(page, "MD5") == md5
    assert fact(page, "Size").startswith(f"{len(content)} bytes (")  # exact, then readable
    assert fact(page, "Source") == "USB stick, seal 0042-A"
    assert fact(page, "Evidence id") == evidence_id
    assert page.locator("#custodian").inner_text().strip() == "alice"
    assert f"sha256 {sha256}" in page.locator(".messages").inner_text()
    actions = log_actions(page)
    assert ("alice", "evidence.received") in actions
    assert actions[0] == ("alice", "evidence.received")

    # The server agrees with what the page shows.
    evidence = Evidence.objects.select_related("blob", "case").get(pk=evidence_id)
    assert str(evidence.case_id) == case_id
    assert (evidence.blob.sha256, evidence.blob.sha1, evidence.blob.md5) == (sha256, sha1, md5)

    # Download through the form, with a reason; the bytes hash the same.
    reason = "Transcription for the prosecutor"
    page.fill("input[name=reason]", reason)
    with page.expect_download() as download_info:
        page.click("button:text('Download')")
    download = download_info.value
    assert download.failure() is None
    assert download.suggested_filename == "interview-2026.bin"
    downloaded = tmp_path / "downloaded.bin"
    download.save_as(downloaded)
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == sha256

    page.reload()
    actions = log_actions(page)
    assert ("alice", "evidence.downloaded") in actions
    received = [a for _, a in actions].index("evidence.received")
    assert [a for _, a in actions].index("evidence.downloaded") > received
    logged = LogEntry.objects.get(evidence_id=evidence_id, action="evidence.downloaded")
    leaf = json.loads(bytes(logged.leaf))
    assert leaf["reason"] == reason
    assert leaf["evidence"] == {"id": evidence_id, "sha256": sha256}

    # The case page now lists the item with its hash.
    page.click("text=← 2026-0042")
    page.wait_for_url(f"**/cases/{case_id}/")
    row = page.locator("#evidence tbody tr")
    assert row.count() == 1
    assert row.locator("td.hash").inner_text().strip() == sha256
    size = row.locator("td").nth(2)
    assert size.inner_text().strip() == "3.0\xa0MB" and size.get_attribute("title") == f"{len(content)} bytes"
    page.click("#evidence a:text('interview-2026.bin')")
    page.wait_for_url(f"**/evidence/{evidence_id}/")

    # The receipt link gives a DSSE envelope naming the same digest, signed by the intake key.
    with page.expect_download() as receipt_info:
        page.click("a:text('receipt (DSSE envelope, JSON)')")
    receipt_file = tmp_path / "receipt.json"
    receipt_info.value.save_as(receipt_file)
    envelope = json.loads(receipt_file.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["name"] == "interview-2026.bin"
    assert statement["subject"][0]["digest"] == {"sha256": sha256, "sha1": sha1, "md5": md5}
    assert statement["predicate"]["evidence"] == evidence_id
    assert statement["predicate"]["size"] == len(content)

    keys = page.request.get("/api/v1/keys/").json()["keys"]
    keyid = envelope["signatures"][0]["keyid"]
    (intake_key,) = [k for k in keys if k["keyid"] == keyid]
    assert intake_key["purpose"] == "intake"
    assert verify_dsse(envelope, intake_key["public_key_pem"]) == base64.b64decode(envelope["payload"])

    # The export button: the bag streams to the browser with the file in it, and checks offline.
    form = page.locator("#export-form")
    form.locator("input[name=include_file]").check()
    with page.expect_download(timeout=60_000) as bundle_info:
        form.locator("button[type=submit]").click()
    bundle = bundle_info.value
    assert bundle.failure() is None and bundle.suggested_filename == f"evidence-{evidence_id}.zip"
    bundle_path = tmp_path / "bundle.zip"
    bundle.save_as(bundle_path)
    with zipfile.ZipFile(bundle_path) as archive:
        assert archive.testzip() is None
        archive.extractall(tmp_path / "bag")
    bag_dir = tmp_path / "bag" / f"evidence-{evidence_id}"
    bagit.Bag(str(bag_dir)).validate()
    assert hashlib.sha256((bag_dir / "data" / "evidence" / sha256).read_bytes()).hexdigest() == sha256
    assert LogEntry.objects.filter(evidence_id=evidence_id, action="evidence.exported").count() == 1
    page.goto(page.url)  # the download left the page where it was

    # One screenshot of the evidence page.
    shot = tmp_path / "evidence-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    width, height = png_size(shot)
    assert width >= 1280 and height >= 900


def test_declared_sha256_mismatch_is_refused_on_the_page(gunicorn_server, case_a, new_page, tmp_path):
    content = os.urandom(256 * 1024)
    upload_path = tmp_path / "tampered.bin"
    upload_path.write_bytes(content)
    wrong = hashlib.sha256(content + b"x").hexdigest()

    page = new_page(gunicorn_server.url)
    log_in(page, "alice")
    page.goto(f"/cases/{case_a.pk}/")
    form = page.locator("#upload-form")
    form.locator("input[name=file]").set_input_files(upload_path)
    form.locator("input[name=sha256]").fill(wrong)
    with page.expect_navigation() as nav:
        form.locator("button[type=submit]").click()
    response = nav.value
    assert response.status == 400
    assert re.search(rf"/cases/{case_a.pk}/$", page.url)

    error = page.locator("#upload-form .errorlist")
    assert error.count() >= 1
    text = error.first.inner_text()
    assert "does not match" in text
    assert wrong in text and hashlib.sha256(content).hexdigest() in text

    assert page.locator("#evidence tbody").inner_text().strip() == "No evidence yet."
    assert page.locator("#evidence a").count() == 0
    assert not Evidence.objects.filter(case=case_a).exists()
    assert not LogEntry.objects.filter(action="evidence.received").exists()
    assert blob_files() == []


def test_outsider_gets_404_for_case_and_evidence(gunicorn_server, evidence_a, dave, new_page):
    page = new_page(gunicorn_server.url)
    log_in(page, "dave")
    assert "You are not a member of any case yet." in page.locator("#cases").inner_text()
    assert "A-1" not in page.locator("main").inner_text()

    case_id = evidence_a.case_id
    for path in (f"/cases/{case_id}/", f"/evidence/{evidence_a.pk}/", f"/evidence/{evidence_a.pk}/receipt/"):
        response = page.goto(path)
        assert response.status == 404, path
        body = page.content()
        assert "Leaked recording" not in body and evidence_a.blob_id not in body, path

    # Each refusal is recorded (access.refused) and is all dave left in the case's history.
    actions = set(LogEntry.objects.filter(actor=dave, case_id=case_id).values_list("action", flat=True))
    assert actions == {"access.refused"}


def test_auditor_sees_case_and_evidence_but_cannot_upload(
    gunicorn_server, evidence_a, carol, new_page, tmp_path
):
    page = new_page(gunicorn_server.url)
    log_in(page, "carol")
    assert page.locator("text=New case").count() == 0
    page.click("#cases a:text('A-1')")
    page.wait_for_url(f"**/cases/{evidence_a.case_id}/")
    assert page.locator("h1").inner_text() == "A-1: Leaked recording"

    rows = page.locator("#evidence tbody tr")
    assert rows.count() == 1
    assert rows.locator("td.hash").inner_text().strip() == evidence_a.blob_id
    assert page.locator("#upload-form").count() == 0
    assert page.locator("input[type=file]").count() == 0
    assert page.locator("form[action$='/members/']").count() == 0

    # A hand-made POST (the form is not there, but the URL is) is refused too.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    forged = tmp_path / "forged.bin"
    forged.write_bytes(b"planted by an auditor")
    response = page.request.post(
        f"/cases/{evidence_a.case_id}/",
        headers={"X-CSRFToken": csrf},
        multipart={
            "file": {
                "name": forged.name,
                "mimeType": "application/octet-stream",
                "buffer": forged.read_bytes(),
            }
        },
    )
    assert response.status == 403
    assert Evidence.objects.filter(case_id=evidence_a.case_id).count() == 1

    rows.locator("a").click()
    page.wait_for_url(f"**/evidence/{evidence_a.pk}/")
    content = b"RIFF....WAVEfmt the meeting recording"  # what the evidence_a fixture uploaded
    assert page.locator("#sha256").inner_text().strip() == hashlib.sha256(content).hexdigest()
    assert page.locator("#custodian").inner_text().strip() == "alice"
    assert ("carol", "evidence.viewed") in log_actions(page)


def test_handover_in_two_steps_and_printable_custody_report(gunicorn_server, evidence_a, new_page, tmp_path):
    from custody import services
    from custody.models import Role

    services.create_user(
        actor=None, username="erin", password=PASSWORD, role=Role.INVESTIGATOR, cases=[evidence_a.case]
    )
    page = new_page(gunicorn_server.url)
    log_in(page, "alice")
    page.goto(f"/evidence/{evidence_a.pk}/")
    page.select_option("#transfer-form select[name=to_user]", "erin")
    page.fill("#transfer-form input[name=purpose]", "spectral analysis")
    page.fill("#transfer-form input[name=location]", "lab 3")
    with page.expect_navigation():
        page.click("#transfer-form button[type=submit]")
    assert "waiting for them to accept" in page.locator(".messages").inner_text()
    assert "Handover pending" in page.locator("#pending-transfer").inner_text()
    assert page.locator("#decision-form").count() == 0  # only the receiver decides

    erin_page = new_page(gunicorn_server.url)
    log_in(erin_page, "erin")
    erin_page.goto(f"/evidence/{evidence_a.pk}/")
    erin_page.fill("#decision-form input[name=note]", "seal intact")
    with erin_page.expect_navigation():
        erin_page.click("#decision-form button[name=accept]")
    assert "You now have custody" in erin_page.locator(".messages").inner_text()
    assert fact(erin_page, "Current custodian") == "erin"
    evidence_a.refresh_from_db()
    assert evidence_a.custodian.username == "erin"

    erin_page.click("#report-link")
    erin_page.wait_for_url(f"**/evidence/{evidence_a.pk}/report/")
    table = erin_page.locator("#report-entries").inner_text()
    for expected in [
        "evidence.received",
        "custody.released",
        "custody.accepted",
        "spectral analysis",
        "seal intact",
    ]:
        assert expected in table
    pdf = tmp_path / "report.pdf"
    erin_page.emulate_media(media="print")
    erin_page.pdf(path=str(pdf), format="A4")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 5000
    # The print stylesheet hides navigation and forms.
    assert not erin_page.locator("header").is_visible()


# --- the public verification page ---------------------------------------------


@pytest.fixture
def published(gunicorn_server, alice, case_a, tmp_path):
    """A 20 MB item with one published result, and another item whose result is not published."""
    from forensics import services as forensics

    from .conftest import api_client_for, upload

    client = api_client_for(alice)
    data = os.urandom(20 * 1024 * 1024 + 123)
    path = tmp_path / "leaked-clip.bin"
    path.write_bytes(data)
    item = upload(client, case_a, data, name="leaked-clip.bin").json()
    hidden = upload(client, case_a, b"not published", name="other.bin").json()
    ids = []
    for evidence in (item, hidden):
        analysis = client.post(
            f"/api/v1/evidence/{evidence['id']}/analyses/", {"analyzer": "test.digest"}, format="json"
        ).json()["id"]
        forensics.run_analysis(analysis, worker="inline")
        ids.append(analysis)
    assert client.post(f"/api/v1/analyses/{ids[0]}/publish/").status_code == 200
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "hidden": hidden["sha256"]}


def test_visitor_checks_a_file_without_uploading_it(gunicorn_server, published, new_page):
    page = new_page(gunicorn_server.url)
    uploads = []
    page.on("request", lambda r: uploads.append(r) if r.method != "GET" else None)
    page.goto("/verify/")
    page.set_input_files("#file", str(published["path"]))
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.wait_for_selector(".result, #no-results", timeout=120_000)
    assert errors == [], errors
    assert "went wrong" not in page.locator("#status").inner_text()
    assert page.locator("#checked-hash").inner_text() == published["sha256"]
    assert uploads == []  # the file never left the browser
    result = page.locator(".result")
    assert result.count() == 1
    assert result.locator(".checks li.pass").count() == 4
    assert result.locator(".checks li.fail").count() == 0
    assert "sha256_recomputed" in result.locator("table.findings").inner_text()
    assert "What this proves" in result.inner_text()
    assert (
        "no witnesses configured: the checkpoint rests on the server's log key alone"
        in page.locator("#witnesses").inner_text()
    )


def test_unpublished_and_unknown_look_the_same(gunicorn_server, published, new_page):
    page = new_page(gunicorn_server.url)
    texts = []
    for sha in (published["hidden"], "ab" * 32):
        page.goto(f"/verify/?sha256={sha}")
        page.wait_for_selector("#no-results")
        texts.append(page.locator("#results").inner_text().replace(sha, "<hash>"))
    assert texts[0] == texts[1]


def test_an_altered_result_fails_in_the_browser(gunicorn_server, published, new_page):
    page = new_page(gunicorn_server.url)

    def tamper(route):
        response = route.fetch()
        body = response.json()
        envelope = body["results"][0]["envelope"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"]["findings"][0]["value"] = "0" * 64
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        route.fulfill(response=response, json=body)

    page.route("**/api/v1/public/results/**", tamper)
    page.goto(f"/verify/?sha256={published['sha256']}")
    page.wait_for_selector(".result")
    failures = page.locator(".result .checks li.fail").all_inner_texts()
    assert any("signature does NOT verify" in f for f in failures)
    assert any("does not match this statement" in f for f in failures)


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70_000])
def test_in_browser_sha256_matches_hashlib(gunicorn_server, new_page, size, custody_db):
    page = new_page(gunicorn_server.url)
    page.goto("/verify/")
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    digest = page.evaluate(
        """(bytes) => { const h = new window.custodyVerify.Sha256();
                        const a = Uint8Array.from(bytes); h.update(a.subarray(0, 13)); h.update(a.subarray(13));
                        return h.hex(); }""",
        list(data),
    )
    assert digest == hashlib.sha256(data).hexdigest()


def upload_form_for(server, case, new_page, resumable_from: int = 1, chunk_size: int | None = None):
    """Alice's case page, its upload form set to send files from ``resumable_from`` bytes on as
    resumable uploads (the page's own threshold is 64 MiB, its pieces 8 MiB)."""
    page = new_page(server.url)
    log_in(page, "alice")
    page.goto(f"{server.url}/cases/{case.pk}/")
    form = page.locator("#upload-form")
    form.evaluate(f"f => {{ f.dataset.resumableFrom = '{resumable_from}'; }}")
    if chunk_size is not None:
        form.evaluate(f"f => {{ f.dataset.chunkSize = '{chunk_size}'; }}")
    return page, form


def test_large_files_go_as_a_resumable_upload_that_survives_a_dropped_connection(
    gunicorn_server, alice, case_a, new_page, tmp_path
):
    content = os.urandom(5 * 1024 * 1024 + 3)
    upload_path = tmp_path / "phone-image.bin"
    upload_path.write_bytes(content)
    # A test-sized file, sent as a resumable upload in 1 MiB pieces.
    page, form = upload_form_for(gunicorn_server, case_a, new_page, chunk_size=1 << 20)

    # The connection drops during the second piece.
    patches = []

    def drop_second_patch(route):
        if route.request.method == "PATCH":
            patches.append(route.request.headers.get("upload-offset"))
            if len(patches) == 2:
                return route.abort("connectionreset")
        return route.continue_()

    page.route("**/api/v1/uploads/**", drop_second_patch)
    form.locator("input[name=file]").set_input_files(upload_path)
    form.locator("input[name=source]").fill("phone extraction, seal 7")
    with page.expect_navigation(url=re.compile(r"/evidence/[0-9a-f-]{36}/$"), timeout=60_000):
        form.locator("button[type=submit]").click()

    assert patches[1] == patches[2] == str(1 << 20)  # the dropped piece was sent again
    assert len(patches) == 7  # 6 pieces, one of them twice
    assert page.locator("#sha256").inner_text().strip() == hashlib.sha256(content).hexdigest()
    assert fact(page, "Source") == "phone extraction, seal 7"
    assert fact(page, "Size").startswith(f"{len(content)} bytes")
    assert ("alice", "evidence.received") in log_actions(page)


def test_resumable_upload_with_a_wrong_declared_hash_is_refused_on_the_page(
    gunicorn_server, alice, case_a, new_page, tmp_path
):
    upload_path = tmp_path / "clip.bin"
    upload_path.write_bytes(os.urandom(300_000))
    page, form = upload_form_for(gunicorn_server, case_a, new_page, chunk_size=100_000)
    form.locator("input[name=file]").set_input_files(upload_path)
    form.locator("input[name=sha256]").fill("0" * 64)
    form.locator("button[type=submit]").click()
    status = page.locator("#upload-status.error")
    status.wait_for(timeout=30_000)
    assert "does not match the received bytes" in status.inner_text()
    assert "/cases/" in page.url  # still on the case page, form ready again
    assert form.locator("button[type=submit]").is_enabled()
    assert not Evidence.objects.exists()


def test_a_description_too_long_for_a_header_goes_with_the_plain_form(
    gunicorn_server, alice, case_a, new_page, tmp_path
):
    upload_path = tmp_path / "notes.bin"
    upload_path.write_bytes(os.urandom(50_000))
    page, form = upload_form_for(gunicorn_server, case_a, new_page)
    requests_seen = []
    page.on("request", lambda request: requests_seen.append(request.url))
    form.locator("input[name=file]").set_input_files(upload_path)
    form.locator("textarea[name=description]").fill("long account of the seizure. " * 300)
    with page.expect_navigation(url=re.compile(r"/evidence/[0-9a-f-]{36}/$"), timeout=60_000):
        form.locator("button[type=submit]").click()
    assert not [url for url in requests_seen if "/api/v1/uploads/" in url]
    assert fact(page, "Description").startswith("long account of the seizure.")


def test_api_docs_render_under_the_content_security_policy(gunicorn_server, alice, new_page):
    page = new_page(gunicorn_server.url)
    log_in(page, "alice")
    response = page.goto("/api/docs/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#swagger-ui .opblock", timeout=30_000)
    assert page.locator("#swagger-ui .opblock").count() > 10
    assert page.locator("text=/api/v1/evidence/").count() > 0

    page.goto("/api/redoc/")
    page.wait_for_selector("text=Custody server API", timeout=30_000)
    page.wait_for_selector("text=/api/v1/keys/", state="attached", timeout=30_000)


def test_report_print_link_runs_its_script(gunicorn_server, evidence_a, new_page):
    page = new_page(gunicorn_server.url)
    log_in(page, "alice")
    page.goto(f"/evidence/{evidence_a.pk}/report/")
    page.evaluate("() => { window.print = () => { window.printed = true; }; }")
    page.click("#print-report")
    assert page.evaluate("() => window.printed") is True
    assert page.url.endswith("/report/")  # the "#" link did not navigate
