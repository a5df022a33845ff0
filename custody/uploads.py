"""The project-wide upload handler (settings.FILE_UPLOAD_HANDLERS).

Installed for every request rather than swapped in by a view: swapping
handlers inside a view breaks CSRF checks, and a project-wide handler means
the web form and the REST API hash uploads the same way.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from .hashing import MultiHasher


class HashedUploadedFile(TemporaryUploadedFile):
    """A temporary upload that knows its digests; they were computed as it was written."""

    digests: dict[str, str]
    client_name: str | None

    def __init__(self, *args, **kwargs):
        os.makedirs(settings.FILE_UPLOAD_TEMP_DIR, exist_ok=True)
        super().__init__(*args, **kwargs)
        self.digests = {}


class HashingUploadHandler(FileUploadHandler):
    """Writes each chunk once to a temporary file and hashes it in the same pass."""

    def __init__(self, request=None):
        super().__init__(request)
        # Larger chunks than Django's 64 KiB: fewer Python round trips per GB
        # and buffers big enough for hashlib to release the GIL.
        self.chunk_size = settings.CUSTODY_UPLOAD_CHUNK_SIZE

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.file = HashedUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )
        self.hasher = MultiHasher()

    def receive_data_chunk(self, raw_data, start):
        self.file.write(raw_data)
        self.hasher.update(raw_data)
        return None  # consumed: no later handler sees the chunk

    def file_complete(self, file_size):
        self.file.flush()
        self.file.seek(0)
        self.file.size = file_size
        self.file.digests = self.hasher.hexdigests()
        if self.hasher.size != file_size:  # would mean a chunk went astray
            raise RuntimeError("hashed size differs from received size")
        return self.file

    def upload_interrupted(self):
        # The client went away mid-upload: drop the partial file, keep nothing.
        if hasattr(self, "hasher"):
            self.hasher.abort()
        if hasattr(self, "file"):
            path = self.file.temporary_file_path()
            try:
                self.file.close()
                os.remove(path)
            except FileNotFoundError:
                pass
