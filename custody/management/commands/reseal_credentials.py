"""Move every account's password seal to the current SECRET_KEY (after a key rotation).

An account whose seal checks under one of SECRET_KEY_FALLBACKS is sealed again
under SECRET_KEY; one whose seal checks under none (a hash the server did not
set) is named and left as it is: resealing it would bless it. Its owner gets a
new password from an administrator (`manage.py changepassword`).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from custody.models import User, credential_mac


class Command(BaseCommand):
    help = "Seal every account's password hash under the current SECRET_KEY (after rotating it)."

    def handle(self, *args, **options):
        moved = kept = 0
        refused = []
        for user in User.objects.order_by("pk").iterator():
            current = credential_mac(user, settings.SECRET_KEY)
            if bytes(user.credential_mac or b"") == current:
                kept += 1
            elif user.credential_intact():  # under a fallback key
                User.objects.filter(pk=user.pk, password=user.password).update(credential_mac=current)
                moved += 1
            else:
                refused.append(user)
        for user in refused:
            self.stderr.write(
                f"user {user.pk} ({user.username}): its password hash was not set by the server under any "
                "configured key; left as it is (set a new password with manage.py changepassword)"
            )
        self.stdout.write(
            f"resealed {moved} account(s); {kept} already under the current key; {len(refused)} refused"
        )
        if refused:
            raise SystemExit(1)
