"""The S3 blob store against a real S3-compatible server (SeaweedFS on loopback, tests/s3_fixtures.py).

Intake through the API writes a locked object named by its SHA-256 and
checked by the store; downloads, analyses, exports and fixity read what the
store returns; a store that is down refuses intake with 503 and keeps
nothing; a large upload streams in parts with flat memory.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
import threading
import zipfile
from pathlib import Path

import bagit
import pytest
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.management import CommandError, call_command

from custody import services, storage
from custody.models import Evidence, LogEntry
from custody.storage import BlobError, BlobStoreUnavailable, S3BlobStore, blob_store, parse_blob_store
from forensics import services as forensics
from forensics.models import Analysis

from . import s3_fixtures
from .conftest import run_verify_log, upload
from .s3_fixtures import LOCKED, PLAIN, VERSIONED

# The fixtures this module uses (the server starts only for tests that ask for it).
seaweed, s3_settings, s3_store = s3_fixtures.seaweed, s3_fixtures.s3_settings, s3_fixtures.s3_store
own_seaweed, own_s3_settings = s3_fixtures.own_seaweed, s3_fixtures.own_s3_settings

MB = 1 << 20


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def leftovers() -> list[str]:
    """Files left in the upload temp dir (uploads, fetched copies) and in the local blob dir."""
    found = [p.name for p in Path(settings.FILE_UPLOAD_TEMP_DIR).rglob("*") if p.is_file()]
    return found + [p.name for p in Path(settings.CUSTODY_BLOB_DIR).rglob("*") if p.is_file()]


def last_entry() -> dict:
    import json

    entry = LogEntry.objects.order_by("-index").first()
    return {"action": entry.action, **json.loads(bytes(entry.leaf))}


# --- configuration (no server needed) ----------------------------------------


def test_blob_store_setting_is_parsed_strictly():
    assert parse_blob_store("") == ("file", "", "")
    assert parse_blob_store("s3://evidence") == ("s3", "evidence", "")
    assert parse_blob_store("s3://evidence/custody/prod/") == ("s3", "evidence", "custody/prod")
    for bad in ("/srv/blobs", "gs://bucket/x", "s3:///nobucket", "s3://b/p?versionId=1"):
        with pytest.raises(BlobError, match="CUSTODY_BLOB_STORE"):
            parse_blob_store(bad)
    with pytest.raises(BlobError, match="RETENTION_DAYS"):
        S3BlobStore("evidence", retention_days=0)


# --- intake, download ----------------------------------------------------------


def test_intake_writes_a_locked_checksummed_object_and_download_streams_it(
    as_alice, case_a, s3_store, seaweed
):
    data = b"RIFF an interview recording " * 4000
    body = upload(as_alice, case_a, data, name="interview.wav").json()
    sha = hashlib.sha256(data).hexdigest()
    assert body["sha256"] == sha

    key = f"{s3_store.prefix}/sha256/{sha[:2]}/{sha}"
    head = seaweed.client().head_object(Bucket=LOCKED, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert head["ChecksumSHA256"] == b64_sha256(data)  # checked by the store on upload
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["VersionId"]
    until = head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23) < until <= dt.timedelta(days=1)
    assert leftovers() == []  # no local copy: neither the upload's temp file nor a blob

    response = as_alice.get(f"/api/v1/evidence/{body['id']}/content/", {"reason": "expert copy"})
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Length"] == str(len(data))
    assert response["Repr-Digest"] == f"sha-256=:{b64_sha256(data)}:"
    assert last_entry()["action"] == "evidence.downloaded"

    # The same bytes again: a second item, no second object, and writing once is the store's rule too.
    again = upload(as_alice, case_a, data, name="copy.wav").json()
    assert again["sha256"] == sha and again["id"] != body["id"]
    versions = seaweed.client().list_object_versions(Bucket=LOCKED, Prefix=key)["Versions"]
    assert [v["VersionId"] for v in versions] == [head["VersionId"]]
    with pytest.raises(ClientError, match="PreconditionFailed"):
        seaweed.client().put_object(
            Bucket=LOCKED, Key=key, Body=b"other", ChecksumSHA256=b64_sha256(b"other"), IfNoneMatch="*"
        )


def test_store_checks_the_digest_it_is_given(s3_store, seaweed, tmp_path):
    """A file that no longer hashes to its name is never stored (single PUT: the store's check; parts: ours)."""
    small = tmp_path / "small"
    small.write_bytes(b"what was hashed")
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(BlobError, match="no longer hashes"):
        s3_store.put_file(small, wrong, small.stat().st_size)
    # Bypassing our own check, the store itself refuses a body that does not match its checksum.
    with pytest.raises(ClientError, match="BadDigest"):
        seaweed.client().put_object(
            Bucket=LOCKED, Key=s3_store.key(wrong), Body=b"what was hashed", ChecksumSHA256=b64_sha256(b"x")
        )

    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.write(os.urandom(17 * MB))
    with pytest.raises(BlobError, match="no longer hashes"):
        s3_store.put_file(big, wrong, big.stat().st_size)
    assert not s3_store.exists(wrong)
    client = seaweed.client()
    assert not client.list_multipart_uploads(Bucket=LOCKED, Prefix=s3_store.prefix).get("Uploads")


# --- analyses and exports --------------------------------------------------------


def test_analysis_runs_on_a_verified_local_copy_and_export_streams_from_the_store(
    as_alice, case_a, s3_store, seaweed, tmp_path
):
    data = b"RIFF the clip bytes " * 500
    body = upload(as_alice, case_a, data, name="clip.wav").json()
    analysis_id = as_alice.post(
        f"/api/v1/evidence/{body['id']}/analyses/", {"analyzer": "test.digest"}, format="json"
    ).json()["id"]
    assert forensics.run_analysis(analysis_id, worker="inline") == "succeeded"
    analysis = Analysis.objects.get(pk=analysis_id)
    (artifact,) = analysis.artifacts.all()
    assert s3_store.exists(artifact.blob_id) and s3_store.exists(analysis.statement_sha256)
    assert leftovers() == []  # the fetched copy went with the run
    content = as_alice.get(f"/api/v1/analyses/{analysis_id}/artifacts/{artifact.blob_id}/")
    assert hashlib.sha256(b"".join(content.streaming_content)).hexdigest() == artifact.blob_id

    response = as_alice.get(f"/api/v1/evidence/{body['id']}/export/", {"include_file": "1"})
    assert response.status_code == 200, response.content
    pieces = []
    for piece in response.streaming_content:  # from the store into the response: no local copy on the way
        assert leftovers() == []
        pieces.append(piece)
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as archive:
        archive.extractall(tmp_path / "bag")
    (bag_dir,) = list((tmp_path / "bag").iterdir())
    bagit.Bag(str(bag_dir)).validate()
    assert (bag_dir / "data" / "evidence" / body["sha256"]).read_bytes() == data
    (stored,) = list((bag_dir / "data" / "analyses" / analysis_id / "artifacts").iterdir())
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == artifact.blob_id
    assert leftovers() == []


# --- fixity ------------------------------------------------------------------------


def test_locked_object_cannot_be_replaced_and_fixity_rehashes_what_the_store_returns(
    as_alice, case_a, s3_store, seaweed
):
    data = b"the original recording\n" * 100
    body = upload(as_alice, case_a, data).json()
    evidence = Evidence.objects.get(pk=body["id"])
    assert services.check_fixity(evidence=evidence)
    assert last_entry()["details"] == {"ok": True, "sha256": body["sha256"], "size": len(data)}

    client, key = seaweed.client(), s3_store.key(body["sha256"])
    original = client.head_object(Bucket=LOCKED, Key=key)["VersionId"]
    # The guarantee: under COMPLIANCE retention nobody can delete the version or shorten its lock.
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=LOCKED, Key=key, VersionId=original)
    with pytest.raises(ClientError):
        client.put_object_retention(
            Bucket=LOCKED,
            Key=key,
            VersionId=original,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": dt.datetime.now(dt.UTC)},
        )

    # What S3 still allows on a versioned bucket: a newer version on top, which a GET then returns.
    forged = b"a different recording\n" * 100
    client.put_object(Bucket=LOCKED, Key=key, Body=forged)
    assert not services.check_fixity(evidence=evidence)
    details = last_entry()["details"]
    assert details == {"ok": False, "sha256": hashlib.sha256(forged).hexdigest(), "size": len(forged)}
    code, out = run_verify_log()
    assert code != 0 and f"blob {body['sha256']}: content no longer matches" in out
    # An analysis refuses the forged bytes, and the original is still in the store, intact.
    analysis_id = as_alice.post(
        f"/api/v1/evidence/{body['id']}/analyses/", {"analyzer": "test.digest"}, format="json"
    ).json()["id"]
    assert forensics.run_analysis(analysis_id, worker="inline") == "failed"
    assert "no longer match" in Analysis.objects.get(pk=analysis_id).error
    kept = client.get_object(Bucket=LOCKED, Key=key, VersionId=original)["Body"].read()
    assert kept == data


