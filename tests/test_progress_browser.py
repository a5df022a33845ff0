"""In Chromium: "run every applicable analyzer" on an item, the statuses change on the page without a
reload; then a finding is read in plain words, the result published, and a visitor finds it."""

from __future__ import annotations

import signal

import pytest
from playwright.sync_api import expect

from custody.models import Evidence
from forensics import analyzers
from forensics import services as analyses
from forensics.models import Analysis

from .conftest import api_client_for, kill_worker, start_worker, upload
from .test_browser import browser, log_in, new_page, png_size  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_run_all_then_watch_the_statuses_change_without_reload(
    gunicorn_server,
    alice,
    case_a,
    new_page,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    item = upload(api_client_for(alice), case_a, b"a short note for the analyzers\n", name="note.txt").json()[
        "id"
    ]
    evidence = Evidence.objects.get(pk=item)
    # One that will fail, requested before: its reason must show on the page.
    failing = analyses.request_analysis(
        actor=alice, evidence=evidence, analyzer="test.digest", parameters={"fail": True}
    )
    expected = {m.NAME for m in analyzers.registry().values() if analyzers.accepts(m, evidence.media_type)}

    page = new_page(gunicorn_server.url)
    log_in(page, "alice")
    page.goto(f"/evidence/{item}/")
    with page.expect_navigation():
        page.click("#run-all")
    assert page.url.endswith(f"/evidence/{item}/")
    assert f"{len(expected)} queued" in page.locator(".messages").inner_text()
    rows = page.locator("#analyses tbody tr[data-analysis]")
    assert rows.count() == len(expected) + 1
    # No worker yet: everything waits, and the page says so.
    progress = page.locator("#analysis-progress")
    progress.locator(".progress-text").filter(has_text="0 of").wait_for()
    assert "queued" in progress.inner_text()
    page.evaluate("window.notReloaded = true")

    # The failing analysis's own page, open alongside: it reloads itself once done.
    single = page.context.new_page()
    single.goto(f"/analyses/{failing.pk}/")
    assert single.locator("#status [data-field=status]").inner_text() == "queued"
    assert single.locator("#error").count() == 0

    worker = start_worker(tmp_path / "worker.log")
    try:
        # A selector, not a script: the page's CSP allows no eval.
        pending = page.locator("#analyses [data-status=queued], #analyses [data-status=running]")
        expect(pending).to_have_count(0, timeout=120_000)
    finally:
        kill_worker(worker, signal.SIGTERM)
    assert page.evaluate("window.notReloaded") is True  # updated in place
    statuses = dict(Analysis.objects.filter(evidence=evidence).values_list("id", "status"))
    assert statuses.pop(failing.pk) == "failed" and set(statuses.values()) == {"succeeded"}
    cell = page.locator(f"#analyses tr[data-analysis='{failing.pk}'] [data-field=status]")
    assert cell.inner_text() == "failed: the input was refused on purpose"
    text = progress.inner_text()
    assert f"{len(expected) + 1} of {len(expected) + 1} finished; 1 failed." in text
    assert "test.digest failed: the input was refused on purpose" in text
    assert page.locator("#analysis-progress progress").evaluate("(p) => p.value === p.max")

    expect(single.locator("#error")).to_have_text("the input was refused on purpose")
    assert single.evaluate("window.notReloaded") is None  # this one was reloaded

    page.bring_to_front()  # a tab in the background draws no frame to take
    shot = tmp_path / "run-all-progress.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width >= 1280 and height >= 900

    # Read a finding in plain words, publish the result, and a visitor finds it.
    hashes = Analysis.objects.get(evidence=evidence, analyzer="file.hashes")
    page.goto(f"/analyses/{hashes.pk}/")
    findings = page.locator("#findings").inner_text()
    sha256 = evidence.blob_id
    assert sha256 in findings and "{'" not in findings  # values as text, not Python reprs
    assert page.locator("#findings details").count() > 0  # the raw JSON one click away
    with page.expect_navigation():
        page.click("#publish")
    assert "Published" in page.locator(".messages").inner_text()
    assert page.locator("#published").inner_text().startswith("yes, ")
    visitor = new_page(gunicorn_server.url)
    visitor.goto(f"/verify/?sha256={sha256}")
    visitor.wait_for_selector(".result, #no-results", timeout=60_000)
    assert visitor.locator(".result").count() == 1
    assert visitor.locator(".result .checks li.fail").count() == 0
