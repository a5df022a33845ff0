import os

from django.apps import AppConfig
from django.db.backends.signals import connection_created

PRIVATE_FILE_MODE = 0o600


def make_sqlite_files_private(name: str) -> None:
    """The database file and its WAL and shared-memory files: the server's user's only (0600).

    SQLite makes them 0644 under the usual umask (the WAL and -shm files copy
    the database file's mode), and they hold every custody record.
    """
    for path in (name, f"{name}-wal", f"{name}-shm"):
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, PRIVATE_FILE_MODE)
        except FileNotFoundError:
            pass


def _on_connection_created(sender, connection, **kwargs) -> None:
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if name and name != ":memory:" and not name.startswith("file:"):
        make_sqlite_files_private(name)


class CustodyConfig(AppConfig):
    name = "custody"
    verbose_name = "Custody"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Bind shared tasks to the project's Celery app (broker from settings)
        # in every Django process that may enqueue work.
        from . import celery  # noqa: F401

        connection_created.connect(_on_connection_created, dispatch_uid="custody.sqlite_private")
