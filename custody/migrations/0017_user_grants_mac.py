"""Users carry an HMAC of what they may do: name, role, active and admin flags
(custody.models.grants_mac).

Existing accounts get theirs now, from the rows as they stand: a role written
into the database before this migration cannot be told from one the server
wrote here (verify_log still compares every account with the log).
"""

from django.conf import settings
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from custody.models import grants_mac

    User = apps.get_model("custody", "User")
    for user in User.objects.iterator():
        User.objects.filter(pk=user.pk).update(grants_mac=grants_mac(user, settings.SECRET_KEY))


class Migration(migrations.Migration):
    dependencies = [("custody", "0016_apitoken_mac")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="grants_mac",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
