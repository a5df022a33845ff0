"""The player, the image viewer and the side-by-side page in a real browser (Debian's Chromium).

Real analyses (run in-process, as the worker would) give the markers,
overlays and alignment; the browser plays the recordings through the tokened
media endpoint under the project's strict CSP (any violation fails the test:
the ``new_page`` fixture of test_browser.py). Screenshots at 1280 and 768 px
go to $CUSTODY_SCREENSHOTS when set (e.g. docs/screenshots), otherwise to the
test's temporary directory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from custody.models import Evidence, LogEntry
from forensics import markers, services

from . import test_browser
from .audio_fixtures import concat, silence, tone, write_wav
from .conftest import api_client_for, upload
from .test_analyses import _wav, meeting_and_clip
from .test_browser import log_in

# The browser and page fixtures of the web UI tests (one Chromium per module, CSP watch).
browser = test_browser.browser
new_page = test_browser.new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1280, 768)


@pytest.fixture
def shots(tmp_path):
    """Save full-page screenshots of a page at each width, named ``<name>-<width>.png``."""
    target = Path(os.environ.get("CUSTODY_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> list[Path]:
        saved = []
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(300)  # the waveform redraws at the new width
            path = target / f"{name}-{width}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000
            saved.append(path)
        page.set_viewport_size({"width": 1280, "height": 900})
        return saved

    return take


def errors_of(page) -> list[str]:
    """Script errors of a page and failed loads (a module that fails to load, an exception in the player).

    The browser's own request for /favicon.ico (the project has none) is not one.
    """
    found: list[str] = []
    page.on("pageerror", lambda e: found.append(str(e)))
    # Chromium's "Failed to load resource" console line names no URL: the response check below does.
    page.on(
        "console",
        lambda m: m.type == "error"
        and not m.text.startswith("Failed to load resource")
        and found.append(m.text),
    )
    page.on(
        "response",
        lambda r: r.status >= 400
        and not r.url.endswith("/favicon.ico")
        and found.append(f"{r.status} {r.url}"),
    )
    return found


def item(client, case, content: bytes, name: str) -> Evidence:
    response = upload(client, case, content, name=name)
    assert response.status_code == 201, response.content
    return Evidence.objects.get(pk=response.json()["id"])


def run(user, evidence, analyzer, **parameters):
    analysis = services.request_analysis(
        actor=user, evidence=evidence, analyzer=analyzer, parameters=parameters
    )
    assert services.run_analysis(analysis.pk, worker="inline") == "succeeded"
    return analysis


def current_time(page, selector: str) -> float:
    return page.eval_on_selector(selector, "a => a.currentTime")


def test_listen_and_jump_to_a_marker(gunicorn_server, alice, case_a, browser, new_page, shots, tmp_path):
    samples = concat(tone(440, 1.5, 16000), silence(0.5, 16000), tone(660, 1.5, 16000))
    evidence = item(
        api_client_for(alice),
        case_a,
        write_wav(samples, 16000, tmp_path / "call.wav").read_bytes(),
        "call.wav",
    )
    run(alice, evidence, "audio.signal")
    marker = next(
        m for m in markers.audio_markers(markers.completed_results(evidence)) if m["name"] == "silence_run"
    )
    assert marker["start"] == pytest.approx(1.5, abs=0.01)

    page = new_page(gunicorn_server.url)
    errors = errors_of(page)
    log_in(page, "alice")
    page.goto(f"/evidence/{evidence.pk}/")
    page.wait_for_selector("#player[data-ready='1']")
    # wavesurfer drew the waveform, the spectrogram and the time axis in its shadow root.
    assert page.locator("#player-waveform canvas").count() >= 2
    region = page.locator(f"#player-waveform [data-start='{marker['start']}']")
    assert region.count() == 1 and "silence_run (audio.signal)" in region.inner_text()

    views = LogEntry.objects.filter(evidence=evidence, action="evidence.viewed").count()
    # Where each seek landed (read at the seek itself, not later while it plays on).
    page.eval_on_selector(
        "#player-audio",
        "a => { window.seeks = []; a.addEventListener('seeked', () => seeks.push(a.currentTime)); }",
    )
    region.click()
    page.wait_for_function("() => seeks.length > 0 && !document.getElementById('player-audio').paused")
    assert page.evaluate("seeks.at(-1)") == pytest.approx(marker["start"], abs=0.05)

    # A link with data-seek (the marker list) seeks the same player and plays.
    page.eval_on_selector("#player-audio", "a => { a.pause(); a.currentTime = 0; }")
    page.wait_for_function("() => seeks.at(-1) === 0")
    page.locator("#marker-list li").filter(has_text="silence_run").locator("a[data-seek]").click()
    page.wait_for_function("() => seeks.at(-1) > 0 && !document.getElementById('player-audio').paused")
    assert page.evaluate("seeks.at(-1)") == pytest.approx(marker["start"], abs=0.05)
    page.wait_for_timeout(400)
    assert current_time(page, "#player-audio") > marker["start"] + 0.1  # it plays on
    page.eval_on_selector("#player-audio", "a => a.pause()")
    shots(page, "player")
    # All those range requests: no log entry beyond the page view.
    assert LogEntry.objects.filter(evidence=evidence, action="evidence.viewed").count() == views
    assert errors == []

    # Without JavaScript: the plain player, and a time link opens the recording there.
    context = browser.new_context(base_url=gunicorn_server.url, java_script_enabled=False)
    try:
        plain = context.new_page()
        log_in(plain, "alice")
        plain.goto(f"/evidence/{evidence.pk}/")
        assert plain.locator("#player-audio[controls]").count() == 1
        assert plain.locator("#player-waveform canvas").count() == 0
        link = plain.locator("#marker-list li").filter(has_text="silence_run").locator("a")
        assert link.get_attribute("href").endswith(f"#t={marker['start']}")
        with plain.expect_response(lambda r: "/media/" in r.url) as answer:
            link.click()
        assert answer.value.status in (200, 206)
        assert answer.value.headers["content-type"] == "audio/wav"
    finally:
        context.close()


def jpeg(size=(320, 240)) -> bytes:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    picture = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    picture[60:120, 80:160] = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def test_toggle_an_overlay_and_zoom(gunicorn_server, alice, case_a, new_page, shots):
    photo = item(api_client_for(alice), case_a, jpeg(), "scene.jpg")
    analysis = run(alice, photo, "image.ela")
    layers = markers.image_layers_for(photo)
    assert layers["overlays"] and layers["boxes"]

    page = new_page(gunicorn_server.url)
    errors = errors_of(page)
    log_in(page, "alice")
    page.goto(f"/evidence/{photo.pk}/")
    page.wait_for_selector("#viewer[data-ready='1']")
    overlay_id = layers["overlays"][0]["id"]
    picture = page.locator(f"#viewer-stage img.viewer-overlay[data-overlay='{overlay_id}']")
    assert f"/analyses/{analysis.pk}/artifacts/" in picture.get_attribute("src")
    assert not picture.is_visible()
    page.check(f"input[data-overlay='{overlay_id}']")
    assert picture.is_visible()
    page.wait_for_function(
        f"() => document.querySelector(\"img[data-overlay='{overlay_id}']\").naturalWidth > 0"
    )
    page.fill("#overlay-opacity", "40")
    page.dispatch_event("#overlay-opacity", "input")
    assert picture.evaluate("p => getComputedStyle(p).opacity") == "0.4"
    box = page.locator("#viewer-stage .viewer-box").first
    assert box.is_visible() and "ela_peak_region" in box.inner_text()

    page.click("#viewer-tools [data-zoom='1']")
    assert float(page.get_attribute("#viewer", "data-scale")) == 1.0
    assert page.locator("#photo").bounding_box()["width"] == pytest.approx(320, abs=1)
    page.click("#viewer-tools [data-zoom='in']")
    assert float(page.get_attribute("#viewer", "data-scale")) == pytest.approx(1.25)
    page.hover("#viewer-frame")
    page.mouse.wheel(0, -100)
    page.wait_for_function("() => Number(document.getElementById('viewer').dataset.scale) > 1.5")
    page.click("#viewer-tools [data-zoom='fit']")
    shots(page, "viewer")

    page.uncheck(f"input[data-overlay='{overlay_id}']")
    assert not picture.is_visible()
    assert errors == []


def test_side_by_side_plays_clip_and_reference_in_step(gunicorn_server, alice, case_a, new_page, shots):
    reference, clip = meeting_and_clip()  # the clip is the reference's 10-20 s, then its 30-40 s
    client = api_client_for(alice)
    meeting = item(client, case_a, _wav(reference), "meeting.wav")
    leak = item(client, case_a, _wav(clip), "leak.wav")
    analysis = run(alice, leak, "audio.context", reference=str(meeting.pk))

    page = new_page(gunicorn_server.url)
    errors = errors_of(page)
    log_in(page, "alice")
    page.goto(f"/analyses/{analysis.pk}/")
    with page.expect_navigation():
        page.click("#context-compare a")
    page.wait_for_selector("#clip-player[data-ready='1']")
    page.wait_for_selector("#reference-player[data-ready='1']")

    # Moving the clip moves the reference to the mapped time: clip 14 s is reference 34 s.
    page.eval_on_selector("#clip-audio", "a => { a.currentTime = 14; }")
    page.wait_for_function(
        "() => Math.abs(document.getElementById('reference-audio').currentTime - 34) < 0.3"
    )
    # And the other way: reference 15 s is clip 5 s.
    page.eval_on_selector("#reference-audio", "a => { a.currentTime = 15; }")
    page.wait_for_function("() => Math.abs(document.getElementById('clip-audio').currentTime - 5) < 0.3")

    # Playing the clip plays the reference along; they stay in step.
    page.locator("#alignment-table a[data-seek-clip]").nth(1).click()  # the second segment: clip 10 s
    page.wait_for_function("() => !document.getElementById('reference-audio').paused")
    page.wait_for_timeout(800)
    clip_t, ref_t = (current_time(page, s) for s in ("#clip-audio", "#reference-audio"))
    assert clip_t > 10.3
    assert ref_t - clip_t == pytest.approx(20, abs=0.4)
    page.eval_on_selector("#clip-audio", "a => a.pause()")
    page.wait_for_function("() => document.getElementById('reference-audio').paused")
    shots(page, "side-by-side")
    assert errors == []