# --- the store down ------------------------------------------------------------------


def test_store_down_intake_answers_503_and_keeps_nothing(
    as_alice, alice, client, case_a, own_seaweed, own_s3_settings
):
    body = upload(as_alice, case_a, b"stored before the outage").json()
    evidence = Evidence.objects.get(pk=body["id"])
    entries, items = LogEntry.objects.count(), Evidence.objects.count()
    own_seaweed.stop()
    response = upload(as_alice, case_a, b"arrives during the outage")
    assert response.status_code == 503
    assert response["Retry-After"] == str(services.STORE_RETRY_AFTER)
    assert "evidence store is unavailable, nothing was stored" in response.json()["detail"]
    # No evidence, no log entry, no receipt, no temporary file.
    assert (LogEntry.objects.count(), Evidence.objects.count()) == (entries, items)
    assert leftovers() == []

    # A download is refused the same way and not logged as made.
    response = as_alice.get(f"/api/v1/evidence/{body['id']}/content/", {"reason": "court"})
    assert response.status_code == 503 and response["Retry-After"]
    assert LogEntry.objects.count() == entries
    client.force_login(alice)  # the web page's download: back to the item, with the reason why
    response = client.post(f"/evidence/{body['id']}/download/", {"reason": "court"}, follow=True)
    assert b"evidence store is unavailable" in response.content
    assert not LogEntry.objects.filter(action="evidence.downloaded").exists()

    # Fixity says the store was unavailable, not that the bytes are corrupt.
    assert not services.check_fixity(evidence=evidence)
    details = last_entry()["details"]
    assert details["ok"] is False and details["error"].startswith("store unavailable")
    with pytest.raises(BlobStoreUnavailable):
        blob_store().open(body["sha256"])


