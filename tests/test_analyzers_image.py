"""The image analyzers (pure functions): metadata, thumbnail, JPEG tables and ELA.

Most tests make their own images with Pillow and numpy (synthetic content,
recompression chains, edits with known ground truth, appended payloads); the
metadata and double-compression evaluations also use real camera photographs
from Debian's mate-backgrounds package. Nothing is downloaded. The metadata
tests compare with exiftool run on the same files (Debian's
libimage-exiftool-perl; ./scripts/test installs both packages).
"""

from __future__ import annotations

import importlib
import io
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PIL.TiffImagePlugin import IFDRational

from forensics import analyzers
from forensics.analyzers import _imageio, _rates, image_ela, image_jpeg, image_metadata, image_thumbnail
from forensics.analyzers.base import FINDING_CLASSES, AnalysisContext, AnalysisError, validate_parameters
from forensics.evaluation import jpeg as jpeg_evaluation
from forensics.evaluation import tables

IMAGE_MODULES = (image_metadata, image_thumbnail, image_jpeg, image_ela)
EXPECTED_VERSIONS = {
    image_metadata: "1.1.0",
    image_thumbnail: "1.1.0",
    image_jpeg: "1.1.0",
    image_ela: "1.1.0",
}


# ---------------------------------------------------------------- helpers


