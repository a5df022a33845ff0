"""EXIF, GPS, XMP and IPTC metadata of an image, as parsed facts.

Method: the image is opened with the shared safe decoder (_imageio: format
allow-list, pixel limit, full decode) so a corrupt, truncated or oversized
file fails with a reason. Then:

- EXIF: every IFD Pillow reaches from the file's EXIF block (IFD0, the Exif
  sub-IFD, GPS, Interoperability, IFD1 = the thumbnail's directory) is
  rendered tag by tag under its EXIF name (unknown tags as "0xNNNN"). Values
  are made JSON-safe deterministically: rationals become decimals rounded to
  10 places (x/0 becomes the string "x/0"), printable byte strings become text,
  short binary values a list of byte values, longer ones hex, and anything
  over 64 bytes {"length", "sha256"}; lists longer than 64 items are cut to
  their first 16 with the full count. Pointer tags (Exif, GPS and Interop
  offsets) are left out, their directories are listed instead.
- GPS position: latitude and longitude in decimal degrees (degrees +
  minutes/60 + seconds/3600, negative for S and W), rounded to 7 decimals
  (about 1 cm); altitude in metres (negative below sea level); the GPS date
  and time in UTC as recorded.
- XMP: the raw packet parsed with defusedxml (any DTD is refused) and
  flattened to "prefix:Name" -> value; rdf:Bag/Seq become lists, rdf:Alt the
  x-default text (or {language: text}), structures nested objects; the XMP
  toolkit that wrote it (x:xmpmeta's x:xmptk) as "x:xmptk".
- tags: every tag above, and the JPEG's JFIF header, comment, frame and
  PrintIM block, under ExifTool's group and tag names with the values as
  "exiftool -n" prints them, so the two can be set side by side (what is
  deliberately not listed: see "every tag, named as ExifTool names it").
- IPTC-IIM: the Photoshop IRB 0x0404 (JPEG) or IPTC tag (TIFF) read with
  Pillow's IptcImagePlugin; datasets named as in the IIM 4.2 specification,
  text decoded as UTF-8 when the record says so (1:90 = ESC % G), otherwise
  UTF-8 if valid, else Latin-1.

Metadata is a claim written into the file, not proof of anything: any of
these values can be edited with common tools.
"""

from __future__ import annotations

import hashlib
import io
import math
from fractions import Fraction

from defusedxml import ElementTree as SafeET
from PIL import ExifTags, IptcImagePlugin

from . import _imageio
from .base import finding

NAME = "image.metadata"
# 1.1.0: the XMP toolkit, and a "tags" finding listing every tag under ExifTool's names (JFIF, comment,
# frame, PrintIM, IPTC digest, ICC header and tags included), checked against exiftool on real camera photos.
VERSION = "1.1.0"
TIME_LIMIT = 600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["image/jpeg", "image/png", "image/tiff", "image/webp", "image/gif", "image/bmp", "image/x-ms-bmp"]
DESCRIPTION = "EXIF (all IFDs), GPS position, XMP and IPTC metadata embedded in an image, as parsed facts."
LIMITS = [
    "Reports what the file says about itself; every value can be forged or removed with common tools, so "
    "metadata is evidence of a claim, not of a fact about the capture. "
    "Reads the EXIF, XMP and IPTC blocks that Pillow exposes: in JPEG the first EXIF APP1 segment, the "
    "standard XMP packet (not Extended XMP spread over several segments) and the Photoshop IRB IPTC "
    "record; in PNG the eXIf chunk and the XMP iTXt chunk; in TIFF the tags of the first image; in WebP "
    "the EXIF and XMP chunks. Maker notes are reported as length and SHA-256 only (not decoded). "
    "Lists longer than 64 items and strings longer than 4096 characters are shortened (the count or "
    "length is kept). GPS coordinates are rounded to 7 decimals (about 1 cm) and assume the recorded "
    "datum (GPSMapDatum, usually WGS-84). Only the first frame of a multi-frame file is decoded. "
    "The tags finding names every tag as exiftool -G1 does; the tests check it tag by tag against exiftool "
    "(-j -G1 -a -u, values as -n prints them) on their JPEG, PNG, WebP and TIFF files (with an lcms sRGB "
    "ICC profile) and seven real camera photographs (Canon, Minolta and Sony EXIF, PrintIM, XMP, IPTC, "
    "JFIF, comments). It leaves out exiftool's System (filesystem), ExifTool and Composite (derived) "
    "groups and decoded maker notes; ICC curves and lookup tables are given by length only; it does not "
    "decode Adobe APP14, MPF, Photoshop resources other than IPTC, PNG chunks other than IHDR, iCCP, tEXt, "
    "eXIf and the XMP iTXt, or the VP8L (lossless WebP) header, so files carrying those show fewer tags "
    "than exiftool. "
    f"Images over {_imageio.MAX_PIXELS:,} pixels or files over {_imageio.MAX_FILE_BYTES:,} bytes are refused."
]
PARAMETERS: dict = {}

_MAX_LIST = 64
_MAX_STR = 4096
_MAX_XMP_BYTES = 16 * 1024 * 1024
_DECIMALS = 10

_POINTER_TAGS = {0x8769, 0x8825, 0xA005}  # Exif IFD, GPS IFD, Interop IFD offsets
_INTEROP_TAGS = {
    0x0001: "InteropIndex",
    0x0002: "InteropVersion",
    0x1000: "RelatedImageFileFormat",
    0x1001: "RelatedImageWidth",
    0x1002: "RelatedImageLength",
}

