"""The database guards hold against the obvious bypasses.

SQLite: REPLACE and upserts over a log row are refused (a REPLACE deletes the
old row without firing the DELETE trigger). UPDATE, DELETE (and TRUNCATE on
PostgreSQL) stay refused on both backends. PostgreSQL: the role the server
connects as (after grant_app_role) may read and append the log, and is
refused every way to rewrite it or to switch the triggers off.
"""

import io
import os
import sqlite3
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from custody import log
from custody.models import Checkpoint, LogEntry, TreeNode

from .conftest import ROOT, run_verify_log

on_sqlite = pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="SQLite only: PostgreSQL has no REPLACE (upserts are tested on both)",
)


@pytest.fixture
def logged(alice, case_a):
    """A few entries, their tree nodes and a signed checkpoint."""
    log.latest_checkpoint()
    assert LogEntry.objects.count() >= 3 and TreeNode.objects.exists() and Checkpoint.objects.exists()


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement.replace("[index]", connection.ops.quote_name("index")), params)


def snapshot():
    """Every log row, to show a refused statement changed nothing."""
    return (
        list(LogEntry.objects.values_list("index", "leaf", "action")),
        list(TreeNode.objects.order_by("level", "index").values_list("id", "level", "index", "hash")),
        list(Checkpoint.objects.values_list("size", "note")),
    )


def assert_refused(statement):
    before = snapshot()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql(statement)
    assert snapshot() == before


def run_verify() -> tuple[int, str]:
    return run_verify_log("--skip-blobs")


# Each statement tries to put a different row where a log row is.
REPLACES = {
    "replace into logentry": (
        "REPLACE INTO custody_logentry ([index], leaf, leaf_hash, time, action) "
        "SELECT [index], leaf, leaf_hash, time, 'forged' FROM custody_logentry WHERE [index] = 1"
    ),
    "insert or replace into logentry": (
        "INSERT OR REPLACE INTO custody_logentry ([index], leaf, leaf_hash, time, action) "
        "SELECT [index], leaf, leaf_hash, time, 'forged' FROM custody_logentry WHERE [index] = 1"
    ),
    # The same rowid under a new index: the conflict is on the hidden rowid, not the key.
    "insert or replace logentry by rowid": (
        "INSERT OR REPLACE INTO custody_logentry (rowid, [index], leaf, leaf_hash, time, action) "
        "SELECT rowid, 1000000, leaf, leaf_hash, time, 'forged' FROM custody_logentry WHERE [index] = 1"
    ),
    "replace treenode by (level, index)": (
        "REPLACE INTO custody_treenode (level, [index], hash) "
        "SELECT level, [index], zeroblob(32) FROM custody_treenode WHERE level = 1 AND [index] = 0"
    ),
    "replace treenode by id": (
        "REPLACE INTO custody_treenode (id, level, [index], hash) "
        "SELECT id, 40, 0, hash FROM custody_treenode WHERE level = 1 AND [index] = 0"
    ),
    "replace checkpoint": (
        "REPLACE INTO custody_checkpoint (size, root, note, created_at) "
        "SELECT size, root, 'forged', created_at FROM custody_checkpoint"
    ),
    "insert or replace checkpoint": (
        "INSERT OR REPLACE INTO custody_checkpoint (size, root, note, created_at) "
        "SELECT size, zeroblob(32), note, created_at FROM custody_checkpoint"
    ),
}


@on_sqlite
@pytest.mark.parametrize("statement", REPLACES.values(), ids=REPLACES.keys())
def test_replace_over_a_log_row_is_refused(logged, statement):
    assert_refused(statement)


