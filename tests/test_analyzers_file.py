"""The file analyzers (pure functions): hashes, type, entropy, structure and archive.

Every test makes its own files in tmp_path (random bytes, text, images drawn
with Pillow, archives written with the standard library and py7zr, bombs and
damaged archives crafted byte by byte); nothing is downloaded and no database
is touched. Hashes are checked against coreutils and published test vectors.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import math
import os
import random
import re
import shutil
import struct
import subprocess
import tarfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import blake3
import pydeep
import pytest
import tlsh
from PIL import Image

from forensics import analyzers
from forensics.analyzers import (
    _filezip,
    _rates,
    file_archive,
    file_entropy,
    file_hashes,
    file_structure,
    file_type,
)
from forensics.analyzers.base import FINDING_CLASSES, AnalysisContext, AnalysisError, validate_parameters
from forensics.evaluation import tables

FILE_MODULES = (file_hashes, file_type, file_entropy, file_structure, file_archive)
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


# ---------------------------------------------------------------- helpers


def run(
    module, path: Path, params: dict | None = None, name: str | None = None
) -> tuple[dict, AnalysisContext]:
    """Call analyze() as the pipeline does, and check the result's shape on the way."""
    params = validate_parameters(module.PARAMETERS, params)
    ctx = AnalysisContext(original_name=path.name if name is None else name, size=path.stat().st_size)
    out = module.analyze(str(path), params, ctx)
    assert set(out) == {"findings", "libraries"}
    json.dumps(out, allow_nan=False)  # the result is signed as JSON: no NaN, no odd types
    refs = {f"sha256:{a.sha256}" for a in ctx.artifacts}
    for f in out["findings"]:
        assert f["class"] in FINDING_CLASSES, f
        assert SNAKE.match(f["name"]), f
        assert isinstance(f["note"], str)
        if "artifact" in f:
            assert f["artifact"] in refs
        if f["class"] == "visual":
            assert "artifact" in f
    return out, ctx


