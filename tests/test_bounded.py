"""Bounded analyses: time and memory limits per analyzer, a cap on attempts, a worker that survives.

The analyzer is tests/analyzers_for_tests.py (test.digest), told to sleep,
allocate or kill its own process; real Celery workers run it.
"""

from __future__ import annotations

import json
import os
import struct

import pytest
from django.test import override_settings

from custody import audit
from custody.models import Evidence, LogEntry
from forensics import services
from forensics.analyzers import audio_signal
from forensics.models import Analysis

from .conftest import api_client_for, kill_worker, start_worker, upload
from .test_analyses import actions_for, request
from .test_worker import wait_for


def _ended(analysis_id, timeout=90) -> Analysis:
    assert wait_for(
        lambda: Analysis.objects.get(pk=analysis_id).status in ("succeeded", "failed"), timeout=timeout
    ), Analysis.objects.get(pk=analysis_id).status
    return Analysis.objects.get(pk=analysis_id)


def _failed_reason(analysis_id) -> str:
    entry = next(
        e
        for e in LogEntry.objects.filter(action="analysis.failed")
        if json.loads(bytes(e.leaf))["details"]["analysis"] == str(analysis_id)
    )
    return json.loads(bytes(entry.leaf))["details"]["reason"]


# --- limits, settings ----------------------------------------------------------


def test_limits_come_from_the_analyzer_module_unless_settings_override_them(custody_db):
    from forensics import analyzers

    digest, enf = analyzers.get("test.digest"), analyzers.get("audio.enf")
    assert services.limits_for(digest) == (digest.TIME_LIMIT, digest.MEMORY_LIMIT) == (120, 1 << 30)
    assert services.limits_for(enf) == (enf.TIME_LIMIT, enf.MEMORY_LIMIT)
    with override_settings(
        CUSTODY_ANALYSIS_TIME_LIMITS={"test.digest": 5, "*": 60},
        CUSTODY_ANALYSIS_MEMORY_LIMITS={"*": 3 << 30},
    ):
        assert services.limits_for(digest) == (5, 3 << 30)
        assert services.limits_for(enf) == (60, 3 << 30)
    for module in analyzers.registry().values():  # every analyzer declares its own
        assert module.TIME_LIMIT > 0 and module.MEMORY_LIMIT >= 256 << 20, module.NAME


def test_limit_settings_are_parsed_and_checked_loudly(tmp_path):
    from .test_settings import run_python

    code = (
        "import json, custody.settings as s; "
        "print(json.dumps([s.CUSTODY_ANALYSIS_TIME_LIMITS, s.CUSTODY_ANALYSIS_MEMORY_LIMITS, "
        "s.CUSTODY_ANALYSIS_MAX_ATTEMPTS]))"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{}, {}, 3]
    done = run_python(
        code,
        tmp_path,
        CUSTODY_ANALYSIS_TIME_LIMITS="audio.context=7200, *=600",
        CUSTODY_ANALYSIS_MEMORY_LIMITS="audio.enf=6G,*=512M,test.digest=1000000",
        CUSTODY_ANALYSIS_MAX_ATTEMPTS="5",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"audio.context": 7200, "*": 600},
        {"audio.enf": 6 << 30, "*": 512 << 20, "test.digest": 1000000},
        5,
    ]
    for bad in ("audio.enf", "audio.enf=", "audio.enf=0", "audio.enf=-1", "audio.enf=2X"):
        done = run_python(code, tmp_path, CUSTODY_ANALYSIS_MEMORY_LIMITS=bad)
        assert done.returncode != 0 and "CUSTODY_ANALYSIS_MEMORY_LIMITS" in done.stderr, bad


# --- in the test process (the same child process as in a worker) -----------------


def test_time_limit_stops_the_analysis_and_records_why(as_alice, evidence_a):
    analysis_id = request(as_alice, evidence_a.pk, delay=30.0).json()["id"]
    with override_settings(CUSTODY_ANALYSIS_TIME_LIMITS={"test.digest": 1}):
        assert services.run_analysis(analysis_id, worker="inline") == "failed"
    analysis = Analysis.objects.get(pk=analysis_id)
    assert "time limit of 1 s" in analysis.error and analysis.error == _failed_reason(analysis_id)
    assert actions_for(analysis_id) == ["analysis.requested", "analysis.started", "analysis.failed"]


def test_memory_limit_ends_the_analysis_as_failed(as_alice, evidence_a):
    analysis_id = request(as_alice, evidence_a.pk, hog_mb=2048).json()["id"]
    with override_settings(CUSTODY_ANALYSIS_MEMORY_LIMITS={"test.digest": 512 << 20}):
        assert services.run_analysis(analysis_id, worker="inline") == "failed"
    error = Analysis.objects.get(pk=analysis_id).error
    assert "out of memory" in error and "512 MiB" in error
    # Within the limit, the same allocation is fine.
    ok = request(as_alice, evidence_a.pk, hog_mb=64).json()["id"]
    assert services.run_analysis(ok, worker="inline") == "succeeded"


