"""The case list's filters (issue 13, part 6), combined with its ``?q=`` search."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.utils import timezone
from PIL import Image

from custody import services
from custody.models import Evidence
from forensics import services as analyses

from .conftest import PASSWORD, force_login_verified, upload
from .test_forms import wav_bytes


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def cases(alice, bob, as_alice, as_bob, case_a, case_b):
    """A-1: a recording with a queued analysis; A-2 (made by bob, alice added): a picture with a
    failed analysis; A-3: a note waiting for a handover to erin. B-1 is bob's alone."""
    erin = services.create_user(actor=None, username="erin", password=PASSWORD, role="investigator")
    a2 = services.create_case(actor=bob, reference="A-2", title="Photos of the scene")
    services.add_member(actor=bob, case=a2, user=alice)
    a3 = services.create_case(actor=alice, reference="A-3", title="Notes")
    services.add_member(actor=alice, case=a3, user=erin)

    clip = Evidence.objects.get(pk=upload(as_alice, case_a, wav_bytes(), name="clip.wav").json()["id"])
    analyses.request_analysis(actor=alice, evidence=clip, analyzer="file.type")
    photo = Evidence.objects.get(pk=upload(as_bob, a2, png_bytes(), name="scene.png").json()["id"])
    failing = analyses.request_analysis(
        actor=bob, evidence=photo, analyzer="test.digest", parameters={"fail": True}
    )
    assert analyses.run_analysis(failing.pk, worker="inline") == "failed"
    note = Evidence.objects.get(pk=upload(as_alice, a3, b"notes\n", name="notes.txt").json()["id"])
    services.release_custody(actor=alice, evidence=note, to_user=erin, purpose="lab", location="room 2")
    upload(as_bob, case_b, wav_bytes(), name="elsewhere.wav")
    return {"erin": erin}


def listed(client, **params) -> list[str]:
    response = client.get("/", params)
    assert response.status_code == 200
    table = re.search(r'<table id="cases">(.*?)</table>', response.content.decode(), re.S).group(1)
    return re.findall(r'<a href="/cases/[0-9a-f-]+/">([^<]+)</a>', table)


@pytest.fixture
def web(client, alice):
    client.force_login(alice)
    return client


def test_filters_narrow_the_cases_the_user_can_see(web, cases):
    assert listed(web) == ["A-1", "A-2", "A-3"]  # never B-1
    assert listed(web, media="audio/") == ["A-1"]
    assert listed(web, media="image/") == ["A-2"]
    assert listed(web, handover="on") == ["A-3"]
    assert listed(web, analyses="pending") == ["A-1"]
    assert listed(web, analyses="failed") == ["A-2"]
    assert listed(web, mine="created") == ["A-1", "A-3"]
    assert listed(web, mine="member") == ["A-1", "A-2", "A-3"]


def test_filters_combine_with_each_other_and_with_the_search(web, cases):
    assert listed(web, q="photos", media="image/") == ["A-2"]
    assert listed(web, q="photos", media="audio/") == []
    assert listed(web, mine="created", media="text/") == ["A-3"]
    html = web.get("/", {"q": "photos", "media": "audio/"}).content.decode()
    assert "No case of yours matches “photos” and the filters." in html
    assert 'href="/">Show all</a>' in html
    # The form shows what was chosen.
    assert '<option value="audio/" selected>' in html and 'value="photos"' in html


def test_date_filters_and_their_errors(web, cases):
    today = timezone.now().date()
    yesterday = today - dt.timedelta(days=1)
    assert listed(web, since=today.isoformat()) == ["A-1", "A-2", "A-3"]
    assert listed(web, until=yesterday.isoformat()) == []
    # A bad value is said next to its field and not applied; the other filters still are.
    html = web.get("/", {"since": "last tuesday"}).content.decode()
    assert "Enter a valid date." in html and 'href="/">Show all</a>' in html
    assert listed(web, since="last tuesday", media="audio/") == ["A-1"]
    html = web.get("/", {"since": today.isoformat(), "until": yesterday.isoformat()}).content.decode()
    assert "must not be before the start date" in html
    unknown = web.get("/", {"media": "application/x-anything"}).content.decode()
    assert "Select a valid choice" in unknown


def test_administrator_narrows_to_own_cases(client, root, cases):
    force_login_verified(client, root)
    assert listed(client) == ["A-1", "A-2", "A-3", "B-1"]
    assert listed(client, mine="member") == []  # an administrator sees every case, a member of none
    assert listed(client, media="audio/") == ["A-1", "B-1"]


def test_handover_filter_of_the_receiver(client, cases):
    client.force_login(cases["erin"])
    assert listed(client) == ["A-3"] and listed(client, handover="on") == ["A-3"]
    assert listed(client, media="audio/") == []
