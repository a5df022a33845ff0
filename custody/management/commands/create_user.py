import os
import sys
import uuid

from django.core.management.base import BaseCommand, CommandError

from custody import services
from custody.models import Case, Role


class Command(BaseCommand):
    help = (
        "Create a user with a role and case memberships, non-interactively. The password "
        "comes from the environment variable named by --password-env (default "
        "CUSTODY_PASSWORD) or, with --password-stdin, from the first line of standard input."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.INVESTIGATOR)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--case", action="append", default=[], dest="cases", help="case reference to join (repeatable)"
        )
        parser.add_argument("--password-env", default="CUSTODY_PASSWORD")
        parser.add_argument("--password-stdin", action="store_true")
        parser.add_argument(
            "--update",
            action="store_true",
            help="if the user exists, set the role and add memberships instead of failing",
        )
        active = parser.add_mutually_exclusive_group()
        active.add_argument(
            "--deactivate", action="store_true", help="with --update: the account can no longer sign in"
        )
        active.add_argument("--activate", action="store_true", help="with --update: reactivate the account")

    def handle(
        self,
        username,
        role,
        email,
        cases,
        password_env,
        password_stdin,
        update,
        deactivate,
        activate,
        **options,
    ):
        found = []
        for reference in cases:
            matches = list(Case.objects.filter(reference=reference)[:2])
            if not matches:
                try:
                    matches = list(Case.objects.filter(pk=uuid.UUID(reference)))
                except ValueError:
                    pass
            if not matches:
                raise CommandError(f"no case with reference {reference!r}")
            if len(matches) > 1:
                ids = ", ".join(str(c.pk) for c in Case.objects.filter(reference=reference))
                raise CommandError(
                    f"several cases have the reference {reference!r} ({ids}): give the case id"
                )
            found.append(matches[0])
        from custody.models import User

        existing = User.objects.filter(username=username).first()
        if existing and update:
            if existing.role != role:
                services.set_role(actor=None, user=existing, role=role)
            for case in found:
                services.add_member(actor=None, case=case, user=existing)
            if deactivate or activate:
                services.set_active(actor=None, user=existing, active=activate)
            state = "" if existing.is_active or activate else ", inactive"
            self.stdout.write(f"updated {username} ({role}{', inactive' if deactivate else state})")
            return
        if deactivate or activate:
            raise CommandError("--deactivate and --activate apply to an existing user: add --update")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = os.environ.get(password_env, "")
        if not password:
            raise CommandError(
                f"no password: set {password_env} or pass --password-stdin and write it to standard input"
            )
        try:
            services.create_user(
                actor=None, username=username, password=password, role=role, email=email, cases=found
            )
        except services.ServiceError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(f"created {username} ({role})" + (f" in {', '.join(cases)}" if cases else ""))