def test_an_analysis_process_that_dies_is_retried_up_to_the_cap(as_alice, evidence_a, settings):
    settings.CUSTODY_ANALYSIS_MAX_ATTEMPTS = 2
    analysis_id = request(as_alice, evidence_a.pk, kill_self=True).json()["id"]
    assert services.run_analysis(analysis_id, worker="one") == "queued"  # re-queued: attempt 2 may do
    assert services.run_analysis(analysis_id, worker="two") == "failed"
    analysis = Analysis.objects.get(pk=analysis_id)
    assert analysis.attempts == 2
    assert "SIGKILL" in analysis.error and "gave up after 2 attempts" in analysis.error
    assert actions_for(analysis_id) == [
        "analysis.requested",
        "analysis.started",
        "analysis.requeued",
        "analysis.started",
        "analysis.failed",
    ]
    assert audit.verify(check_blobs=False).ok


def _wav_header(bits: int) -> bytes:
    data = bytes(16000)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000 * 2, 2, bits)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_a_zero_bit_wav_fails_with_a_reason_through_the_pipeline(as_alice, case_a):
    body = upload(as_alice, case_a, _wav_header(0), name="zero-bits.wav").json()
    evidence = Evidence.objects.get(pk=body["id"])
    response = request(as_alice, evidence.pk, analyzer=audio_signal.NAME)
    assert response.status_code == 202, response.content
    analysis_id = response.json()["id"]
    assert services.run_analysis(analysis_id, worker="inline") == "failed"
    error = Analysis.objects.get(pk=analysis_id).error
    assert "0 bits per sample" in error and "AttributeError" not in error
    assert audit.verify(check_blobs=False).ok


# --- real workers ------------------------------------------------------------


@pytest.mark.slow
def test_worker_survives_an_analysis_past_its_time_limit(transactional_db, alice, case_a, tmp_path):
    client = api_client_for(alice)
    evidence_id = upload(client, case_a, os.urandom(20_000)).json()["id"]
    worker = start_worker(tmp_path / "worker.log", CUSTODY_ANALYSIS_TIME_LIMITS="test.digest=2")
    try:
        slow = request(client, evidence_id, delay=30.0).json()["id"]
        after = request(client, evidence_id).json()["id"]
        assert _ended(slow, timeout=60).status == "failed"
        assert _ended(after, timeout=60).status == "succeeded"  # the same worker goes on
        assert worker.poll() is None
    finally:
        kill_worker(worker)
    error = Analysis.objects.get(pk=slow).error
    assert "time limit of 2 s" in error and error == _failed_reason(slow)


@pytest.mark.slow
def test_worker_survives_an_analysis_past_its_memory_limit(transactional_db, alice, case_a, tmp_path):
    client = api_client_for(alice)
    evidence_id = upload(client, case_a, os.urandom(20_000)).json()["id"]
    worker = start_worker(tmp_path / "worker.log", CUSTODY_ANALYSIS_MEMORY_LIMITS="test.digest=256M")
    try:
        hog = request(client, evidence_id, hog_mb=4096).json()["id"]
        after = request(client, evidence_id).json()["id"]
        assert _ended(hog, timeout=60).status == "failed"
        assert _ended(after, timeout=60).status == "succeeded"
        assert worker.poll() is None
    finally:
        kill_worker(worker)
    analysis = Analysis.objects.get(pk=hog)
    assert "out of memory" in analysis.error and "256 MiB" in analysis.error
    assert analysis.attempts == 1  # deterministic: not retried


@pytest.mark.slow
def test_a_run_whose_worker_is_killed_every_time_fails_after_the_cap(
    transactional_db, alice, case_a, tmp_path
):
    from django.conf import settings as live

    cap = live.CUSTODY_ANALYSIS_MAX_ATTEMPTS
    assert cap == 3  # the default
    client = api_client_for(alice)
    evidence_id = upload(client, case_a, os.urandom(20_000)).json()["id"]
    log_path = tmp_path / "worker.log"
    analysis_id = request(client, evidence_id, delay=60.0).json()["id"]
    for attempt in range(1, cap + 1):
        worker = start_worker(log_path)
        try:
            assert wait_for(
                lambda n=attempt: Analysis.objects.filter(
                    pk=analysis_id, status="running", attempts=n
                ).exists(),
                timeout=60,
            ), attempt
        finally:
            kill_worker(worker)  # SIGKILL, as the OOM killer would, mid-analysis
        if attempt < cap:
            assert wait_for(lambda: services.sweep_stale() == [analysis_id], timeout=30)

    # The last attempt's worker died too: the sweeper gives up instead of re-queueing.
    def swept_and_failed():
        services.sweep_stale()
        return Analysis.objects.get(pk=analysis_id).status == "failed"

    assert wait_for(swept_and_failed, timeout=30)
    assert services.sweep_stale() == []
    analysis = Analysis.objects.get(pk=analysis_id)
    assert analysis.attempts == cap and analysis.envelope is None
    assert f"gave up after {cap} attempts" in analysis.error and analysis.error == _failed_reason(analysis_id)
    assert actions_for(analysis_id) == [
        "analysis.requested",
        *["analysis.started", "analysis.requeued"] * (cap - 1),
        "analysis.started",
        "analysis.failed",
    ]
    # A new worker does not pick it up again, and still runs other analyses.
    worker = start_worker(log_path)
    try:
        other = request(client, evidence_id).json()["id"]
        assert _ended(other).status == "succeeded"
    finally:
        kill_worker(worker)
    assert Analysis.objects.get(pk=analysis_id).status == "failed"
    report = audit.verify(check_blobs=False)
    assert report.ok, report