def synthetic(seed: int, size: int = 256, height: int | None = None) -> Image.Image:
    """Natural-looking RGB content: 1/f colour noise, a gradient, flat shapes, sensor noise."""
    rng = np.random.default_rng(seed)
    h, w = height or size, size
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    falloff = f**-1.1
    falloff[0, 0] = 0.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) * falloff
        field = np.fft.irfft2(spectrum, s=(h, w))
        channels.append((field - field.mean()) / (field.std() + 1e-9))
    base = np.stack(channels, -1)
    mix = rng.normal(size=(3, 3)) * 0.3 + np.eye(3)
    img = base @ mix * rng.uniform(25, 45) + rng.uniform(90, 160, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    img += (rng.uniform(-40, 40) * xx / w + rng.uniform(-40, 40) * yy / h)[..., None]
    img += rng.normal(scale=rng.uniform(1, 6), size=img.shape)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = (int(v) for v in rng.integers(0, max(1, min(w, h) - 20), 2))
        x1, y1 = x0 + int(rng.integers(10, 120)), y0 + int(rng.integers(10, 120))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
    arr = np.asarray(pil).astype(float) + rng.normal(scale=2, size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(img: Image.Image, quality: int | None, **kwargs) -> bytes:
    """JPEG bytes at an IJG quality, or (quality None) with the given qtables as they are."""
    buf = io.BytesIO()
    if quality is not None:
        kwargs["quality"] = quality
    img.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def recompress(data: bytes, quality: int, **kwargs) -> bytes:
    im = Image.open(io.BytesIO(data))
    return jpeg_bytes(im.convert(im.mode if im.mode == "L" else "RGB"), quality, **kwargs)


def run(module, path, params=None):
    ctx = AnalysisContext(original_name=Path(path).name, size=Path(path).stat().st_size)
    result = module.analyze(str(path), validate_parameters(module.PARAMETERS, params), ctx)
    return result, ctx


def by_name(result) -> dict:
    return {f["name"]: f for f in result["findings"]}


def write(tmp_path, name, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def exif_with_thumbnail(exif: Image.Exif, thumbnail: bytes) -> bytes:
    """Pillow's EXIF block with an IFD1 (JPEG thumbnail) appended; Pillow writes no IFD1 itself."""
    tiff = bytearray(exif.tobytes()[6:])
    endian = ">" if tiff[:2] == b"MM" else "<"
    ifd0 = struct.unpack(endian + "I", tiff[4:8])[0]
    count = struct.unpack(endian + "H", tiff[ifd0 : ifd0 + 2])[0]
    next_pos = ifd0 + 2 + 12 * count
    assert struct.unpack(endian + "I", tiff[next_pos : next_pos + 4])[0] == 0
    if len(tiff) % 2:
        tiff += b"\x00"
    ifd1 = len(tiff)
    data_offset = ifd1 + 2 + 12 * 3 + 4
    tiff[next_pos : next_pos + 4] = struct.pack(endian + "I", ifd1)
    tiff += struct.pack(endian + "H", 3)
    tiff += struct.pack(endian + "HHIHH", 0x0103, 3, 1, 6, 0)  # Compression = JPEG
    tiff += struct.pack(endian + "HHII", 0x0201, 4, 1, data_offset)  # JPEGInterchangeFormat
    tiff += struct.pack(endian + "HHII", 0x0202, 4, 1, len(thumbnail))  # ...Length
    tiff += struct.pack(endian + "I", 0) + thumbnail
    return b"Exif\x00\x00" + bytes(tiff)


def iptc_segment(datasets) -> bytes:
    """A JPEG APP13 "Photoshop 3.0" segment holding an IPTC-IIM record (resource 0x0404)."""
    iim = b"".join(b"\x1c" + bytes([r, d]) + struct.pack(">H", len(v)) + v for r, d, v in datasets)
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    if len(iim) % 2:
        resource += b"\x00"
    body = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def insert_after_soi(jpeg: bytes, segment: bytes) -> bytes:
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height pixels (a decompression bomb's shape)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096, 9))
        + chunk(b"IEND", b"")
    )


def exiftool(path) -> dict:
    binary = shutil.which("exiftool")
    if binary is None:
        pytest.fail(
            "exiftool is not installed: the metadata tests compare with it. ./scripts/test (the README's test "
            "command) installs it with apt-get (Debian package libimage-exiftool-perl)."
        )
    out = subprocess.run([binary, "-j", "-n", "-G", str(path)], capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)[0]


def check_findings(result) -> None:
    assert set(result) >= {"findings", "libraries"}
    assert result["findings"], "an analysis always reports something"
    for f in result["findings"]:
        assert f["class"] in FINDING_CLASSES, f
        assert f["name"].replace("_", "").isalnum() and f["name"] == f["name"].lower(), f
        if f["class"] == "visual":
            assert f["artifact"].startswith("sha256:"), f
        if f["class"] == "indicator" and f["value"] is not None:
            if f.get("rates", {}).get("measured") is False:
                assert f.get("score") is None  # no calibrated probability outside the measured conditions
            else:
                assert 0.0 <= f["score"] <= 1.0
    json.dumps(result, allow_nan=False)  # JSON-safe, no NaN


XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 5.6-c140 79.160451, 2017/05/06-01:08:21">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmp:CreatorTool="Custody Test Writer 3.1"
    xmp:Rating="4"
    photoshop:City="Lyon">
   <dc:subject><rdf:Bag><rdf:li>harbour</rdf:li><rdf:li>night</rdf:li><rdf:li>cr\u00e8me</rdf:li></rdf:Bag></dc:subject>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Quay at dusk, \u00e9t\u00e9 2023</rdf:li></rdf:Alt></dc:description>
   <dc:creator><rdf:Seq><rdf:li>Witness B</rdf:li></rdf:Seq></dc:creator>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode()


def camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D Mark IV"
    exif[0x0131] = "Firmware 1.2.3"
    exif[0x0132] = "2024:02:03 04:05:06"
    exif[0x011A] = IFDRational(300, 1)
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2023:07:14 21:09:33"
    sub[0x9011] = "+02:00"
    sub[0x829A] = IFDRational(1, 125)
    sub[0x829D] = IFDRational(56, 10)
    sub[0x8827] = 800
    gps = exif.get_ifd(0x8825)
    gps[0x0000] = b"\x02\x03\x00\x00"
    gps[0x0001] = "S"
    gps[0x0002] = (IFDRational(33, 1), IFDRational(51, 1), IFDRational(3541, 100))
    gps[0x0003] = "W"
    gps[0x0004] = (IFDRational(70, 1), IFDRational(39, 1), IFDRational(1234567, 100000))
    gps[0x0005] = b"\x01"
    gps[0x0006] = IFDRational(125, 10)
    return exif


# ---------------------------------------------------------------- registry and contract


def test_modules_are_registered_and_follow_the_contract():
    for module in IMAGE_MODULES:
        short = module.__name__.rsplit(".", 1)[1]
        assert short in analyzers.MODULES
        assert importlib.import_module(f"forensics.analyzers.{short}") is module
        assert module.NAME.startswith("image.") and module.VERSION == EXPECTED_VERSIONS[module]
        assert module.ACCEPTS and all(a.startswith("image/") for a in module.ACCEPTS)
        assert module.DESCRIPTION and module.LIMITS and isinstance(module.PARAMETERS, dict)
        validate_parameters(module.PARAMETERS, {})
    assert image_jpeg.ACCEPTS == ["image/jpeg"]
    assert analyzers.accepts(image_ela, "image/png") and not analyzers.accepts(image_jpeg, "image/png")


# ---------------------------------------------------------------- metadata


def test_metadata_matches_exiftool_on_jpeg(tmp_path):
    img = synthetic(1, 320, 240)
    data = jpeg_bytes(img, 90, exif=camera_exif(), xmp=XMP)
    data = insert_after_soi(
        data,
        iptc_segment(
            [
                (1, 90, b"\x1b%G"),
                (2, 0, b"\x00\x04"),
                (2, 25, b"harbour"),
                (2, 25, "Zo\u00eb".encode()),
                (2, 25, b"evidence"),
                (2, 120, "Quay at dusk \u2014 witness photo".encode()),
                (2, 90, b"Lyon"),
                (2, 80, b"Witness B"),
            ]
        ),
    )
    path = write(tmp_path, "camera.jpg", data)
    result, _ = run(image_metadata, path)
    check_findings(result)
    found = by_name(result)
    tool = exiftool(path)

    exif = found["exif"]["value"]
    assert exif["IFD0"]["Make"] == tool["EXIF:Make"] == found["camera_make"]["value"]
    assert exif["IFD0"]["Model"] == tool["EXIF:Model"] == found["camera_model"]["value"]
    assert exif["IFD0"]["Software"] == tool["EXIF:Software"]
    assert exif["Exif"]["DateTimeOriginal"] == tool["EXIF:DateTimeOriginal"]
    assert found["datetime_original"]["value"] == {"datetime": "2023:07:14 21:09:33", "offset": "+02:00"}
    assert exif["Exif"]["ExposureTime"] == pytest.approx(tool["EXIF:ExposureTime"], abs=1e-9)
    assert exif["Exif"]["FNumber"] == pytest.approx(tool["EXIF:FNumber"])
    assert exif["Exif"]["ISOSpeedRatings"] == tool["EXIF:ISO"]

    gps = found["gps_position"]["value"]
    assert gps["latitude"] == pytest.approx(tool["Composite:GPSLatitude"], abs=5e-8)
    assert gps["longitude"] == pytest.approx(tool["Composite:GPSLongitude"], abs=5e-8)
    assert gps["latitude"] < 0 and gps["longitude"] < 0  # south, west
    assert gps["altitude"] == pytest.approx(tool["Composite:GPSAltitude"]) == -12.5  # below sea level
    assert gps["latitude"] == round(gps["latitude"], 7)

    xmp = found["xmp"]["value"]
    assert (
        xmp["x:xmptk"] == tool["XMP:XMPToolkit"] == "Adobe XMP Core 5.6-c140 79.160451, 2017/05/06-01:08:21"
    )
    assert xmp["dc:subject"] == tool["XMP:Subject"] == ["harbour", "night", "cr\u00e8me"]
    assert xmp["dc:description"] == tool["XMP:Description"]
    assert xmp["xmp:CreatorTool"] == tool["XMP:CreatorTool"]
    assert int(xmp["xmp:Rating"]) == tool["XMP:Rating"]
    assert xmp["photoshop:City"] == tool["XMP:City"]
    creator = tool["XMP:Creator"]
    assert xmp["dc:creator"] == (creator if isinstance(creator, list) else [creator])

    iptc = found["iptc"]["value"]
    assert iptc["Keywords"] == tool["IPTC:Keywords"] == ["harbour", "Zo\u00eb", "evidence"]
    assert iptc["Caption-Abstract"] == tool["IPTC:Caption-Abstract"]
    assert iptc["City"] == tool["IPTC:City"]
    assert iptc["By-line"] == tool["IPTC:By-line"]
    assert iptc["ApplicationRecordVersion"] == tool["IPTC:ApplicationRecordVersion"]


def test_metadata_png_webp_and_tiff_match_exiftool(tmp_path):
    img = synthetic(2, 200, 150)
    exif = camera_exif()
    cases = []
    buf = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Comment", "made by the test")
    img.save(buf, "PNG", exif=exif, pnginfo=info)
    cases.append(("meta.png", buf.getvalue(), True))
    buf = io.BytesIO()
    img.save(buf, "WEBP", quality=90, exif=exif, xmp=XMP)
    cases.append(("meta.webp", buf.getvalue(), True))
    buf = io.BytesIO()
    img.save(buf, "TIFF", exif=exif)
    cases.append(("meta.tif", buf.getvalue(), False))
    for name, data, has_xmp in cases:
        path = write(tmp_path, name, data)
        result, _ = run(image_metadata, path)
        check_findings(result)
        found = by_name(result)
        tool = exiftool(path)
        make = tool.get("EXIF:Make") or tool.get("IFD0:Make")
        assert found["camera_make"]["value"] == make == "Canon", name
        assert found["camera_model"]["value"] == (tool.get("EXIF:Model") or tool.get("IFD0:Model")), name
        if has_xmp:
            assert found["xmp"]["value"]["dc:subject"] == tool["XMP:Subject"], name
        if name.endswith(".png"):
            assert found["comments"]["value"]["png:Comment"] == "made by the test"
        if "gps_position" in found:
            assert found["gps_position"]["value"]["latitude"] == pytest.approx(
                tool["Composite:GPSLatitude"], abs=5e-8
            )


# Groups of `exiftool -G1` that the "tags" finding deliberately leaves out, with the reason.
NOT_LISTED = {
    "System": "the filesystem's name, directory, size, dates and permissions, not the file's content",
    "ExifTool": "exiftool's own version and warnings",
    "Composite": "values exiftool derives from other tags (GPS position, shutter speed, image size...); not stored",
    "Canon": "decoded maker note (vendor-specific; reported by length and SHA-256)",
    "CanonCustom": "decoded maker note (vendor-specific; reported by length and SHA-256)",
    "Sony": "decoded maker note (vendor-specific; reported by length and SHA-256)",
    "Minolta": "decoded maker note (vendor-specific; reported by length and SHA-256)",
}
# Real camera photographs shipped by Debian's mate-backgrounds (./scripts/test installs it): Canon and
# Minolta EXIF with maker notes, PrintIM, RenRot XMP, a Sony file with an XMP exif dump, GIMP comments,
# JFIF headers, an IFD1 thumbnail without IFD0.
REAL_PHOTOS = (
    "nature/Blinds.jpg",
    "nature/Dune.jpg",
    "nature/Storm.jpg",
    "nature/Wood.jpg",
    "nature/RainDrops.jpg",
    "nature/LadyBird.jpg",
    "abstract/Elephants_3840x2160.jpg",
)


def exiftool_all(path) -> tuple[dict, dict]:
    """exiftool -j -G1 -a -u: (names with print conversion, the same with -n values)."""
    exiftool(path)  # fails with the install hint when exiftool is missing
    out = []
    for extra in ([], ["-n"]):
        cmd = [shutil.which("exiftool"), "-j", "-G1", "-a", "-u", *extra, str(path)]
        out.append(json.loads(subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout)[0])
    return out[0], out[1]


def same_value(ours, theirs) -> bool:
    if isinstance(ours, list) or isinstance(theirs, list):
        ours = ours if isinstance(ours, list) else [ours]
        theirs = theirs if isinstance(theirs, list) else [theirs]
        return len(ours) == len(theirs) and all(same_value(a, b) for a, b in zip(ours, theirs, strict=True))
    try:
        a, b = float(ours), float(theirs)
    except (TypeError, ValueError):
        return str(ours) == str(theirs)
    return a == b or abs(a - b) <= 1e-9 + 1e-6 * abs(b) or (np.isinf(a) and np.isinf(b))


def metadata_test_files(tmp_path) -> list[Path]:
    img = synthetic(1, 320, 240)
    data = jpeg_bytes(img, 90, exif=camera_exif(), xmp=XMP)
    data = insert_after_soi(
        data, iptc_segment([(1, 90, b"\x1b%G"), (2, 0, b"\x00\x04"), (2, 25, b"harbour")])
    )
    files = [write(tmp_path, "camera.jpg", data)]
    small = synthetic(2, 200, 150)
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Comment", "made by the test")
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, kwargs in (
        ("meta.png", {"format": "PNG", "exif": camera_exif(), "pnginfo": info}),
        ("meta.webp", {"format": "WEBP", "quality": 90, "exif": camera_exif(), "xmp": XMP}),
        ("meta.tif", {"format": "TIFF", "exif": camera_exif()}),
        ("icc.jpg", {"format": "JPEG", "quality": 85, "icc_profile": srgb, "exif": camera_exif()}),
        ("icc.png", {"format": "PNG", "icc_profile": srgb}),
    ):
        buf = io.BytesIO()
        small.save(buf, **kwargs)
        files.append(write(tmp_path, name, buf.getvalue()))
    base = Path("/usr/share/backgrounds/mate")
    if not base.is_dir():
        pytest.fail(
            "the real test photos are missing: install the Debian package mate-backgrounds (./scripts/test)"
        )
    return files + [base / name for name in REAL_PHOTOS]


def test_metadata_lists_every_tag_exiftool_shows(tmp_path):
    """Every tag of `exiftool -j -G1 -a -u` is in the "tags" finding with the value exiftool -n gives."""
    checked = 0
    for path in metadata_test_files(tmp_path):
        named, numeric = exiftool_all(path)
        assert set(named) == set(numeric), path  # -n changes values, never which tags are shown
        result, _ = run(image_metadata, path)
        check_findings(result)
        tags = by_name(result)["tags"]["value"]
        assert by_name(result)["tags"]["count"] == len(tags)
        problems = []
        for key, value in numeric.items():
            if key == "SourceFile" or key.split(":", 1)[0] in NOT_LISTED:
                continue
            checked += 1
            if key not in tags:
                problems.append(f"missing {key} = {value!r}")
            elif not same_value(tags[key], value):
                problems.append(f"{key}: ours {tags[key]!r}, exiftool {value!r}")
        extra = sorted(k for k in tags if k not in numeric)
        assert not problems and not extra, (path.name, problems, extra)
    assert checked > 300  # the comparison covered the real photos' tags, not only the fixtures'


def test_metadata_reports_the_xmp_toolkit_and_camera_exif_of_real_photos():
    photos = Path("/usr/share/backgrounds/mate")
    if not photos.is_dir():
        pytest.fail(
            "the real test photos are missing: install the Debian package mate-backgrounds (./scripts/test)"
        )
    found = by_name(run(image_metadata, photos / "nature/Storm.jpg")[0])
    assert found["camera_make"]["value"] == "Canon"
    assert found["exif"]["value"]["Exif"]["MakerNote"]["length"] > 0
    tags = found["tags"]["value"]
    assert tags["ExifIFD:ShutterSpeedValue"] == pytest.approx(0.4, rel=1e-5)  # APEX 1.32 -> 0.4 s
    assert tags["IFD1:ThumbnailOffset"] == 6162  # from the start of the file, as exiftool counts
    sony = by_name(run(image_metadata, photos / "abstract/Elephants_3840x2160.jpg")[0])["tags"]["value"]
    assert sony["XMP-exif:ExifImageWidth"] == "5640" and sony["IFD0:Make"] == "SONY"
    assert sony["PrintIM:PrintIMVersion"] == "0300"


def test_metadata_absent_is_reported_as_facts(tmp_path):
    path = write(
        tmp_path, "plain.png", (buf := io.BytesIO(), synthetic(3, 64).save(buf, "PNG"))[0].getvalue()
    )
    result, _ = run(image_metadata, path)
    check_findings(result)
    found = by_name(result)
    assert found["exif"]["value"] is None and found["xmp"]["value"] is None and found["iptc"]["value"] is None
    assert found["image_format"]["value"] == {
        "format": "PNG",
        "width": 64,
        "height": 64,
        "mode": "RGB",
        "frames": 1,
    }
    assert "gps_position" not in found


def test_xmp_with_a_dtd_is_refused_without_failing_the_analysis(tmp_path):
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="&b;"/></rdf:RDF></x:xmpmeta>'
    )
    path = write(tmp_path, "dtd.jpg", jpeg_bytes(synthetic(4, 64), 80, xmp=evil))
    result, _ = run(image_metadata, path)
    check_findings(result)
    xmp = by_name(result)["xmp"]
    assert xmp["value"] is None and "refused" in xmp["note"] and xmp["length"] == len(evil)

    path = write(tmp_path, "bad.jpg", jpeg_bytes(synthetic(4, 64), 80, xmp=b"<x:xmpmeta><unclosed>"))
    result, _ = run(image_metadata, path)
    check_findings(result)
    assert "not well-formed" in by_name(result)["xmp"]["note"]


def test_rendering_is_json_safe_and_deterministic():
    assert image_metadata.render(IFDRational(1, 3)) == 0.3333333333
    assert image_metadata.render(IFDRational(5, 0)) == "5/0"
    assert image_metadata.render(b"0232") == "0232"
    assert image_metadata.render(b"\x01\x02\x03\x00") == [1, 2, 3, 0]
    assert image_metadata.render(bytes(range(256)))["length"] == 256
    assert image_metadata.render(tuple(range(100)))["count"] == 100
    assert image_metadata.render(float("nan")) == "nan"
    assert image_metadata.render("a\x00\x00") == "a"


# ---------------------------------------------------------------- thumbnail


def _with_thumbnail(main: Image.Image, thumb_source: Image.Image, size=(160, 120), letterbox=False) -> bytes:
    if letterbox:
        inner = thumb_source.copy()
        inner.thumbnail(size, Image.Resampling.LANCZOS)
        thumb = Image.new("RGB", size, (0, 0, 0))
        thumb.paste(inner, ((size[0] - inner.width) // 2, (size[1] - inner.height) // 2))
    else:
        thumb = thumb_source.resize(size, Image.Resampling.LANCZOS)
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    return jpeg_bytes(main, 92, exif=exif_with_thumbnail(exif, jpeg_bytes(thumb, 80)))


def test_thumbnail_mismatch_is_higher_after_an_edit(tmp_path):
    original = synthetic(10, 640, 480)
    edited = original.copy()
    ImageDraw.Draw(edited).rectangle([400, 60, 560, 220], fill=(250, 240, 20))
    clean = write(tmp_path, "clean.jpg", _with_thumbnail(original, original))
    tampered = write(tmp_path, "edited.jpg", _with_thumbnail(edited, original))

    clean_result, clean_ctx = run(image_thumbnail, clean)
    edited_result, edited_ctx = run(image_thumbnail, tampered)
    for result in (clean_result, edited_result):
        check_findings(result)
    a, b = by_name(clean_result), by_name(edited_result)
    assert a["thumbnail"]["value"]["present"] and a["thumbnail"]["value"]["width"] == 160
    assert a["thumbnail_mismatch"]["value"] < 2.0  # resampling and JPEG noise only
    assert b["thumbnail_mismatch"]["value"] > 4 * a["thumbnail_mismatch"]["value"]
    assert b["thumbnail_local_mismatch"]["value"] > 5 * a["thumbnail_local_mismatch"]["value"]
    x, y, w, h = b["thumbnail_local_mismatch"]["region"]
    assert 400 - w <= x <= 560 and 60 - h <= y <= 220, "the most different cell lies on the painted area"

    # the thumbnail artifact is the exact embedded bytes, as exiftool extracts them
    tool = exiftool(tampered)
    assert b["thumbnail"]["value"]["length"] == tool["EXIF:ThumbnailLength"]
    extracted = subprocess.run(
        [shutil.which("exiftool"), "-b", "-ThumbnailImage", str(tampered)], capture_output=True, check=True
    ).stdout
    thumb_artifact = next(x for x in edited_ctx.artifacts if x.media_type == "image/jpeg")
    assert thumb_artifact.data == extracted
    assert any(x.media_type == "image/png" for x in clean_ctx.artifacts)


def test_thumbnail_letterboxed_and_rotated(tmp_path):
    original = synthetic(11, 600, 400)
    letterboxed = write(tmp_path, "letterbox.jpg", _with_thumbnail(original, original, letterbox=True))
    found = by_name(run(image_thumbnail, letterboxed)[0])
    assert found["thumbnail_mismatch"]["letterbox"] is True
    assert found["thumbnail_mismatch"]["compared"] == [0, 6, 160, 107]  # the bars are left out
    assert found["thumbnail_mismatch"]["value"] < 2.0  # resampling and JPEG noise only
    assert found["thumbnail_local_mismatch"]["value"] < 2 * found["thumbnail_mismatch"]["value"]

    turned = original.rotate(90, expand=True)  # stored turned, thumbnail not
    rotated = write(tmp_path, "rotated.jpg", _with_thumbnail(turned, original, size=(150, 100)))
    found = by_name(run(image_thumbnail, rotated)[0])
    assert found["thumbnail_mismatch"]["rotation"] in (90, 270)
    assert found["thumbnail_mismatch"]["value"] < 2.0
    x, y, w, h = found["thumbnail_local_mismatch"]["region"]
    assert 0 <= x and x + w <= turned.width and 0 <= y and y + h <= turned.height

    painted = turned.copy()  # an edit on the turned image is located in stored pixels
    ImageDraw.Draw(painted).rectangle([60, 380, 220, 540], fill=(10, 250, 250))
    found = by_name(
        run(
            image_thumbnail,
            write(tmp_path, "rot-edit.jpg", _with_thumbnail(painted, original, size=(150, 100))),
        )[0]
    )
    x, y, w, h = found["thumbnail_local_mismatch"]["region"]
    assert 60 - w <= x <= 220 and 380 - h <= y <= 540, (x, y, w, h)


def test_no_thumbnail_and_broken_thumbnail_are_facts(tmp_path):
    path = write(tmp_path, "none.jpg", jpeg_bytes(synthetic(12, 128), 85))
    result, ctx = run(image_thumbnail, path)
    check_findings(result)
    assert [f["name"] for f in result["findings"]] == ["thumbnail"]
    assert result["findings"][0]["value"] == {"present": False} and not ctx.artifacts

    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    broken = exif_with_thumbnail(exif, b"\xff\xd8\xff\xdb" + b"\x00" * 40)
    path = write(tmp_path, "broken.jpg", jpeg_bytes(synthetic(12, 128), 85, exif=broken))
    result, _ = run(image_thumbnail, path)
    check_findings(result)
    thumb = by_name(result)["thumbnail"]
    assert thumb["value"]["present"] and thumb["value"]["readable"] is False
    assert "cannot be decoded" in thumb["note"]


# ---------------------------------------------------------------- JPEG tables and quality


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 97, 100])
def test_quantization_tables_and_quality(tmp_path, quality):
    img = synthetic(20 + quality, 128)
    path = write(tmp_path, f"q{quality}.jpg", jpeg_bytes(img, quality, subsampling=2))
    result, _ = run(image_jpeg, path)
    check_findings(result)
    found = by_name(result)
    pillow = Image.open(path).quantization
    tables = found["quantization_tables"]["value"]
    assert {int(k) for k in tables} == set(pillow)
    for k, table in tables.items():
        assert [v for row in table["rows"] for v in row] == list(pillow[int(k)])
        assert table["precision"] == 8
    assert found["jpeg_quality"]["value"] == quality
    assert found["jpeg_quality"]["standard_table"] is True
    assert found["jpeg_quality"]["uncertainty"]["value"] == 0  # exact for libjpeg's own tables:
    assert len({image_jpeg.STD_TABLES[q, 0].tobytes() for q in range(100)}) == 100  # one table per quality
    assert "standard libjpeg" in found["jpeg_quality"]["note"]
    tool = subprocess.run(
        [shutil.which("exiftool") or "exiftool", "-j", "-JPEGQualityEstimate", str(path)],
        capture_output=True,
        check=True,
    )
    if quality >= 20:  # exiftool gives "<unknown>" for tables clipped at 255
        assert json.loads(tool.stdout)[0]["JPEGQualityEstimate"] == quality
    assert found["double_compression"]["value"] is None  # 128 x 128 is below the block minimum
    frame = found["jpeg_structure"]["value"]["frame"]
    assert (frame["width"], frame["height"]) == (128, 128) and frame["process"] == "baseline DCT"


def test_non_standard_and_16_bit_tables(tmp_path):
    img = synthetic(30, 128)
    rng = np.random.default_rng(3)
    base = image_jpeg.scale_table(image_jpeg.STD_LUMINANCE, 80)
    custom = [max(1, v + int(d)) for v, d in zip(base, rng.integers(-2, 3, 64), strict=True)]
    path = write(tmp_path, "camera.jpg", jpeg_bytes(img, None, qtables=[custom, custom]))
    found = by_name(run(image_jpeg, path)[0])
    assert found["jpeg_quality"]["standard_table"] is False
    assert abs(found["jpeg_quality"]["value"] - 80) <= 3
    assert "non-standard" in found["jpeg_quality"]["note"]
    assert found["jpeg_quality"]["uncertainty"]["value"] is None  # not measured for non-standard tables

    # rewrite the first DQT table with 16-bit precision: same values, Pq = 1
    data = bytearray(jpeg_bytes(img, 75))
    pos = data.find(b"\xff\xdb")
    length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    body = data[pos + 4 : pos + 2 + length]
    first = body[: 1 + 64]
    rest = body[1 + 64 :]
    wide = bytes([0x10 | (first[0] & 0x0F)]) + b"".join(struct.pack(">H", v) for v in first[1:])
    new_body = wide + rest
    data[pos : pos + 2 + length] = b"\xff\xdb" + struct.pack(">H", len(new_body) + 2) + new_body
    parsed = image_jpeg.parse_jpeg(bytes(data))
    assert parsed["tables"][0]["precision"] == 16
    assert parsed["tables"][0]["values"] == image_jpeg.scale_table(image_jpeg.STD_LUMINANCE, 75)


def test_appended_payload_and_progressive(tmp_path):
    img = synthetic(31, 160)
    payload = b"PK\x03\x04" + b"secret archive" * 20
    path = write(tmp_path, "appended.jpg", jpeg_bytes(img, 85, progressive=True) + payload)
    result, _ = run(image_jpeg, path)
    check_findings(result)
    found = by_name(result)
    after = found["data_after_end"]["value"]
    assert after["length"] == len(payload) and after["kind"] == "a ZIP archive"
    assert found["jpeg_structure"]["value"]["frame"]["process"] == "progressive DCT"
    assert found["jpeg_structure"]["value"]["scans"] > 1
    plain = by_name(run(image_jpeg, write(tmp_path, "plain.jpg", jpeg_bytes(img, 85)))[0])
    assert "data_after_end" not in plain


# ---------------------------------------------------------------- double compression


def test_double_compression_quick_evaluation_reproduces_the_stored_table():
    """The quick subset of forensics/evaluation/jpeg.py (real photographs) gives exactly the stored block.

    The full set is rerun by `python bench/evaluate.py image.jpeg --check`.
    """
    table = _rates.table(image_jpeg.NAME)
    assert table and "quick" in table and "indicators" in table, (
        "run bench/evaluate.py image.jpeg (and --quick)"
    )
    result = jpeg_evaluation.evaluate(quick=True, jobs=1)
    assert tables.differences(json.loads(json.dumps(result["indicators"])), table["quick"]) == []
    for row in table["indicators"]["double_compression"]["rows"]:
        assert (
            row["condition"]["tables"] == "standard IJG" and row["threshold"] >= jpeg_evaluation.MIN_THRESHOLD
        )
        assert row["positives"] > 0 and row["negatives"] > 0


def test_double_compression_carries_the_rates_of_its_quality_band(tmp_path):
    spec = _rates.table(image_jpeg.NAME)["indicators"]["double_compression"]
    seen = set()
    for photo in (0, 4, 8):
        for case in jpeg_evaluation.cases(photo, 1):
            found = by_name(run(image_jpeg, write(tmp_path, f"{photo}.jpg", case["data"]))[0])
            indicator = found["double_compression"]
            rates = indicator["rates"]
            band = image_jpeg.q2_band(found["jpeg_quality"]["value"])
            assert rates["measured"] and rates["condition"] == {"q2_band": band, "tables": "standard IJG"}
            row = next(r for r in spec["rows"] if r["condition"]["q2_band"] == band)
            assert indicator["threshold"] == row["threshold"] == rates["threshold"]
            assert rates["detection_rate"] == row["detection_rate"] and rates["table_sha256"]
            assert indicator["value"] == (indicator["raw_score"] >= indicator["threshold"])
            ratio = indicator["raw_score"] / indicator["threshold"]
            assert indicator["score"] == _rates.calibrated(image_jpeg.NAME, "double_compression", ratio)
            assert 0.0 <= indicator["score"] <= 1.0
            seen.add(band)
    assert len(seen) >= 2


def test_double_compression_in_an_unmeasured_condition_says_so(tmp_path):
    img = synthetic(7, 320, 320)
    base = image_jpeg.scale_table(image_jpeg.STD_LUMINANCE, 85)
    table = [max(1, v + (1 if k % 5 == 0 else 0)) for k, v in enumerate(base)]  # camera-like: not libjpeg's
    found = by_name(
        run(image_jpeg, write(tmp_path, "cam.jpg", jpeg_bytes(img, None, qtables=[table, table])))[0]
    )
    indicator = found["double_compression"]
    assert found["jpeg_quality"]["standard_table"] is False
    assert indicator["rates"]["measured"] is False and "never measured" in indicator["rates"]["note"]
    assert indicator.get("score") is None and indicator["threshold"] == image_jpeg.DQ_THRESHOLD


def test_double_compression_limits_quote_the_table():
    quoted = _rates.limits(image_jpeg.NAME)
    assert image_jpeg.LIMITS[-len(quoted) :] == quoted
    assert len(quoted) == 1 + len(_rates.table(image_jpeg.NAME)["indicators"]["double_compression"]["rows"])
    assert "synthetic" not in " ".join(quoted)


def test_double_compression_examples(tmp_path):
    img = synthetic(42)
    single = by_name(run(image_jpeg, write(tmp_path, "s.jpg", jpeg_bytes(img, 90)))[0])["double_compression"]
    double = by_name(run(image_jpeg, write(tmp_path, "d.jpg", recompress(jpeg_bytes(img, 60), 90)))[0])
    double = double["double_compression"]
    assert single["value"] is False and single["raw_score"] < single["threshold"]
    assert double["value"] is True and double["raw_score"] > 5 * double["threshold"]
    assert double["score"] > single["score"]
    assert double["first_steps"], "the likely earlier steps are reported"


# ---------------------------------------------------------------- ELA


def test_ela_shows_a_spliced_region(tmp_path):
    background = synthetic(50, 512)
    for _ in range(2):  # compressed twice at 90: settles
        background = Image.open(io.BytesIO(jpeg_bytes(background, 90))).convert("RGB")
    patch = synthetic(51, 128)  # never compressed
    spliced = background.copy()
    spliced.paste(patch, (256, 128))
    path = write(tmp_path, "spliced.jpg", jpeg_bytes(spliced, 90))
    result, ctx = run(image_ela, path)
    check_findings(result)
    found = by_name(result)
    figure, layer = (
        next(a for a in ctx.artifacts if f"sha256:{a.sha256}" == found[n]["artifact"])
        for n in ("ela_image", "ela_overlay")
    )
    assert found["ela_overlay"]["overlay"] is True and found["ela_overlay"]["class"] == "visual"
    with Image.open(io.BytesIO(figure.data)) as court:
        assert court.format == "PNG" and court.width == 1120  # the labelled figure, not the image's size
    with Image.open(io.BytesIO(layer.data)) as overlay:
        assert overlay.mode == "RGBA" and overlay.size == (512, 512)  # the image's own size
        ela = np.asarray(overlay.getchannel("A"), dtype=np.float64)  # opacity = level x amplification
    with Image.open(path) as decoded:
        diff, level = image_ela.error_levels(decoded, 90)
    assert np.array_equal(ela, np.minimum(255, level.astype(np.int64) * 15)), "opacity is the amplified level"
    luma = np.asarray(diff.convert("L"), dtype=np.float64)  # the channels' difference, weighted as luma
    inside = luma[128 + 8 : 256 - 8, 256 + 8 : 384 - 8].mean()
    mask = np.ones_like(luma, dtype=bool)
    mask[120:264, 248:392] = False
    outside = luma[mask].mean()
    assert inside > 2 * outside, (inside, outside)
    x, y, w, h = found["ela_peak_region"]["region"]
    assert 256 - w <= x < 384 and 128 - h <= y < 256, "the brightest cell lies in the pasted patch"
    assert found["ela_max_level"]["value"] >= found["ela_p99_level"]["value"] >= 0
    assert found["ela_mean_level"]["value"] > 0
    assert not any(c in a.data[:200] for a in (figure, layer) for c in (b"tIME", b"tEXt", b"iTXt"))


def test_ela_parameters(tmp_path):
    path = write(tmp_path, "p.png", (buf := io.BytesIO(), synthetic(52, 96).save(buf, "PNG"))[0].getvalue())
    low, _ = run(image_ela, path, {"quality": 50, "amplification": 5})
    high, _ = run(image_ela, path, {"quality": 98})
    assert by_name(low)["ela_mean_level"]["value"] > by_name(high)["ela_mean_level"]["value"]
    assert by_name(low)["ela_image"]["quality"] == 50
    with pytest.raises(ValueError):
        validate_parameters(image_ela.PARAMETERS, {"quality": 0})


# ---------------------------------------------------------------- determinism and failures


def test_same_file_twice_gives_identical_results(tmp_path):
    original = synthetic(60, 320, 240)
    exif = camera_exif()
    data = jpeg_bytes(
        original, 88, exif=exif_with_thumbnail(exif, jpeg_bytes(original.resize((160, 120)), 80)), xmp=XMP
    )
    path = write(tmp_path, "same.jpg", data)
    for module in IMAGE_MODULES:
        first, ctx1 = run(module, path)
        second, ctx2 = run(module, path)
        check_findings(first)
        assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True), module.NAME
        assert [(a.name, a.media_type, a.data) for a in ctx1.artifacts] == [
            (a.name, a.media_type, a.data) for a in ctx2.artifacts
        ]


def _failures(tmp_path):
    good = jpeg_bytes(synthetic(70, 256), 85)
    return {
        "empty": (b"", "empty"),
        "corrupt": (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "not a readable"),
        "fake_jpeg_header": (b"\xff\xd8\xff\xe0" + b"\x00" * 300, ""),
        "truncated_jpeg": (good[: len(good) * 2 // 3], "truncated"),
        "bomb_png": (png_declaring(100_000, 100_000), "decompression-bomb"),
        "just_over_limit_png": (png_declaring(10_000, 8_001), "decompression-bomb"),
        "truncated_png": (png_declaring(300, 300), "truncated"),
    }


@pytest.mark.parametrize("module", IMAGE_MODULES, ids=lambda m: m.NAME)
def test_bad_inputs_fail_with_a_plain_reason(tmp_path, module):
    for name, (data, words) in _failures(tmp_path).items():
        path = write(tmp_path, f"{name}.bin", data)
        with pytest.raises(AnalysisError) as caught:
            run(module, path)
        reason = str(caught.value)
        assert reason and "Traceback" not in reason and "<_io" not in reason, (name, reason)
        if module is image_jpeg and name in ("corrupt", "bomb_png", "just_over_limit_png", "truncated_png"):
            assert "not a JPEG" in reason, (name, reason)  # the marker walk refuses before decoding
        else:
            assert words in reason, (name, reason)


def test_the_pixel_limit_is_stated_and_enforced():
    assert Image.MAX_IMAGE_PIXELS == _imageio.MAX_PIXELS
    with pytest.raises(AnalysisError, match="decompression-bomb guard"):
        _imageio.decode(png_declaring(_imageio.MAX_PIXELS // 1000 + 1, 1000))
    for module in IMAGE_MODULES:
        assert f"{_imageio.MAX_PIXELS:,}" in " ".join(module.LIMITS)
