"""Resumable uploads carry a seal over their progress (custody.models.upload_progress_mac): the
offset, the SHA-256 of the bytes it counts, the staged pieces, the item the upload became and
the partial file's ctime after the server last wrote it (left empty here: the first PATCH after
the upgrade hashes the partial file again, and checks it).

Uploads that exist now get theirs from what is there, as 0014 did for the record:

- finished ones (``evidence`` set): the whole file's SHA-256 is the item's, so the seal says
  which item, of which bytes;
- unfinished ones whose partial file on this host holds the bytes counted: the SHA-256 of those
  bytes, read now. An investigator half-way through a multi-gigabyte upload over a poor link
  would rather go on than send it all again; what was changed in the data directory before this
  migration cannot be told from what was sent, as with the record in 0014 (whoever could change
  it then could have changed the bytes as they arrived, too);
- unfinished ones whose partial file is not on this host (another web host's, or gone): left
  without a seal. They are refused on their next request with a message that says so (410), and
  the client starts a new upload: nothing the server has not checked becomes evidence.
"""

import hashlib
from pathlib import Path

from django.conf import settings
from django.db import migrations, models


def _prefix_sha256(path: Path, size: int) -> str | None:
    """The SHA-256 of the first ``size`` bytes of the file, or None if it does not hold them."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while size > 0:
                data = f.read(min(size, 1 << 20))
                if not data:
                    return None
                digest.update(data)
                size -= len(data)
    except OSError:
        return None
    return digest.hexdigest()


def seal_existing(apps, schema_editor):
    from custody.models import upload_progress_mac

    ResumableUpload = apps.get_model("custody", "ResumableUpload")
    Evidence = apps.get_model("custody", "Evidence")
    directory = Path(settings.CUSTODY_RESUMABLE_DIR)
    for upload in ResumableUpload.objects.iterator():
        if upload.evidence_id is not None:
            digest = Evidence.objects.filter(pk=upload.evidence_id).values_list("blob_id", flat=True).first()
            upload.offset = upload.length
        else:
            digest = _prefix_sha256(directory / str(upload.pk), upload.offset)
        if digest is None:
            continue  # refused on its next request: see above
        upload.offset_sha256 = digest
        upload.progress_mac = upload_progress_mac(upload, settings.SECRET_KEY)
        upload.save(update_fields=["offset", "offset_sha256", "progress_mac"])


class Migration(migrations.Migration):
    dependencies = [("custody", "0019_recovery_code_hmac")]

    operations = [
        migrations.AddField(
            model_name="resumableupload",
            name="offset_sha256",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="resumableupload",
            name="file_ctime",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="resumableupload",
            name="progress_mac",
            field=models.BinaryField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
