from django.core.management.base import BaseCommand, CommandError

from custody import services
from custody.models import ApiToken


class Command(BaseCommand):
    help = "Revoke API tokens: all of a user's, or one by its prefix."

    def add_arguments(self, parser):
        parser.add_argument("--user")
        parser.add_argument("--prefix")

    def handle(self, user, prefix, **options):
        tokens = ApiToken.objects.filter(revoked_at__isnull=True)
        if user:
            tokens = tokens.filter(user__username=user)
        if prefix:
            tokens = tokens.filter(prefix=prefix)
        if not (user or prefix):
            raise CommandError("give --user or --prefix")
        count = 0
        for token in tokens:
            services.revoke_token(actor=None, token=token)
            count += 1
        self.stdout.write(f"revoked {count} token(s)")
