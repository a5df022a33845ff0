from django.core.management.base import BaseCommand

from custody import services


class Command(BaseCommand):
    help = (
        "Create the signing keys (log, intake, results) that do not exist yet, and publish a new trust "
        "root version if keys, witnesses or time-stamp authorities changed. Safe to re-run."
    )

    def handle(self, *args, **options):
        created = services.ensure_signing_keys()
        for row in created:
            self.stdout.write(f"created {row.purpose} key {row.keyid}")
        if not created:
            self.stdout.write("signing keys present")
        # Witnesses or time-stamp authorities may have changed in the settings.
        root = services.update_trust_root()
        self.stdout.write(f"trust root version {root.version}")
