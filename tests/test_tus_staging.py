"""Resumable uploads that move between web nodes through an upload staging store (a real SeaweedFS).

A "node" here is what one web host has of its own: its resumable directory
and its processes' hash states. The tests switch both between PATCHes, as a
load balancer sending the next request to another host would; the database
and the staging bucket are shared, as they are in production. The same
thing with real processes on separate data dirs is tests/test_multihost.py.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from custody import tus
from custody.models import Evidence, ResumableUpload
from custody.storage import upload_staging

from . import s3_fixtures
from .s3_fixtures import ACCESS_KEY, PLAIN, REGION, SECRET_KEY
from .test_tus import TUS, create, digests, patch, path_of

pytestmark = pytest.mark.slow
seaweed = s3_fixtures.seaweed  # the server starts only for tests that ask for it


@pytest.fixture
def staging(seaweed, settings, monkeypatch, tmp_path):
    """CUSTODY_UPLOAD_STAGING on the bucket without Object Lock, under a prefix of this test's own."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    prefix = f"staging-{uuid.uuid4().hex[:12]}"
    settings.CUSTODY_UPLOAD_STAGING = f"s3://{PLAIN}/{prefix}"
    settings.CUSTODY_S3_ENDPOINT_URL = seaweed.endpoint
    settings.CUSTODY_S3_REGION = REGION
    settings.CUSTODY_S3_MAX_ATTEMPTS = 1
    settings.CUSTODY_RESUMABLE_DIR = tmp_path / "node-a"
    upload_staging.cache_clear()
    yield prefix
    upload_staging.cache_clear()
    tus._states.clear()


def staged_keys(seaweed, prefix: str) -> list[str]:
    listed = seaweed.client().list_objects_v2(Bucket=PLAIN, Prefix=f"{prefix}/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def move_to(settings, tmp_path, node: str) -> None:
    """The next request lands on another host: its own directory, no hash state of this upload."""
    settings.CUSTODY_RESUMABLE_DIR = tmp_path / node
    tus._states.clear()


def test_an_upload_continues_on_another_node(as_alice, case_a, staging, seaweed, settings, tmp_path):
    content = os.urandom(5 * 1024 * 1024 + 77)
    url = path_of(create(as_alice, case_a, len(content), filename="clip.wav")["Location"])
    first, second = 2 * 1024 * 1024, 4 * 1024 * 1024
    assert patch(as_alice, url, content[:first], 0).status_code == 204
    upload = ResumableUpload.objects.get()
    assert [(p["start"], p["end"]) for p in upload.staged] == [(0, first)]
    assert upload.staged[0]["sha256"] == hashlib.sha256(content[:first]).hexdigest()
    assert len(staged_keys(seaweed, staging)) == 1

    move_to(settings, tmp_path, "node-b")
    assert as_alice.head(url, **TUS)["Upload-Offset"] == str(first)
    assert patch(as_alice, url, content[first:second], first).status_code == 204
    node_b = tmp_path / "node-b" / str(upload.pk)
    assert node_b.read_bytes() == content[:second]  # rebuilt from the staged piece, then the new bytes

    move_to(settings, tmp_path, "node-a")  # back: node a holds only the first piece
    done = patch(as_alice, url, content[second:], second)
    assert done.status_code == 204, done.content
    evidence = Evidence.objects.get()
    assert done["Custody-Evidence"] == f"/api/v1/evidence/{evidence.pk}/"
    assert evidence.blob_id == hashlib.sha256(content).hexdigest()
    assert (evidence.blob.sha1, evidence.blob.md5) == (digests(content)["sha1"], digests(content)["md5"])
    assert staged_keys(seaweed, staging) == []  # evidence now: the staged pieces are gone


def test_a_staged_piece_that_changed_is_not_trusted(as_alice, case_a, staging, seaweed, settings, tmp_path):
    content = os.urandom(3 * 1024 * 1024)
    url = path_of(create(as_alice, case_a, len(content))["Location"])
    assert patch(as_alice, url, content[:1_000_000], 0).status_code == 204
    (key,) = staged_keys(seaweed, staging)
    seaweed.client().put_object(Bucket=PLAIN, Key=key, Body=b"\0" * 1_000_000)  # same size, other bytes

    move_to(settings, tmp_path, "node-b")
    answer = patch(as_alice, url, content[1_000_000:2_000_000], 1_000_000)
    assert answer.status_code == 409 and answer["Upload-Offset"] == "0"  # start again from what holds
    assert ResumableUpload.objects.get().staged == []
    assert patch(as_alice, url, content, 0).status_code == 204
    assert Evidence.objects.get().blob_id == hashlib.sha256(content).hexdigest()


def test_staging_store_down_counts_nothing(as_alice, case_a, staging, settings):
    content = os.urandom(2_000_000)
    url = path_of(create(as_alice, case_a, len(content))["Location"])
    settings.CUSTODY_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    upload_staging.cache_clear()
    answer = patch(as_alice, url, content[:1_000_000], 0)
    assert answer.status_code == 503, answer.content
    assert answer["Upload-Offset"] == "0" and answer["Retry-After"]
    upload = ResumableUpload.objects.get()
    assert upload.offset == 0 and upload.staged == []
    assert (settings.CUSTODY_RESUMABLE_DIR / str(upload.pk)).stat().st_size == 0


def test_termination_and_the_sweeper_remove_staged_pieces(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    content = os.urandom(2_000_000)
    url = path_of(create(as_alice, case_a, len(content))["Location"])
    assert patch(as_alice, url, content[:1_000_000], 0).status_code == 204
    move_to(settings, tmp_path, "node-b")
    assert as_alice.delete(url, **TUS).status_code == 204
    assert staged_keys(seaweed, staging) == []

    # Pieces no upload names (their node died before removing them) go once old enough.
    seaweed.client().put_object(Bucket=PLAIN, Key=f"{staging}/{uuid.uuid4()}/0-1-x", Body=b"x")
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = 3600
    tus.sweep_expired()
    assert len(staged_keys(seaweed, staging)) == 1  # recent: it may belong to an upload being made
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
    tus.sweep_expired()
    assert staged_keys(seaweed, staging) == []