# IPTC-IIM 4.2 dataset names (the ones exiftool and most software use).
IPTC_NAMES = {
    (1, 0): "EnvelopeRecordVersion",
    (1, 90): "CodedCharacterSet",
    (2, 0): "ApplicationRecordVersion",
    (2, 3): "ObjectTypeReference",
    (2, 4): "ObjectAttributeReference",
    (2, 5): "ObjectName",
    (2, 7): "EditStatus",
    (2, 10): "Urgency",
    (2, 12): "SubjectReference",
    (2, 15): "Category",
    (2, 20): "SupplementalCategories",
    (2, 22): "FixtureIdentifier",
    (2, 25): "Keywords",
    (2, 26): "ContentLocationCode",
    (2, 27): "ContentLocationName",
    (2, 30): "ReleaseDate",
    (2, 35): "ReleaseTime",
    (2, 37): "ExpirationDate",
    (2, 38): "ExpirationTime",
    (2, 40): "SpecialInstructions",
    (2, 42): "ActionAdvised",
    (2, 45): "ReferenceService",
    (2, 47): "ReferenceDate",
    (2, 50): "ReferenceNumber",
    (2, 55): "DateCreated",
    (2, 60): "TimeCreated",
    (2, 62): "DigitalCreationDate",
    (2, 63): "DigitalCreationTime",
    (2, 65): "OriginatingProgram",
    (2, 70): "ProgramVersion",
    (2, 75): "ObjectCycle",
    (2, 80): "By-line",
    (2, 85): "By-lineTitle",
    (2, 90): "City",
    (2, 92): "Sub-location",
    (2, 95): "Province-State",
    (2, 100): "Country-PrimaryLocationCode",
    (2, 101): "Country-PrimaryLocationName",
    (2, 103): "OriginalTransmissionReference",
    (2, 105): "Headline",
    (2, 110): "Credit",
    (2, 115): "Source",
    (2, 116): "CopyrightNotice",
    (2, 118): "Contact",
    (2, 120): "Caption-Abstract",
    (2, 121): "LocalCaption",
    (2, 122): "Writer-Editor",
    (2, 130): "ImageType",
    (2, 131): "ImageOrientation",
    (2, 135): "LanguageIdentifier",
}
_IPTC_BINARY = {(1, 0), (2, 0)}  # 2-byte unsigned integers

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


# ---------------------------------------------------------------- rendering


def _round(x: float):
    if math.isnan(x) or math.isinf(x):
        return str(x)
    value = round(x, _DECIMALS)
    return int(value) if value == int(value) and abs(value) < 2**53 else value


def _render_bytes(b: bytes):
    stripped = b.rstrip(b"\x00")
    if stripped and all(32 <= c < 127 or c in (9, 10, 13) for c in stripped):
        return _render_str(stripped.decode("ascii"))
    if len(b) == 1:
        return b[0]
    if len(b) <= 16:
        return list(b)
    if len(b) <= 64:
        return b.hex()
    return {"length": len(b), "sha256": hashlib.sha256(b).hexdigest()}


def _render_str(s: str):
    s = s.rstrip("\x00")
    # Lone surrogates and other unencodable text cannot go into JSON as UTF-8.
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(s) > _MAX_STR:
        return s[:_MAX_STR] + f"... ({len(s)} characters)"
    return s


def render(value):
    """A JSON-safe, deterministic rendering of an EXIF value."""
    if isinstance(value, bool):
        return value
    if hasattr(value, "numerator") and hasattr(value, "denominator") and not isinstance(value, int):
        num, den = int(value.numerator), int(value.denominator)
        if den == 0:
            return f"{num}/0"
        return _round(num / den)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _render_bytes(bytes(value))
    if isinstance(value, str):
        return _render_str(value)
    if isinstance(value, dict):
        return {str(k): render(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, tuple | list):
        items = list(value)
        if len(items) > _MAX_LIST:
            return {"count": len(items), "first": [render(v) for v in items[:16]]}
        return [render(v) for v in items]
    return _render_str(str(value))


def _render_comment(value):
    """UserComment-style values: an 8-byte character-code prefix, then the text."""
    if not isinstance(value, bytes | bytearray) or len(value) < 8:
        return render(value)
    code, body = bytes(value[:8]), bytes(value[8:])
    if code.startswith(b"ASCII"):
        return _render_str(body.decode("ascii", "replace"))
    if code.startswith(b"UNICODE"):
        if body.startswith(b"\xfe\xff"):
            return _render_str(body[2:].decode("utf-16-be", "replace"))
        if body.startswith(b"\xff\xfe"):
            return _render_str(body[2:].decode("utf-16-le", "replace"))
        return _render_str(body.decode("utf-16-be", "replace"))
    if code == b"\x00" * 8:
        return _render_str(body.decode("utf-8", "replace").strip("\x00 "))
    return render(value)


def _tag_name(tag: int, table: dict) -> str:
    return table.get(tag) or f"0x{tag:04x}"


def _render_ifd(ifd: dict, table: dict) -> dict:
    out = {}
    for tag in sorted(ifd):
        if tag in _POINTER_TAGS and table is not ExifTags.GPSTAGS:
            continue
        value = ifd[tag]
        if tag == 0x927C:  # MakerNote: vendor-specific, reported by length and digest
            raw = value if isinstance(value, bytes) else str(value).encode()
            out["MakerNote"] = {"length": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
            continue
        is_comment = tag in (0x001B, 0x001C) if table is ExifTags.GPSTAGS else tag == 0x9286
        if is_comment:
            out[_tag_name(tag, table)] = _render_comment(value)
            continue
        out[_tag_name(tag, table)] = render(value)
    return out


def read_exif(im) -> tuple[dict | None, dict, str]:
    """``(rendered IFDs or None, raw IFDs by name, problem)`` for the image's EXIF block."""
    try:
        exif = im.getexif()
    except Exception as exc:  # noqa: BLE001 - malformed EXIF is reported, not fatal
        return None, {}, f"the EXIF block could not be parsed ({exc})"
    raw: dict[str, dict] = {}
    problems = []
    if len(exif):
        raw["IFD0"] = dict(exif)
    for name, tag, present in (
        ("Exif", ExifTags.IFD.Exif, ExifTags.IFD.Exif in exif),
        ("GPS", ExifTags.IFD.GPSInfo, ExifTags.IFD.GPSInfo in exif),
        ("IFD1", ExifTags.IFD.IFD1, True),
    ):
        if not present:
            continue
        try:
            ifd = exif.get_ifd(tag)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name} directory unreadable ({exc})")
            continue
        if ifd:
            raw[name] = dict(ifd)
    if ExifTags.IFD.Interop in raw.get("Exif", {}):
        try:
            interop = exif.get_ifd(ExifTags.IFD.Interop)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"Interop directory unreadable ({exc})")
            interop = {}
        if interop:
            raw["Interop"] = dict(interop)
    if not raw:
        return None, {}, "; ".join(problems)
    tables = {
        "IFD0": ExifTags.TAGS,
        "Exif": ExifTags.TAGS,
        "GPS": ExifTags.GPSTAGS,
        "Interop": _INTEROP_TAGS,
        "IFD1": ExifTags.TAGS,
    }
    rendered = {name: _render_ifd(raw[name], tables[name]) for name in sorted(raw)}
    return rendered, raw, "; ".join(problems)


