"""An API token's seal now covers its revocation time too (custody.models.token_mac).

Each row still sealed the old way (digest and account, under SECRET_KEY or a
fallback) is sealed again the new way, from its revocation time as it stands:
a token revived in the database before this migration cannot be told from a
live one here (verify_log still compares it with the log's ``token.revoked``
entry). A row whose old seal did not hold keeps it, and stays refused.
"""

import hmac

from django.conf import settings
from django.db import migrations


def _old_token_mac(token, secret) -> bytes:
    """The seal as migration 0016 made it, frozen here."""
    from custody.models import seal

    return seal("custody.api.token", [token.digest, str(token.user_id)], secret)


def reseal(apps, schema_editor):
    from custody.models import token_mac

    ApiToken = apps.get_model("custody", "ApiToken")
    secrets = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    for token in ApiToken.objects.iterator():
        stored = bytes(token.mac or b"")
        if any(hmac.compare_digest(stored, _old_token_mac(token, secret)) for secret in secrets):
            ApiToken.objects.filter(pk=token.pk).update(mac=token_mac(token, settings.SECRET_KEY))


class Migration(migrations.Migration):
    dependencies = [("custody", "0020_resumableupload_progress_seal")]

    operations = [migrations.RunPython(reseal, migrations.RunPython.noop)]