# Upserts: SQLite's insert guard refuses them first; PostgreSQL's UPDATE
# trigger fires for ON CONFLICT DO UPDATE.
UPSERTS = {
    "logentry": (
        "INSERT INTO custody_logentry ([index], leaf, leaf_hash, time, action) "
        "SELECT [index], leaf, leaf_hash, time, action FROM custody_logentry WHERE [index] = 1 "
        "ON CONFLICT ([index]) DO UPDATE SET action = 'forged'"
    ),
    "treenode": (
        "INSERT INTO custody_treenode (level, [index], hash) "
        "SELECT level, [index], hash FROM custody_treenode WHERE level = 1 AND [index] = 0 "
        "ON CONFLICT (level, [index]) DO UPDATE SET hash = custody_treenode.hash || custody_treenode.hash"
    ),
    "checkpoint": (
        "INSERT INTO custody_checkpoint (size, root, note, created_at) "
        "SELECT size, root, note, created_at FROM custody_checkpoint WHERE size > 0 "
        "ON CONFLICT (size) DO UPDATE SET note = 'forged'"
    ),
}


@pytest.mark.parametrize("statement", UPSERTS.values(), ids=UPSERTS.keys())
def test_upsert_over_a_log_row_is_refused(logged, statement):
    assert_refused(statement)


UPDATES_AND_DELETES = {
    "update logentry": "UPDATE custody_logentry SET action = 'forged' WHERE [index] = 1",
    "delete logentry": "DELETE FROM custody_logentry WHERE [index] = 1",
    "update treenode": "UPDATE custody_treenode SET hash = hash WHERE level = 1",
    "delete treenode": "DELETE FROM custody_treenode",
    "update checkpoint": "UPDATE custody_checkpoint SET note = 'forged'",
    "delete checkpoint": "DELETE FROM custody_checkpoint",
    # SQLite turns UPDATE OR REPLACE into deletes as well; the UPDATE trigger fires first.
    "update or replace logentry": "UPDATE OR REPLACE custody_logentry SET [index] = 0 WHERE [index] = 1",
}


@pytest.mark.parametrize("statement", UPDATES_AND_DELETES.values(), ids=UPDATES_AND_DELETES.keys())
def test_update_and_delete_of_log_rows_are_still_refused(logged, statement):
    if statement.startswith("UPDATE OR") and connection.vendor != "sqlite":
        pytest.skip("UPDATE OR REPLACE is SQLite syntax")
    assert_refused(statement)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no TRUNCATE")
@pytest.mark.parametrize("table", ["custody_logentry", "custody_treenode", "custody_checkpoint"])
def test_truncate_of_log_tables_is_refused(logged, table):
    # CASCADE: checkpoints are referenced by time-stamps; the trigger must refuse it all the same.
    assert_refused(f"TRUNCATE {table} CASCADE")


def test_normal_appends_still_work_under_the_guards(logged, alice, case_a):
    from custody import services

    before = LogEntry.objects.count()
    for i in range(5):
        services.create_case(actor=alice, reference=f"G-{i}", title="guarded")
    log.latest_checkpoint()
    after = LogEntry.objects.count()
    assert after > before + 5
    assert list(LogEntry.objects.values_list("index", flat=True)) == list(range(after))
    code, out = run_verify()
    assert code == 0, out


