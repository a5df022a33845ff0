"""API token rows carry an HMAC of their digest and account (custody.models.token_mac).

Existing tokens get theirs now, from the rows as they stand: a row planted
before this migration cannot be told from one the server made here (verify_log
still names a token row that no ``token.issued`` entry accounts for).
"""

from django.conf import settings
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from custody.models import token_mac

    ApiToken = apps.get_model("custody", "ApiToken")
    for token in ApiToken.objects.iterator():
        ApiToken.objects.filter(pk=token.pk).update(mac=token_mac(token, settings.SECRET_KEY))


class Migration(migrations.Migration):
    dependencies = [("custody", "0015_user_credential_mac")]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="mac",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
