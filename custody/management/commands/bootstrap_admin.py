import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from custody import services
from custody.models import Role, User


class Command(BaseCommand):
    help = (
        "First run: create an administrator 'admin' with a random password, print it and keep it in "
        "CUSTODY_DATA_DIR/initial-admin-password (mode 0600). Does nothing once any administrator exists."
    )

    def handle(self, *args, **options):
        path = settings.DATA_DIR / "initial-admin-password"
        if User.objects.filter(role=Role.ADMIN).exists():
            if path.exists():
                self.stdout.write(
                    f"Log in as admin with the password in {path} (change it, then delete the file)."
                )
            else:
                self.stdout.write("Log in with your account (create more with `manage.py create_user`).")
            return
        password = secrets.token_urlsafe(12)
        services.create_user(actor=None, username="admin", password=password, role=Role.ADMIN)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        self.stdout.write(f"Created administrator 'admin' with password: {password}")
        self.stdout.write(f"(also kept in {path}; change it after logging in, then delete the file)")
