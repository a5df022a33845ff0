"""A database administrator with a grudge: changes to the database and the data directory (never
the key files, their passphrase or SECRET_KEY) aimed at acting as someone else, putting bytes or
words in someone else's mouth, or getting past the second factor.

As in tests/test_tamper_more.py: where the server refuses the change at request time or
``verify_log`` names it, the test is an ordinary regression test; where it does neither, the test
is marked ``xfail(strict=True)`` with what is missing, and asserts what the defence would do.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from custody import services, tus
from custody.models import ApiToken, Evidence, LogEntry, Membership, ResumableUpload, Role, User
from custody.storage import blob_store
from forensics import services as analyses
from forensics.models import Analysis, Artifact

from .conftest import PASSWORD, api_client_for, enrol_second_factor, totp_code
from .test_tamper_more import history, reported, verify  # noqa: F401 - the fixture
from .test_tus import TUS, create, id_of, patch, path_of

__all__ = ["history"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def web_login(username: str, password: str = PASSWORD) -> Client:
    client = Client()
    answer = client.post("/login/", {"username": username, "password": password})
    assert answer.status_code == 302, answer.content[:300]
    return client


def token_with_password(username: str, password: str = PASSWORD, **extra):
    return APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": password, **extra}, format="json"
    )


def entry_index(action: str, **actor) -> int:
    rows = [r for r in LogEntry.objects.filter(action=action).order_by("-index")]
    for row in rows:
        if all(row.decoded.get("actor", {}).get(k) == v for k, v in actor.items()):
            return row.index
    raise AssertionError(f"no {action} entry by {actor}")


# --- accounts: what the seals cover --------------------------------------------------------


def test_password_hash_and_its_seal_copied_from_another_account(history, alice, bob):
    """The seal names the account's id: bob's hash and seal on alice's row let nobody in as alice."""
    row = User.objects.get(pk=bob.pk)
    User.objects.filter(pk=alice.pk).update(password=row.password, credential_mac=row.credential_mac)
    assert token_with_password("alice").status_code in (400, 401)
    assert token_with_password("bob").status_code == 201  # bob himself is unaffected
    login = Client().post("/login/", {"username": "alice", "password": PASSWORD})
    assert "_auth_user_id" not in login.wsgi_request.session
    reported(f"user {alice.pk} (alice): password hash not set by the server")


def test_usernames_swapped_between_two_accounts(history, alice, bob):
    """Both accounts are locked (their names are under their grants' seal): logging in as 'alice'
    with bob's password, or bob's open token, gets nothing; verify_log names both rows."""
    as_bob = api_client_for(bob)
    User.objects.filter(pk=alice.pk).update(username="alice.tmp")
    User.objects.filter(pk=bob.pk).update(username="alice")
    User.objects.filter(pk=alice.pk).update(username="bob")
    assert token_with_password("alice").status_code in (400, 401)
    assert as_bob.get("/api/v1/cases/").status_code == 401
    reported(
        f"user {alice.pk} (alice): username: log says 'alice', table says 'bob'",
        f"user {bob.pk} (bob): username: log says 'bob', table says 'alice'",
        f"user {bob.pk} (alice): name, role or flags not written by the server",
    )


def test_revoked_token_revived_in_the_table_stays_refused(history, alice):
    """revoked_at is under the row's seal: a revoked token written back to live authenticates
    nobody (the unknown token's 401), and verify_log names the row twice (its seal, and the log's
    token.revoked entry)."""
    as_alice = api_client_for(alice)
    token = as_alice._credentials["HTTP_AUTHORIZATION"].split()[1]
    row = ApiToken.objects.get(digest=sha256(token.encode()))
    services.revoke_token(actor=alice, token=row)
    assert as_alice.get("/api/v1/cases/").status_code == 401
    ApiToken.objects.filter(pk=row.pk).update(revoked_at=None)
    refused = as_alice.get("/api/v1/cases/")
    assert refused.status_code == 401 and refused.json()["detail"] == "invalid token"
    reported(
        f"API token {row.prefix}… (user {alice.pk}): row not made by the server",
        f"API token {row.digest}: revoked_at: log says",
    )


