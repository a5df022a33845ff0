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
  x-default text (or {language: text}), structures nested objects.
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
VERSION = "1.0.0"
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

    icc = _icc_profile(im)
    if icc:
        findings.append(finding("icc_profile", "fact", icc, note="embedded ICC colour profile"))
    comments = _comments(im)
    if comments:
        findings.append(finding("comments", "fact", comments, note="comment and text fields"))
    return {"findings": findings, "libraries": _imageio.libraries("defusedxml")}
