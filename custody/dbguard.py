"""Database triggers that make the log tables append-only.

The application never updates or deletes log rows; these triggers make the
database refuse it too, so a stray UPDATE (or an admin tool) cannot rewrite
history by accident. Someone with enough database rights can still drop a
trigger: that is what the Merkle tree and signed checkpoints are for
(``manage.py verify_log`` detects the change).
"""

APPEND_ONLY_TABLES = ("custody_logentry", "custody_treenode", "custody_checkpoint")


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
    return [
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION custody_refuse_change()",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION custody_refuse_change()",
    ]


def install(connection) -> None:
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


def remove(connection) -> None:
    """Drop the triggers (tests use this to tamper, as an attacker with DB rights would)."""
    with connection.cursor() as cursor:
        for table in APPEND_ONLY_TABLES:
            if connection.vendor == "sqlite":
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
