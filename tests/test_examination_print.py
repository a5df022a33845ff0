"""The examination report and the chain-of-custody report printed to PDF by Chromium.

Chromium's own print path (Playwright's page.pdf(), print media, A4) renders
the pages; pypdf reads the text back, so the test checks what a reader of the
PDF sees: the item's SHA-256, each analysis starting a page of its own, no
navigation.
"""

from __future__ import annotations

import importlib
import io
import os
import re

import pytest

from .conftest import api_client_for, upload
from .test_analyzers_image import camera_exif, jpeg_bytes, recompress, synthetic
from .test_browser import browser, log_in, new_page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANALYZERS = ("image.metadata", "image.jpeg", "image.ela")


def pdf_pages(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [re.sub(r"\s+", "", page.extract_text() or "") for page in PdfReader(io.BytesIO(data)).pages]


def test_examination_report_prints_to_a4_pdf(gunicorn_server, alice, case_a, new_page, monkeypatch, tmp_path):  # noqa: F811
    from forensics import sandbox, services

    # The analyzers run in this process (the sandbox is tested elsewhere); the
    # pipeline around them, signatures and log included, is the real one.
    monkeypatch.setattr(
        sandbox,
        "run",
        lambda name, path, params, ctx, **limits: (
            importlib.import_module(name).analyze(path, params, ctx),
            ctx,
        ),
    )
    client = api_client_for(alice)
    data = recompress(jpeg_bytes(synthetic(3, 320), 60), 90, exif=camera_exif())
    item = upload(client, case_a, data, name="scene.jpg").json()
    for analyzer in ANALYZERS:
        analysis_id = client.post(
            f"/api/v1/evidence/{item['id']}/analyses/", {"analyzer": analyzer}, format="json"
        ).json()["id"]
        assert services.run_analysis(analysis_id, worker="inline") == "succeeded"

    page = new_page(gunicorn_server.url)
    log_in(page, "alice")
    page.goto(f"/evidence/{item['id']}/")
    page.click("#examination-link")
    page.wait_for_url(f"**/evidence/{item['id']}/examination/")
    assert page.locator("section.analysis").count() == len(ANALYZERS)
    page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
    if os.environ.get("CUSTODY_SCREENSHOTS"):
        page.screenshot(
            path=os.path.join(os.environ["CUSTODY_SCREENSHOTS"], "examination.png"), full_page=True
        )

    page.emulate_media(media="print")
    assert not page.locator("header").is_visible()
    assert not page.locator("#print-report").is_visible()
    pages = pdf_pages(page.pdf(format="A4", print_background=True))
    text = "".join(pages)
    assert item["sha256"] in text and "Examinationreport" in pages[0]
    # Each analysis starts a page: its heading is at the top of a page of its own.
    starts = [
        next(i for i, p in enumerate(pages) if f"{n}.{name}" in p) for n, name in enumerate(ANALYZERS, 1)
    ]
    assert len(set(starts)) == len(ANALYZERS) and starts == sorted(starts) and starts[0] > 0
    assert len(pages) >= len(ANALYZERS) + 2  # identity and summary first, log proofs last
    assert "Logproofs" in "".join(pages[starts[-1] + 1 :])
    assert "RawJSON" not in text  # the raw JSON stays on screen

    page.goto(f"/evidence/{item['id']}/report/")
    report = pdf_pages(page.pdf(format="A4"))
    assert item["sha256"] in "".join(report) and "Chain-of-custodyreport" in report[0]
