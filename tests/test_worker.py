"""A real Celery worker process, on the configured broker (filesystem or Redis)."""

import os
import stat
import time

import pytest

from custody import tasks
from custody.models import Evidence, LogEntry
from custody.storage import blob_store

from .conftest import api_client_for, upload


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_worker_checks_fixity_and_logs_it(celery_worker_proc, alice, case_a):
    client = api_client_for(alice)
    good = upload(client, case_a, os.urandom(100_000), name="good.bin").json()
    bad = upload(client, case_a, os.urandom(100_000), name="bad.bin").json()
    # Damage one blob behind the application's back.
    path = blob_store().path(bad["sha256"])
    os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
    with open(path, "r+b") as f:
        f.write(b"\xff")
    tasks.check_fixity.delay(good["id"])
    tasks.check_fixity.delay(bad["id"])

    def checked():
        return LogEntry.objects.filter(action="fixity.checked").count() == 2

    assert wait_for(checked), "the worker did not log two fixity checks"
    results = {str(e.evidence_id): e for e in LogEntry.objects.filter(action="fixity.checked")}
    assert b'"ok":true' in bytes(results[good["id"]].leaf)
    assert b'"ok":false' in bytes(results[bad["id"]].leaf)
    assert Evidence.objects.count() == 2


def test_beat_schedule_runs_fixity_and_checkpoints():
    """The Procfile's beat process runs these; the tasks exist under these names."""
    from django.conf import settings

    from custody.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {
        "custody.check_fixity_all",
        "custody.sign_checkpoint",
        "custody.sweep_expired_uploads",
        "custody.timestamp_checkpoints",
        "custody.witness_checkpoints",
        "forensics.sweep_stale",
    }
    app.loader.import_default_modules()
    for entry in schedule.values():
        assert entry["task"] in app.tasks


@pytest.mark.slow
def test_worker_runs_the_periodic_tasks(celery_worker_proc, alice, case_a):
    from custody.models import Checkpoint

    upload(api_client_for(alice), case_a, b"periodic")
    tasks.check_fixity_all.delay()
    tasks.sign_checkpoint.delay()
    assert wait_for(lambda: LogEntry.objects.filter(action="fixity.checked").exists())
    assert wait_for(lambda: Checkpoint.objects.exists())