# ---------------------------------------------------------------- GPS


def _fraction(value) -> Fraction:
    if hasattr(value, "numerator") and hasattr(value, "denominator"):
        if int(value.denominator) == 0:
            raise ValueError("a rational with denominator 0")
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("not a number")
        return Fraction(value)
    return Fraction(int(value))


def _ref(value) -> str:
    if isinstance(value, bytes):
        value = value.rstrip(b"\x00").decode("ascii", "replace")
    return str(value).strip().upper()[:1]


def _dms(value) -> Fraction:
    if not isinstance(value, tuple | list):
        return _fraction(value)
    parts = [_fraction(v) for v in value]
    if len(parts) != 3:
        raise ValueError(f"expected degrees, minutes and seconds, got {len(parts)} values")
    return parts[0] + parts[1] / 60 + parts[2] / 3600


def gps_position(gps: dict) -> tuple[dict | None, str]:
    """Decimal-degree position from a raw GPS IFD: ``(value or None, problem)``."""
    if 2 not in gps or 4 not in gps:
        return None, ""
    try:
        lat = _dms(gps[2])
        lon = _dms(gps[4])
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        return None, f"GPS latitude/longitude present but unusable ({exc})"
    notes = []
    lat_ref, lon_ref = _ref(gps.get(1, "")), _ref(gps.get(3, ""))
    if lat_ref == "S":
        lat = -lat
    if lon_ref == "W":
        lon = -lon
    if lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
        notes.append("a hemisphere reference is missing or invalid; taken as north/east")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        notes.append("the coordinates are outside the valid range")
    value = {"latitude": round(float(lat), 7), "longitude": round(float(lon), 7)}
    if 6 in gps:
        try:
            alt = _fraction(gps[6])
            alt_ref = gps.get(5, 0)
            if isinstance(alt_ref, bytes):
                alt_ref = alt_ref[0] if alt_ref else 0
            if int(alt_ref) == 1:
                alt = -alt
            value["altitude"] = round(float(alt), 3)
        except (ValueError, TypeError, ZeroDivisionError):
            notes.append("the altitude is unusable")
    if 7 in gps:
        try:
            h, m, s = (_fraction(v) for v in gps[7])
            seconds = float(s)
            time_text = f"{int(h):02d}:{int(m):02d}:{seconds:06.3f}".rstrip("0").rstrip(".")
            date = gps.get(29)
            date = date.decode("ascii", "replace") if isinstance(date, bytes) else date
            value["timestamp_utc"] = (
                f"{str(date).strip(chr(0)).strip()} {time_text}Z".strip() if date else f"{time_text}Z"
            )
        except (ValueError, TypeError, ZeroDivisionError):
            notes.append("the GPS time is unusable")
    datum = gps.get(18)
    if datum:
        value["datum"] = render(datum)
    return value, "; ".join(notes)


# ---------------------------------------------------------------- XMP


def _qname(tag: str, prefixes: dict) -> str:
    if tag.startswith("{"):
        uri, local = tag[1:].split("}", 1)
        prefix = prefixes.get(uri)
        return f"{prefix}:{local}" if prefix else tag
    return tag


def _xmp_value(el, prefixes):
    resource = el.get(f"{{{_RDF}}}resource")
    if resource is not None:
        return _render_str(resource)
    children = list(el)
    attrs = {
        _qname(k, prefixes): _render_str(v)
        for k, v in el.attrib.items()
        if not k.startswith(f"{{{_RDF}}}") and k != _XML_LANG
    }
    if not children:
        if attrs:
            return dict(sorted(attrs.items()))
        return _render_str((el.text or "").strip())
    first = children[0]
    if first.tag in (f"{{{_RDF}}}Bag", f"{{{_RDF}}}Seq") and len(children) == 1:
        items = [_xmp_value(li, prefixes) for li in first if li.tag == f"{{{_RDF}}}li"]
        return items if len(items) <= _MAX_LIST else {"count": len(items), "first": items[:16]}
    if first.tag == f"{{{_RDF}}}Alt" and len(children) == 1:
        alts = {}
        for li in first:
            if li.tag == f"{{{_RDF}}}li":
                alts.setdefault(li.get(_XML_LANG, "x-default"), _xmp_value(li, prefixes))
        if len(alts) == 1:
            return next(iter(alts.values()))
        return dict(sorted(alts.items()))
    out = dict(attrs)
    nodes = children
    if first.tag == f"{{{_RDF}}}Description" and len(children) == 1:
        out.update(
            {
                _qname(k, prefixes): _render_str(v)
                for k, v in first.attrib.items()
                if not k.startswith(f"{{{_RDF}}}") and k != _XML_LANG
            }
        )
        nodes = list(first)
    for child in nodes:
        out.setdefault(_qname(child.tag, prefixes), _xmp_value(child, prefixes))
    return dict(sorted(out.items()))


def parse_xmp(packet: bytes) -> dict:
    """Flatten an XMP packet to {"prefix:Name": value}; ValueError when it is unsafe or malformed."""
    if len(packet) > _MAX_XMP_BYTES:
        raise ValueError(f"the XMP packet is {len(packet):,} bytes, over the {_MAX_XMP_BYTES:,}-byte limit")
    packet = packet.strip(b"\x00 \t\r\n")
    prefixes: dict[str, str] = {}
    try:
        for _event, (prefix, uri) in SafeET.iterparse(
            io.BytesIO(packet), events=("start-ns",), forbid_dtd=True
        ):
            if prefix and uri not in prefixes:
                prefixes[uri] = prefix
        root = SafeET.fromstring(packet, forbid_dtd=True)
    except SafeET.ParseError as exc:
        raise ValueError(f"the XMP packet is not well-formed XML ({exc})") from exc
    except Exception as exc:  # defusedxml's DTD/entity refusals
        raise ValueError(f"the XMP packet was refused for safety ({type(exc).__name__}: {exc})") from exc
    out: dict = {}
    xmpmeta = root if root.tag == "{adobe:ns:meta/}xmpmeta" else root.find("{adobe:ns:meta/}xmpmeta")
    if xmpmeta is not None and xmpmeta.get("{adobe:ns:meta/}xmptk") is not None:
        out["x:xmptk"] = _render_str(xmpmeta.get("{adobe:ns:meta/}xmptk"))  # the XMP toolkit
    descriptions = [
        d for rdf in root.iter(f"{{{_RDF}}}RDF") for d in rdf if d.tag == f"{{{_RDF}}}Description"
    ]
    for desc in descriptions:
        for key, val in desc.attrib.items():
            if key.startswith(f"{{{_RDF}}}") or key == _XML_LANG:
                continue
            out.setdefault(_qname(key, prefixes), _render_str(val))
        for child in desc:
            out.setdefault(_qname(child.tag, prefixes), _xmp_value(child, prefixes))
    return dict(sorted(out.items()))


