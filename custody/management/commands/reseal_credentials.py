"""Move every seal (models.SEALS: passwords, grants, memberships, API tokens) to the current SECRET_KEY.

After a key rotation: a seal that checks under one of SECRET_KEY_FALLBACKS is
made again under SECRET_KEY; one that checks under none (a hash, a role or a
token row the server did not write) is named and left as it is: resealing it would bless
it. The account's owner gets a new password from an administrator (`manage.py
changepassword`); the owner of a refused token gets a new one.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from custody.models import SEALS, SealedTOTPDevice, TotpKeyRefused, open_totp_key, seal_totp_key


class Command(BaseCommand):
    help = "Seal every account's password hash, grants and API token under the current SECRET_KEY (after rotating it)."

    def handle(self, *args, **options):
        any_refused = False
        for kind in SEALS:
            moved = kept = refused = 0
            for row in kind.model.objects.order_by("pk").iterator():
                current = kind.seal_of(row, settings.SECRET_KEY)
                stored = bytes(getattr(row, kind.field) or b"")
                if stored == current:
                    kept += 1
                elif kind.intact(row):  # under one of SECRET_KEY_FALLBACKS
                    kind.model.objects.filter(pk=row.pk, **{kind.field: getattr(row, kind.field)}).update(
                        **{kind.field: current}
                    )
                    moved += 1
                else:
                    refused += 1
                    self.stderr.write(
                        f"{kind.label(row)}: {kind.field} not written by the server under any configured "
                        f"key; left as it is ({kind.remedy})"
                    )
            self.stdout.write(
                f"resealed {moved} {kind.plural}; {kept} already under the current key; {refused} refused"
            )
            any_refused = any_refused or refused > 0
        any_refused = self._totp_keys() or any_refused
        if any_refused:
            raise SystemExit(1)

    def _totp_keys(self) -> bool:
        """TOTP keys are encrypted, not sealed: one that opens under a fallback key is encrypted
        again under SECRET_KEY. Returns whether one opened under no key."""
        moved = kept = refused = 0
        for device in SealedTOTPDevice.objects.order_by("pk").iterator():
            try:
                raw, secret = open_totp_key(device)
            except TotpKeyRefused:
                refused += 1
                self.stderr.write(
                    f"TOTP device {device.pk} (user {device.user_id}): its key was not stored by the server "
                    "under any configured key; left as it is (manage.py reset_second_factor, then enrol again)"
                )
                continue
            if secret == settings.SECRET_KEY:
                kept += 1
                continue
            SealedTOTPDevice.objects.filter(pk=device.pk, key=device.key).update(
                key=seal_totp_key(raw, device)
            )
            moved += 1
        self.stdout.write(
            f"encrypted again {moved} TOTP key(s); {kept} already under the current key; {refused} refused"
        )
        return refused > 0
