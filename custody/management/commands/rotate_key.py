from django.core.management.base import BaseCommand

from custody import services
from custody.models import SigningKey


class Command(BaseCommand):
    help = "Retire the active signing key of a purpose and create a new one (both logged)."

    def add_arguments(self, parser):
        parser.add_argument("purpose", choices=SigningKey.Purpose.values)

    def handle(self, purpose, **options):
        row = services.rotate_signing_key(actor=None, purpose=purpose)
        self.stdout.write(f"new {purpose} key {row.keyid}; the previous one is retired but stays published")
