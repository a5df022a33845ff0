"""The evidence page's player and image viewer: markers from results, and the media endpoint.

The endpoint serves the bytes the page's player and viewer ask for (ranges,
for seeking) against a token minted by a logged page view: the tests check
the ranges byte for byte, who may use a token, and that playing adds no log
entries beyond the page view.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from custody import media
from custody.models import LogEntry
from custody.storage import blob_store
from custody.urls import WAVESURFER_STYLE_HASH
from forensics import markers, services
from forensics.markers import Result

from .audio_fixtures import concat, silence, tone, write_wav
from .conftest import ROOT, upload
from .test_analyses import _wav, meeting_and_clip

PLAYER_JS = ROOT / "static/custody/player.js"

# --- markers (pure) -------------------------------------------------------------


def predicate(*findings) -> dict:
    return {"findings": list(findings)}


def test_markers_come_from_every_time_span_of_every_result_in_time_order():
    results = [
        Result(
            "a1",
            "audio.signal",
            predicate(
                {
                    "name": "clipping",
                    "class": "indicator",
                    "at": [4.5, 5.0],
                    "score": 0.9,
                    "note": "flat tops",
                },
                {"name": "duration", "class": "fact", "value": 12.0},  # no time: no marker
            ),
        ),
        Result(
            "a2",
            "audio.context",
            predicate(
                {
                    "name": "segment",
                    "class": "measurement",
                    "at": [0, 4],
                    "value": {"reference_at": [10, 14]},
                },
                {"name": "removed", "class": "indicator", "at": [4.0, 4.0]},
            ),
        ),
    ]
    got = markers.audio_markers(results)
    assert [(m["start"], m["end"], m["label"]) for m in got] == [
        (0.0, 4.0, "segment (audio.context)"),
        (4.0, 4.0, "removed (audio.context)"),
        (4.5, 5.0, "clipping (audio.signal)"),
    ]
    assert got[2]["score"] == 0.9 and got[2]["analysis"] == "a1" and got[2]["class"] == "indicator"
    assert got[0]["score"] is None


@pytest.mark.parametrize(
    "at",
    [None, [1], [1, 2, 3], ["1", 2], [2, 1], [-1, 2], [float("nan"), 1], [0, float("inf")], [True, 2], "0-1"],
)
def test_a_malformed_time_span_gives_no_marker(at):
    assert markers.audio_markers([Result("a", "x", predicate({"name": "n", "at": at}))]) == []


def test_markers_survive_a_predicate_without_findings():
    assert markers.audio_markers([Result("a", "x", {}), Result("b", "y", {"findings": "no"})]) == []


SHA = {k: k * 64 for k in "abcdef"}


def test_overlays_marked_as_such_are_preferred_then_pictures_of_the_photos_size():
    sizes = {SHA["a"]: (640, 480), SHA["b"]: (640, 480), SHA["c"]: (200, 100), SHA["d"]: (640, 480)}
    results = [
        # ELA-like: one same-size map, one plot of another size.
        Result(
            "ela",
            "image.ela",
            predicate(
                {"name": "ela_map", "class": "visual", "artifact": f"sha256:{SHA['a']}"},
                {"name": "histogram", "class": "visual", "artifact": f"sha256:{SHA['c']}"},
                {"name": "ela_peak_region", "class": "measurement", "region": [16, 32, 40, 30]},
            ),
        ),
        # Marks its overlay: only that one is laid over the photo, not the other same-size picture.
        Result(
            "cm",
            "image.copymove",
            predicate(
                {"name": "copymove_drawing", "class": "visual", "artifact": f"sha256:{SHA['b']}"},
                {
                    "name": "copymove_mask",
                    "class": "visual",
                    "artifact": f"sha256:{SHA['d']}",
                    "overlay": True,
                },
                {
                    "name": "copy_move",
                    "class": "indicator",
                    "region": [1, 2, 3, 4],
                    "source_region": [5, 6, 7, 8],
                },
                {"name": "bad", "class": "indicator", "region": [1, 2, 0, 4]},
            ),
        ),
    ]
    layers = markers.image_layers(results, (640, 480), sizes.get)
    assert [(o["analysis"], o["sha256"], o["label"]) for o in layers["overlays"]] == [
        ("ela", SHA["a"], "ela_map (image.ela)"),
        ("cm", SHA["d"], "copymove_mask (image.copymove)"),
    ]
    assert [(b["label"], b["x"], b["y"], b["w"], b["h"]) for b in layers["boxes"]] == [
        ("ela_peak_region (image.ela)", 16, 32, 40, 30),
        ("copy_move (image.copymove)", 1, 2, 3, 4),
        ("copy_move source (image.copymove)", 5, 6, 7, 8),
    ]


def test_no_overlay_by_size_when_the_photo_cannot_be_read():
    results = [Result("e", "image.ela", predicate({"class": "visual", "artifact": f"sha256:{SHA['a']}"}))]
    assert markers.image_layers(results, None, lambda sha: (10, 10))["overlays"] == []
    bad = [
        Result("e", "image.ela", predicate({"class": "visual", "artifact": "sha256:xyz", "overlay": True}))
    ]
    assert markers.image_layers(bad, (10, 10), lambda sha: (10, 10))["overlays"] == []


def test_alignment_maps_clip_times_to_reference_times():
    p = predicate(
        {"name": "segment", "at": [10.0, 20.0], "value": {"reference_at": [30.0, 40.0], "evidence": "ref"}},
        {"name": "segment", "at": [0.0, 10.0], "value": {"reference_at": [10.0, 20.5], "evidence": "ref"}},
        {"name": "segment", "at": [20.0, 20.0], "value": {"reference_at": [1.0, 2.0]}},  # empty: skipped
        {"name": "removed", "at": [10.0, 10.0], "value": {"reference_at": [20.5, 30.0]}},
    )
    segments = markers.alignment(p)
    assert segments == [
        {"clip": [0.0, 10.0], "reference": [10.0, 20.5]},
        {"clip": [10.0, 20.0], "reference": [30.0, 40.0]},
    ]
    assert markers.to_reference(segments, 15.0) == 35.0
    assert markers.to_reference(segments, 5.0) == pytest.approx(15.25)
    assert markers.to_reference(segments, 25.0) is None
    assert markers.reference_id(p) == "ref"
    assert markers.reference_id({"references": {"reference": {"id": "r2"}}, **p}) == "r2"
    assert markers.reference_id({}) is None


# --- Range parsing (pure) -----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=5-2", None),  # invalid: ignored, the whole file
        ("bytes=0-1,5-6", None),  # several: the whole file
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_range_header(header, expected):
    got = media.parse_range(header, 1000)
    assert (got and (got.start, got.end)) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0"])
def test_range_past_the_end_is_unsatisfiable(header):
    with pytest.raises(media.Unsatisfiable):
        media.parse_range(header, 1000)


# --- the media endpoint -----------------------------------------------------


def wav_bytes(seconds=1.0, tmp_path=None) -> bytes:
    """A tone with 0.3 s of digital silence in the middle (audio.signal reports it, with its time)."""
    half = tone(440, seconds / 2, 8000)
    path = write_wav(concat(half, silence(0.3, 8000), half), 8000, tmp_path / "tone.wav")
    return path.read_bytes()


def png_bytes(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


def item(as_alice, case_a, content, name):
    from custody.models import Evidence

    response = upload(as_alice, case_a, content, name=name)
    assert response.status_code == 201, response.content
    return Evidence.objects.get(pk=response.json()["id"])


def media_url_on_page(client, evidence) -> str:
    page = client.get(f"/evidence/{evidence.pk}/").content.decode()
    match = re.search(r'<(?:audio|img) [^>]*src="(/evidence/[^"]+/media/\?t=[^"]+)"', page)
    assert match, page
    return html.unescape(match.group(1))


def views_and_downloads(evidence) -> int:
    return LogEntry.objects.filter(
        evidence=evidence, action__in=["evidence.viewed", "evidence.downloaded"]
    ).count()


@pytest.fixture
def clip(as_alice, case_a, tmp_path):
    return item(as_alice, case_a, wav_bytes(1.0, tmp_path), "tone.wav")


def test_player_gets_ranges_and_one_page_view_covers_them_all(client, alice, clip):
    content = blob_store().path(clip.blob_id).read_bytes()
    client.force_login(alice)
    before = views_and_downloads(clip)
    url = media_url_on_page(client, clip)
    assert views_and_downloads(clip) == before + 1  # the page view

    whole = client.get(url)
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == content
    assert whole["Content-Type"] == "audio/wav" and whole["Content-Length"] == str(len(content))
    assert whole["Accept-Ranges"] == "bytes"
    assert whole["Content-Disposition"] == "inline"
    assert whole["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in whole["Cache-Control"]
    assert whole["Cross-Origin-Resource-Policy"] == "same-origin"

    part = client.get(url, HTTP_RANGE="bytes=100-299")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-299/{len(content)}"
    assert b"".join(part.streaming_content) == content[100:300] and part["Content-Length"] == "200"
    tail = client.get(url, HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206 and b"".join(tail.streaming_content) == content[-10:]
    past = client.get(url, HTTP_RANGE=f"bytes={len(content)}-")
    assert past.status_code == 416 and past["Content-Range"] == f"bytes */{len(content)}"
    head = client.head(url)
    assert head.status_code == 200 and head["Content-Length"] == str(len(content))

    # Five requests for bytes, no entry for any of them.
    assert views_and_downloads(clip) == before + 1


def test_token_is_for_one_user_and_one_item(client, alice, carol, clip, as_alice, case_a, tmp_path):
    client.force_login(alice)
    url = media_url_on_page(client, clip)
    other = item(as_alice, case_a, wav_bytes(0.5, tmp_path), "other.wav")
    # Alice's token for the clip does not open another item.
    assert client.get(url.replace(str(clip.pk), str(other.pk))).status_code == 403
    assert client.get(f"/evidence/{clip.pk}/media/").status_code == 403  # no token
    assert client.get(f"/evidence/{clip.pk}/media/?t=forged").status_code == 403
    # Carol (auditor on the case) may see the item, but not with Alice's token.
    client.force_login(carol)
    refused = client.get(url)
    assert refused.status_code == 403 and b"another user" in refused.content
    assert client.get(media_url_on_page(client, clip)).status_code == 200


def test_outsider_gets_404_and_the_refusal_is_logged(client, alice, dave, clip):
    client.force_login(alice)
    url = media_url_on_page(client, clip)
    client.force_login(dave)
    before = LogEntry.objects.filter(action="access.refused").count()
    assert client.get(url).status_code == 404
    assert LogEntry.objects.filter(action="access.refused").count() == before + 1


def test_expired_token_is_refused(client, alice, clip, monkeypatch):
    client.force_login(alice)
    url = media_url_on_page(client, clip)
    assert client.get(url).status_code == 200
    import time

    later = time.time() + media.TOKEN_MAX_AGE + 5
    monkeypatch.setattr("django.core.signing.time.time", lambda: later)
    refused = client.get(url)
    assert refused.status_code == 403 and b"expired" in refused.content


def test_only_playable_audio_and_raster_images_are_served(client, alice, as_alice, case_a):
    client.force_login(alice)
    page_item = item(as_alice, case_a, b"<html><script>alert(1)</script></html>", "page.html")
    svg = item(as_alice, case_a, b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>', "a.svg")
    for evidence in (page_item, svg):
        token = media.make_token(alice.pk, evidence.pk)
        response = client.get(f"/evidence/{evidence.pk}/media/", {"t": token})
        assert response.status_code == 415, evidence.media_type
        assert b"<" not in response.content and response["Content-Type"].startswith("text/plain")
        assert b'id="player"' not in client.get(f"/evidence/{evidence.pk}/").content


def test_amr_is_not_offered_to_the_browser(client, alice, as_alice, case_a):
    amr = item(as_alice, case_a, b"#!AMR\n" + bytes(200), "call.amr")
    assert amr.media_type == "audio/amr"
    client.force_login(alice)
    page = client.get(f"/evidence/{amr.pk}/").content.decode()
    assert 'id="not-playable"' in page and "<audio" not in page
    assert "Browsers do not play audio/amr" in page and "Download the evidence file" in page
    token = media.make_token(alice.pk, amr.pk)
    assert client.get(f"/evidence/{amr.pk}/media/", {"t": token}).status_code == 415


# --- pages ------------------------------------------------------------------


def run(alice, evidence, analyzer, **parameters):
    analysis = services.request_analysis(
        actor=alice, evidence=evidence, analyzer=analyzer, parameters=parameters
    )
    assert services.run_analysis(analysis.pk, worker="inline") == "succeeded"
    analysis.refresh_from_db()
    return analysis


def test_image_page_lists_overlays_and_boxes_of_the_analyses(client, alice, as_alice, case_a):
    photo = item(as_alice, case_a, png_bytes((96, 64)), "photo.png")
    analysis = run(alice, photo, "image.ela")
    client.force_login(alice)
    page = client.get(f"/evidence/{photo.pk}/").content.decode()
    assert 'id="photo"' in page and 'id="viewer"' in page
    layers = markers.image_layers_for(photo)
    assert layers["overlays"], "the ELA map (the photo's size) is an overlay"
    for overlay in layers["overlays"]:
        assert f"/analyses/{analysis.pk}/artifacts/{overlay['sha256']}/" in page
    assert layers["boxes"] and "ela_peak_region (image.ela)" in page
    assert 'id="image-layers"' in page


def test_audio_page_carries_markers_and_the_player(client, alice, clip):
    analysis = run(alice, clip, "audio.signal")
    expected = markers.audio_markers(markers.completed_results(clip))
    silent = [m for m in expected if m["label"] == "silence_run (audio.signal)"]
    assert len(silent) == 1, expected
    assert silent[0]["start"] == pytest.approx(0.5, abs=0.01)
    assert silent[0]["end"] == pytest.approx(0.8, abs=0.01)
    client.force_login(alice)
    page = client.get(f"/evidence/{clip.pk}/").content.decode()
    assert '<audio controls preload="metadata" src="/evidence/' in page
    assert 'src="/static/custody/player.js"' in page
    shown = json.loads(
        re.search(r'<script id="markers" type="application/json">(.*?)</script>', page).group(1)
    )
    assert shown == json.loads(json.dumps(expected))
    assert f'data-seek="{silent[0]["start"]}"' in page
    # Not an alignment: no side-by-side page for it.
    assert client.get(f"/analyses/{analysis.pk}/listen/").status_code == 404


def test_page_with_a_player_allows_only_the_players_stylesheet(client, alice, clip):
    client.force_login(alice)
    policy = client.get(f"/evidence/{clip.pk}/")["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["style-src"] == ["'self'", WAVESURFER_STYLE_HASH]
    assert directives["script-src"] == ["'self'"]
    assert "unsafe-inline" not in policy
    # A page without a player keeps style-src 'self' alone.
    assert "sha256-" not in client.get("/")["Content-Security-Policy"]


def test_the_allowed_hash_is_that_of_the_vendored_players_stylesheet():
    """wavesurfer.js writes this template, with the waveform height filled in, into its shadow root."""
    source = (ROOT / "static/vendor/wavesurfer/wavesurfer.esm.js").read_text()
    match = re.search(r"<style[^>]*>(.*?)</style>", source, re.DOTALL)
    assert match, "wavesurfer no longer writes a <style> element: drop the hash from custody/urls.py"
    height = re.search(r"height: (\d+), // part of the shadow-root stylesheet", PLAYER_JS.read_text()).group(
        1
    )
    text = re.sub(r"\$\{this\.getHeight\([^}]*\)\}", height, match.group(1).replace("\\n", "\n"))
    assert "${" not in text, "the stylesheet has a new interpolation: fill it in here"
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    assert WAVESURFER_STYLE_HASH == f"'sha256-{digest}'", "put this hash in custody/urls.py"


def test_side_by_side_page_logs_a_view_of_both_recordings(client, alice, as_alice, case_a, carol):
    reference, clip = meeting_and_clip()
    ref = item(as_alice, case_a, _wav(reference), "meeting.wav")
    leak = item(as_alice, case_a, _wav(clip), "leak.wav")
    analysis = run(alice, leak, "audio.context", reference=str(ref.pk))
    client.force_login(carol)
    assert f"/analyses/{analysis.pk}/listen/" in client.get(f"/analyses/{analysis.pk}/").content.decode()
    assert f"/analyses/{analysis.pk}/listen/" in client.get(f"/evidence/{leak.pk}/").content.decode()
    views = {e.pk: views_and_downloads(e) for e in (ref, leak)}
    # A link on another site gets a page that asks first, and logs nothing.
    asked = client.get(f"/analyses/{analysis.pk}/listen/", HTTP_SEC_FETCH_SITE="cross-site")
    assert b'id="confirm-open"' in asked.content and b"<audio" not in asked.content
    assert {e.pk: views_and_downloads(e) for e in (ref, leak)} == views
    page = client.get(f"/analyses/{analysis.pk}/listen/").content.decode()
    assert {e.pk: views_and_downloads(e) for e in (ref, leak)} == {k: v + 1 for k, v in views.items()}
    assert 'id="clip-audio"' in page and 'id="reference-audio"' in page and 'id="alignment"' in page
    urls = [html.unescape(u) for u in re.findall(r'<audio [^>]*src="([^"]+)"', page)]
    assert len(urls) == 2 and all(client.get(u).status_code == 200 for u in urls)
    alignment = json.loads(
        re.search(r'<script id="alignment" type="application/json">(.*?)</script>', page).group(1)
    )
    assert [[round(t) for t in s["reference"]] for s in alignment["segments"]] == [[10, 20], [30, 40]]
    assert [[round(t) for t in s["clip"]] for s in alignment["segments"]] == [[0, 10], [10, 20]]
