"""Give the server's database role exactly what it needs, and no way around the log's guards.

Run by the release step as the tables' owner, after migrate (README,
"Database roles"). The role named in DATABASE_URL (or --role) may then read
and append the log tables but not update, delete, truncate, alter them or
drop their triggers: those need ownership or privileges it does not get.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.migrations.recorder import MigrationRecorder

from custody.dbguard import APPEND_ONLY_TABLES, QUEUE_TABLE

# The single tree-head row: every append locks it (SELECT ... FOR UPDATE needs
# UPDATE on some column) and moves it on. Column privileges keep its id fixed.
HEAD_TABLE = "custody_loghead"
HEAD_COLUMNS = ("size", "frontier", "root")
# What the role must not hold on a log table, by any route (directly, through
# PUBLIC or a role it belongs to, such as pg_write_all_data).
FORBIDDEN_ON_LOG = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES")
# The queue of entries waiting for their index: appenders insert, the
# sequencer (any app process) reads and deletes; its guard refuses a DELETE
# before the log holds the entry, and nothing may rewrite a queued entry.
QUEUE_PRIVILEGES = "SELECT, INSERT, DELETE"
FORBIDDEN_ON_QUEUE = ("UPDATE", "TRUNCATE", "TRIGGER", "REFERENCES")
GUARD_FUNCTIONS = ["custody_refuse_change", "custody_queue_guard"]


class Command(BaseCommand):
    help = (
        "PostgreSQL with DATABASE_MIGRATE_URL: run as the owner (CUSTODY_DB_OWNER=1) after migrate. "
        "Grants DATABASE_URL's role SELECT and INSERT on the log tables, UPDATE of the tree head, "
        "ordinary DML on the other tables, and revokes everything else."
    )

    def add_arguments(self, parser):
        parser.add_argument("--role", default="", help="the role to grant to (default: DATABASE_URL's user)")

    def handle(self, role, verbosity, **options):
        # -v0 for scripts/serve, which runs this on SQLite too.
        say = self.stdout.write if verbosity else lambda message: None
        if connection.vendor != "postgresql":
            say(f"{connection.vendor}: no database roles; nothing to grant")
            return
        role = role or settings.CUSTODY_DB_APP_ROLE
        if not role:
            say("DATABASE_MIGRATE_URL is not set: the server's role owns the tables; nothing to grant")
            return
        with transaction.atomic(), connection.cursor() as cursor:
            self._check_role(cursor, role)
            tables = self._tables()
            self._grant(cursor, role, tables)
            self._check_result(cursor, role)
        say(
            f"granted {role}: SELECT, INSERT on {', '.join(APPEND_ONLY_TABLES)}; "
            f"SELECT, UPDATE ({', '.join(HEAD_COLUMNS)}) on {HEAD_TABLE}; "
            f"{QUEUE_PRIVILEGES} on {QUEUE_TABLE}; "
            f"SELECT on {MigrationRecorder.Migration._meta.db_table}; "
            f"SELECT, INSERT, UPDATE, DELETE on {len(tables) - len(APPEND_ONLY_TABLES) - 3} other tables"
        )

    def _check_role(self, cursor, role: str) -> None:
        cursor.execute("SELECT current_user")
        (owner,) = cursor.fetchone()
        if owner == role:
            raise CommandError(
                f"connected as {role}, the role to restrict: run as the tables' owner "
                "(CUSTODY_DB_OWNER=1 with DATABASE_MIGRATE_URL set)"
            )
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
        found = cursor.fetchone()
        if found is None:
            raise CommandError(f"role {role!r} does not exist: CREATE ROLE {role} LOGIN PASSWORD '...'")
        if found[0]:
            raise CommandError(f"role {role!r} is a superuser: no privilege can restrict it")
        # Owning a log table, or the function its triggers call, is what allows
        # ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER or a harmless function
        # body; no REVOKE undoes ownership. MEMBER, not USAGE: a member of the
        # owner can SET ROLE to it even without inheriting its privileges.
        cursor.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid) AND pg_has_role(%s, c.relowner, 'MEMBER') "
            "UNION ALL SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p "
            "WHERE p.proname = ANY(%s) AND pg_has_role(%s, p.proowner, 'MEMBER')",
            [[*APPEND_ONLY_TABLES, QUEUE_TABLE], role, GUARD_FUNCTIONS, role],
        )
        owned = cursor.fetchall()
        if owned:
            name, name_owner = owned[0]
            raise CommandError(
                f"role {role!r} is or may become {name_owner}, the owner of {name}: "
                "the app needs a role of its own that owns no table"
            )

    def _tables(self) -> list[str]:
        tables = set(connection.introspection.django_table_names(only_existing=True, include_views=False))
        tables.add(MigrationRecorder.Migration._meta.db_table)
        missing = (set(APPEND_ONLY_TABLES) | {HEAD_TABLE, QUEUE_TABLE}) - tables
        if missing:
            raise CommandError(f"tables missing ({', '.join(sorted(missing))}): run migrate first")
        return sorted(tables)

    def _grant(self, cursor, role: str, tables: list[str]) -> None:
        quote = connection.ops.quote_name
        who = quote(role)
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        cursor.execute(f"GRANT CONNECT ON DATABASE {quote(database)} TO {who}")
        cursor.execute(f"GRANT USAGE ON SCHEMA {quote(schema)} TO {who}")
        for table in tables:
            name = quote(table)
            # Start from nothing each time, so a privilege granted by hand (or
            # by an earlier version of this command) does not linger. Revoking
            # at table level also revokes column privileges.
            cursor.execute(f"REVOKE ALL ON TABLE {name} FROM PUBLIC, {who}")
            if table in APPEND_ONLY_TABLES:
                cursor.execute(f"GRANT SELECT, INSERT ON TABLE {name} TO {who}")
            elif table == QUEUE_TABLE:
                cursor.execute(f"GRANT {QUEUE_PRIVILEGES} ON TABLE {name} TO {who}")
            elif table == HEAD_TABLE:
                columns = ", ".join(quote(c) for c in HEAD_COLUMNS)
                cursor.execute(f"GRANT SELECT, UPDATE ({columns}) ON TABLE {name} TO {who}")
            elif table == MigrationRecorder.Migration._meta.db_table:
                cursor.execute(f"GRANT SELECT ON TABLE {name} TO {who}")
            else:
                cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {name} TO {who}")
            # Identity columns need no sequence privilege; a serial column
            # (made by hand or an older Django) does.
            for sequence in connection.introspection.get_sequences(cursor, table):
                cursor.execute(f"GRANT USAGE ON SEQUENCE {quote(sequence['name'])} TO {who}")
        # No ALTER DEFAULT PRIVILEGES: this command runs after every migrate,
        # and until it has seen a new table that table stays closed to the
        # app, rather than open to DELETE if it is a new log table.

    @staticmethod
    def _has(cursor, role: str, table: str, privilege: str) -> bool:
        # Column privileges count too: UPDATE of one column is still an UPDATE.
        if privilege in ("SELECT", "INSERT", "UPDATE", "REFERENCES"):
            cursor.execute("SELECT has_any_column_privilege(%s, %s, %s)", [role, table, privilege])
        else:
            cursor.execute("SELECT has_table_privilege(%s, %s, %s)", [role, table, privilege])
        return cursor.fetchone()[0]

    def _check_result(self, cursor, role: str) -> None:
        """Ask the server what the role can do now, whatever route a privilege takes."""
        problems = []
        for table in APPEND_ONLY_TABLES:
            for privilege in FORBIDDEN_ON_LOG:
                if self._has(cursor, role, table, privilege):
                    problems.append(f"{privilege} on {table}")
        for privilege in FORBIDDEN_ON_QUEUE:
            if self._has(cursor, role, QUEUE_TABLE, privilege):
                problems.append(f"{privilege} on {QUEUE_TABLE}")
        for table, needed in [(t, ("SELECT", "INSERT")) for t in APPEND_ONLY_TABLES] + [
            (HEAD_TABLE, ("SELECT", "UPDATE")),
            (QUEUE_TABLE, ("SELECT", "INSERT", "DELETE")),
        ]:
            for privilege in needed:
                if not self._has(cursor, role, table, privilege):
                    problems.append(f"missing {privilege} on {table}")
        if connection.pg_version >= 150000:
            # session_replication_role = replica turns every trigger off.
            cursor.execute("SELECT has_parameter_privilege(%s, 'session_replication_role', 'SET')", [role])
            if cursor.fetchone()[0]:
                problems.append("may SET session_replication_role (which disables triggers)")
        if problems:
            raise CommandError(
                f"role {role!r} has or lacks (directly, through PUBLIC or a role it is a member of): "
                + "; ".join(problems)
            )
        cursor.execute("SELECT has_schema_privilege(%s, current_schema(), 'CREATE')", [role])
        if cursor.fetchone()[0]:
            # Not a way around the guards (it cannot replace our objects), but more than it needs.
            self.stderr.write(
                f"warning: {role} may create objects in the schema (PostgreSQL before 15 grants "
                "that to PUBLIC): REVOKE CREATE ON SCHEMA public FROM PUBLIC"
            )
