"""Playing and showing evidence in the browser: which types, whose links, which bytes.

The evidence page logs one ``evidence.viewed`` entry and embeds a media URL
carrying a short-lived signed token, bound to the user and the item. The
media endpoint serves bytes (with HTTP Range, for seeking) only against such
a token from the same signed-in user, and writes no log entry itself: a
player asks for dozens of ranges, and every one of them is covered by the
logged page view that minted the token. An hour later the token is refused
and the page must be opened again, which logs again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core import signing

# The signer's namespace (not a secret: SECRET_KEY is the key).
TOKEN_SALT = "custody.media"  # noqa: S105
TOKEN_MAX_AGE = 3600  # seconds

# What Chromium and Firefox play from an <audio> element. AMR, GSM, AIFF and
# the like are not among them: the page says so and keeps the download.
PLAYABLE_AUDIO = frozenset(
    {
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/vnd.wave",
        "audio/mpeg",
        "audio/mp3",
        "audio/ogg",
        "audio/opus",
        "audio/flac",
        "audio/x-flac",
        "audio/mp4",
        "audio/x-m4a",
        "audio/aac",
        "audio/x-hx-aac-adts",
        "audio/webm",
    }
)
# Raster formats only: never SVG (it carries scripts) and never HTML.
VIEWABLE_IMAGES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# libmagic's names -> what the browser expects in Content-Type.
_CONTENT_TYPE = {"audio/x-wav": "audio/wav", "audio/x-hx-aac-adts": "audio/aac", "audio/x-flac": "audio/flac"}


def is_audio(media_type: str) -> bool:
    return media_type.startswith("audio/")


def is_playable(media_type: str) -> bool:
    return media_type in PLAYABLE_AUDIO


def is_viewable(media_type: str) -> bool:
    return media_type in VIEWABLE_IMAGES


def servable(media_type: str) -> bool:
    """The media endpoint serves these types inline, and nothing else."""
    return is_playable(media_type) or is_viewable(media_type)


def content_type(media_type: str) -> str:
    return _CONTENT_TYPE.get(media_type, media_type)


def _value(user_id, evidence_id) -> str:
    return f"{user_id}:{evidence_id}"


def make_token(user_id, evidence_id) -> str:
    """A token for ``evidence_id``'s bytes, good for ``user_id`` for TOKEN_MAX_AGE seconds."""
    return signing.TimestampSigner(salt=TOKEN_SALT).sign(_value(user_id, evidence_id))


class BadToken(Exception):
    """The token is missing, forged, expired, or minted for another user or item."""


def check_token(token: str, user_id, evidence_id, max_age: int = TOKEN_MAX_AGE) -> None:
    try:
        value = signing.TimestampSigner(salt=TOKEN_SALT).unsign(token or "", max_age=max_age)
    except signing.SignatureExpired:
        raise BadToken("this player link has expired: open the evidence page again") from None
    except signing.BadSignature:
        raise BadToken("not a valid player link: open the evidence page") from None
    if value != _value(user_id, evidence_id):
        raise BadToken("this player link was made for another user or item") from None


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Unsatisfiable(Exception):
    """The Range header names no byte of the file (HTTP 416)."""


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a Range header asks for (RFC 9110, 14.1.2), or None for the whole file.

    Several ranges, other units and malformed values are ignored (the whole
    file is sent with 200, which RFC 9110 allows); a well-formed range that
    starts past the end raises Unsatisfiable.
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(0, size - count), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise Unsatisfiable(header)
    return ByteRange(start, end)


def read_range(open_file, byte_range: ByteRange, chunk_size: int = 64 * 1024):
    """Yield the bytes of ``byte_range``, in chunks, from the file ``open_file()`` opens.

    The file is opened on the first chunk and closed after the last, so an
    answer whose body is never sent (HEAD) holds no open file.
    """
    with open_file() as handle:
        handle.seek(byte_range.start)
        remaining = byte_range.length
        while remaining > 0:
            chunk = handle.read(min(chunk_size, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
