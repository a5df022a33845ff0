import json

from django.core.management.base import BaseCommand, CommandError

from custody import services, trustroot
from custody.models import TrustRoot


class Command(BaseCommand):
    help = (
        "Print the newest trust root (a DSSE envelope, JSON) and its fingerprint. With --update, first "
        "publish a new version if the keys, witnesses or time-stamp authorities changed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--update", action="store_true", help="publish a new version if anything changed")
        parser.add_argument(
            "--output", metavar="FILE", help="write the root to FILE instead of standard output"
        )

    def handle(self, update, output, **options):
        row = services.update_trust_root() if update else TrustRoot.objects.order_by("-version").first()
        if row is None:
            raise CommandError("no trust root yet: run `manage.py ensure_keys` (the release step does)")
        text = json.dumps(row.envelope, indent=2, sort_keys=True) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            self.stdout.write(text, ending="")
        self.stderr.write(
            f"trust root version {row.version}, fingerprint sha256:{trustroot.fingerprint(row.envelope)}"
        )
