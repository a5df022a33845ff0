"""Attacks on resumable uploads that move between web nodes through the staging store.

The adversaries: a client that lies or sends different bytes after a reset,
a node that dies between two steps, an operator with access to the staging
bucket, and a DBA who edits an upload's ``staged`` list (under the upload's
progress seal: refused, and nothing is fetched for it). What must hold
whatever they do: the evidence (its digests, its receipt) is exactly the
bytes the client's accepted PATCHes carried, in their places; hostile
content in the database or the bucket gets a clean JSON answer, never a
500; staged objects go in the end; one upload never reads or removes
another upload's bytes.

Nodes are simulated as in tests/test_tus_staging.py (own resumable
directory, no hash states); the database and the bucket are shared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tracemalloc
import uuid

import pytest
from django.db import connection, connections
from django.db.models import JSONField, Value

from custody import tus
from custody.models import Evidence, ResumableUpload
from custody.storage import STAGING_PIECE, UploadStaging, blob_store, upload_staging

from . import test_tus_staging
from .s3_fixtures import PLAIN
from .test_tus import TUS, create, digests, patch, path_of
from .test_tus_staging import move_to, staged_keys

pytestmark = pytest.mark.slow
seaweed = test_tus_staging.seaweed  # the fixtures of tests/test_tus_staging.py
staging = test_tus_staging.staging

MB = 1_000_000


def start(client, case, content: bytes, first: int) -> tuple[str, ResumableUpload]:
    """An upload of ``content`` whose first ``first`` bytes went in on the current node."""
    url = path_of(create(client, case, len(content))["Location"])
    answer = patch(client, url, content[:first], 0)
    assert answer.status_code == 204, answer.content
    return url, ResumableUpload.objects.get(pk=url.rstrip("/").rsplit("/", 1)[1])


def set_staged(upload: ResumableUpload, staged) -> None:
    # Value(..., JSONField()) so that None is stored as JSON null, not SQL NULL.
    ResumableUpload.objects.filter(pk=upload.pk).update(staged=Value(staged, output_field=JSONField()))


def assert_evidence_is(content: bytes) -> None:
    """The one evidence holds exactly ``content``: its digests, its receipt's subject, the stored bytes."""
    evidence = Evidence.objects.get()
    expected = digests(content)
    blob = evidence.blob
    assert (blob.sha256, blob.sha1, blob.md5, blob.size) == (
        expected["sha256"],
        expected["sha1"],
        expected["md5"],
        len(content),
    )
    statement = json.loads(base64.b64decode(evidence.receipt["payload"]))
    assert statement["subject"][0]["digest"] == expected
    with blob_store().open(blob.sha256) as stored:
        assert stored.read() == content


def assert_refused_as_changed(answer) -> None:
    """The upload's progress seal does not hold: 410, and a detail that says why."""
    assert_clean(answer, 410)
    assert "changed outside the server" in answer.json()["detail"]


def assert_clean(answer, *statuses) -> None:
    """A deliberate answer: one of ``statuses``, with a JSON detail."""
    assert answer.status_code in statuses, (answer.status_code, answer.content)
    assert "detail" in answer.json()


# --- the bucket: an operator deletes, replaces or adds staged objects ------------------------


def test_a_deleted_staged_piece_means_resume_from_what_holds(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    """An operator deleted a staged object: the next node resumes from the last good byte, no 500."""
    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, content, MB)
    (key,) = staged_keys(seaweed, staging)
    seaweed.client().delete_object(Bucket=PLAIN, Key=key)

    move_to(settings, tmp_path, "node-b")
    answer = patch(as_alice, url, content[MB : 2 * MB], MB)
    assert_clean(answer, 409)
    assert answer["Upload-Offset"] == "0"
    assert ResumableUpload.objects.get().staged == []
    assert patch(as_alice, url, content, 0).status_code == 204
    assert_evidence_is(content)


