"""Users carry an HMAC of what they may do: name, role, active and admin flags, and whether a
second factor is in force (custody.models.grants_mac; the new ``second_factor`` flag is set from
the confirmed TOTP devices).

Existing accounts get theirs now, from the rows as they stand: a role written
into the database before this migration cannot be told from one the server
wrote here (verify_log still compares every account with the log).
"""

from django.conf import settings
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from custody.models import grants_mac

    User = apps.get_model("custody", "User")
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    enrolled = set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))
    for user in User.objects.iterator():
        user.second_factor = user.pk in enrolled
        User.objects.filter(pk=user.pk).update(
            second_factor=user.second_factor, grants_mac=grants_mac(user, settings.SECRET_KEY)
        )


class Migration(migrations.Migration):
    dependencies = [("custody", "0016_apitoken_mac"), ("otp_totp", "0003_add_timestamps")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="grants_mac",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="user",
            name="second_factor",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
