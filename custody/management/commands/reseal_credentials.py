"""Move the seals of every account (password, grants) and API token to the current SECRET_KEY.

After a key rotation: a seal that checks under one of SECRET_KEY_FALLBACKS is
made again under SECRET_KEY; one that checks under none (a hash, a role or a
token row the server did not write) is named and left as it is: resealing it would bless
it. The account's owner gets a new password from an administrator (`manage.py
changepassword`); the owner of a refused token gets a new one.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.core.management.base import BaseCommand

from custody.models import (
    ApiToken,
    Membership,
    User,
    credential_mac,
    grants_mac,
    membership_mac,
    sealed_by_this_server,
    token_mac,
)

# What is sealed: (model, seal field, seal function, how a row is named, what its owner does).
SEALS = (
    (
        User,
        "credential_mac",
        credential_mac,
        "account(s)",
        lambda user: f"user {user.pk} ({user.username}): its password hash",
        "set a new password with manage.py changepassword",
    ),
    (
        User,
        "grants_mac",
        grants_mac,
        "account grant(s)",
        lambda user: f"user {user.pk} ({user.username}): its name, role or flags",
        "verify_log names what the log says they are",
    ),
    (
        Membership,
        "mac",
        membership_mac,
        "case membership(s)",
        lambda m: f"membership of user {m.user_id} in case {m.case_id}",
        "verify_log says whether the log accounts for it; if so, remove and add it again",
    ),
    (
        ApiToken,
        "mac",
        token_mac,
        "API token(s)",
        lambda token: f"API token {token.prefix}… (user {token.user_id}): its row",
        "one issued under a key no longer configured: its owner gets a new token",
    ),
)


class Command(BaseCommand):
    help = "Seal every account's password hash, grants and API token under the current SECRET_KEY (after rotating it)."

    def handle(self, *args, **options):
        any_refused = False
        for model, field, seal_of, plural, name, remedy in SEALS:
            moved = kept = refused = 0
            for row in model.objects.order_by("pk").iterator():
                current = seal_of(row, settings.SECRET_KEY)
                stored = bytes(getattr(row, field) or b"")
                if stored == current:
                    kept += 1
                elif sealed_by_this_server(stored, functools.partial(seal_of, row)):  # a fallback key
                    model.objects.filter(pk=row.pk, **{field: getattr(row, field)}).update(**{field: current})
                    moved += 1
                else:
                    refused += 1
                    self.stderr.write(
                        f"{name(row)} was not written by the server under any configured key; "
                        f"left as it is ({remedy})"
                    )
            self.stdout.write(
                f"resealed {moved} {plural}; {kept} already under the current key; {refused} refused"
            )
            any_refused = any_refused or refused > 0
        if any_refused:
            raise SystemExit(1)