def test_token_moved_to_another_account_is_not_resealed_by_its_revocation(history, alice, bob):
    """The projection renews a seal only if it held before the write: a token row moved to bob in
    the table, then revoked by the server, keeps its broken seal (no write of the server's blesses
    the move), and is named by verify_log."""
    as_alice = api_client_for(alice)
    token = as_alice._credentials["HTTP_AUTHORIZATION"].split()[1]
    row = ApiToken.objects.get(digest=sha256(token.encode()))
    ApiToken.objects.filter(pk=row.pk).update(user=bob)
    services.revoke_token(actor=None, token=ApiToken.objects.get(pk=row.pk))
    assert not ApiToken.objects.get(pk=row.pk).seal_intact()
    ApiToken.objects.filter(pk=row.pk).update(user=alice)  # the move undone, the revocation kept
    assert not ApiToken.objects.get(pk=row.pk).seal_intact()  # still the seal of the live token
    assert as_alice.get("/api/v1/cases/").status_code == 401
    reported(f"API token {row.prefix}… (user {alice.pk}): row not made by the server")


# --- acts the log's own state never allowed --------------------------------------------------


def test_membership_granted_for_a_moment_to_add_an_accomplice(history, alice, case_b, dave):
    """A membership written into the database (no seal: the database role alone) opens nothing,
    so alice cannot use it to add an accomplice to case B."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO custody_membership (case_id, user_id, added_at) VALUES (%s, %s, %s)",
            [
                case_b.pk.hex if connection.vendor == "sqlite" else case_b.pk,
                alice.pk,
                history["item"].received_at,
            ],
        )
    as_alice = web_login("alice")
    assert as_alice.post(f"/cases/{case_b.pk}/members/", {"username": "dave"}).status_code == 404
    Membership.objects.filter(case=case_b, user=alice).delete()
    assert not Membership.objects.filter(case=case_b, user=dave).exists()
    code, out = verify()
    assert code == 0, out


def test_administrator_role_for_a_moment_to_download_another_cases_evidence(history, alice):
    """A role set to admin in the table locks the account instead: her token gets a 401, nothing is
    downloaded, and once the row is put back she is an investigator again."""
    as_alice = api_client_for(alice)
    other = history["other"]  # case B: bob's
    assert as_alice.get(f"/api/v1/evidence/{other.pk}/content/?reason=x").status_code == 404
    User.objects.filter(pk=alice.pk).update(role=Role.ADMIN)
    assert as_alice.get(f"/api/v1/evidence/{other.pk}/content/?reason=routine").status_code == 401
    User.objects.filter(pk=alice.pk).update(role=Role.INVESTIGATOR)
    assert not LogEntry.objects.filter(action="evidence.downloaded", evidence=other, actor=alice).exists()
    assert as_alice.get("/api/v1/cases/").status_code == 200


def test_custodian_changed_for_a_moment_to_hand_over_an_item_held_by_someone_else(history, alice, bob):
    """Custody moves only from the custodian the signed log gives the item: the table's custodian
    set to alice does not let her release bob's item, and a pending handover written into the
    database (no signed release) cannot be accepted."""
    from custody.models import Transfer

    item, erin = history["item"], history["erin"]
    assert Evidence.objects.get(pk=item.pk).custodian_id == bob.pk
    as_alice = api_client_for(alice)
    Evidence.objects.filter(pk=item.pk).update(custodian=alice)
    released = as_alice.post(
        f"/api/v1/evidence/{item.pk}/transfers/",
        {"to_user": "erin", "purpose": "second opinion", "location": "office"},
        format="json",
    )
    assert released.status_code == 409 and "signed log entries" in released.json()["detail"], released.content
    Evidence.objects.filter(pk=item.pk).update(custodian=bob)
    planted = Transfer.objects.create(
        evidence=item,
        from_user=bob,
        to_user=erin,
        purpose="second opinion",
        location="office",
        status=Transfer.Status.PENDING,
        released_at=item.received_at,
        release_log_index=item.log_index,  # an entry, but not this handover's release
    )
    accepted = api_client_for(erin).post(f"/api/v1/transfers/{planted.pk}/accept/", {"note": ""})
    assert accepted.status_code == 409 and "no signed release entry" in accepted.json()["detail"], (
        accepted.content
    )
    assert Evidence.objects.get(pk=item.pk).custodian_id == bob.pk
    reported(f"handover {planted.pk}")


@pytest.mark.parametrize("what", ["evidence", "parameters"])
def test_queued_analysis_retargeted_for_the_run_and_put_back(history, bob, what):
    """The worker runs what the signed request entry says: a row retargeted in the database (another
    item, other parameters) ends failed with the reason, nothing signed, nothing put back unnoticed."""
    item = history["item"]
    late = Evidence.objects.get(original_name="late.wav")  # same case, other bytes
    analysis = analyses.request_analysis(actor=bob, evidence=item, analyzer="test.digest")
    change = {
        "evidence": {"evidence_id": late.pk},
        "parameters": {"parameters": {**analysis.parameters, "delay": 0.25}},
    }
    Analysis.objects.filter(pk=analysis.pk).update(**change[what])
    assert analyses.run_analysis(analysis.pk, "worker-1") == "failed"
    Analysis.objects.filter(pk=analysis.pk).update(evidence=item, parameters=analysis.parameters)
    done = Analysis.objects.get(pk=analysis.pk)
    assert done.envelope is None and "does not match its signed request" in done.error
    failed = LogEntry.objects.filter(action="analysis.failed").order_by("-index").first()
    assert failed.decoded["details"]["analysis"] == str(analysis.pk)
    assert "does not match its signed request" in failed.decoded["details"]["reason"]
    assert failed.evidence_id == item.pk  # the item the request named, not the one put in the row


def test_usernames_swapped_for_a_moment_put_another_name_in_signed_entries(history, alice, bob):
    """Bob's row renamed 'alice' for a moment: his token is refused while it lasts, so no entry
    is ever signed with another account's name."""
    as_bob = api_client_for(bob)
    other = history["other"]
    User.objects.filter(pk=alice.pk).update(username="alice.tmp")
    User.objects.filter(pk=bob.pk).update(username="alice")
    assert as_bob.get(f"/api/v1/evidence/{other.pk}/content/?reason=copy").status_code == 401
    User.objects.filter(pk=bob.pk).update(username="bob")
    User.objects.filter(pk=alice.pk).update(username="alice")
    assert all(e.decoded["actor"]["username"] == "bob" for e in LogEntry.objects.filter(actor=bob))
    code, out = verify()
    assert code == 0, out


