"""The log is the record: every custody table is rebuilt from it alone, and verify_log agrees."""

from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.core.management import call_command

from custody import audit, projection, rebuild
from custody.models import Checkpoint, LogEntry, LogHead, TreeNode
from custody.projection import TABLES

from .busy import busy_history

EVERY_ACTION = {
    "user.created",
    "user.role_changed",
    "user.activated",
    "user.deactivated",
    "case.created",
    "case.member_added",
    "case.member_removed",
    "token.issued",
    "token.revoked",
    "key.added",
    "key.retired",
    "evidence.received",
    "evidence.viewed",
    "evidence.downloaded",
    "access.refused",
    "fixity.checked",
    "custody.released",
    "custody.accepted",
    "custody.refused",
    "analysis.requested",
    "analysis.started",
    "analysis.failed",
    "analysis.requeued",
    "analysis.completed",
    "result.published",
    "result.announced",
}


def snapshot(using: str) -> dict:
    """Every projected table, normalised to the log's terms, plus the log's own rows."""
    out = {}
    for name, table in TABLES.items():
        model = apps.get_model(table.model)
        columns = [*table.key, *table.fields]
        rows = model.objects.using(using).values_list(*columns)
        out[name] = sorted(
            (
                tuple(projection.normalize(table, c, v) for c, v in zip(columns, row, strict=True))
                for row in rows
            ),
            key=repr,
        )
    out["log"] = list(
        LogEntry.objects.using(using)
        .order_by("index")
        .values_list("index", "leaf", "leaf_hash", "time", "action", "actor_id", "case_id", "evidence_id")
    )
    out["log"] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in out["log"]]
    out["nodes"] = sorted(
        (level, i, bytes(h))
        for level, i, h in TreeNode.objects.using(using).values_list("level", "index", "hash")
    )
    head = LogHead.objects.using(using).get(pk=1)
    out["head"] = (head.size, bytes(head.frontier), bytes(head.root))
    out["checkpoints"] = list(Checkpoint.objects.using(using).order_by("size").values_list("size", "note"))
    return out


@pytest.fixture
def history(alice, bob, case_a, case_b):
    return busy_history(alice, bob, case_a, case_b)


def test_busy_history_has_every_action_and_verifies(history):
    actions = set(LogEntry.objects.values_list("action", flat=True))
    assert EVERY_ACTION <= actions, EVERY_ACTION - actions
    report = audit.verify()
    assert report.ok, report.problems
    assert report.receipts == 4 and report.results == 2


@pytest.mark.django_db(databases=["default", "rebuild"])
def test_state_rebuilt_from_the_log_alone_equals_the_live_state(history):
    live = snapshot("default")
    assert live["evidence"] and live["analysis"] and live["transfer"] and live["token"]
    count = rebuild.rebuild("default", "rebuild")
    assert count == len(live["log"])
    rebuilt = snapshot("rebuild")
    for part in live:
        assert rebuilt[part] == live[part], part


@pytest.mark.django_db(databases=["default", "rebuild"])
def test_rebuild_refuses_a_database_that_is_not_empty(history):
    rebuild.rebuild("default", "rebuild")
    with pytest.raises(rebuild.RebuildError, match="not empty"):
        rebuild.rebuild("default", "rebuild")


def test_verify_log_command_names_the_tables_it_compared(history):
    out = io.StringIO()
    call_command("verify_log", "--quiet", stdout=out)
    assert "OK:" in out.getvalue()
    assert "4 receipts" in out.getvalue() and "2 results" in out.getvalue()
