"""Resumable uploads carry an HMAC of what they become (custody.models.upload_record_mac).

Uploads still in progress get theirs now, from the record as it stands: what
was changed before this migration cannot be told from what was sent.
"""

from django.conf import settings
from django.db import migrations, models


def authenticate_unfinished(apps, schema_editor):
    from custody.models import upload_record_mac

    ResumableUpload = apps.get_model("custody", "ResumableUpload")
    for upload in ResumableUpload.objects.filter(evidence__isnull=True).iterator():
        upload.mac = upload_record_mac(upload, settings.SECRET_KEY)
        upload.save(update_fields=["mac"])


class Migration(migrations.Migration):
    dependencies = [("custody", "0013_log_queue")]

    operations = [
        migrations.AddField(
            model_name="resumableupload",
            name="mac",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(authenticate_unfinished, migrations.RunPython.noop),
    ]