# --- resumable uploads: what the record's seal does not cover --------------------------------


def _half_sent(as_alice, case, data: bytes, sent: int) -> str:
    created = create(as_alice, case, len(data), filename="interview.wav", source="seized phone")
    assert created.status_code == 201, created.content
    url = path_of(created["Location"])
    assert patch(as_alice, url, data[:sent], 0).status_code == 204
    return url


DATA = b"interview, as recorded on the seized phone\n" * 60


def assert_refused_as_changed(answer) -> None:
    """410 (a tus client starts a new upload), with a detail that says why."""
    assert answer.status_code == 410, (answer.status_code, answer.content)
    if answer.content:  # (a HEAD answer has no body)
        assert "changed outside the server" in answer.json()["detail"]


def assert_a_new_upload_works(as_alice, case) -> None:
    """What the client is told to do: start again. That upload becomes her evidence, whole."""
    url = _half_sent(as_alice, case, DATA, 1000)
    assert patch(as_alice, url, DATA[1000:], 1000).status_code == 204
    assert Evidence.objects.filter(blob_id=sha256(DATA), original_name="interview.wav").exists()


def test_resumable_upload_offset_moved_on_with_nothing_on_disk_is_refused(history, alice, settings, caplog):
    """An offset moved on in the table breaks the upload's progress seal: every request on the
    upload is refused (410, start a new upload), and verify_log names it."""
    as_alice = api_client_for(alice)
    url = _half_sent(as_alice, history["item"].case, DATA, 1000)
    ResumableUpload.objects.filter(pk=id_of(url)).update(offset=len(DATA) - 1)
    assert_refused_as_changed(as_alice.head(url, **TUS))
    assert_refused_as_changed(as_alice.get(url, **TUS))
    assert_refused_as_changed(patch(as_alice, url, DATA[-1:], len(DATA) - 1))
    assert_refused_as_changed(patch(as_alice, url, DATA[1000:], 1000))
    assert not Evidence.objects.filter(original_name="interview.wav").exists()
    reported(f"resumable upload {id_of(url)}", "offset", "not recorded by the server")
    assert_a_new_upload_works(as_alice, history["item"].case)
    # Expired, it goes like any other, named in the server's log as it goes.
    settings.CUSTODY_UPLOAD_EXPIRY_SECONDS = -60
    with caplog.at_level("ERROR", logger="custody.tus"):
        assert tus.sweep_expired() == 1
    assert (
        f"resumable upload {id_of(url)}: expired with its progress not as the server sealed it" in caplog.text
    )
    assert not ResumableUpload.objects.filter(pk=id_of(url)).exists()