def test_a_replaced_object_far_larger_than_its_piece_is_not_read_whole(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    """An object replaced by a huge one: refused on its size, without holding it all in memory."""
    content = os.urandom(2 * MB)
    url, _ = start(as_alice, case_a, content, MB)
    (key,) = staged_keys(seaweed, staging)
    seaweed.client().put_object(Bucket=PLAIN, Key=key, Body=b"\0" * (48 * MB))

    move_to(settings, tmp_path, "node-b")
    tracemalloc.start()
    try:
        answer = patch(as_alice, url, content[MB:], MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_clean(answer, 409)
    assert answer["Upload-Offset"] == "0"
    assert peak < 16 * MB, f"{peak} bytes held to check a 1 MB piece"


def test_objects_added_under_an_upload_are_neither_read_nor_kept(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    """Objects an operator adds under an upload's prefix (or another's) change nothing, and go in the end."""
    content = os.urandom(3 * MB)
    url, upload = start(as_alice, case_a, content, MB)
    planted = f"{staging}/{upload.pk}/{0:016d}-{MB:016d}-deadbeef"
    seaweed.client().put_object(Bucket=PLAIN, Key=planted, Body=b"\0" * MB)

    move_to(settings, tmp_path, "node-b")
    assert patch(as_alice, url, content[MB : 2 * MB], MB).status_code == 204
    move_to(settings, tmp_path, "node-c")
    assert patch(as_alice, url, content[2 * MB :], 2 * MB).status_code == 204
    assert_evidence_is(content)
    assert staged_keys(seaweed, staging) == [planted]  # not the upload's: left to the sweeper
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
    tus.sweep_expired()
    assert staged_keys(seaweed, staging) == []


# --- a DBA edits ``staged`` ----------------------------------------------------------------

HOSTILE = {
    "an object": {"start": 0, "end": MB},
    "a string": "0-1000000",
    "JSON null": None,
    "a number": 7,
    "pieces without keys": [{}],
    "start as text": [{"start": "0", "end": MB, "name": "x", "sha256": "0" * 64}],
    "fractional bounds": [{"start": 0.5, "end": MB, "name": "x", "sha256": "0" * 64}],
    "a list of lists": [[0, MB]],
}


@pytest.mark.parametrize("staged", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_staged_list_that_is_not_one_gets_clean_answers(
    as_alice, case_a, staging, seaweed, settings, tmp_path, staged
):
    """Hostile ``staged`` JSON: PATCH elsewhere is refused (the progress seal), DELETE and the
    sweeper still work."""
    content = os.urandom(2 * MB)
    url, upload = start(as_alice, case_a, content, MB)
    set_staged(upload, staged)

    move_to(settings, tmp_path, "node-b")
    assert_refused_as_changed(patch(as_alice, url, content[MB:], MB))
    assert as_alice.delete(url, **TUS).status_code == 204

    # The sweeper meets such a record among expired ones and still removes them all.
    url, upload = start(as_alice, case_a, content, MB)
    set_staged(upload, staged)
    start(as_alice, case_a, content, MB)
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
    assert tus.sweep_expired() == 2
    assert not ResumableUpload.objects.exists()


def _gap(upload, pieces, other):
    return [pieces[0], pieces[2]]  # the middle piece is forgotten


def _swapped(upload, pieces, other):
    first, second = pieces[:2]
    return [
        {**second, "start": first["start"], "end": first["end"]},
        {**first, "start": second["start"], "end": second["end"]},
        pieces[2],
    ]


def _named_into_the_other(upload, pieces, other):
    return [{**other.staged[0], "name": f"../{other.pk}/{other.staged[0]['name']}"}, *pieces[1:]]


def _the_others_list(upload, pieces, other):
    return other.staged


def _wrong_digest(upload, pieces, other):
    return [{**pieces[0], "sha256": hashlib.sha256(b"other").hexdigest()}, *pieces[1:]]


def _duplicate(upload, pieces, other):
    return [pieces[0], {**pieces[0], "name": pieces[0]["name"][:-8] + "00000000"}, *pieces[1:]]


def _bogus_after(upload, pieces, other):
    bogus = [
        {"start": i, "end": i + 1, "name": f"{i:016d}-{i + 1:016d}-00000000", "sha256": "0" * 64}
        for i in range(20_000)
    ]
    return pieces + bogus


def _overlap(upload, pieces, other, *, seaweed=None, staging=None, content=None):
    """An added object over 0.5-1.5 MB, recorded with its own (true) digest between the real
    pieces: each piece checks out alone; together they would put other bytes at 1-1.5 MB."""
    half = MB // 2
    forged = content[half:MB] + b"\0" * half
    name = f"{half:016d}-{half + MB:016d}-0badf00d"
    seaweed.client().put_object(Bucket=PLAIN, Key=f"{staging}/{upload.pk}/{name}", Body=forged)
    overlap = {"start": half, "end": half + MB, "name": name, "sha256": hashlib.sha256(forged).hexdigest()}
    return [pieces[0], overlap, *pieces[1:]]


# Each edit, and where the staged bytes it leaves would end if the store were asked for them.
EDITS = {
    "a gap": (_gap, MB),
    "pieces swapped with their digests": (_swapped, 0),
    "a name into another upload": (_named_into_the_other, 0),
    "another upload's list": (_the_others_list, 0),
    "a wrong digest": (_wrong_digest, 0),
    "a duplicate piece": (_duplicate, MB),
    "a huge list of bogus pieces": (_bogus_after, MB),
    "an overlapping piece": (_overlap, MB),
}


def _three_pieces_and_another(as_alice, case_a, content):
    """An upload of ``content`` with three staged pieces (0-1, 1-2, 2-3 MB), and another upload."""
    _, other = start(as_alice, case_a, os.urandom(2 * MB), MB)
    url, upload = start(as_alice, case_a, content, MB)
    assert patch(as_alice, url, content[MB : 2 * MB], MB).status_code == 204
    assert patch(as_alice, url, content[2 * MB : 3 * MB], 2 * MB).status_code == 204
    upload.refresh_from_db()
    assert [(p["start"], p["end"]) for p in upload.staged] == [(0, MB), (MB, 2 * MB), (2 * MB, 3 * MB)]
    return url, upload, other


def _edit(name, upload, other, seaweed, staging, content):
    edit, _ = EDITS[name]
    extra = {"seaweed": seaweed, "staging": staging, "content": content} if edit is _overlap else {}
    return edit(upload, list(upload.staged), other, **extra)


@pytest.mark.parametrize("name", list(EDITS))
def test_a_staged_record_edited_in_the_database_is_refused_and_nothing_is_fetched(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch, name
):
    """The pieces and their digests are under the upload's progress seal: a record edited to
    move, drop, add or borrow pieces is refused on every node (410, start a new upload) before
    anything is fetched from the store; DELETE removes only the upload's own pieces."""
    content = os.urandom(4 * MB)
    url, upload, other = _three_pieces_and_another(as_alice, case_a, content)
    set_staged(upload, _edit(name, upload, other, seaweed, staging, content))
    fetched = count_restored(monkeypatch)

    for node in ("node-a", "node-b"):  # the node that holds the bytes, and one that would fetch them
        move_to(settings, tmp_path, node)
        assert_refused_as_changed(patch(as_alice, url, content[3 * MB :], 3 * MB))
        assert as_alice.head(url, **TUS).status_code == 410
    assert fetched == []
    assert not Evidence.objects.exists()
    assert as_alice.delete(url, **TUS).status_code == 204
    assert not ResumableUpload.objects.filter(pk=upload.pk).exists()
    assert [k for k in staged_keys(seaweed, staging) if f"/{other.pk}/" in k] == [
        f"{staging}/{other.pk}/{other.staged[0]['name']}"
    ]


@pytest.mark.parametrize("name", list(EDITS))
def test_the_store_believes_only_pieces_of_the_upload_that_follow_on(
    as_alice, case_a, staging, seaweed, settings, tmp_path, name
):
    """Beneath the seal: a staged list, whatever it says, rebuilds only the upload's own pieces,
    each checked, in their places, from byte 0 to the first gap, overlap or bad piece."""
    content = os.urandom(4 * MB)
    _, upload, other = _three_pieces_and_another(as_alice, case_a, content)
    pieces = _edit(name, upload, other, seaweed, staging, content)
    path = tmp_path / "rebuilt"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        end = upload_staging().restore(upload.pk, pieces, fd, 0)
    finally:
        os.close(fd)
    assert end == EDITS[name][1]
    assert path.read_bytes() == content[:end]


@pytest.mark.xfail(
    strict=True,
    reason="an upload's progress put back to an earlier state the server sealed holds (nothing outside "
    "the database says it moved on): once the upload is evidence its staged pieces are gone, so the "
    "next node rolls back to 0 and the client's resent bytes become a second item",
)
def test_a_finished_uploads_earlier_progress_put_back_makes_no_second_item(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    content = os.urandom(2 * MB)
    url, upload = start(as_alice, case_a, content, MB)
    fields = ("offset", "offset_sha256", "staged", "progress_mac", "evidence")
    earlier = ResumableUpload.objects.filter(pk=upload.pk).values(*fields).get()
    assert patch(as_alice, url, content[MB:], MB).status_code == 204
    ResumableUpload.objects.filter(pk=upload.pk).update(**earlier)  # as it was half-way

    move_to(settings, tmp_path, "node-b")
    answer = patch(as_alice, url, content[MB:], MB)  # the client resumes where HEAD says
    if answer.status_code == 409 and answer["Upload-Offset"] == "0":
        patch(as_alice, url, content, 0)  # as a tus client does after a 409
    assert Evidence.objects.count() == 1


# --- a client that sends other bytes after a reset --------------------------------------------


def test_bytes_a_node_kept_before_a_reset_are_not_mixed_with_the_resent_ones(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    """Node A wrote 0..1 MB; node B found the staged copy bad and reset the upload to 0; the
    client sent other bytes from 0 on B; back on A, A must not keep its old first MB."""
    old = os.urandom(MB)
    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, old + content[MB:], MB)  # node A: its hash state covers 0..1 MB
    node_a = dict(tus._states)
    (key,) = staged_keys(seaweed, staging)
    seaweed.client().put_object(Bucket=PLAIN, Key=key, Body=b"\0" * MB)

    move_to(settings, tmp_path, "node-b")
    answer = patch(as_alice, url, content[MB : 2 * MB], MB)
    assert answer.status_code == 409 and answer["Upload-Offset"] == "0"
    assert patch(as_alice, url, content[: 2 * MB], 0).status_code == 204  # other first MB this time

    move_to(settings, tmp_path, "node-a")
    tus._states.update(node_a)  # node A's process still holds its state of the upload
    done = patch(as_alice, url, content[2 * MB :], 2 * MB)
    assert done.status_code == 204, done.content
    assert_evidence_is(content)


# --- a node that dies between two steps ------------------------------------------------------


class Died(BaseException):
    """The process ends here (nothing after it runs, no handler cleans up)."""


def test_death_after_staging_before_the_offset_leaves_nothing_for_ever(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    content = os.urandom(2 * MB)
    url = path_of(create(as_alice, case_a, len(content))["Location"])
    real_put = UploadStaging.put

    def put_then_die(self, *args):
        real_put(self, *args)
        raise Died

    monkeypatch.setattr(UploadStaging, "put", put_then_die)
    with pytest.raises(Died):
        patch(as_alice, url, content[:MB], 0)
    monkeypatch.setattr(UploadStaging, "put", real_put)
    assert ResumableUpload.objects.get().offset == 0
    assert len(staged_keys(seaweed, staging)) == 1  # staged, not counted

    move_to(settings, tmp_path, "node-a")  # the restarted process: no hash state
    assert patch(as_alice, url, content[:MB], 0).status_code == 204
    move_to(settings, tmp_path, "node-b")
    assert patch(as_alice, url, content[MB:], MB).status_code == 204
    assert_evidence_is(content)
    assert len(staged_keys(seaweed, staging)) == 1  # the uncounted piece: no record names it
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
    tus.sweep_expired()
    assert staged_keys(seaweed, staging) == []


def test_death_during_a_restore_is_repaired_by_the_next_one(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    content = os.urandom(3 * MB)
    url, upload = start(as_alice, case_a, content, MB)
    assert patch(as_alice, url, content[MB : 2 * MB], MB).status_code == 204
    real_restore = UploadStaging.restore

    def restore_half_then_die(self, upload_id, pieces, fd, start):
        real_restore(self, upload_id, pieces[:1], fd, start)
        os.pwrite(fd, b"\xff" * 1000, MB)  # a torn write of the second piece
        raise Died

    move_to(settings, tmp_path, "node-b")
    monkeypatch.setattr(UploadStaging, "restore", restore_half_then_die)
    with pytest.raises(Died):
        patch(as_alice, url, content[2 * MB :], 2 * MB)
    monkeypatch.setattr(UploadStaging, "restore", real_restore)

    tus._states.clear()  # node B's process restarted
    done = patch(as_alice, url, content[2 * MB :], 2 * MB)
    assert done.status_code == 204, done.content
    assert_evidence_is(content)


# --- two nodes at once (PostgreSQL: the advisory lock) ---------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the cross-node lock is PostgreSQL's")
def test_delete_on_one_node_while_another_holds_the_upload_is_423(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    content = os.urandom(2 * MB)
    url, upload = start(as_alice, case_a, content, MB)
    other = connections.create_connection("default")  # node A's session, in the middle of a PATCH
    try:
        key = int.from_bytes(upload.pk.bytes[:8], "big", signed=True)
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        move_to(settings, tmp_path, "node-b")
        assert_clean(as_alice.delete(url, **TUS), 423)
        assert_clean(patch(as_alice, url, content[MB:], MB), 423)
        assert ResumableUpload.objects.get().offset == MB
        assert len(staged_keys(seaweed, staging)) == 1
    finally:
        other.close()
    assert patch(as_alice, url, content[MB:], MB).status_code == 204  # the session ended: free
    assert_evidence_is(content)


def test_death_after_the_offset_before_the_answer_is_a_409_to_the_retry(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    """The chunk was counted but the answer never left: the client's retry (on any node) learns the offset."""
    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, content, MB)

    def die(*args):
        raise Died

    monkeypatch.setattr(tus, "_keep_state", die)
    with pytest.raises(Died):
        patch(as_alice, url, content[MB : 2 * MB], MB)
    monkeypatch.undo()

    move_to(settings, tmp_path, "node-b")
    retry = patch(as_alice, url, content[MB : 2 * MB], MB)
    assert_clean(retry, 409)
    assert retry["Upload-Offset"] == str(2 * MB)
    assert patch(as_alice, url, content[2 * MB :], 2 * MB).status_code == 204
    assert_evidence_is(content)


def test_pieces_left_by_a_finish_with_the_store_down_are_swept(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    content = os.urandom(2 * MB)
    url, _ = start(as_alice, case_a, content, MB)
    monkeypatch.setattr(UploadStaging, "delete", lambda self, upload_id, pieces: None)  # the store is gone
    assert patch(as_alice, url, content[MB:], MB).status_code == 204
    monkeypatch.undo()
    assert Evidence.objects.exists() and len(staged_keys(seaweed, staging)) == 1
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = 3600
    tus.sweep_expired()
    assert len(staged_keys(seaweed, staging)) == 1  # not yet old enough
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
    tus.sweep_expired()
    assert staged_keys(seaweed, staging) == []


def test_bytes_that_arrive_after_the_sweeper_took_the_upload_are_not_acknowledged(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    """A long PATCH on an upload near its expiry: the sweeper (on another host, without the lock)
    removes the upload meanwhile. The client must not be told its bytes were kept."""
    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, content, MB)
    real_put = UploadStaging.put

    def sweep_then_put(self, *args):
        settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
        assert tus.sweep_expired() == 1
        settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = 3600
        return real_put(self, *args)

    monkeypatch.setattr(UploadStaging, "put", sweep_then_put)
    answer = patch(as_alice, url, content[MB : 2 * MB], MB)
    monkeypatch.undo()
    assert_clean(answer, 404, 410)
    assert not ResumableUpload.objects.exists()
    assert staged_keys(seaweed, staging) == []  # the pieces staged after the sweep went too
    assert list((tmp_path / "node-a").iterdir()) == []


# --- a client that makes a node fetch the staged bytes again and again ------------------------


def count_restored(monkeypatch) -> list[int]:
    """The bytes each restore fetched, recorded as they are."""
    fetched: list[int] = []
    real_restore = UploadStaging.restore

    def counting(self, upload_id, pieces, fd, start):
        end = real_restore(self, upload_id, pieces, fd, start)
        fetched.append(end - start)
        return end

    monkeypatch.setattr(UploadStaging, "restore", counting)
    return fetched


def test_patches_at_a_wrong_offset_fetch_nothing(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    """PATCHes at a wrong offset, sent to a node that has not got the bytes: each is
    refused anyway, and must not make the node fetch every staged byte again."""
    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, content, 2 * MB)
    fetched = count_restored(monkeypatch)
    move_to(settings, tmp_path, "node-b")
    for _ in range(3):
        answer = patch(as_alice, url, content[:1], 0)
        assert_clean(answer, 409)
        assert answer["Upload-Offset"] == str(2 * MB)
    assert fetched == []
    assert patch(as_alice, url, content[2 * MB :], 2 * MB).status_code == 204
    assert fetched == [2 * MB]
    assert_evidence_is(content)


def test_a_lying_checksum_does_not_make_a_node_fetch_everything_again(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, content, 2 * MB)
    fetched = count_restored(monkeypatch)
    move_to(settings, tmp_path, "node-b")
    wrong = "sha256 " + base64.b64encode(hashlib.sha256(b"not these bytes").digest()).decode()
    for _ in range(3):
        answer = patch(as_alice, url, content[2 * MB :], 2 * MB, HTTP_UPLOAD_CHECKSUM=wrong)
        assert_clean(answer, 460)
    assert sum(fetched) == 2 * MB, f"fetched {fetched}"


def test_a_host_short_of_disk_does_not_destroy_an_upload_others_can_continue(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, content, 2 * MB)
    move_to(settings, tmp_path, "node-b")
    reserve = settings.CUSTODY_FREE_SPACE_RESERVE_BYTES
    settings.CUSTODY_FREE_SPACE_RESERVE_BYTES = 10**18  # node B's disk is short
    answer = patch(as_alice, url, content[2 * MB :], 2 * MB)
    assert_clean(answer, 507)
    assert answer["Upload-Offset"] == str(2 * MB) and answer["Retry-After"]  # what is counted stays counted
    assert [p for p in (tmp_path / "node-b").glob("*") if p.is_file()] == []  # nothing kept on the short disk
    settings.CUSTODY_FREE_SPACE_RESERVE_BYTES = reserve
    move_to(settings, tmp_path, "node-a")
    assert patch(as_alice, url, content[2 * MB :], 2 * MB).status_code == 204
    assert_evidence_is(content)


# --- an operator who points the staging store at a bucket that holds other things -------------


def test_the_sweeper_removes_only_what_looks_like_staged_pieces(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    """CUSTODY_UPLOAD_STAGING set to a whole bucket (no prefix), or to the blob store's own
    place: the sweeper must remove staged pieces of ended uploads and nothing else there."""
    client = seaweed.client()
    others = [f"{staging}/sha256/ab/{'ab' * 32}", f"{staging}/reports/2026.pdf", f"{staging}/README"]
    for key in others:
        client.put_object(Bucket=PLAIN, Key=key, Body=b"not a staged piece")
    stale = f"{staging}/{uuid.uuid4()}/{0:016d}-{1:016d}-00000000"
    client.put_object(Bucket=PLAIN, Key=stale, Body=b"x")
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
    tus.sweep_expired()
    assert staged_keys(seaweed, staging) == sorted(others)


def test_death_in_the_intake_of_the_last_byte_leaves_an_upload_another_node_finishes(
    as_alice, case_a, staging, seaweed, settings, tmp_path, monkeypatch
):
    from custody import services

    content = os.urandom(2 * MB)
    url, _ = start(as_alice, case_a, content, MB)

    def die(**kwargs):
        raise Died

    monkeypatch.setattr(services, "receive_evidence", die)
    with pytest.raises(Died):
        patch(as_alice, url, content[MB:], MB)
    monkeypatch.undo()
    assert ResumableUpload.objects.get().offset == MB and not Evidence.objects.exists()

    move_to(settings, tmp_path, "node-b")
    done = patch(as_alice, url, content[MB:], MB)
    assert done.status_code == 204, done.content
    assert_evidence_is(content)
    assert staged_keys(seaweed, staging) == []


def test_the_store_down_during_a_restore_keeps_the_offset(
    as_alice, case_a, staging, seaweed, settings, tmp_path
):
    from custody.storage import upload_staging

    content = os.urandom(3 * MB)
    url, _ = start(as_alice, case_a, content, 2 * MB)
    move_to(settings, tmp_path, "node-b")
    endpoint = settings.CUSTODY_S3_ENDPOINT_URL
    settings.CUSTODY_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    upload_staging.cache_clear()
    answer = patch(as_alice, url, content[2 * MB :], 2 * MB)
    assert_clean(answer, 503)
    assert answer["Upload-Offset"] == str(2 * MB) and answer["Retry-After"]
    assert ResumableUpload.objects.get().offset == 2 * MB

    settings.CUSTODY_S3_ENDPOINT_URL = endpoint
    upload_staging.cache_clear()
    assert patch(as_alice, url, content[2 * MB :], 2 * MB).status_code == 204
    assert_evidence_is(content)


def test_tiny_patches_do_not_multiply_staged_objects(as_alice, case_a, staging, seaweed, settings, tmp_path):
    content = os.urandom(4000)
    url = path_of(create(as_alice, case_a, len(content))["Location"])
    for offset in range(0, 3000, 30):  # a client that sends 30 bytes at a time
        assert patch(as_alice, url, content[offset : offset + 30], offset).status_code == 204
    upload = ResumableUpload.objects.get()
    pieces_for_the_bytes = -(-upload.offset // STAGING_PIECE)
    assert len(upload.staged) <= pieces_for_the_bytes + 1, (
        f"{len(upload.staged)} pieces for {upload.offset} bytes"
    )
    assert len(staged_keys(seaweed, staging)) == len(upload.staged)  # each replaced piece was removed
    move_to(settings, tmp_path, "node-b")  # another host rebuilds the bytes from the merged piece
    assert patch(as_alice, url, content[3000:], 3000).status_code == 204
    assert_evidence_is(content)
