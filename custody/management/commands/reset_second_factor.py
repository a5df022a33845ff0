from django.core.management.base import BaseCommand, CommandError

from custody import second_factor
from custody.models import User


class Command(BaseCommand):
    help = (
        "Remove a user's second factor (authenticator app and recovery codes), for one who lost both; "
        "logged as account.second_factor_removed. An administrator must then enrol again at next login."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, username, **options):
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        try:
            second_factor.remove(actor=None, user=user)
        except second_factor.SecondFactorError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(f"removed {username}'s second factor")