def test_resumable_upload_offset_moved_on_over_bytes_appended_in_the_data_dir_is_refused(history, alice):
    """Bytes appended to the partial file, counted by moving the offset over them: the offset is
    under the progress seal, so the client is told to start again, and no evidence holds them."""
    as_alice = api_client_for(alice)
    url = _half_sent(as_alice, history["item"].case, DATA, 1000)
    upload_id = uuid.UUID(id_of(url))
    planted = (b"and then the suspect confessed.\n" * 100)[: len(DATA) - 1 - 1000]
    with open(tus.data_path(upload_id), "ab") as f:
        f.write(planted)
    assert len(planted) == len(DATA) - 1 - 1000
    ResumableUpload.objects.filter(pk=upload_id).update(offset=len(DATA) - 1)
    assert_refused_as_changed(as_alice.head(url, **TUS))  # where a tus client asks to resume
    for process in ("this one", "another"):
        if process == "another":
            tus._drop_state(upload_id)
        assert_refused_as_changed(patch(as_alice, url, DATA[-1:], len(DATA) - 1))
    assert not Evidence.objects.filter(blob_id=sha256(DATA[:1000] + planted + DATA[-1:])).exists()
    assert not Evidence.objects.filter(original_name="interview.wav").exists()
    reported(f"resumable upload {upload_id}")

    # Nor does the seal of another upload (hers, at that very offset) make the change hold: it
    # names the upload it seals.
    other = _half_sent(as_alice, history["item"].case, DATA, len(DATA) - 1)
    sealed = ResumableUpload.objects.get(pk=id_of(other))
    ResumableUpload.objects.filter(pk=upload_id).update(
        offset_sha256=hashlib.sha256(DATA[:1000] + planted).hexdigest(), progress_mac=sealed.progress_mac
    )
    assert_refused_as_changed(patch(as_alice, url, DATA[-1:], len(DATA) - 1))
    assert not Evidence.objects.filter(blob_id=sha256(DATA[:1000] + planted + DATA[-1:])).exists()


def test_resumable_upload_bytes_rewritten_before_another_worker_resumes_are_refused(history, alice):
    """A process without the upload's running hash re-reads the partial file: the SHA-256 of what
    it reads must be the one sealed with the offset, or nothing more is taken and nothing is made
    evidence (410: the client starts again)."""
    as_alice = api_client_for(alice)
    url = _half_sent(as_alice, history["item"].case, DATA, 1000)
    upload_id = uuid.UUID(id_of(url))
    planted = (b"nothing of interest was said.\n" * 100)[:1000]
    path = tus.data_path(upload_id)
    with open(path, "r+b") as f:
        f.write(planted)
    tus._drop_state(upload_id)  # the next PATCH lands in another process
    last = patch(as_alice, url, DATA[1000:], 1000)
    assert last.status_code == 410, last.content
    assert "partial file" in last.json()["detail"] and "start a new upload" in last.json()["detail"]
    assert not Evidence.objects.filter(blob_id=sha256(planted + DATA[1000:])).exists()
    assert not Evidence.objects.filter(original_name="interview.wav").exists()
    assert path.stat().st_size == 1000  # nothing was added to what was found
    assert patch(as_alice, url, DATA[1000:], 1000).status_code == 410  # nor on a second try
    assert_a_new_upload_works(as_alice, history["item"].case)


