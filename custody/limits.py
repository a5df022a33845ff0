"""Upload limits: a maximum file size, a quota per case, and free space kept in reserve.

Both intake paths (multipart in uploads.py, tus in tus.py) check them before
the bytes arrive, when the size is known, and again as they arrive. A refusal
is 413 with words that say which limit, never how much room the disk has:
free space is nobody's business outside the server.
"""

from __future__ import annotations

import errno
import shutil

from django.conf import settings
from django.db.models import Sum


class UploadRefused(Exception):
    """An upload over a limit (HTTP 413). Nothing of it is kept."""

    status = 413

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class DiskFull(UploadRefused):
    """The disk filled up while the bytes were being written (HTTP 507). Nothing of them is kept."""

    status = 507


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
DISK_FULL_DETAIL = (
    "the server's disk is full; nothing was kept (try again later, or ask the server's operator)"
)


def check_size(size: int) -> None:
    """The file itself: at most CUSTODY_MAX_UPLOAD_BYTES (0: no maximum)."""
    maximum = settings.CUSTODY_MAX_UPLOAD_BYTES
    if maximum and size > maximum:
        raise UploadRefused(f"the file is larger than this server accepts ({maximum} bytes at most)")


def check_free_space(directory, incoming: int) -> None:
    """Refuse ``incoming`` more bytes if writing them would eat into CUSTODY_FREE_SPACE_RESERVE_BYTES.

    The reserve keeps room for the database, the log and the uploads
    already accepted; the answer does not say how much is left.
    """
    free = shutil.disk_usage(directory).free
    if free - incoming < settings.CUSTODY_FREE_SPACE_RESERVE_BYTES:
        raise UploadRefused(
            "the server cannot take an upload of this size at the moment; nothing was kept "
            "(try again later, or ask the server's operator)"
        )


def case_usage(case, exclude_upload=None) -> int:
    """Bytes a case holds: its evidence, and the full length of its unfinished resumable uploads."""
    from .models import Evidence, ResumableUpload

    evidence = Evidence.objects.filter(case=case).aggregate(n=Sum("blob__size"))["n"] or 0
    pending = ResumableUpload.objects.filter(case=case, evidence=None)
    if exclude_upload is not None:
        pending = pending.exclude(pk=exclude_upload)
    return evidence + (pending.aggregate(n=Sum("length"))["n"] or 0)


def check_case_quota(case, incoming: int, exclude_upload=None) -> None:
    """The case's evidence plus ``incoming``: at most CUSTODY_CASE_QUOTA_BYTES (0: no quota)."""
    quota = settings.CUSTODY_CASE_QUOTA_BYTES
    if quota and case_usage(case, exclude_upload) + incoming > quota:
        raise UploadRefused(f"this upload would take the case past its storage quota ({quota} bytes)")
