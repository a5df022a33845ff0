"""Database triggers that make the log tables append-only.

The application never updates or deletes log rows; these triggers make the
database refuse it too, so a stray UPDATE (or an admin tool) cannot rewrite
history by accident. Someone with enough database rights can still drop a
trigger: that is what the Merkle tree and signed checkpoints are for
(``manage.py verify_log`` detects the change). On PostgreSQL the server's own
role is not given those rights (``manage.py grant_app_role``).
"""

APPEND_ONLY_TABLES = ("custody_logentry", "custody_treenode", "custody_checkpoint")
# Entries waiting for their index (PostgreSQL): no UPDATE, and no DELETE of a
# row before the log holds the entry made from it (custody/log.py).
QUEUE_TABLE = "custody_logqueue"


def install(connection) -> None:
    """Every guard (idempotent); the tests re-install them after a flush."""
    install_update_delete_guards(connection)
    install_insert_guards(connection)
    install_queue_guards(connection)


def remove(connection) -> None:
    """Drop every guard (tests use this to tamper, as an attacker with DB rights would)."""
    remove_queue_guards(connection)
    remove_insert_guards(connection)
    remove_update_delete_guards(connection)


# --- UPDATE, DELETE (and TRUNCATE on PostgreSQL): migration 0003 ------------


def _sqlite_statements(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END",
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END",
    ]


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION custody_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _pg_statements(table: str) -> list[str]:
    # A row trigger on UPDATE also fires for INSERT ... ON CONFLICT DO UPDATE,
    # so upserts are refused here too.
    return [
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION custody_refuse_change()",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION custody_refuse_change()",
    ]


_PG_QUEUE_FUNCTION = """
CREATE OR REPLACE FUNCTION custody_queue_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The sequencer deletes a queued row in the transaction that writes its
    -- entry (which names the row); any other DELETE would drop a committed
    -- action's entry before the log has it.
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM custody_logentry WHERE queue_id = OLD.id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '%: % of an entry the log does not hold yet refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _pg_queue_statements() -> list[str]:
    table = QUEUE_TABLE
    return [
        _PG_QUEUE_FUNCTION,
        f"CREATE OR REPLACE TRIGGER {table}_guard BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION custody_queue_guard()",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION custody_refuse_change()",
    ]


def install_update_delete_guards(connection) -> None:
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(_PG_FUNCTION)
        for table in APPEND_ONLY_TABLES:
            if vendor == "sqlite":
                statements = _sqlite_statements(table)
            elif vendor == "postgresql":
                statements = _pg_statements(table)
            else:
                raise NotImplementedError(f"no append-only triggers for {vendor}")
            for sql in statements:
                cursor.execute(sql)


def install_queue_guards(connection) -> None:
    """The queue's guard (PostgreSQL, where entries are queued): migration 0013."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(_PG_FUNCTION)
        for sql in _pg_queue_statements():
            cursor.execute(sql)


def remove_queue_guards(connection) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {QUEUE_TABLE}_guard ON {QUEUE_TABLE}")
        cursor.execute(f"DROP TRIGGER IF EXISTS {QUEUE_TABLE}_no_truncate ON {QUEUE_TABLE}")


def remove_update_delete_guards(connection) -> None:
    with connection.cursor() as cursor:
        for table in APPEND_ONLY_TABLES:
            if connection.vendor == "sqlite":
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")


# --- INSERT over an existing row (SQLite): migration 0006 --------------------
#
# SQLite resolves a uniqueness conflict under INSERT OR REPLACE, REPLACE INTO
# (or a table's ON CONFLICT REPLACE) by deleting the old row, and that delete
# fires no DELETE trigger unless the connection turned recursive_triggers on,
# which a tool run by hand does not. So a REPLACE would rewrite a log row past
# the DELETE trigger. A BEFORE INSERT trigger runs before the conflict is
# resolved, sees the old row still there, and refuses. It checks every key
# that can conflict: each unique index (the primary key, unique constraints)
# and the rowid, which REPLACE can also name explicitly. Upserts (ON CONFLICT
# DO UPDATE) are refused by the UPDATE trigger anyway, and by this one first.
#
# PostgreSQL has no REPLACE: an INSERT that conflicts fails, and ON CONFLICT
# DO UPDATE fires the row UPDATE trigger. Nothing to add there.


def _sqlite_unique_keys(cursor, table: str) -> list[list[str]]:
    """Columns of each unique index of ``table`` (the table's rowid not included)."""
    keys = []
    cursor.execute(f"PRAGMA index_list({table})")
    for _seq, name, unique, _origin, partial in cursor.fetchall():
        if not unique:
            continue
        cursor.execute(f"PRAGMA index_info({name})")
        columns = [column for _seqno, _cid, column in cursor.fetchall()]
        if partial or None in columns:
            # A guard built from a partial or expression index would check the
            # wrong rows; fail the migration rather than guard half the keys.
            raise NotImplementedError(f"{table}: cannot guard the partial or expression index {name}")
        keys.append(columns)
    return keys


def _sqlite_insert_guard(table: str, keys: list[list[str]]) -> str:
    def exists(columns):
        condition = " AND ".join(f"{c} = NEW.{c}" for c in columns)
        # Our table names and the columns SQLite reported for them; no user input.
        return f"EXISTS (SELECT 1 FROM {table} WHERE {condition})"  # noqa: S608

    # NEW.rowid is -1 when the rowid is left to SQLite, so it matches no row.
    quoted = [["rowid"]] + [[f'"{c}"' for c in key] for key in keys]
    return (
        f"CREATE TRIGGER {table}_no_overwrite BEFORE INSERT ON {table} "
        f"WHEN {' OR '.join(exists(key) for key in quoted)} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: INSERT over an existing row refused'); END"
    )


def install_insert_guards(connection) -> None:
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for table in APPEND_ONLY_TABLES:
            # Re-created rather than IF NOT EXISTS, so a re-install picks up keys added since.
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_overwrite")
            cursor.execute(_sqlite_insert_guard(table, _sqlite_unique_keys(cursor, table)))


def remove_insert_guards(connection) -> None:
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for table in APPEND_ONLY_TABLES:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_overwrite")
