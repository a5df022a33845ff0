"""Users carry an HMAC of their id and password hash (custody.models.credential_mac).

Existing accounts get theirs now, from the rows as they stand: a hash
replaced before this migration cannot be told from one the server set.
"""

from django.conf import settings
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from custody.models import credential_mac

    User = apps.get_model("custody", "User")
    for user in User.objects.iterator():
        User.objects.filter(pk=user.pk).update(credential_mac=credential_mac(user, settings.SECRET_KEY))


class Migration(migrations.Migration):
    dependencies = [("custody", "0014_resumable_mac")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="credential_mac",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
