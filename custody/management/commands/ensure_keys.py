from django.core.management.base import BaseCommand

from custody import services


class Command(BaseCommand):
    help = "Create the signing keys (log, intake, results) that do not exist yet. Safe to re-run."

    def handle(self, *args, **options):
        created = services.ensure_signing_keys()
        for row in created:
            self.stdout.write(f"created {row.purpose} key {row.keyid}")
        if not created:
            self.stdout.write("signing keys present")
