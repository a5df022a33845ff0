"""Move the seals of every account (password, grants) and API token to the current SECRET_KEY.

After a key rotation: a seal that checks under one of SECRET_KEY_FALLBACKS is
made again under SECRET_KEY; one that checks under none (a hash, a role or a
token row the server did not write) is named and left as it is: resealing it would bless
it. The account's owner gets a new password from an administrator (`manage.py
changepassword`); the owner of a refused token gets a new one.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from custody.models import ApiToken, User, credential_mac, grants_mac, token_mac


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
        grants_moved = 0
        refused_grants = []
        for user in User.objects.order_by("pk").iterator():
            current = grants_mac(user, settings.SECRET_KEY)
            if bytes(user.grants_mac or b"") == current:
                continue
            if user.grants_intact():
                User.objects.filter(pk=user.pk).update(grants_mac=current)
                grants_moved += 1
            else:
                refused_grants.append(user)
        tokens_moved = tokens_kept = 0
        refused_tokens = []
        for token in ApiToken.objects.order_by("pk").iterator():
            current = token_mac(token, settings.SECRET_KEY)
            if bytes(token.mac or b"") == current:
                tokens_kept += 1
            elif token.seal_intact():
                ApiToken.objects.filter(pk=token.pk, digest=token.digest, user_id=token.user_id).update(
                    mac=current
                )
                tokens_moved += 1
            else:
                refused_tokens.append(token)
        for user in refused:
            self.stderr.write(
                f"user {user.pk} ({user.username}): its password hash was not set by the server under any "
                "configured key; left as it is (set a new password with manage.py changepassword)"
            )
        for user in refused_grants:
            self.stderr.write(
                f"user {user.pk} ({user.username}): its name, role or flags were not written by the server "
                "under any configured key; left as they are (verify_log names what the log says they are)"
            )
        for token in refused_tokens:
            self.stderr.write(
                f"API token {token.prefix}… (user {token.user_id}): its row was not made by the server under "
                "any configured key; left as it is (one issued under a key no longer configured: its owner gets a new token)"
            )
        self.stdout.write(
            f"resealed {moved} account(s); {kept} already under the current key; {len(refused)} refused\n"
            f"resealed the grants of {grants_moved} account(s); {len(refused_grants)} refused\n"
            f"resealed {tokens_moved} API token(s); {tokens_kept} already under the current key; "
            f"{len(refused_tokens)} refused"
        )
        if refused or refused_grants or refused_tokens:
            raise SystemExit(1)
