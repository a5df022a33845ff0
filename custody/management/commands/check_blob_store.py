from django.core.management.base import BaseCommand, CommandError

from custody.storage import BlobError, LocalBlobStore, blob_store


class Command(BaseCommand):
    help = (
        "Check the configured blob store (CUSTODY_BLOB_STORE) before evidence goes there: for S3, that the "
        "bucket answers with these credentials and keeps what is written (Object Lock, else versioning). "
        "Exits non-zero, saying what is missing, otherwise."
    )

    def handle(self, *args, **options):
        store = blob_store()
        if isinstance(store, LocalBlobStore):
            self.stdout.write(f"blob store: {store.describe()} (write once, read-only files)")
            return
        try:
            found = store.check()
        except BlobError as exc:
            raise CommandError(f"blob store {store.describe()}: {exc}") from None
        if found["protection"] == "object-lock":
            kept = f"Object Lock: each blob in COMPLIANCE retention for {found['retention_days']} days"
        else:
            kept = "versioning (no Object Lock: an overwrite adds a version; deleting versions is up to IAM policy)"
        self.stdout.write(f"blob store: {store.describe()}; {kept}")