# --- bucket guarantees -----------------------------------------------------------------


def test_check_blob_store_names_what_the_bucket_lacks(s3_settings, seaweed, settings):
    out = io.StringIO()
    call_command("check_blob_store", stdout=out)
    assert "Object Lock: each blob in COMPLIANCE retention for 1 days" in out.getvalue()

    settings.CUSTODY_BLOB_STORE = f"s3://{VERSIONED}/x"
    blob_store.cache_clear()
    call_command("check_blob_store", stdout=out)
    assert "versioning (no Object Lock" in out.getvalue()

    settings.CUSTODY_BLOB_STORE = f"s3://{PLAIN}/x"
    blob_store.cache_clear()
    with pytest.raises(CommandError, match="neither Object Lock nor versioning"):
        call_command("check_blob_store")
    # Nothing is written to such a bucket.
    with pytest.raises(BlobError, match="neither Object Lock nor versioning"):
        blob_store().put_bytes(b"x", hashlib.sha256(b"x").hexdigest())

    settings.CUSTODY_BLOB_STORE = "s3://no-such-bucket/x"
    blob_store.cache_clear()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("check_blob_store")


# --- memory ----------------------------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_large_upload_streams_in_parts_with_flat_memory(s3_store, seaweed, tmp_path):
    size = 200 * MB
    path, digest = tmp_path / "large.bin", hashlib.sha256()
    block = os.urandom(MB)
    with open(path, "wb") as f:
        for i in range(size // MB):
            chunk = block[:-4] + i.to_bytes(4, "big")
            digest.update(chunk)
            f.write(chunk)
    sha = digest.hexdigest()

    baseline, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert s3_store.put_file(path, sha, size)
        with s3_store.open(sha) as f:
            read_back = hashlib.sha256()
            while chunk := f.read(MB):
                read_back.update(chunk)
    finally:
        done.set()
        sampler.join()
    growth = peak[0] - baseline
    assert read_back.hexdigest() == sha
    assert growth < 64 * MB, f"RSS grew by {growth / MB:.0f} MB for a {size // MB} MB upload"

    head = seaweed.client().head_object(Bucket=LOCKED, Key=s3_store.key(sha), ChecksumMode="ENABLED")
    assert head["ContentLength"] == size and head["ObjectLockMode"] == "COMPLIANCE"
    # A multipart upload: the store checked each part's SHA-256.
    assert head["ChecksumSHA256"].endswith(f"-{-(-size // storage.S3_PART_SIZE)}")
    assert not s3_store.put_file(path, sha, size)  # written once