@pytest.mark.parametrize("who", ["the same worker", "the other worker, that has seen a later PATCH"])
def test_resumable_upload_bytes_rewritten_while_a_process_holds_the_running_hash_are_refused(
    history, alice, who
):
    """A process that holds the upload's running hash does not re-read the bytes it hashed, unless
    the partial file changed since a server process last wrote it (its ctime): then it hashes the
    file again and checks it against the sealed digest. Otherwise the rewritten bytes would be
    stored as the blob under the digest of what alice sent."""
    as_alice = api_client_for(alice)
    url = _half_sent(as_alice, history["item"].case, DATA, 1000)
    upload_id = uuid.UUID(id_of(url))
    if who != "the same worker":
        this_worker = dict(tus._states)
        tus._states.clear()
        assert patch(as_alice, url, DATA[1000:2000], 1000).status_code == 204  # the other worker
        tus._states.clear()
        tus._states.update(this_worker)  # back in the first, whose state covers 0-1000
    with open(tus.data_path(upload_id), "r+b") as f:
        f.write((b"nothing of interest was said.\n" * 100)[:1000])
    offset = 1000 if who == "the same worker" else 2000
    last = patch(as_alice, url, DATA[offset:], offset)
    assert last.status_code == 410, last.content
    assert "partial file" in last.json()["detail"]
    assert not Evidence.objects.filter(original_name="interview.wav").exists()


def test_unfinished_upload_pointed_at_an_existing_item_is_refused(history, alice):
    """``evidence`` and ``offset`` set in the table: the client is not told its upload is complete
    and is some other item; it is told to start again, and verify_log names the upload."""
    as_alice = api_client_for(alice)
    url = _half_sent(as_alice, history["item"].case, DATA, 1000)
    copy = history["copy"]  # another item in her case
    ResumableUpload.objects.filter(pk=id_of(url)).update(evidence=copy, offset=len(DATA))
    head = as_alice.head(url, **TUS)
    assert_refused_as_changed(head)
    assert "Custody-Evidence" not in head and "Upload-Offset" not in head
    status = as_alice.get(url, **TUS)
    assert_refused_as_changed(status)
    assert str(copy.pk) not in status.content.decode()
    ending = patch(as_alice, url, b"", len(DATA), CONTENT_LENGTH="0")
    assert_refused_as_changed(ending)
    assert "Custody-Evidence" not in ending
    assert_refused_as_changed(patch(as_alice, url, DATA[1000:], 1000))
    reported(f"resumable upload {id_of(url)}", f"item {copy.pk}")
    # She gives it up: the upload goes, the item it was pointed at stays.
    assert as_alice.delete(url, **TUS).status_code == 204
    assert not ResumableUpload.objects.filter(pk=id_of(url)).exists()
    assert Evidence.objects.filter(pk=copy.pk).exists()
    assert_a_new_upload_works(as_alice, history["item"].case)


# --- analyses: the bytes analysed -------------------------------------------------------------


