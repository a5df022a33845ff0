"""Django's ``createsuperuser``, refused: it writes the account straight to the
database, so no custody log entry would record who was given access."""

from django.core.management.base import BaseCommand, CommandError

MESSAGE = (
    "createsuperuser is disabled on this server: it would create an account without a custody "
    "log entry. Create administrators with `python manage.py create_user NAME --role admin` "
    "(password from CUSTODY_PASSWORD or --password-stdin); on first run, "
    "`python manage.py bootstrap_admin` creates one."
)


class Command(BaseCommand):
    help = MESSAGE

    def add_arguments(self, parser):
        # Django's own options, so scripts that pass them get the explanation
        # instead of a usage error.
        parser.add_argument("--username")
        parser.add_argument("--email")
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")
        parser.add_argument("--database")

    def handle(self, *args, **options):
        raise CommandError(MESSAGE)