def one(out: dict, name: str) -> dict:
    found = [f for f in out["findings"] if f["name"] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def every(out: dict, name: str) -> list[dict]:
    return [f for f in out["findings"] if f["name"] == name]


def jpeg_bytes(color="red", size=(64, 48), quality=90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def with_exif_thumbnail(main: bytes, thumb: bytes) -> bytes:
    """Insert an APP1 segment holding a whole JPEG (as EXIF thumbnails are) after SOI."""
    payload = b"Exif\x00\x00" + thumb
    return main[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + main[2:]


def image_bytes(fmt: str, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "green").save(buf, fmt)
    return buf.getvalue()


def zip_bytes(entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def text_corpus(seed: int, words: int) -> bytes:
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(500)
    ]
    return " ".join(rng.choice(vocab) for _ in range(words)).encode()


# ---------------------------------------------------------------- the contract


@pytest.mark.parametrize("module", FILE_MODULES, ids=lambda m: m.NAME)
def test_module_constants_follow_the_contract(module):
    assert module.NAME.startswith("file.")
    assert re.fullmatch(r"\d+\.\d+\.\d+", module.VERSION)
    assert module.ACCEPTS and all(isinstance(a, str) for a in module.ACCEPTS)
    assert isinstance(module.DESCRIPTION, str) and module.DESCRIPTION
    assert module.LIMITS and all(isinstance(x, str) and x for x in module.LIMITS)
    validate_parameters(module.PARAMETERS, {})  # every parameter has a default
    assert module.__name__.rsplit(".", 1)[1] in analyzers.MODULES


def test_archive_accepts_archives_and_the_others_accept_everything():
    assert analyzers.accepts(file_archive, "application/zip")
    assert analyzers.accepts(file_archive, "application/x-7z-compressed")
    assert analyzers.accepts(file_archive, "application/x-tar")
    assert analyzers.accepts(file_archive, "application/gzip")
    assert not analyzers.accepts(file_archive, "image/jpeg")
    for module in (file_hashes, file_type, file_entropy, file_structure):
        assert analyzers.accepts(module, "application/octet-stream")


def test_same_file_twice_gives_identical_results_and_artifacts(tmp_path):
    jpeg = with_exif_thumbnail(jpeg_bytes(), jpeg_bytes("blue", (16, 16)))
    path = write(tmp_path, "photo.jpg", jpeg + zip_bytes({"a.txt": b"hello " * 50}) + os.urandom(70000))
    for module in (file_hashes, file_type, file_entropy, file_structure):
        first, ctx1 = run(module, path)
        second, ctx2 = run(module, path)
        assert first == second, module.NAME
        assert [(a.name, a.media_type, a.data) for a in ctx1.artifacts] == [
            (a.name, a.media_type, a.data) for a in ctx2.artifacts
        ]
    zpath = write(tmp_path, "a.zip", zip_bytes({"x.txt": b"x" * 5000, "y/z.bin": os.urandom(300)}))
    assert run(file_archive, zpath)[0] == run(file_archive, zpath)[0]


# ---------------------------------------------------------------- file.hashes


def test_hashes_match_hashlib_and_coreutils(tmp_path):
    data = os.urandom((4 << 20) + 12345)  # more than one read chunk
    path = write(tmp_path, "random.bin", data)
    out, _ = run(file_hashes, path)
    assert one(out, "size")["value"] == len(data)
    assert one(out, "md5")["value"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert one(out, "sha1")["value"] == hashlib.sha1(data, usedforsecurity=False).hexdigest()
    assert one(out, "sha256")["value"] == hashlib.sha256(data).hexdigest()
    for tool, name in (("md5sum", "md5"), ("sha1sum", "sha1"), ("sha256sum", "sha256")):
        if shutil.which(tool):
            printed = subprocess.run([tool, str(path)], capture_output=True, check=True, text=True).stdout
            assert printed.split()[0] == one(out, name)["value"]
    assert one(out, "blake3")["value"] == blake3.blake3(data).hexdigest()
    assert one(out, "tlsh")["value"] == tlsh.hash(data)
    assert one(out, "ssdeep")["value"] == pydeep.hash_buf(data).decode()


def test_hashes_match_published_vectors(tmp_path):
    # BLAKE3's official vectors for "" and "abc".
    out, _ = run(file_hashes, write(tmp_path, "empty", b""))
    assert one(out, "blake3")["value"] == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert one(out, "sha256")["value"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert one(out, "tlsh")["value"] is None
    out, _ = run(file_hashes, write(tmp_path, "abc", b"abc"))
    assert one(out, "blake3")["value"] == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    assert one(out, "md5")["value"] == "900150983cd24fb0d6963f7d28e17f72"
    # ssdeep: the examples in python-ssdeep's README (libfuzzy output).
    text = b"Also called fuzzy hashes, Ctph can match inputs that have homologies."
    out, _ = run(file_hashes, write(tmp_path, "ctph.txt", text))
    assert one(out, "ssdeep")["value"] == "3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C"
    other = b"Also called fuzzy hashes, CTPH can match inputs that have homologies."
    out2, _ = run(file_hashes, write(tmp_path, "ctph2.txt", other))
    assert one(out2, "ssdeep")["value"] == "3:AXGBicFlIHBGcL6wCrFQEv:AXGH6xLsr2C"
    assert pydeep.compare(one(out, "ssdeep")["value"].encode(), one(out2, "ssdeep")["value"].encode()) == 22
    # TLSH: the value in ThreatExchange's tests for this sentence.
    sentence = (
        b"A minimum string length must be 256 bytes! That's so much text this means it's not super "
        b"useful for finding short text!"
    )
    out, _ = run(file_hashes, write(tmp_path, "tlsh.txt", sentence))
    assert (
        one(out, "tlsh")["value"]
        == "T1DFB092A1724AC2C0D3CA48452291EA04A5B75EB903A6E7577A54118FFA8148E98F9426"
    )


def test_fuzzy_hashes_find_similar_files_and_not_unrelated_ones(tmp_path):
    base = text_corpus(1, 40000)
    edited = (
        base[:100000]
        + b" an inserted sentence that was not there before "
        + base[100000:150000]
        + base[160000:]
    )
    unrelated = text_corpus(2, 40000)
    h = {}
    for label, data in (("base", base), ("edited", edited), ("unrelated", unrelated)):
        out, _ = run(file_hashes, write(tmp_path, f"{label}.txt", data))
        h[label] = (one(out, "ssdeep")["value"].encode(), one(out, "tlsh")["value"])
    assert pydeep.compare(h["base"][0], h["edited"][0]) >= 60
    assert pydeep.compare(h["base"][0], h["unrelated"][0]) == 0
    assert tlsh.diff(h["base"][1], h["edited"][1]) < 30
    assert tlsh.diff(h["base"][1], h["unrelated"][1]) > tlsh.diff(h["base"][1], h["edited"][1])


def test_tlsh_not_computable_is_a_fact_with_a_reason(tmp_path):
    out, _ = run(file_hashes, write(tmp_path, "short", b"x" * 49))
    assert one(out, "tlsh")["value"] is None and "fewer than 50 bytes" in one(out, "tlsh")["note"]
    out, _ = run(file_hashes, write(tmp_path, "flat", b"a" * 1000))
    assert one(out, "tlsh")["value"] is None and "variety" in one(out, "tlsh")["note"]
    assert one(out, "tlsh")["class"] == "fact"


def test_fuzzy_hashes_skipped_above_the_size_limit(tmp_path):
    path = write(tmp_path, "big.bin", os.urandom((1 << 20) + 1))
    out, _ = run(file_hashes, path, {"fuzzy_max_mib": 1})
    assert one(out, "ssdeep")["value"] is None and "fuzzy_max_mib" in one(out, "ssdeep")["note"]
    assert one(out, "sha256")["value"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_hashes_record_library_versions(tmp_path):
    out, _ = run(file_hashes, write(tmp_path, "a", b"abc"))
    assert set(out["libraries"]) == {"blake3", "py-tlsh", "pydeep2"}


# ---------------------------------------------------------------- file.type


@pytest.mark.parametrize(
    ("content", "name", "mismatch"),
    [
        ("jpeg", "photo.JPG", False),
        ("png", "photo.jpg", True),
        ("png", "photo.png", False),
        ("gif", "anim.gif", False),
        ("pdf", "report.pdf", False),
        ("pdf", "report.docx", True),
        ("zip_docx", "letter.docx", False),
        ("zip", "archive.zip", False),
        ("csv", "table.txt", False),
        ("csv", "table.csv", False),
        ("text", "notes.jpg", True),
        ("random", "disk.dd", False),
        ("random", "photo.jpeg", True),
        ("png", "noextension", None),
        ("png", "strange.qqq", None),
        ("empty", "empty.jpg", None),
        ("tgz", r"C:\evidence\backup.tar.gz", False),
    ],
)
def test_type_from_content_against_extension(tmp_path, content, name, mismatch):
    data = {
        "jpeg": jpeg_bytes(),
        "png": image_bytes("PNG"),
        "gif": image_bytes("GIF"),
        "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "zip_docx": zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"}),
        "zip": zip_bytes({"a.txt": b"hello"}),
        "csv": b"a,b,c\n1,2,3\n4,5,6\n7,8,9\n",
        "text": b"just some plain words in a text file\n" * 10,
        "random": os.urandom(4096),
        "empty": b"",
        "tgz": gzip.compress(b"x" * 1000),
    }[content]
    out, _ = run(file_type, write(tmp_path, "evidence.bin", data), name=name)
    assert one(out, "type_extension_mismatch")["value"] is mismatch
    media = one(out, "content_media_type")["value"]
    if mismatch:
        assert media in one(out, "type_extension_mismatch")["note"]
    assert all(f["class"] == "fact" for f in out["findings"])
    assert set(out["libraries"]) == {"python-magic", "libmagic"}


def test_type_reports_extensions_and_hidden_characters(tmp_path):
    path = write(tmp_path, "x", image_bytes("PNG"))
    out, _ = run(file_type, path, name="archive.tar.gz")
    assert one(out, "extension")["value"] == ".gz"
    assert one(out, "extension")["all_extensions"] == [".tar", ".gz"]
    out, _ = run(file_type, path, name=".bashrc")
    assert one(out, "extension")["value"] is None
    out, _ = run(file_type, path, name="invoice\u202egnp.exe")
    assert one(out, "name_hidden_characters")["value"] == ["U+202E"]
    assert one(out, "type_extension_mismatch")["value"] is True
    assert one(out, "content_media_type")["value"] == "image/png"
    assert "PNG image data" in one(out, "content_description")["value"]


# ---------------------------------------------------------------- file.entropy


def shannon(data: bytes) -> float:
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def test_entropy_overall_and_per_block_match_an_independent_computation(tmp_path):
    block = 4096
    rng = random.Random(7)
    data = bytes(3 * block) + rng.randbytes(2 * block) + b"abcd" * block + b"tail"
    out, ctx = run(file_entropy, write(tmp_path, "mix.bin", data), {"block_size": block})
    assert one(out, "entropy_overall")["value"] == round(shannon(data), 4)
    assert one(out, "entropy_overall")["class"] == "measurement"
    blocks = one(out, "entropy_blocks")
    assert blocks["value"]["block_size"] == block
    assert blocks["value"]["blocks"] == math.ceil(len(data) / block)
    csv = next(a for a in ctx.artifacts if a.name == "entropy_blocks.csv").data.decode().splitlines()
    assert csv[0] == "offset,length,entropy_bits_per_byte"
    for line in csv[1:]:
        offset, length, value = line.split(",")
        chunk = data[int(offset) : int(offset) + int(length)]
        assert len(chunk) == int(length)
        assert float(value) == pytest.approx(round(shannon(chunk), 4), abs=1e-9)
    assert one(out, "entropy_min_block")["value"] == 0.0
    assert one(out, "entropy_min_block")["offset"] == 0
    high = one(out, "entropy_max_block")
    assert high["offset"] in (3 * block, 4 * block) and high["value"] > 7.9
    assert high["length"] == block


def test_entropy_plot_is_a_deterministic_png_without_metadata(tmp_path):
    data = bytes(200000) + os.urandom(300000) + b"text " * 40000
    out, ctx = run(file_entropy, write(tmp_path, "a.bin", data))
    plot = one(out, "entropy_plot")
    assert plot["class"] == "visual"
    png = next(a for a in ctx.artifacts if plot["artifact"] == f"sha256:{a.sha256}")
    assert png.media_type == "image/png"
    image = Image.open(io.BytesIO(png.data))
    assert image.format == "PNG" and image.width > 800
    chunks, pos = [], 8
    while pos < len(png.data):
        length, kind = struct.unpack(">I4s", png.data[pos : pos + 8])
        chunks.append(kind)
        pos += 12 + length
    assert set(chunks) <= {b"IHDR", b"pHYs", b"IDAT", b"IEND"}  # no text, no time
    _, ctx2 = run(file_entropy, write(tmp_path, "b.bin", data))
    assert [a.data for a in ctx2.artifacts] == [a.data for a in ctx.artifacts]


def test_entropy_raises_the_block_size_to_bound_the_result(tmp_path, monkeypatch):
    monkeypatch.setattr(file_entropy, "MAX_BLOCKS", 8)
    out, _ = run(file_entropy, write(tmp_path, "a.bin", os.urandom(100000)), {"block_size": 1024})
    blocks = one(out, "entropy_blocks")
    assert blocks["value"]["block_size"] == 16384 and blocks["value"]["blocks"] == 7
    assert "raised from 1024" in blocks["note"]


def test_entropy_of_an_empty_file_fails_with_a_reason(tmp_path):
    with pytest.raises(AnalysisError, match="empty"):
        run(file_entropy, write(tmp_path, "empty", b""))


def test_entropy_parameters_are_bounded():
    with pytest.raises(ValueError, match="block_size"):
        validate_parameters(file_entropy.PARAMETERS, {"block_size": 10})
    with pytest.raises(ValueError, match="block_size"):
        validate_parameters(file_entropy.PARAMETERS, {"block_size": 1 << 30})


# ---------------------------------------------------------------- file.structure


def test_zip_appended_to_a_jpeg_is_found_at_the_jpeg_real_end(tmp_path):
    thumb = jpeg_bytes("blue", (16, 16))
    jpeg = with_exif_thumbnail(jpeg_bytes(), thumb)
    # The ZIP stores a JPEG uncompressed, so the file's last FFD9 is inside the ZIP.
    payload = zip_bytes({"secret.txt": b"meet at noon " * 40, "pic.jpg": thumb}, method=zipfile.ZIP_STORED)
    data = jpeg + payload
    assert data.rfind(b"\xff\xd9") + 2 != len(jpeg)
    out, _ = run(file_structure, write(tmp_path, "holiday.jpg", data))
    assert one(out, "container_format")["value"] == "jpeg"
    end = one(out, "format_end")
    assert end["value"] == len(jpeg) and end["scans"] == 1
    appended = one(out, "appended_data")
    assert appended["value"] == len(payload)
    assert appended["offset"] == len(jpeg)
    assert appended["starts_with"] == "zip" and appended["padding_only"] is False
    assert one(out, "zip_archive")["value"] == {
        "start": len(jpeg),
        "end": len(data),
        "entries": 2,
        "zip64": False,
    }
    hits = {(f["value"], f["offset"]) for f in every(out, "embedded_signature")}
    assert ("jpeg", jpeg.index(thumb)) in hits  # the EXIF thumbnail
    assert ("zip", len(jpeg)) in hits
    assert ("jpeg", len(jpeg) + payload.index(thumb)) in hits
    assert all(f["offset"] != 0 for f in every(out, "embedded_signature"))


@pytest.mark.parametrize(
    "options",
    [{"progressive": True}, {"restart_marker_blocks": 4}, {"progressive": True, "restart_marker_rows": 1}],
    ids=["progressive", "restart-markers", "progressive-restarts"],
)
def test_jpeg_end_is_found_through_many_scans_and_restart_markers(tmp_path, options):
    pixels = random.Random(3).randbytes(120 * 160 * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", (160, 120), pixels).save(buf, "JPEG", **options)
    jpeg = buf.getvalue()
    out, _ = run(file_structure, write(tmp_path, "a.jpg", jpeg + b"appended!"))
    assert one(out, "format_end")["value"] == len(jpeg)
    assert one(out, "format_end")["scans"] == (1 if "progressive" not in options else jpeg.count(b"\xff\xda"))
    assert one(out, "appended_data")["value"] == 9


def test_clean_images_have_no_appended_data(tmp_path):
    for fmt in ("JPEG", "PNG", "GIF"):
        data = image_bytes(fmt)
        out, _ = run(file_structure, write(tmp_path, f"a.{fmt.lower()}", data))
        assert one(out, "container_format")["value"] == fmt.lower()
        assert one(out, "format_end")["value"] == len(data)
        assert one(out, "appended_data")["value"] == 0


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_data_after_png_iend_and_gif_trailer(tmp_path, fmt):
    image = image_bytes(fmt, size=(300, 200))
    extra = b"\x00" * 10 + b"hidden text after the image"
    out, _ = run(file_structure, write(tmp_path, "a.img", image + extra))
    assert one(out, "format_end")["value"] == len(image)
    assert one(out, "appended_data")["value"] == len(extra)
    assert one(out, "appended_data")["padding_only"] is False


def test_truncated_images_are_reported_not_guessed(tmp_path):
    jpeg = jpeg_bytes(size=(200, 200))
    out, _ = run(file_structure, write(tmp_path, "cut.jpg", jpeg[: len(jpeg) // 2]))
    assert one(out, "format_end")["value"] is None
    assert "truncated" in one(out, "format_error")["value"]
    assert not every(out, "appended_data")
    png = image_bytes("PNG")
    out, _ = run(file_structure, write(tmp_path, "cut.png", png[:-20]))
    assert "truncated" in one(out, "format_error")["value"]


def test_pdf_incremental_updates_and_trailing_data(tmp_path):
    first = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    update = b"2 0 obj\n<< /Changed true >>\nendobj\ntrailer\n<< /Prev 0 >>\n%%EOF\r\n"
    out, _ = run(file_structure, write(tmp_path, "a.pdf", first + update + b"\n\n"))
    assert one(out, "container_format")["value"] == "pdf"
    assert one(out, "pdf_eof_markers")["value"] == 2
    assert one(out, "format_end")["value"] == len(first + update)
    assert one(out, "appended_data")["padding_only"] is True
    secret = zip_bytes({"x.txt": b"payload"})
    out, _ = run(file_structure, write(tmp_path, "b.pdf", first + secret))
    assert one(out, "appended_data")["value"] == len(secret)
    assert one(out, "appended_data")["starts_with"] == "zip"
    out, _ = run(file_structure, write(tmp_path, "c.pdf", first[:-7]))
    assert "no %%EOF" in one(out, "format_error")["value"]


def test_zip_with_prepended_and_appended_data(tmp_path):
    archive = zip_bytes({"a.txt": b"a" * 100, "b.txt": b"b" * 100})
    prefix, suffix = b"\x7fjunk before the archive" * 10, b"and after"
    out, _ = run(file_structure, write(tmp_path, "sfx.bin", prefix + archive + suffix))
    # The archive does not end the file and nothing known starts it: not the container.
    assert one(out, "container_format")["value"] is None
    assert one(out, "zip_archive")["value"]["start"] == len(prefix)
    out, _ = run(file_structure, write(tmp_path, "sfx2.bin", prefix + archive))
    assert one(out, "container_format")["value"] == "zip"
    assert one(out, "prepended_data")["value"] == len(prefix)
    out, _ = run(file_structure, write(tmp_path, "z.zip", archive + suffix))
    assert one(out, "format_end")["value"] == len(archive)
    assert one(out, "appended_data")["value"] == len(suffix)
    # The archive's own local headers are not listed as embedded files.
    assert not [f for f in every(out, "embedded_signature") if f["value"] == "zip"]


def test_signatures_are_found_across_chunk_boundaries_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setattr(file_structure, "CHUNK", 16384)
    png = image_bytes("PNG")
    gz = gzip.compress(b"hello world" * 10, mtime=0)
    elf = b"\x7fELF\x02\x01\x01" + bytes(57)
    data = bytearray(16384 * 6)
    placed = {}
    for offset, blob, key in (
        (16384 - 3, png, "png"),
        (2 * 16384 - file_structure.LOOKAHEAD - 1, gz, "gzip"),
        (3 * 16384 - file_structure.LOOKAHEAD + 2, elf, "elf"),
        (5 * 16384 - 1, b"7z\xbc\xaf\x27\x1c\x00\x04", "7z"),
        (len(data) - 8, b"\xfd7zXZ\x00\x00\x01", "xz"),
    ):
        data[offset : offset + len(blob)] = blob
        placed[offset] = key
    out, _ = run(file_structure, write(tmp_path, "zeros.bin", bytes(data)))
    found = {f["offset"]: f["value"] for f in every(out, "embedded_signature")}
    assert found == placed
    assert one(out, "embedded_signature_counts")["value"] == {v: 1 for v in placed.values()}


def test_signature_checks_reject_bare_magic_numbers(tmp_path):
    data = b"MZ" + bytes(100) + b"PK\x03\x04" + bytes(40) + b"\x89PNG\r\n\x1a\n" + bytes(20) + b"GIF8xx"
    out, _ = run(file_structure, write(tmp_path, "x.bin", b"\x00" + data))
    assert every(out, "embedded_signature") == []
    pe = bytearray(b"MZ" + bytes(200))
    pe[0x3C:0x40] = struct.pack("<I", 0x80)
    pe[0x80:0x84] = b"PE\0\0"
    out, _ = run(file_structure, write(tmp_path, "y.bin", b"\x00" * 7 + bytes(pe)))
    assert [(f["value"], f["offset"]) for f in every(out, "embedded_signature")] == [("pe", 7)]
    assert "chance" in every(out, "embedded_signature")[0]["note"]


def test_listing_is_capped_but_everything_is_counted(tmp_path):
    png = image_bytes("PNG")
    data = b"\x00".join([png] * 31)
    out, _ = run(file_structure, write(tmp_path, "many.bin", b"\x01" + data), {"max_signatures": 10})
    assert len(every(out, "embedded_signature")) == 10
    counts = one(out, "embedded_signature_counts")
    assert counts["value"]["png"] == 31 and counts["listed"] == 10
    assert "first 10" in counts["note"]


def test_random_data_has_no_container_and_no_appended_data(tmp_path):
    out, _ = run(file_structure, write(tmp_path, "r.bin", b"\x00" + os.urandom(1 << 20)))
    assert one(out, "container_format")["value"] is None
    assert not every(out, "appended_data")
    assert not every(out, "format_end")


# ---------------------------------------------------------------- file.archive


def entries(out: dict) -> list[dict]:
    return [f["value"] for f in every(out, "archive_entry")]


def test_zip_listing_matches_zipfile(tmp_path):
    files = {
        "docs/readme.txt": b"read me " * 300,
        "docs/": b"",
        "data.bin": os.urandom(5000),
        "ünïcode name.txt": b"x",
    }
    path = write(tmp_path, "a.zip", zip_bytes(files))
    out, _ = run(file_archive, path)
    assert one(out, "archive_format")["value"] == "zip"
    listed = entries(out)
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    assert [e["name"] for e in listed] == [i.filename for i in infos]
    for e, i in zip(listed, infos, strict=True):
        assert e["size"] == i.file_size
        assert e["compressed_size"] == i.compress_size
        assert e["crc32"] == f"{i.CRC:08x}"
        y, mo, d, h, mi, sec = i.date_time
        assert e["modified"] == f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}"
        assert e["is_dir"] == i.is_dir()
    assert one(out, "entry_count")["value"] == 4
    assert one(out, "declared_total_size")["value"] == sum(i.file_size for i in infos)
    assert one(out, "possible_decompression_bomb")["value"] is False
    assert one(out, "possible_decompression_bomb")["class"] == "indicator"


def test_a_real_zip_bomb_is_flagged_without_decompressing_it(tmp_path):
    path = tmp_path / "bomb.zip"
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as w:
            for _ in range(64):  # 64 MiB of zeros, streamed
                w.write(zeros)
    assert path.stat().st_size < 200_000
    started = time.perf_counter()
    out, _ = run(file_archive, path)
    assert time.perf_counter() - started < 5  # reading the directory only: milliseconds
    bomb = one(out, "possible_decompression_bomb")
    assert bomb["value"] is True and bomb["score"] == 1.0
    assert any("ratio" in r for r in bomb["reasons"])
    assert one(out, "compression_ratio")["value"] > 300
    assert one(out, "max_entry_compression_ratio")["entry"] == "zeros.bin"


def patch_central_directory(data: bytes, index: int, **fields) -> bytes:
    """Rewrite fields of the index-th central directory entry (crafted bombs and damage)."""
    offsets = {
        "crc32": (16, "<I"),
        "compressed_size": (20, "<I"),
        "size": (24, "<I"),
        "local_header": (42, "<I"),
    }
    pos = -1
    for _ in range(index + 1):
        pos = data.index(_filezip.CD_SIG, pos + 1)
    out = bytearray(data)
    for name, value in fields.items():
        at, fmt = offsets[name]
        struct.pack_into(fmt, out, pos + at, value)
    return bytes(out)


def test_declared_sizes_over_the_limit_are_flagged(tmp_path):
    data = zip_bytes({f"part{i}.bin": b"x" * 100 for i in range(4)})
    for i in range(4):
        data = patch_central_directory(data, i, size=0xFFFFFFFE)  # ~4 GiB each, as declared
    out, _ = run(file_archive, write(tmp_path, "crafted.zip", data))
    assert one(out, "declared_total_size")["value"] == 4 * 0xFFFFFFFE
    bomb = one(out, "possible_decompression_bomb")
    assert bomb["value"] is True
    assert any("GiB" in r for r in bomb["reasons"])
    out, _ = run(file_archive, write(tmp_path, "crafted2.zip", data), {"size_threshold_gib": 100.0})
    assert not any("GiB" in r for r in one(out, "possible_decompression_bomb")["reasons"])


def test_overlapping_entries_are_flagged(tmp_path):
    data = zip_bytes({"a.bin": os.urandom(2000), "b.bin": os.urandom(2000), "c.bin": os.urandom(2000)})
    data = patch_central_directory(data, 1, local_header=0)
    data = patch_central_directory(data, 2, local_header=0)
    out, _ = run(file_archive, write(tmp_path, "overlap.zip", data))
    assert one(out, "overlapping_entries")["value"] == 2
    assert one(out, "possible_decompression_bomb")["value"] is True


def test_nested_archives_are_named_never_opened(tmp_path):
    layer = zip_bytes({"zeros.bin": bytes(1 << 16)})
    for _ in range(3):  # like 42.zip: each layer holds 16 copies of the one below
        layer = zip_bytes({f"{i:x}.zip": layer for i in range(16)})
    out, _ = run(file_archive, write(tmp_path, "42.zip", layer))
    assert one(out, "entry_count")["value"] == 16
    nested = one(out, "nested_archives")
    assert nested["value"] == 16 and nested["names"][0] == "0.zip"
    assert {e["name"] for e in entries(out)} == {f"{i:x}.zip" for i in range(16)}


def test_zip_comment_and_odd_names_are_kept_as_valid_text(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.comment = b"made by the suspect's tool"
        z.writestr("x" * 5000, b"long name")
    data = buf.getvalue()
    # Flag the entry's name as UTF-8 while its bytes are not valid UTF-8.
    bad = data.replace(b"x" * 5000, b"\xff\xfe" + b"x" * 4998)
    cd = bad.index(_filezip.CD_SIG)
    flags = struct.unpack_from("<H", bad, cd + 8)[0] | 0x800
    bad = bad[: cd + 8] + struct.pack("<H", flags) + bad[cd + 10 :]
    out, _ = run(file_archive, write(tmp_path, "c.zip", bad))
    assert one(out, "archive_comment")["value"] == "made by the suspect's tool"
    name = entries(out)[0]["name"]
    assert name.startswith("\\xff\\xfe") and name.endswith("...[cut]")


def test_unsafe_names_are_counted(tmp_path):
    data = zip_bytes({"../../etc/passwd": b"x", "/abs.txt": b"y", "ok/fine.txt": b"z", "bell\x07.txt": b"w"})
    out, _ = run(file_archive, write(tmp_path, "evil.zip", data))
    unsafe = one(out, "unsafe_entry_names")
    assert unsafe["value"] == 3
    assert "ok/fine.txt" not in unsafe["names"]


def test_listing_is_capped_and_totals_cover_all_entries(tmp_path):
    data = zip_bytes({f"f{i:03d}.txt": b"x" * i for i in range(50)})
    out, _ = run(file_archive, write(tmp_path, "many.zip", data), {"max_entries": 5})
    assert len(entries(out)) == 5
    assert one(out, "entry_count")["value"] == 50 and one(out, "entry_count")["listed"] == 5
    assert one(out, "declared_total_size")["value"] == sum(range(50))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d[:-10], "truncated"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d.replace(_filezip.CD_SIG, b"XX\x01\x02", 1), "central directory"),
        (
            lambda d: d[: d.rindex(_filezip.CD_SIG)] + b"XX" + d[d.rindex(_filezip.CD_SIG) + 2 :],
            "entry 2 of 2",
        ),
        (lambda d: d[:36] + b"\xff" * 4 + d[40:], None),  # damage inside the first entry's data
    ],
    ids=["end-record-cut", "half", "directory-gone", "second-entry-corrupt", "data-damaged"],
)
def test_damaged_zips_fail_with_a_plain_reason(tmp_path, damage, reason):
    data = zip_bytes({"a.txt": b"hello" * 100, "b.txt": b"world" * 100})
    damaged = damage(data)
    path = write(tmp_path, "bad.zip", damaged)
    if reason is None:  # damage in entry data only: the listing still works, nothing is decompressed
        out, _ = run(file_archive, path)
        assert one(out, "entry_count")["value"] == 2
        return
    with pytest.raises(AnalysisError, match=reason):
        run(file_archive, path)


def test_tar_listing_matches_tarfile_and_seeks_over_data(tmp_path):
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in (("dir/a.txt", b"a" * 1000), ("b.bin", os.urandom(3000)), ("ünï.txt", b"u")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o640
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/shadow"
        t.addfile(link)
    out, _ = run(file_archive, path)
    assert one(out, "archive_format")["value"] == "tar"
    listed = entries(out)
    with tarfile.open(path) as t:
        members = t.getmembers()
    assert [e["name"] for e in listed] == [m.name for m in members]
    assert [e["size"] for e in listed] == [m.size for m in members]
    assert listed[0]["modified"] == "2023-11-14T22:13:20Z" and listed[0]["mode"] == "0640"
    assert listed[3]["type"] == "symlink" and listed[3]["link"] == "../../etc/shadow"
    assert one(out, "unsafe_entry_names")["value"] == 1


def test_damaged_tars_fail_with_a_plain_reason(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name in ("a.bin", "b.bin"):
            info = tarfile.TarInfo(name)
            info.size = 5000
            t.addfile(info, io.BytesIO(os.urandom(5000)))
    data = buf.getvalue()
    with pytest.raises(AnalysisError, match="truncated"):
        run(file_archive, write(tmp_path, "cut.tar", data[:7000]))
    second = data.index(b"b.bin")
    corrupt = data[:second] + b"garbage!" + data[second + 8 :]
    with pytest.raises(AnalysisError, match="invalid"):
        run(file_archive, write(tmp_path, "bad.tar", corrupt))


def test_compressed_tar_stops_at_the_decompression_budget(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, size in (("small.txt", 10), ("zeros.img", 4 << 20), ("after.txt", 10)):
            info = tarfile.TarInfo(name)
            info.size = size
            t.addfile(info, io.BytesIO(bytes(size)))
    path = write(tmp_path, "a.tar.gz", buf.getvalue())
    out, _ = run(file_archive, path, {"max_decompressed_mib": 1})
    assert one(out, "archive_format")["value"] == "tar+gzip"
    assert [e["name"] for e in entries(out)] == ["small.txt", "zeros.img"]
    assert "max_decompressed_mib" in one(out, "listing_incomplete")["value"]
    assert one(out, "possible_decompression_bomb")["value"] is True  # 4 MiB from a few KiB
    out, _ = run(file_archive, path, {"max_decompressed_mib": 16})
    assert [e["name"] for e in entries(out)] == ["small.txt", "zeros.img", "after.txt"]
    assert not every(out, "listing_incomplete")
    with pytest.raises(AnalysisError, match="truncated or corrupt"):
        run(file_archive, write(tmp_path, "cut.tar.gz", buf.getvalue()[:-30]), {"max_decompressed_mib": 16})


@pytest.mark.parametrize("kind", ["bzip2", "xz"])
def test_tar_in_bzip2_and_xz(tmp_path, kind):
    mode = {"bzip2": "w:bz2", "xz": "w:xz"}[kind]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        info = tarfile.TarInfo("inside.txt")
        info.size = 11
        t.addfile(info, io.BytesIO(b"hello world"))
    out, _ = run(file_archive, write(tmp_path, "a.tar.x", buf.getvalue()))
    assert one(out, "archive_format")["value"] == f"tar+{kind}"
    assert entries(out)[0]["name"] == "inside.txt"


def test_single_compressed_streams_report_declared_sizes(tmp_path):
    payload = b"some log line\n" * 5000
    raw = io.BytesIO()
    with gzip.GzipFile(filename="app.log", mode="wb", fileobj=raw, mtime=1_600_000_000) as g:
        g.write(payload)
    out, _ = run(file_archive, write(tmp_path, "app.log.gz", raw.getvalue()))
    assert one(out, "archive_format")["value"] == "gzip"
    entry = entries(out)[0]
    assert entry == {
        "name": "app.log",
        "size": len(payload),
        "compressed_size": len(raw.getvalue()),
        "modified": "2020-09-13T12:26:40Z",
        "is_dir": False,
    }
    out, _ = run(file_archive, write(tmp_path, "a.xz", lzma.compress(payload)))
    assert entries(out)[0]["size"] == len(payload)
    out, _ = run(file_archive, write(tmp_path, "a.bz2", bz2.compress(payload)))
    assert entries(out)[0]["size"] is None


def test_7z_listing_and_damage(tmp_path):
    py7zr = pytest.importorskip("py7zr")
    path = tmp_path / "a.7z"
    with py7zr.SevenZipFile(path, "w") as z:
        z.writestr(b"first file " * 100, "docs/one.txt")
        z.writestr(os.urandom(2000), "two.bin")
        z.writestr(b"", "empty.txt")
    out, _ = run(file_archive, path)
    assert one(out, "archive_format")["value"] == "7z"
    listed = {e["name"]: e for e in entries(out)}
    assert listed["docs/one.txt"]["size"] == 1100
    assert listed["two.bin"]["size"] == 2000
    assert listed["docs/one.txt"]["crc32"] is not None
    assert one(out, "declared_total_size")["value"] == 3100
    assert "py7zr" in out["libraries"]
    data = path.read_bytes()
    with pytest.raises(AnalysisError, match="7z"):
        run(file_archive, write(tmp_path, "cut.7z", data[: len(data) - 20]))


def test_not_an_archive_or_empty_fails_with_a_reason(tmp_path):
    with pytest.raises(AnalysisError, match="not an archive"):
        run(file_archive, write(tmp_path, "r.bin", os.urandom(5000)))
    with pytest.raises(AnalysisError, match="empty"):
        run(file_archive, write(tmp_path, "e.zip", b""))


# ------------------------------------------------- measured rates of the bomb rule


def test_bomb_indicator_quotes_the_rates_measured_for_its_format(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", bytes(16 << 20))
    out, _ = run(file_archive, path)
    rates = one(out, "possible_decompression_bomb")["rates"]
    table = _rates.table("file.archive")
    row = next(
        r
        for r in table["indicators"]["possible_decompression_bomb"]["rows"]
        if r["condition"] == {"format": "zip"}
    )
    assert rates["measured"] is True and rates["condition"] == {"format": "zip"}
    assert rates["detected"] == row["detected"] and rates["detection_ci95"] == row["detection_ci95"]
    assert rates["false_alarm_ci95"] == row["false_alarm_ci95"] and len(rates["table_sha256"]) == 64
    # changed thresholds: the measured rates do not apply, and the finding says so
    out, _ = run(file_archive, path, {"ratio_threshold": 10.0})
    rates = one(out, "possible_decompression_bomb")["rates"]
    assert rates["measured"] is False and "default thresholds" in rates["note"]
    assert any("format zip" in line and "found" in line for line in file_archive.LIMITS)


@pytest.mark.slow
def test_quick_evaluation_reproduces_the_stored_figures():
    """The subset of forensics/evaluation/archive.py the suite reruns equals the table's "quick" block."""
    from forensics.evaluation import archive

    result = archive.evaluate(quick=True, jobs=1)
    stored = _rates.table("file.archive")["quick"]
    assert tables.differences(json.loads(json.dumps(result["indicators"])), stored) == []