def _analysis_child_started() -> bool:
    """Whether this process runs an analysis child (``python -m forensics.sandbox``) now."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat_file.read_text().rsplit(")", 1)[1].split()[1])
            started = (
                parent == os.getpid() and b"forensics.sandbox" in (stat_file.parent / "cmdline").read_bytes()
            )
        except (OSError, IndexError, ValueError):
            continue
        if started:
            return True
    return False


def test_evidence_file_swapped_while_the_analyzer_reads_it(history, bob):
    """The analyzer reads a private copy that no path names, hashed as it was made: the blob file
    rewritten once the analysis has started (and put back after) changes nothing that is analysed."""
    item = history["item"]
    analysis = analyses.request_analysis(
        actor=bob, evidence=item, analyzer="test.digest", parameters={"delay": 1.0}
    )
    path = blob_store().path(item.blob_id)
    original = path.read_bytes()
    forged = b"a harmless recording\n" * 50
    workdirs = Path(settings.FILE_UPLOAD_TEMP_DIR)
    swapped = threading.Event()
    named_in_workdir = []

    def insider():
        # Waits for the analysis process: the copy has been made and checked by then; the
        # analyzer opens it after its delay. Rewrites the blob, and any file of the run's.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _analysis_child_started():
                os.chmod(path, 0o644)
                path.write_bytes(forged)
                for workdir in workdirs.glob(f"analysis-{analysis.pk}-*"):
                    for file in (p for p in workdir.rglob("*") if p.is_file()):
                        named_in_workdir.append(file.name)
                        os.chmod(file, 0o644)
                        file.write_bytes(forged)
                swapped.set()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=insider)
    thread.start()
    try:
        status = analyses.run_analysis(analysis.pk, "worker-1")
    finally:
        thread.join()
        os.chmod(path, 0o644)
        path.write_bytes(original)  # put back: the blob check passes again
        os.chmod(path, 0o444)
    assert swapped.is_set()
    assert named_in_workdir == []  # neither the copy nor the request or answer has a name to rewrite
    assert status == "succeeded", Analysis.objects.get(pk=analysis.pk).error
    artifact = Artifact.objects.get(analysis=analysis.pk, name="digest.txt")
    assert blob_store().path(artifact.blob_id).read_bytes().decode() == item.blob_id
    assert not list(workdirs.glob(f"analysis-{analysis.pk}-*"))  # the scratch directory went with the run
    code, out = verify()
    assert code == 0, out


def test_findings_forged_in_the_row_when_the_result_is_published(history, bob):
    """Publishing re-checks the stored result against the analysis.completed entry the server signed:
    findings forged in the row, or the row pointed at another analysis's entry, publish nothing."""
    import json

    from custody import signing

    stale, done = history["stale"], history["done"]  # succeeded, not published; and another result
    real = dict(stale.envelope)
    statement = json.loads(signing.b64decode(real["payload"]))
    assert statement["predicate"]["findings"][0]["name"] == "sha256_recomputed"
    statement["predicate"]["findings"][0]["value"] = "the recording is unedited"
    forged = {**real, "payload": signing.b64(json.dumps(statement).encode())}
    Analysis.objects.filter(pk=stale.pk).update(envelope=forged)
    as_bob = api_client_for(bob)
    refused = as_bob.post(f"/api/v1/analyses/{stale.pk}/publish/", {}, format="json")
    assert refused.status_code == 409 and "nothing is published" in refused.json()["detail"], refused.content
    Analysis.objects.filter(pk=stale.pk).update(envelope=real, result_log_index=done.result_log_index)
    refused = as_bob.post(f"/api/v1/analyses/{stale.pk}/publish/", {}, format="json")
    assert refused.status_code == 409, refused.content
    Analysis.objects.filter(pk=stale.pk).update(result_log_index=stale.result_log_index)
    public = APIClient().get("/api/v1/public/results/", {"sha256": stale.evidence.blob_id}).json()
    assert "the recording is unedited" not in json.dumps(public)
    published_entries = [
        e
        for e in LogEntry.objects.filter(action="result.published")
        if e.decoded["details"]["analysis"] == str(stale.pk)
    ]
    assert published_entries == []  # the refusals left no publication in the log
    published = as_bob.post(f"/api/v1/analyses/{stale.pk}/publish/", {}, format="json")
    assert published.status_code in (200, 201), published.content  # put back: it publishes
    code, out = verify()
    assert code == 0, out


# --- keys: what the trust root says of them ---------------------------------------------------


