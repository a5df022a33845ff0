"""Recovery codes are stored as an HMAC of the account and the code
(custody.second_factor.recovery_token), no longer as the code itself: the
codes in the table now are replaced by their stored form, and keep working."""

import types

from django.db import migrations


def hash_existing(apps, schema_editor):
    from custody.second_factor import recovery_token

    StaticToken = apps.get_model("otp_static", "StaticToken")
    for token in StaticToken.objects.select_related("device").iterator():
        owner = types.SimpleNamespace(pk=token.device.user_id)
        StaticToken.objects.filter(pk=token.pk).update(token=recovery_token(owner, token.token))


class Migration(migrations.Migration):
    dependencies = [("custody", "0018_membership_mac"), ("otp_static", "0003_add_timestamps")]

    operations = [migrations.RunPython(hash_existing, migrations.RunPython.noop)]