@on_sqlite
def test_a_migrated_sqlite_database_refuses_replace_from_a_plain_sqlite3_connection(tmp_path):
    """The guard comes from the migrations and holds for any client, not only Django's connection.

    A plain sqlite3 connection has recursive_triggers off, as the sqlite3
    shell does: without the insert guard the REPLACE would go through.
    """
    env = {
        "PATH": "/usr/bin:/bin",
        "CUSTODY_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "custody.settings",
        "DJANGO_SECRET_KEY": "test-only",
        "CUSTODY_KEY_PASSPHRASE": "test-only",
        "CUSTODY_KEY_SCRYPT_N": "1024",
    }
    for command in (["migrate", "--noinput", "-v0"], ["ensure_keys"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)
    db = sqlite3.connect(tmp_path / "custody.sqlite3", isolation_level=None)
    assert db.execute("PRAGMA recursive_triggers").fetchone() == (0,)
    rows = db.execute('SELECT "index", action FROM custody_logentry ORDER BY "index"').fetchall()
    assert len(rows) >= 3  # ensure_keys logged key.added entries
    for statement in (
        'REPLACE INTO custody_logentry ("index", leaf, leaf_hash, time, action) '
        'SELECT "index", leaf, leaf_hash, time, \'forged\' FROM custody_logentry WHERE "index" = 0',
        'INSERT OR REPLACE INTO custody_logentry (rowid, "index", leaf, leaf_hash, time, action) '
        "SELECT rowid, 99, leaf, leaf_hash, time, 'forged' FROM custody_logentry WHERE \"index\" = 0",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    assert db.execute('SELECT "index", action FROM custody_logentry ORDER BY "index"').fetchall() == rows
    db.close()


# --- PostgreSQL: the server's own role cannot get around the triggers --------

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL only: SQLite has no roles (whoever can write the file can drop a trigger)",
)


def test_grant_app_role_has_nothing_to_do_with_one_role(db):
    """SQLite, or PostgreSQL without DATABASE_MIGRATE_URL: the release step's grant is a no-op."""
    out = io.StringIO()
    call_command("grant_app_role", stdout=out)
    assert "nothing to grant" in out.getvalue()


def url_as(user: str) -> str:
    """DATABASE_URL with another user: same server and database."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
def app_role(transactional_db):
    """A login role of this test's own, granted as the release step grants DATABASE_URL's role.

    transactional_db: the grant must be committed for another connection to see it.
    """
    from custody import services
    from custody.models import LogHead

    name = f"custody_app_test_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER")
    try:
        LogHead.objects.get_or_create(pk=1)
        services.create_user(actor=None, username="erin", password="irrelevant-here", role="investigator")
        out = io.StringIO()
        call_command("grant_app_role", role=name, stdout=out)
        assert f"granted {name}: SELECT, INSERT on custody_logentry" in out.getvalue()
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {name}")  # its privileges, in this database
            cursor.execute(f"DROP ROLE {name}")


def connect_as(role: str):
    import psycopg

    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        dbname=settings["NAME"],
        user=role,
        autocommit=True,
    )


REFUSED_TO_APP_ROLE = {
    "disable triggers": "ALTER TABLE custody_logentry DISABLE TRIGGER ALL",
    "disable one trigger": "ALTER TABLE custody_logentry DISABLE TRIGGER custody_logentry_append_only",
    "drop trigger": "DROP TRIGGER custody_logentry_append_only ON custody_logentry",
    "replica mode skips triggers": "SET session_replication_role = replica",
    "neuter the trigger function": (
        "CREATE OR REPLACE FUNCTION custody_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"
    ),
    "truncate": "TRUNCATE custody_logentry",
    "delete": "DELETE FROM custody_logentry",
    "update": "UPDATE custody_logentry SET action = 'forged'",
    "alter": "ALTER TABLE custody_logentry ADD COLUMN forged integer",
    "drop table": "DROP TABLE custody_logentry",
    "delete tree nodes": "DELETE FROM custody_treenode",
    "update checkpoint": "UPDATE custody_checkpoint SET note = 'forged'",
    "delete checkpoint": "DELETE FROM custody_checkpoint",
    "delete the tree head": "DELETE FROM custody_loghead",
    "move the tree head's id": "UPDATE custody_loghead SET id = 2",
    "rewrite migration history": "DELETE FROM django_migrations",
}


@on_postgresql
@pytest.mark.parametrize("statement", REFUSED_TO_APP_ROLE.values(), ids=REFUSED_TO_APP_ROLE.keys())
def test_app_role_cannot_rewrite_the_log_or_switch_its_guards_off(app_role, statement):
    import psycopg

    before = snapshot()
    with connect_as(app_role) as db, pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute(statement)
    assert snapshot() == before


@on_postgresql
def test_app_role_may_read_and_insert_log_rows(app_role):
    size = LogEntry.objects.count()
    with connect_as(app_role) as db:
        assert db.execute("SELECT count(*) FROM custody_logentry").fetchone() == (size,)
        with db.transaction(force_rollback=True):  # the privilege, without leaving a stray row
            db.execute(
                "INSERT INTO custody_logentry (index, leaf, leaf_hash, time, action) "
                "VALUES (%s, '\\x7b7d', '\\x00', now(), 'probe')",
                [size + 100],
            )
            assert db.execute("SELECT count(*) FROM custody_logentry").fetchone() == (size + 1,)
        # Its ordinary DML on the other tables.
        db.execute("UPDATE custody_user SET first_name = 'Erin' WHERE username = 'erin'")


QUEUE_REFUSED_TO_APP_ROLE = {
    "delete a queued entry": "DELETE FROM custody_logqueue",
    "rewrite a queued entry": "UPDATE custody_logqueue SET action = 'forged'",
    "truncate the queue": "TRUNCATE custody_logqueue",
    "drop the queue's guard": "DROP TRIGGER custody_logqueue_guard ON custody_logqueue",
    "neuter the queue's guard": (
        "CREATE OR REPLACE FUNCTION custody_queue_guard() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"
    ),
}


@on_postgresql
@pytest.mark.parametrize(
    "statement", QUEUE_REFUSED_TO_APP_ROLE.values(), ids=QUEUE_REFUSED_TO_APP_ROLE.keys()
)
def test_app_role_may_queue_an_entry_but_not_drop_it_before_the_log_has_it(app_role, statement):
    import psycopg

    with connect_as(app_role) as db:
        queued = db.execute(
            "INSERT INTO custody_logqueue (body, action, mac, queued_at) VALUES ('\\x7b7d', 'probe', '', now()) "
            "RETURNING id"
        ).fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(statement)
        assert db.execute("SELECT count(*) FROM custody_logqueue WHERE id = %s", [queued]).fetchone() == (1,)


@on_postgresql
def test_release_step_grants_as_owner_and_the_app_appends_and_verifies_as_its_role(app_role, tmp_path):
    """The release step's commands, then the server's own, in processes as the Procfile runs them.

    CUSTODY_DB_OWNER=1 makes migrate and grant_app_role connect with
    DATABASE_MIGRATE_URL; without it every command is the app's role, which
    appends (create_user logs user.created) and verifies the log.
    """
    from .conftest import subprocess_env

    env = subprocess_env(
        DATABASE_MIGRATE_URL=os.environ["DATABASE_URL"],
        DATABASE_URL=url_as(app_role),
        CUSTODY_PASSWORD="a long enough password 1",
    )
    owner = dict(env, CUSTODY_DB_OWNER="1")

    def manage(*args, env):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for command in (["migrate", "--noinput"], ["grant_app_role"]):
        done = manage(*command, env=owner)
        assert done.returncode == 0, done.stdout + done.stderr
    assert f"granted {app_role}" in done.stdout
    # As the app's role the grant refuses: it would be granting to itself.
    done = manage("grant_app_role", env=env)
    assert done.returncode != 0 and "run as the tables' owner" in done.stderr

    size = LogEntry.objects.count()
    done = manage("create_user", "frank", "--role", "investigator", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert LogEntry.objects.count() > size
    assert LogEntry.objects.order_by("-index").first().action == "user.created"
    done = manage("verify_log", "--skip-blobs", env=env)
    assert done.returncode == 0, done.stdout + done.stderr


@on_postgresql
@pytest.mark.parametrize(
    ("grant", "complaint"),
    [
        # PostgreSQL 14+: a predefined role with write access to every table.
        ("GRANT pg_write_all_data TO {role}", "DELETE on custody_logentry"),
        # A member of the tables' owner may SET ROLE to it and drop the triggers.
        ("GRANT {owner} TO {role}", "may become"),
    ],
    ids=["predefined role", "member of the owner"],
)
def test_grant_app_role_fails_when_the_role_keeps_a_way_around(app_role, grant, complaint):
    from django.core.management.base import CommandError

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        owner = cursor.fetchone()[0]
        cursor.execute(grant.format(role=app_role, owner=owner))
    with pytest.raises(CommandError, match=complaint):
        call_command("grant_app_role", role=app_role, stdout=io.StringIO())


@on_postgresql
def test_grant_app_role_takes_back_what_public_was_given(app_role):
    with connection.cursor() as cursor:
        cursor.execute("GRANT DELETE ON custody_treenode TO PUBLIC")
        call_command("grant_app_role", role=app_role, stdout=io.StringIO())
        cursor.execute("SELECT has_table_privilege(%s, 'custody_treenode', 'DELETE')", [app_role])
        assert cursor.fetchone() == (False,)