def test_retired_key_validity_stretched_while_the_release_step_publishes_the_trust_root(history):
    """The trust root's keys must say what the log's signed key entries say: a retired key's validity
    stretched in the table makes the release step refuse to publish, and nothing is signed."""
    import datetime as dt

    from django.core.management import CommandError, call_command

    from custody.models import SigningKey, TrustRoot

    retired = SigningKey.objects.filter(purpose="intake", valid_until__isnull=False).get()
    before = TrustRoot.objects.order_by("-version").first().version
    SigningKey.objects.filter(pk=retired.pk).update(valid_until=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(CommandError, match=f"signing key {retired.keyid[:16]}: its row does not say"):
        call_command("ensure_keys", stdout=io.StringIO())  # the release step
    assert TrustRoot.objects.order_by("-version").first().version == before
    SigningKey.objects.filter(pk=retired.pk).update(valid_until=retired.valid_until)
    call_command("ensure_keys", stdout=io.StringIO())
    assert TrustRoot.objects.order_by("-version").first().version == before  # nothing changed: no new version
    code, out = verify()
    assert code == 0, out


# --- the second factor --------------------------------------------------------------------


def test_second_factor_deleted_in_the_database(history, alice):
    """Whether a second factor is in force is the account's sealed flag, not whether device rows
    exist: deleting them leaves the password alone no more enough, and clearing the flag too locks
    the account; an administrator's reset is the way back."""
    from custody import second_factor

    enrol_second_factor(alice)
    assert token_with_password("alice").status_code == 401  # a code is needed
    TOTPDevice.objects.filter(user=alice).delete()
    StaticDevice.objects.filter(user=alice).delete()
    assert token_with_password("alice").status_code == 401
    answer = token_with_password("alice", otp="123456")
    assert answer.status_code == 401 and "administrator must reset it" in answer.json()["detail"], (
        answer.content
    )
    User.objects.filter(pk=alice.pk).update(second_factor=False)
    assert token_with_password("alice").status_code in (400, 401)  # the grants' seal no longer holds
    User.objects.filter(pk=alice.pk).update(second_factor=True)
    second_factor.remove(actor=None, user=User.objects.get(pk=alice.pk))  # manage.py reset_second_factor
    assert token_with_password("alice").status_code == 201


def test_recovery_code_added_in_the_database(history):
    """Recovery codes are stored as their HMAC: a code inserted in the table, or one read from it,
    is no code."""
    root = history["root"]
    _, codes = enrol_second_factor(root)
    device = StaticDevice.objects.get(user=root)
    StaticToken.objects.create(device=device, token="insiderscode2345")
    client = web_login("root")
    refused = client.post("/account/second-factor/", {"code": "insiderscode2345"})
    assert refused.status_code == 400
    stored = StaticToken.objects.filter(device=device).exclude(token="insiderscode2345").first().token
    time.sleep(1.1)  # the throttle after one wrong code
    assert client.post("/account/second-factor/", {"code": stored}).status_code == 400
    time.sleep(2.1)
    verified = client.post("/account/second-factor/", {"code": codes[0]})
    assert verified.status_code == 302  # a code as shown at enrolment still works


def test_totp_key_read_from_the_table_gives_no_codes(history, alice):
    """The TOTP key is stored encrypted under SECRET_KEY: the table's value is not the key, and a code
    computed from it (as if it were) is refused."""
    device, _ = enrol_second_factor(alice)
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM otp_totp_totpdevice WHERE user_id = %s", [alice.pk])
        (stored,) = cursor.fetchone()
    assert bytes.fromhex(stored) != device.bin_key
    code = totp_code(device, key=bytes.fromhex(stored))
    answer = token_with_password("alice", otp=code)
    assert answer.status_code != 201, "a code computed from the table's key was accepted"
    time.sleep(1.1)  # the throttle after one wrong code
    assert token_with_password("alice", otp=totp_code(device)).status_code == 201


def test_totp_key_written_into_the_table_gives_no_codes(history, alice, bob):
    """A key the insider knows, written in clear, or bob's encrypted key moved to alice's device,
    opens nothing: the server says an administrator must reset the second factor, and verify_log
    names the device."""
    device, _ = enrol_second_factor(alice)
    bobs, _ = enrol_second_factor(bob)
    known = bytes(range(20))
    for forged in (known.hex(), TOTPDevice.objects.get(pk=bobs.pk).key):
        TOTPDevice.objects.filter(pk=device.pk).update(key=forged)
        code = totp_code(device, key=known if forged == known.hex() else bobs.bin_key)
        answer = token_with_password("alice", otp=code)
        assert (
            answer.status_code in (401, 409) and "administrator must reset it" in answer.json()["detail"]
        ), answer.content
    reported(f"TOTP device {device.pk} of user {alice.pk}: key not stored by the server")
