import dj_database_url
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from custody import rebuild


class Command(BaseCommand):
    help = (
        "Rebuild every custody table from the log alone: read the log of the database at "
        "--source-url and write, into this (empty, migrated) database, the log, its tree and "
        "every table the log implies. Then run verify_log here, and compare with the source."
    )

    def add_arguments(self, parser):
        parser.add_argument("--source-url", required=True, help="database URL of the log to replay")

    def handle(self, source_url, **options):
        connections.databases["rebuild_source"] = {
            **connections.databases["default"],
            **dj_database_url.parse(source_url),
        }
        try:
            count = rebuild.rebuild(
                "rebuild_source", "default", progress=lambda t: self.stderr.write(f"... {t}")
            )
        except rebuild.RebuildError as exc:
            raise CommandError(str(exc)) from None
        finally:
            connections["rebuild_source"].close()
        self.stdout.write(f"rebuilt the custody tables from {count} log entries")
        # The log says these accounts have a second factor; their devices are credentials, not in
        # the log: they are refused until reset (and, like every account, need a new password).
        waiting = rebuild.second_factor_without_device("default")
        if waiting:
            self.stdout.write(
                f"{len(waiting)} account(s) have a second factor in force but no device here: "
                "each is refused until an administrator runs manage.py reset_second_factor USERNAME "
                f"(then it enrols again): {', '.join(waiting)}"
            )
