"""Case memberships carry an HMAC of the case and the member (custody.models.membership_mac).

Existing memberships get theirs now, from the rows as they stand: one written
into the database before this migration cannot be told from one the server
made here (verify_log still compares every membership with the log).
"""

from django.conf import settings
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from custody.models import membership_mac

    Membership = apps.get_model("custody", "Membership")
    for membership in Membership.objects.iterator():
        Membership.objects.filter(pk=membership.pk).update(mac=membership_mac(membership, settings.SECRET_KEY))


class Migration(migrations.Migration):
    dependencies = [("custody", "0017_user_grants_mac")]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="mac",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
