"""Every page an investigator, auditor or visitor reads, checked in Chromium.

axe-core (bundled by the PyPI package axe-playwright-python; the version is in
the first line of its ``axe.min.js``) runs inside each page, as served by the
real web process, at 1280 px and at 768 px width: no violation of impact
"serious" or "critical" is allowed. At 768 px the page must not scroll
sideways (wide tables scroll inside their own box instead).

The case holds what a real one does: a photograph with camera EXIF and a WAV
recording, each analysed by the real analyzers (run inline, as a worker
would), one result published. Set ``CUSTODY_SCREENSHOTS=<dir>`` to keep a
full-page screenshot of each page at each width (the README's pictures come
from there).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from custody.models import Evidence

from .audio_fixtures import concat, noise, tone, write_wav
from .conftest import api_client_for, upload
from .test_browser import browser, log_in, new_page  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1280, 768)
# The innermost elements that reach past the right edge of the viewport.
WIDEST = """
(() => {
  const w = document.documentElement.clientWidth, out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.right > w + 1 && ![...el.children].some(c => c.getBoundingClientRect().right > w + 1)) {
      out.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${el.className ? "." + el.className : ""} (${Math.round(r.right)} px)`);
    }
  }
  return out.slice(0, 5);
})()
"""
BLOCKING = {"serious", "critical"}


def photo_bytes() -> bytes:
    """A JPEG with the EXIF a camera writes (make, model, capture time)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([(x * 0.3 + y * 0.1) % 256, (y * 0.35) % 256, (x * 0.2 + 60) % 256], axis=-1)
    pixels = np.clip(base + rng.normal(0, 9, base.shape), 0, 255).astype("uint8")
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0110] = "Canon EOS 5D Mark III"  # Model
    exif[0x0132] = "2026:11:30 18:04:11"  # DateTime
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def recording_bytes(tmp_path: Path) -> bytes:
    rate = 16000
    samples = concat(
        tone(440, 2.0, rate, amplitude=0.3), noise(1.0, rate, 0.05), tone(880, 2.0, rate, amplitude=0.3)
    )
    return write_wav(samples, rate, tmp_path / "interview.wav").read_bytes()


@pytest.fixture
def case_with_analyses(gunicorn_server, alice, case_a, tmp_path):
    from forensics import services as forensics
    from forensics.analyzers import accepts, registry

    client = api_client_for(alice)
    items = {
        "photo": upload(client, case_a, photo_bytes(), name="quay-at-dusk.jpg").json(),
        "audio": upload(client, case_a, recording_bytes(tmp_path), name="interview.wav").json(),
    }
    analyses = {}
    for key, item in items.items():
        evidence = Evidence.objects.get(pk=item["id"])
        for module in registry().values():
            if not accepts(module, evidence.media_type) or module.NAME.startswith("test."):
                continue
            if any("default" not in rule for rule in module.PARAMETERS.values()):
                continue  # needs a reference item: not for this page check
            response = client.post(
                f"/api/v1/evidence/{item['id']}/analyses/", {"analyzer": module.NAME}, format="json"
            )
            assert response.status_code == 202, response.content
            forensics.run_analysis(response.json()["id"], worker="inline")
            analyses.setdefault(key, response.json()["id"])
    assert client.post(f"/api/v1/analyses/{analyses['photo']}/publish/").status_code == 200
    return {"case": case_a, "items": items, "analyses": analyses}


def page_paths(data) -> dict[str, str]:
    photo, audio = data["items"]["photo"]["id"], data["items"]["audio"]["id"]
    return {
        "home": "/",
        "case": f"/cases/{data['case'].pk}/",
        "new-case": "/cases/new/",
        "search": "/search/?q=quay",
        "evidence-photo": f"/evidence/{photo}/",
        "evidence-audio": f"/evidence/{audio}/",
        "analysis-photo": f"/analyses/{data['analyses']['photo']}/",
        "analysis-audio": f"/analyses/{data['analyses']['audio']}/",
        "custody-report": f"/evidence/{photo}/report/",
        "examination-photo": f"/evidence/{photo}/examination/",
        "examination-audio": f"/evidence/{audio}/examination/",
        "account": "/account/",
    }


def check(page, name: str, width: int) -> list[str]:
    """axe's blocking violations and sideways scrolling on the page now shown."""
    from axe_playwright_python.sync_playwright import Axe

    problems = []
    results = Axe().run(page)
    assert results.response["testEngine"]["name"] == "axe-core", results.response.get("testEngine")
    assert results.response["url"].endswith(page.url.split("/", 3)[-1])
    for violation in results.response["violations"]:
        if violation["impact"] in BLOCKING:
            targets = [" ".join(n["target"]) for n in violation["nodes"][:5]]
            problems.append(
                f"{name} @{width}px: {violation['id']} ({violation['impact']}): {violation['help']} -- {targets}"
            )
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if width < 1000 and overflow > 1:
        culprits = page.evaluate(WIDEST)
        problems.append(f"{name} @{width}px: the page scrolls sideways by {overflow} px: {culprits}")
    shots = os.environ.get("CUSTODY_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{name}-{width}.png"), full_page=True)
    return problems


def test_pages_pass_axe_at_desktop_and_tablet_width(gunicorn_server, case_with_analyses, new_page):  # noqa: F811
    page = new_page(gunicorn_server.url)
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto("/login/")
        problems += check(page, "login", width)
        page.goto("/verify/")
        problems += check(page, "verify", width)
    log_in(page, "alice")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in page_paths(case_with_analyses).items():
            response = page.goto(path)
            assert response.status == 200, (path, response.status)
            problems += check(page, name, width)
    assert problems == [], "\n".join(problems)
