import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from custody import tus, uploads


class Command(BaseCommand):
    help = (
        "Remove this host's leftovers of uploads: unfinished resumable uploads past their expiry (and their "
        "staged pieces), local copies of resumable uploads that ended or expired, and temporary multipart "
        "uploads of web processes of this host that died mid-upload. Live uploads are never touched. "
        "With several hosts, run it on each web host (deploy/multihost/Procfile.web: --every 3600); on one "
        "host beat's schedule does it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=int, default=0, help="repeat every SECONDS, forever (0: once)")

    def handle(self, *args, every: int, **options):
        if every < 0:
            raise CommandError("--every must be 0 (once) or a number of seconds")
        while True:
            expired, abandoned = tus.sweep_expired(), uploads.sweep_abandoned()
            self.stdout.write(
                f"swept {expired} expired resumable upload(s), {abandoned} abandoned temporary upload(s)"
            )
            if not every:
                return
            close_old_connections()
            time.sleep(every)
