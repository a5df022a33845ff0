from django.core.management.base import BaseCommand, CommandError

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
        try:
            root = services.update_trust_root()
        except services.ServiceError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(f"trust root version {root.version}")
