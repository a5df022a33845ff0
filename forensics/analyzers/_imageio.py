"""Safe image reading shared by the image analyzers (pure: no database, no network).

Every image analyzer reads its file through :func:`read_file` and decodes it
through :func:`decode`, so the same guards apply everywhere:

- the file must be at most ``MAX_FILE_BYTES`` long and not empty;
- only the formats in ``FORMATS`` are tried (Pillow's other plugins are not
  offered the bytes at all);
- the decompression-bomb guard: an image that declares more than
  ``MAX_PIXELS`` pixels is refused before any pixel is decoded. Pillow's own
  guard is set to the same number and its warning is turned into an error
  inside :func:`decode`, so the limit is exact (Pillow alone only warns
  between 1x and 2x its limit);
- pixels are decoded (``load()``) inside the guard, so a truncated or corrupt
  stream fails here with a plain reason instead of later;
- ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never changed: a truncated file is an
  error, not an image with a grey bottom.

Every failure becomes :class:`AnalysisError` with a reason a person can read.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

from PIL import Image, UnidentifiedImageError

from .base import AnalysisError

#: Largest image (width x height of the first frame) any image analyzer decodes.
#: 80 megapixels covers phone and camera images up to 10,000 x 8,000; larger
#: images (100+ MP medium format, full-resolution 108/200 MP phone modes) are
#: refused as possible decompression bombs.
MAX_PIXELS = 80_000_000

#: Largest file the image analyzers read into memory.
MAX_FILE_BYTES = 512 * 1024 * 1024

#: Pillow format identifiers offered the bytes (others are never tried).
FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP")

# Deliberate: Pillow's process-wide decompression-bomb limit, set to our stated
# limit (lower than Pillow's default of about 89.5 million, so code elsewhere in
# the process only gets a stricter guard).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}


def _format_list(formats) -> str:
    names = [_FORMAT_NAMES.get(f, f) for f in formats]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def read_file(path) -> bytes:
    """The file's bytes, or AnalysisError if it is empty or too large."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise AnalysisError(f"the file cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise AnalysisError("the file is empty")
    if size > MAX_FILE_BYTES:
        raise AnalysisError(
            f"the file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit of the image analyzers"
        )
    with open(path, "rb") as fh:
        return fh.read()


def check_pixels(size: tuple[int, int]) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise AnalysisError(f"the image declares an empty size ({width} x {height} pixels)")
    if width * height > MAX_PIXELS:
        raise AnalysisError(
            f"the image declares {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} pixels (decompression-bomb guard); it was not decoded"
        )


def decode(data: bytes, *, formats=FORMATS, draft_mode: str | None = None) -> Image.Image:
    """Decode the first frame of an image held in ``data``, fully loaded.

    ``draft_mode`` ("YCbCr" or "L") asks the JPEG decoder for that colour space
    without conversion (used to read the luma plane exactly as decoded).
    Raises AnalysisError with a plain reason for anything that is not a
    complete, decodable image within the limits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(formats))
            check_pixels(im.size)
            if draft_mode and im.format in ("JPEG", "MPO"):
                im.draft(draft_mode, None)
            im.load()
            return im
        except AnalysisError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise AnalysisError(
                f"the image is over the limit of {MAX_PIXELS:,} pixels (decompression-bomb guard): {exc}"
            ) from exc
        except UnidentifiedImageError as exc:
            raise AnalysisError(
                f"not a readable {_format_list(formats)} image: the header is not recognised or is corrupt"
            ) from exc
        except MemoryError as exc:
            raise AnalysisError("not enough memory to decode the image") from exc
        except OSError as exc:
            message = str(exc)
            if "truncated" in message.lower():
                raise AnalysisError(
                    "the image data is truncated: the file ends before the image is complete"
                ) from exc
            raise AnalysisError(f"the image data is corrupt and cannot be decoded ({message})") from exc
        except (
            SyntaxError,
            ValueError,
            EOFError,
            struct.error,
            zlib.error,
            IndexError,
            KeyError,
            TypeError,
            ZeroDivisionError,
        ) as exc:
            message = str(exc) or type(exc).__name__
            if "truncated" in message.lower() or isinstance(exc, EOFError):
                raise AnalysisError(
                    f"the image data is truncated: the file ends before the image is complete ({message})"
                ) from exc
            raise AnalysisError(f"the image is corrupt and cannot be decoded ({message})") from exc


def open_image(path, *, formats=FORMATS, draft_mode: str | None = None) -> tuple[bytes, Image.Image]:
    """Read and decode a file: ``(bytes, image)``; AnalysisError when it cannot be analysed."""
    data = read_file(path)
    return data, decode(data, formats=formats, draft_mode=draft_mode)


def libraries(*extra: str) -> dict[str, str]:
    """Versions of the libraries an image analyzer used, for its result."""
    from importlib.metadata import PackageNotFoundError, version

    import PIL

    out = {"Pillow": PIL.__version__}
    for name in ("numpy", *extra):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def png_bytes(im: Image.Image) -> bytes:
    """Deterministic PNG bytes: no text chunks, no timestamps, fixed compression.

    Identical for identical pixels with the same Pillow build (pinned in
    requirements.txt; the zlib it bundles decides the compressed bytes).
    """
    buf = io.BytesIO()
    # Level 1: a 12-megapixel ELA map takes ~3 s instead of ~9 s at level 6,
    # for a file about a quarter larger.
    im.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()