def _xmp_packet(im) -> bytes | None:
    packet = im.info.get("xmp")
    if packet is None:
        packet = im.info.get("XML:com.adobe.xmp")
    if packet is None and hasattr(im, "tag_v2"):
        packet = im.tag_v2.get(700)  # TIFF XMLPacket
    if packet is None:
        return None
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if isinstance(packet, tuple | list):
        packet = bytes(packet)
    return bytes(packet)


# ---------------------------------------------------------------- IPTC


def _iptc_text(raw: bytes, utf8: bool) -> str:
    if utf8:
        return _render_str(raw.decode("utf-8", "replace"))
    try:
        return _render_str(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _render_str(raw.decode("latin-1"))


def read_iptc(im) -> tuple[dict | None, str]:
    try:
        info = IptcImagePlugin.getiptcinfo(im)
    except Exception as exc:  # noqa: BLE001 - malformed IPTC is reported, not fatal
        return None, f"the IPTC block could not be parsed ({exc})"
    if not info:
        return None, ""
    charset = info.get((1, 90))
    charset = charset[0] if isinstance(charset, list) else charset
    utf8 = bool(charset) and bytes(charset) in (b"\x1b%G", b"\x1b%/G", b"\x1b%/I")
    out = {}
    for key in sorted(info):
        values = info[key]
        name = IPTC_NAMES.get(key, f"{key[0]}:{key[1]}")
        items = values if isinstance(values, list) else [values]
        rendered = []
        for raw in items:
            raw = bytes(raw)
            if key in _IPTC_BINARY and len(raw) == 2:
                rendered.append(int.from_bytes(raw, "big"))
            elif key == (1, 90):
                rendered.append(raw.hex())
            else:
                rendered.append(_iptc_text(raw, utf8))
        out[name] = rendered if isinstance(values, list) else rendered[0]
    return out, ""


# ---------------------------------------------------------------- every tag, named as ExifTool names it
#
# The "tags" finding lists every tag of the file under ExifTool's family-1 group and tag name
# ("IFD0:Make", "ExifIFD:ISO", "XMP-x:XMPToolkit", "File:YCbCrSubSampling"...), with the value as
# "exiftool -n" prints it (value conversions such as APEX to seconds applied, no print conversion to
# labels), so that an examiner can set the two side by side. tests/test_analyzers_image.py compares it
# with exiftool on the test photos. Not listed (by design): ExifTool's System group (file name,
# directory, size, dates and permissions of the filesystem, not of the file's content), its ExifTool
# group (its own version and warnings), its Composite group (values ExifTool derives from other tags;
# they are not stored in the file) and the decoded vendor maker notes (Canon, Sony, Minolta... groups:
# the MakerNote is reported by length and SHA-256).

# Pillow's EXIF names that ExifTool spells differently.
_EXIFTOOL_NAMES = {
    "DateTime": "ModifyDate",
    "DateTimeDigitized": "CreateDate",
    "ISOSpeedRatings": "ISO",
    "ExposureBiasValue": "ExposureCompensation",
    "JpegIFOffset": "ThumbnailOffset",
    "JpegIFByteCount": "ThumbnailLength",
    "RelatedImageLength": "RelatedImageHeight",
    "ImageLength": "ImageHeight",
    "FlashPixVersion": "FlashpixVersion",
    "FocalLengthIn35mmFilm": "FocalLengthIn35mmFormat",
    "PrintImageMatching": None,  # decoded as the PrintIM group
    "MakerNote": None,  # vendor-specific: length and SHA-256 in the "exif" finding
}
_EXIFTOOL_NAMES_BY_ID = {
    ("Exif", 0x9214): "SubjectArea"
}  # Pillow calls both 0x9214 and 0xA214 SubjectLocation
_EXIF_GROUPS = {"IFD0": "IFD0", "Exif": "ExifIFD", "GPS": "GPS", "Interop": "InteropIFD", "IFD1": "IFD1"}
_APEX_TIME = {0x9201}  # ShutterSpeedValue: 2 ** -v seconds
_APEX_APERTURE = {0x9202, 0x9205}  # ApertureValue, MaxApertureValue: 2 ** (v / 2)
_VERSION_TAGS = {0x9000, 0xA000, 0x0002}  # ExifVersion, FlashpixVersion, InteropVersion: 4 ASCII digits
# ExifTool's own prefix for the XMP namespaces it knows (documents may use other prefixes).
_XMP_PREFIXES = {
    "adobe:ns:meta/": "x",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/xap/1.0/rights/": "xmpRights",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
    "http://ns.adobe.com/lightroom/1.0/": "lr",
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": "iptcCore",
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "iptcExt",
}
# ExifTool's names for properties of the XMP exif namespace that differ from the property names.
_XMP_EXIF_NAMES = {
    "PixelXDimension": "ExifImageWidth",
    "PixelYDimension": "ExifImageHeight",
    "ISOSpeedRatings": "ISO",
    "ExposureBiasValue": "ExposureCompensation",
    "FocalLengthIn35mmFilm": "FocalLengthIn35mmFormat",
}
_XMP_APEX = {"ShutterSpeedValue": -1.0, "ApertureValue": 0.5, "MaxApertureValue": 0.5}  # 2 ** (k * v)
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _plain(value):
    """A value the way exiftool -n -j prints it: numbers, text, space-joined number lists."""
    if hasattr(value, "numerator") and hasattr(value, "denominator") and not isinstance(value, int):
        num, den = int(value.numerator), int(value.denominator)
        if den == 0:
            return "inf" if num > 0 else ("-inf" if num < 0 else "undef")
        return _round(num / den)
    if isinstance(value, bytes | bytearray):
        return render(bytes(value))
    if isinstance(value, tuple | list):
        items = [_plain(v) for v in value]
        if all(isinstance(v, int | float) for v in items) and len(items) <= _MAX_LIST:
            return " ".join(str(v) for v in items)
        return render(list(value))
    return render(value)


def _exif_tag_value(group: str, tag: int, value):
    if tag in _APEX_TIME | _APEX_APERTURE and group == "Exif":
        v = float(_fraction(value))
        try:
            out = 2 ** (-v) if tag in _APEX_TIME else 2 ** (v / 2)
        except OverflowError:
            return "Inf"
        return "Inf" if math.isinf(out) or abs(out) > 1e300 else _round(out)
    if tag in _VERSION_TAGS and isinstance(value, bytes) and group in ("Exif", "Interop"):
        return value.decode("ascii", "replace")
    if tag == 0x9101 and isinstance(value, bytes):  # ComponentsConfiguration
        return " ".join(str(b) for b in value)
    if tag in (0xA300, 0xA301) and isinstance(value, bytes) and len(value) == 1:  # FileSource, SceneType
        return value[0]
    if group == "GPS":
        if tag in (2, 4, 7, 20, 22) and isinstance(value, tuple | list) and len(value) == 3:
            d, m, sec = (_fraction(v) for v in value)
            if tag == 7:  # GPSTimeStamp: h:m:s
                return f"{int(d):02d}:{int(m):02d}:{_round(float(sec)):02}"
            return _round(float(d + m / 60 + sec / 3600))
        if tag == 0 and isinstance(value, bytes):
            return " ".join(str(b) for b in value)
        if tag == 5 and isinstance(value, bytes) and len(value) == 1:
            return value[0]
        if tag in (0x1B, 0x1C):
            return _render_comment(value)
    if tag == 0x9286:
        return _render_comment(value)
    return _plain(value)


def _printim(raw: bytes, order: str) -> dict:
    """The PrintIM block (Epson Print Image Matching) of IFD0, as ExifTool's PrintIM group."""
    if not raw.startswith(b"PrintIM\x00") or len(raw) < 16:
        return {}
    out = {"PrintIM:PrintIMVersion": raw[8:12].decode("ascii", "replace")}
    endian = "big" if order == "MM" else "little"
    count = int.from_bytes(raw[14:16], endian)
    for k in range(count):
        pos = 16 + 6 * k
        if pos + 6 > len(raw):
            break
        tag = int.from_bytes(raw[pos : pos + 2], endian)
        out[f"PrintIM:PrintIM_0x{tag:04x}"] = int.from_bytes(raw[pos + 2 : pos + 6], endian)
    return out


def _exif_tags(raw: dict, order: str, tiff_offset: int) -> dict:
    out = {}
    tables = {"IFD0": ExifTags.TAGS, "Exif": ExifTags.TAGS, "GPS": ExifTags.GPSTAGS, "Interop": _INTEROP_TAGS}
    for name, group in _EXIF_GROUPS.items():
        ifd = raw.get(name, {})
        table = tables.get(name, ExifTags.TAGS)
        for tag in sorted(ifd):
            if tag in _POINTER_TAGS and name != "GPS":
                continue
            pillow = table.get(tag)
            tag_name = _EXIFTOOL_NAMES.get(pillow, pillow) if pillow else f"Exif_0x{tag:04x}"
            tag_name = _EXIFTOOL_NAMES_BY_ID.get((name, tag), tag_name)
            if tag == 0xC4A5 and isinstance(ifd[tag], bytes):
                out.update(_printim(ifd[tag], order))
            if tag_name is None:
                continue
            value = _exif_tag_value(name, tag, ifd[tag])
            if tag == 0x0201 and name == "IFD1" and isinstance(value, int):
                value += tiff_offset  # exiftool counts from the start of the file, EXIF from its TIFF header
            if isinstance(value, str) and isinstance(ifd[tag], str) and value.rstrip():
                value = value.rstrip()  # exiftool drops trailing blanks (not from an all-blank text)
            out[f"{group}:{tag_name}"] = value
        if name == "IFD1" and 0x0201 in ifd and 0x0202 in ifd:
            out["IFD1:ThumbnailImage"] = f"(Binary data {int(ifd[0x0202])} bytes, use -b option to extract)"
    return out


def _jpeg_segments(data: bytes):
    """(marker, body, offset of the body in the file) of the JPEG header segments, up to the first scan."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 2 + length]
        yield marker, body, pos + 4
        if marker == 0xDA or length < 2:
            return
        pos += 2 + length


def _jpeg_file_tags(data: bytes, exif_order: str | None) -> dict:
    out = {"File:FileType": "JPEG", "File:FileTypeExtension": "JPG", "File:MIMEType": "image/jpeg"}
    if exif_order:
        out["File:ExifByteOrder"] = exif_order
    comments = []
    for marker, body, _offset in _jpeg_segments(data):
        if marker == 0xFE:
            comments.append(_render_str(body.decode("utf-8", "replace") if body else ""))
        elif marker == 0xE0 and body.startswith(b"JFIF\x00") and len(body) >= 12:
            out["JFIF:JFIFVersion"] = f"{body[5]} {body[6]}"
            out["JFIF:ResolutionUnit"] = body[7]
            out["JFIF:XResolution"] = int.from_bytes(body[8:10], "big")
            out["JFIF:YResolution"] = int.from_bytes(body[10:12], "big")
        elif marker == 0xED and body.startswith(b"Photoshop 3.0\x00"):
            iptc = _photoshop_iptc(body[14:])
            if iptc is not None:
                out["File:CurrentIPTCDigest"] = hashlib.md5(iptc, usedforsecurity=False).hexdigest()
        elif marker in _SOF_MARKERS and len(body) >= 6:
            count = body[5]
            out["File:ImageWidth"] = int.from_bytes(body[3:5], "big")
            out["File:ImageHeight"] = int.from_bytes(body[1:3], "big")
            out["File:EncodingProcess"] = marker - 0xC0
            out["File:BitsPerSample"] = body[0]
            out["File:ColorComponents"] = count
            if count == 3 and len(body) >= 9:
                out["File:YCbCrSubSampling"] = f"{body[7] >> 4} {body[7] & 0x0F}"
    if comments:
        out["File:Comment"] = comments[0] if len(comments) == 1 else comments
    return out


def _png_file_tags(data: bytes, exif_order: str | None) -> dict:
    out = {"File:FileType": "PNG", "File:FileTypeExtension": "PNG", "File:MIMEType": "image/png"}
    if exif_order:
        out["File:ExifByteOrder"] = exif_order
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR" and len(body) >= 13:
            out["PNG:ImageWidth"] = int.from_bytes(body[0:4], "big")
            out["PNG:ImageHeight"] = int.from_bytes(body[4:8], "big")
            for name, value in zip(
                ("BitDepth", "ColorType", "Compression", "Filter", "Interlace"), body[8:13], strict=True
            ):
                out[f"PNG:{name}"] = value
        elif kind == b"iCCP" and b"\x00" in body:
            out["PNG:ProfileName"] = _render_str(body.split(b"\x00", 1)[0].decode("latin-1"))
        elif kind == b"tEXt" and b"\x00" in body:
            keyword, text = body.split(b"\x00", 1)
            out.setdefault(f"PNG:{keyword.decode('latin-1')}", _render_str(text.decode("latin-1")))
        elif kind == b"IEND":
            break
    return out


def _webp_file_tags(data: bytes, exif_order: str | None) -> dict:
    out = {"File:FileTypeExtension": "WEBP", "File:MIMEType": "image/webp"}
    if exif_order:
        out["File:ExifByteOrder"] = exif_order
    extended = False
    pos = 12
    while pos + 8 <= len(data):
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)
        if kind == b"VP8X" and len(body) >= 10:
            extended = True
            out["RIFF:WebP_Flags"] = body[0]
            out["RIFF:ImageWidth"] = int.from_bytes(body[4:7], "little") + 1
            out["RIFF:ImageHeight"] = int.from_bytes(body[7:10], "little") + 1
        elif kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            width, height = int.from_bytes(body[6:8], "little"), int.from_bytes(body[8:10], "little")
            out["RIFF:VP8Version"] = (body[0] >> 1) & 7
            out["RIFF:ImageWidth"] = width & 0x3FFF
            out["RIFF:HorizontalScale"] = width >> 14
            out["RIFF:ImageHeight"] = height & 0x3FFF
            out["RIFF:VerticalScale"] = height >> 14
    out["File:FileType"] = "Extended WEBP" if extended else "WEBP"
    return out


def _photoshop_iptc(irb: bytes) -> bytes | None:
    """The IPTC-IIM bytes (resource 0x0404) of a Photoshop image resource block."""
    pos = 0
    while pos + 12 <= len(irb) and irb[pos : pos + 4] == b"8BIM":
        rid = int.from_bytes(irb[pos + 4 : pos + 6], "big")
        name_len = irb[pos + 6]
        pos += 6 + 1 + name_len + ((1 + name_len) & 1)
        size = int.from_bytes(irb[pos : pos + 4], "big")
        pos += 4
        if rid == 0x0404:
            return irb[pos : pos + size]
        pos += size + (size & 1)
    return None


def _xmp_tags(packet: bytes) -> dict:
    """XMP properties as ExifTool's XMP-<prefix>:<Name> tags (structures as nested values)."""
    packet = packet.strip(b"\x00 \t\r\n")
    root = SafeET.fromstring(packet, forbid_dtd=True)
    prefixes: dict[str, str] = {}
    for _event, (prefix, uri) in SafeET.iterparse(io.BytesIO(packet), events=("start-ns",), forbid_dtd=True):
        if prefix and uri not in prefixes:
            prefixes[uri] = prefix
    out = {}

    def key(tag: str) -> str:
        uri, local = tag[1:].split("}", 1) if tag.startswith("{") else ("", tag)
        prefix = _XMP_PREFIXES.get(uri) or prefixes.get(uri) or "unknown"
        if prefix == "exif":
            local = _XMP_EXIF_NAMES.get(local, local)
        return f"XMP-{prefix}:{local[:1].upper()}{local[1:]}"

    def apex(name: str, value):
        # exiftool converts the APEX values of the exif namespace as it does EXIF's (leading number)
        local = name.split(":", 1)[1]
        if not name.startswith("XMP-exif:") or local not in _XMP_APEX or not isinstance(value, str):
            return value
        head = value.split(" ", 1)[0]
        try:
            v = float(Fraction(head))
        except (ValueError, ZeroDivisionError):
            return value
        return _round(2 ** (_XMP_APEX[local] * v))

    xmpmeta = root if root.tag == "{adobe:ns:meta/}xmpmeta" else root.find("{adobe:ns:meta/}xmpmeta")
    if xmpmeta is not None and xmpmeta.get("{adobe:ns:meta/}xmptk") is not None:
        out["XMP-x:XMPToolkit"] = _render_str(xmpmeta.get("{adobe:ns:meta/}xmptk"))
    for rdf in root.iter(f"{{{_RDF}}}RDF"):
        for desc in rdf:
            if desc.tag != f"{{{_RDF}}}Description":
                continue
            for name, val in desc.attrib.items():
                if not name.startswith(f"{{{_RDF}}}") and name != _XML_LANG:
                    out.setdefault(key(name), _render_str(val))
            for child in desc:
                value = _xmp_value(child, prefixes)
                if isinstance(value, list) and len(value) == 1:
                    value = value[0]  # exiftool prints a one-item list as its item
                if value == {} or value == "":
                    value = (child.text or "") if value == "" else value
                out.setdefault(key(child.tag), apex(key(child.tag), value))
    return out


def _iptc_tags(im) -> dict:
    try:
        info = IptcImagePlugin.getiptcinfo(im)
    except Exception:  # noqa: BLE001 - reported in the "iptc" finding
        return {}
    charset = (info or {}).get((1, 90))
    charset = charset[0] if isinstance(charset, list) else charset
    utf8 = bool(charset) and bytes(charset) in (b"\x1b%G", b"\x1b%/G", b"\x1b%/I")
    out = {}
    for k in sorted(info or {}):
        values = info[k] if isinstance(info[k], list) else [info[k]]
        items = []
        for raw in values:
            raw = bytes(raw)
            if k in _IPTC_BINARY and len(raw) == 2:
                items.append(int.from_bytes(raw, "big"))
            elif k == (1, 90):
                items.append(raw.decode("latin-1"))
            else:
                items.append(_iptc_text(raw, utf8))
        out[f"IPTC:{IPTC_NAMES.get(k, f'{k[0]}:{k[1]}')}"] = items if len(items) > 1 else items[0]
    return out


# ICC profile tags as exiftool names them (ICC.1:2010 signatures); others are listed as ICC_Profile:<sig>.
_ICC_TAGS = {
    b"desc": "ProfileDescription",
    b"cprt": "ProfileCopyright",
    b"wtpt": "MediaWhitePoint",
    b"bkpt": "MediaBlackPoint",
    b"chad": "ChromaticAdaptation",
    b"rXYZ": "RedMatrixColumn",
    b"gXYZ": "GreenMatrixColumn",
    b"bXYZ": "BlueMatrixColumn",
    b"rTRC": "RedTRC",
    b"gTRC": "GreenTRC",
    b"bTRC": "BlueTRC",
    b"kTRC": "GrayTRC",
    b"lumi": "Luminance",
    b"dmnd": "DeviceMfgDesc",
    b"dmdd": "DeviceModelDesc",
    b"vued": "ViewingCondDesc",
    b"tech": "Technology",
    b"A2B0": "AToB0",
    b"A2B1": "AToB1",
    b"A2B2": "AToB2",
    b"B2A0": "BToA0",
    b"B2A1": "BToA1",
    b"B2A2": "BToA2",
    b"gamt": "Gamut",
    b"meas": "Measurement",
    b"view": "ViewingConditions",
}


def _s15(raw: bytes) -> str:
    """s15Fixed16Number values as exiftool prints them (5 decimals, trailing zeros dropped)."""
    values = [int.from_bytes(raw[k : k + 4], "big", signed=True) / 65536 for k in range(0, len(raw) - 3, 4)]
    return " ".join((f"{v:.5f}".rstrip("0").rstrip(".") or "0") if v else "0" for v in values)


def _icc_text(body: bytes):
    kind = body[:4]
    if kind == b"desc" and len(body) >= 12:
        n = int.from_bytes(body[8:12], "big")
        return _render_str(body[12 : 12 + n].split(b"\x00", 1)[0].decode("latin-1"))
    if kind == b"text":
        return _render_str(body[8:].split(b"\x00", 1)[0].decode("latin-1"))
    if kind == b"mluc" and len(body) >= 28:
        size, offset = int.from_bytes(body[20:24], "big"), int.from_bytes(body[24:28], "big")
        return _render_str(body[offset : offset + size].decode("utf-16-be", "replace"))
    return None


def _icc_tags(icc: bytes) -> dict:
    """The ICC profile's header (ICC-header group) and tags (ICC_Profile, ICC-chrm) as exiftool -n prints them."""
    if len(icc) < 132:
        return {}
    h = icc[:128]
    y, mo, d, hh, mi, ss = (int.from_bytes(h[24 + 2 * k : 26 + 2 * k], "big") for k in range(6))

    def sig(raw: bytes) -> str:
        return "" if raw == b"\x00\x00\x00\x00" else raw.decode("latin-1")

    out = {
        "ICC-header:ProfileCMMType": sig(h[4:8]),
        "ICC-header:ProfileVersion": int.from_bytes(h[8:10], "big"),  # major, minor.bugfix (BCD)
        "ICC-header:ProfileClass": sig(h[12:16]),
        "ICC-header:ColorSpaceData": sig(h[16:20]),
        "ICC-header:ProfileConnectionSpace": sig(h[20:24]),
        "ICC-header:ProfileDateTime": f"{y:04d}:{mo:02d}:{d:02d} {hh:02d}:{mi:02d}:{ss:02d}",
        "ICC-header:ProfileFileSignature": sig(h[36:40]),
        "ICC-header:PrimaryPlatform": sig(h[40:44]),
        "ICC-header:CMMFlags": int.from_bytes(h[44:48], "big"),
        "ICC-header:DeviceManufacturer": sig(h[48:52]),
        "ICC-header:DeviceModel": sig(h[52:56]),
        "ICC-header:DeviceAttributes": f"{int.from_bytes(h[56:60], 'big')} {int.from_bytes(h[60:64], 'big')}",
        "ICC-header:RenderingIntent": int.from_bytes(h[64:68], "big"),
        "ICC-header:ConnectionSpaceIlluminant": _s15(h[68:80]),
        "ICC-header:ProfileCreator": sig(h[80:84]),
        "ICC-header:ProfileID": " ".join(str(b) for b in h[84:100]),
    }
    count = int.from_bytes(icc[128:132], "big")
    for k in range(min(count, 256)):
        entry = icc[132 + 12 * k : 144 + 12 * k]
        if len(entry) < 12:
            break
        tag, offset, size = entry[:4], int.from_bytes(entry[4:8], "big"), int.from_bytes(entry[8:12], "big")
        body = icc[offset : offset + size]
        kind = body[:4]
        if tag == b"chrm" and kind == b"chrm" and len(body) >= 12:
            channels = int.from_bytes(body[8:10], "big")
            out["ICC-chrm:ChromaticityChannels"] = channels
            out["ICC-chrm:ChromaticityColorant"] = int.from_bytes(body[10:12], "big")
            for c in range(channels):
                xy = body[12 + 8 * c : 20 + 8 * c]
                values = [int.from_bytes(xy[j : j + 4], "big") / 65536 for j in (0, 4)]
                out[f"ICC-chrm:ChromaticityChannel{c + 1}"] = " ".join(
                    f"{v:.5f}".rstrip("0").rstrip(".") or "0" for v in values
                )
            continue
        name = f"ICC_Profile:{_ICC_TAGS.get(tag) or tag.decode('latin-1')}"
        text = _icc_text(body)
        if text is not None:
            out[name] = text
        elif kind in (b"XYZ ", b"sf32"):
            out[name] = _s15(body[8:])
        elif kind == b"sig " and len(body) >= 12:
            out[name] = sig(body[8:12])
        else:
            out[name] = f"(Binary data {size} bytes, use -b option to extract)"
    return out


def exiftool_tags(data: bytes, im, raw_exif: dict) -> dict:
    """Every tag found, keyed "Group:Name" as exiftool -G1 names it, valued as exiftool -n prints it."""
    out: dict = {}
    order = None
    exif_block = im.info.get("exif")
    if im.format == "TIFF":
        exif_block = data
    if isinstance(exif_block, bytes):
        head = exif_block[6:8] if exif_block.startswith(b"Exif\x00\x00") else exif_block[:2]
        order = {b"MM": "MM", b"II": "II"}.get(head)
    if im.format == "PNG":
        out.update(_png_file_tags(data, order))
    elif im.format == "WEBP":
        out.update(_webp_file_tags(data, order))
    elif im.format == "TIFF":
        out.update({"File:FileType": "TIFF", "File:FileTypeExtension": "TIF", "File:MIMEType": "image/tiff"})
        if order:
            out["File:ExifByteOrder"] = order
    tiff_offset = 0
    if im.format == "JPEG":
        out.update(_jpeg_file_tags(data, order))
        for marker, body, offset in _jpeg_segments(data):
            if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
                tiff_offset = offset + 6
                break
    out.update(_exif_tags(raw_exif, order or "MM", tiff_offset))
    packet = _xmp_packet(im)
    if packet is not None:
        try:
            out.update(_xmp_tags(packet))
        except Exception:  # noqa: BLE001, S110 - the "xmp" finding reports why the packet is unusable
            pass
    out.update(_iptc_tags(im))
    icc = im.info.get("icc_profile")
    if icc:
        out.update(_icc_tags(bytes(icc)))
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- other


def _icc_profile(im) -> dict | None:
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    value = {"length": len(icc), "sha256": hashlib.sha256(icc).hexdigest()}
    try:
        from PIL import ImageCms

        description = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.profile_description
        if description:
            value["description"] = _render_str(description)
    except Exception:  # noqa: BLE001, S110 - a description is optional
        pass
    return value


def _comments(im) -> dict:
    out = {}
    comment = im.info.get("comment")
    if comment:
        out["comment"] = render(comment)
    text = getattr(im, "text", None) if im.format == "PNG" else None
    for key, value in sorted((text or {}).items()):
        if key in ("XML:com.adobe.xmp",) or key.startswith("Raw profile type"):
            continue
        out[f"png:{key}"] = render(value)
    return out


def analyze(path, params, ctx) -> dict:
    data, im = _imageio.open_image(path)
    findings = []
    try:
        frames = int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a bad later frame does not hide the first
        frames = 1
    findings.append(
        finding(
            "image_format",
            "fact",
            {"format": im.format, "width": im.width, "height": im.height, "mode": im.mode, "frames": frames},
            note="container format, size in pixels and pixel mode of the first frame",
        )
    )

    exif, raw, problem = read_exif(im)
    findings.append(
        finding(
            "exif",
            "fact",
            exif,
            note=(
                "EXIF directories (IFD0, Exif, GPS, Interop, IFD1) tag by tag" if exif else "no EXIF metadata"
            )
            + (f"; {problem}" if problem else ""),
        )
    )
    ifd0, sub = raw.get("IFD0", {}), raw.get("Exif", {})
    for name, source, tag, note in (
        ("camera_make", ifd0, 0x010F, "EXIF Make"),
        ("camera_model", ifd0, 0x0110, "EXIF Model"),
        ("software", ifd0, 0x0131, "EXIF Software (the last program that says it wrote the file)"),
        (
            "datetime_original",
            sub,
            0x9003,
            "EXIF DateTimeOriginal (camera clock, no time zone unless stated)",
        ),
        ("datetime_modified", ifd0, 0x0132, "EXIF DateTime (last change, as written by the software)"),
    ):
        if tag in source:
            value = render(source[tag])
            if name == "datetime_original" and 0x9011 in sub:
                value = {"datetime": value, "offset": render(sub[0x9011])}
            findings.append(finding(name, "fact", value, note=note))

    if "GPS" in raw:
        position, gps_problem = gps_position(raw["GPS"])
        if position or gps_problem:
            findings.append(
                finding(
                    "gps_position",
                    "fact",
                    position,
                    unit="degrees",
                    note="GPS position recorded in EXIF: decimal degrees (rounded to 7 decimals), altitude in metres"
                    + (f"; {gps_problem}" if gps_problem else ""),
                )
            )

    packet = _xmp_packet(im)
    if packet is None:
        findings.append(finding("xmp", "fact", None, note="no XMP packet"))
    else:
        digest = hashlib.sha256(packet).hexdigest()
        try:
            xmp = parse_xmp(packet)
            findings.append(
                finding(
                    "xmp",
                    "fact",
                    xmp,
                    length=len(packet),
                    sha256=digest,
                    note="XMP properties by prefix:name",
                )
            )
        except ValueError as exc:
            findings.append(
                finding(
                    "xmp", "fact", None, length=len(packet), sha256=digest, note=f"XMP packet present: {exc}"
                )
            )

    iptc, iptc_problem = read_iptc(im)
    findings.append(
        finding(
            "iptc",
            "fact",
            iptc,
            note=iptc_problem or ("IPTC-IIM datasets by name" if iptc else "no IPTC metadata"),
        )
    )

    tags = exiftool_tags(data, im, raw)
    findings.append(
        finding(
            "tags",
            "fact",
            tags,
            count=len(tags),
            note="every tag found, keyed by ExifTool's group and tag name (exiftool -G1) with the value as "
            "exiftool -n prints it; not listed: ExifTool's System (filesystem), ExifTool and Composite "
            "(derived) groups and decoded maker notes",
        )
    )

    icc = _icc_profile(im)
    if icc:
        findings.append(finding("icc_profile", "fact", icc, note="embedded ICC colour profile"))
    comments = _comments(im)
    if comments:
        findings.append(finding("comments", "fact", comments, note="comment and text fields"))
    return {"findings": findings, "libraries": _imageio.libraries("defusedxml")}
