"""file.structure: where the file's format really ends, what follows it, and what is inside.

1. The container format is read from the first bytes. For JPEG, PNG, GIF,
   PDF and ZIP the structure is walked to its real end: JPEG segment by
   segment and through the scan data to the end-of-image marker (not the last
   FFD9, which may belong to an embedded thumbnail or to appended data); PNG
   chunk by chunk to IEND; GIF block by block to its trailer; PDF to the last
   %%EOF (counting incremental updates); ZIP from its end-of-central-directory
   record, which also says where the archive starts (bytes before it were
   prepended). Bytes after the end are reported as appended data.
2. One streaming pass looks for the signatures of known file formats anywhere
   in the file, and reports each with its offset. Each match is checked a
   little beyond the magic number (a PE's "MZ" must point to a "PE" header, a
   PNG signature must be followed by IHDR...) to cut down chance matches.
Memory stays flat: the file is read in 4 MiB chunks with a small overlap.
"""

from __future__ import annotations

import os
import re
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _filezip
from .base import AnalysisError, finding

NAME = "file.structure"
VERSION = "1.0.0"
TIME_LIMIT = 3600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["*/*"]
DESCRIPTION = (
    "Finds where the file's format ends (JPEG, PNG, GIF, PDF, ZIP) and reports data appended after "
    "it (such as a ZIP after a JPEG's end) or prepended before it, and lists the signatures of known "
    "formats found inside the file, with their offsets."
)
LIMITS = [
    "A signature match means the bytes at that offset look like the start of that format; it does not "
    "prove a complete embedded file is there. Short magic numbers (JPEG's 3 bytes, gzip's, a PE's 'MZ') "
    "are checked a few bytes further but can still occur by chance in compressed or random data.",
    "Formats inside compressed or encrypted data (a file inside a deflated ZIP entry, an encrypted "
    "volume) are invisible to a byte scan.",
    "The end of the format is found only for JPEG, PNG, GIF, PDF and ZIP; for other formats no "
    "appended data is reported.",
    "Appended data is not always hidden data: some cameras store extra images after a JPEG's end "
    "(multi-picture format, flagged when the JPEG declares it), and some writers pad PDFs after %%EOF.",
    "A PDF's %%EOF count shows how many times it was saved incrementally; linearized (web-optimised) "
    "PDFs have two by design, and a writer that rewrites the whole file leaves only one.",
    "Only the first max_signatures matches are listed; all are counted, but counting stops for a "
    "signature after 200,000 candidates (then the count is a lower bound, and the result says so).",
]
PARAMETERS = {
    "max_signatures": {
        "type": "int",
        "default": 200,
        "min": 0,
        "max": 10000,
        "help": "list at most this many embedded signatures (all are counted)",
    }
}

CHUNK = 4 << 20
LOOKAHEAD = 4200  # the furthest a check looks past a match (a PE header up to 4 KiB after "MZ")
BACK = 8  # the furthest a check looks before a match (an MP4 box size before "ftyp")
CANDIDATE_BUDGET = 200_000
MAX_EOCD_FIRST = 1024
MAX_EOCD_LAST = 64
MAX_ZIP_FINDINGS = 100
MAX_PRIMARY_ZIP_ENTRIES = 1_000_000


# --- signatures ------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    key: str  # stable identifier used in findings
    literal: bytes  # at least 2 bytes, matched exactly
    description: str
    check: Callable[[bytes, int], bool]  # (buffer, position of the literal) -> plausible?
    short: bool = False  # short magic number: chance matches are likely in random data
    start_delta: int = 0  # the format starts this many bytes before the literal


def _u16le(b: bytes, i: int) -> int | None:
    return struct.unpack_from("<H", b, i)[0] if 0 <= i and i + 2 <= len(b) else None


def _u32le(b: bytes, i: int) -> int | None:
    return struct.unpack_from("<I", b, i)[0] if 0 <= i and i + 4 <= len(b) else None


def _zip_local(b: bytes, p: int) -> bool:
    version, method, name_len = _u16le(b, p + 4), _u16le(b, p + 8), _u16le(b, p + 26)
    return version is not None and version < 100 and method in _filezip.METHODS and 0 < name_len <= 1024


def _pe(b: bytes, p: int) -> bool:
    e_lfanew = _u32le(b, p + 0x3C)
    return (
        e_lfanew is not None and 0x40 <= e_lfanew <= 4096 and b[p + e_lfanew : p + e_lfanew + 4] == b"PE\0\0"
    )


def _mp4(b: bytes, p: int) -> bool:
    if p < 4:
        return False
    box_size = struct.unpack_from(">I", b, p - 4)[0]
    brand = b[p + 4 : p + 8]
    return 8 <= box_size <= 512 and len(brand) == 4 and all(c in _BRAND_CHARS for c in brand)


_BRAND_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")
_RIFF_FORMS = {b"WAVE": "WAV audio", b"AVI ": "AVI video", b"WEBP": "WebP image", b"RMID": "MIDI"}

SIGNATURES = [
    Signature("zip", b"PK\x03\x04", "ZIP local file header", _zip_local),
    Signature(
        "pdf", b"%PDF-", "PDF header", lambda b, p: b[p + 5 : p + 6].isdigit() and b[p + 6 : p + 7] == b"."
    ),
    Signature(
        "png", b"\x89PNG\r\n\x1a\n", "PNG signature and header", lambda b, p: b[p + 12 : p + 16] == b"IHDR"
    ),
    Signature(
        "jpeg",
        b"\xff\xd8\xff",
        "JPEG start of image",
        lambda b, p: p + 3 < len(b) and 0xC0 <= b[p + 3] <= 0xFE,
        short=True,
    ),
    Signature("gif", b"GIF8", "GIF header", lambda b, p: b[p + 4 : p + 6] in (b"7a", b"9a")),
    Signature("7z", b"7z\xbc\xaf\x27\x1c", "7-Zip archive header", lambda b, p: b[p + 6 : p + 7] == b"\x00"),
    Signature(
        "rar",
        b"Rar!\x1a\x07",
        "RAR archive header",
        lambda b, p: b[p + 6 : p + 7] == b"\x00" or b[p + 6 : p + 8] == b"\x01\x00",
    ),
    Signature(
        "elf",
        b"\x7fELF",
        "ELF executable or library",
        lambda b, p: b[p + 4 : p + 5] in (b"\x01", b"\x02")
        and b[p + 5 : p + 6] in (b"\x01", b"\x02")
        and b[p + 6 : p + 7] == b"\x01",
    ),
    Signature("pe", b"MZ", "Windows PE executable (MZ header pointing to a PE header)", _pe, short=True),
    Signature(
        "gzip",
        b"\x1f\x8b\x08",
        "gzip stream",
        lambda b, p: p + 10 <= len(b)
        and b[p + 3] & 0xE0 == 0
        and b[p + 8] in (0, 2, 4)
        and b[p + 9] in _GZIP_OS,
        short=True,
    ),
    Signature(
        "bzip2",
        b"BZh",
        "bzip2 stream",
        lambda b, p: b[p + 3 : p + 4] in tuple(bytes([c]) for c in b"123456789")
        and b[p + 4 : p + 10] in (b"1AY&SY", b"\x17rE8P\x90"),
    ),
    Signature(
        "xz",
        b"\xfd7zXZ\x00",
        "xz stream",
        lambda b, p: b[p + 6 : p + 7] == b"\x00" and b[p + 7 : p + 8] in _XZ_CHECKS,
    ),
    Signature("sqlite", b"SQLite format 3\x00", "SQLite database", lambda b, p: True),
    Signature(
        "ole2",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "OLE2 compound file (old Office documents, Outlook .msg)",
        lambda b, p: True,
    ),
    Signature(
        "ogg",
        b"OggS\x00",
        "Ogg stream start (audio or video)",
        lambda b, p: p + 6 <= len(b) and b[p + 5] & 0x02 == 0x02 and b[p + 5] <= 7,
    ),
    Signature("mp4", b"ftyp", "ISO base media file (MP4, MOV, 3GP, HEIC)", _mp4, start_delta=4),
    Signature(
        "riff", b"RIFF", "RIFF container (WAV, AVI, WebP)", lambda b, p: b[p + 8 : p + 12] in _RIFF_FORMS
    ),
]
_GZIP_OS = frozenset([*range(14), 255])
_XZ_CHECKS = (b"\x00", b"\x01", b"\x04", b"\x0a")

# Markers collected for the format walkers, never listed as embedded files.
_EOCD = Signature("zip_end", _filezip.EOCD_SIG, "ZIP end of central directory", lambda b, p: True)
_PDF_EOF = Signature("pdf_eof", b"%%EOF", "PDF end-of-file marker", lambda b, p: True)
_ALL = [*SIGNATURES, _EOCD, _PDF_EOF]


def _pair(literal: bytes) -> int:
    return literal[0] | (literal[1] << 8)


class _Scanner:
    """Finds every signature in one streaming pass: numpy narrows candidates to matching
    2-byte prefixes and full literals, Python checks the few that remain."""

    def __init__(self, max_listed: int, exclude_offsets: frozenset[int] | set[int] = frozenset()):
        self.max_listed = max_listed
        self.exclude = exclude_offsets
        self.listed: list[tuple[int, Signature]] = []
        self.counts = {s.key: 0 for s in SIGNATURES}
        self.candidates = {s.key: 0 for s in _ALL}
        self.exhausted: set[str] = set()
        self.eocd_first: list[int] = []
        self.eocd_last: deque[int] = deque(maxlen=MAX_EOCD_LAST)
        self.eocd_count = 0
        self.pdf_eof_count = 0
        self.pdf_eof_last: int | None = None
        # bytes.translate maps each byte to 1 if it can start (or be second in) a signature:
        # a C-speed pass, where a numpy lookup is several times slower.
        self.first = bytes(int(any(s.literal[0] == c for s in _ALL)) for c in range(256))
        self.second = bytes(int(any(s.literal[1] == c for s in _ALL)) for c in range(256))
        self.pairs = np.zeros(65536, dtype=bool)
        for s in _ALL:
            self.pairs[_pair(s.literal)] = True
        self.by_pair: dict[int, list[Signature]] = {}
        for s in _ALL:
            self.by_pair.setdefault(_pair(s.literal), []).append(s)

    def scan(self, f) -> None:
        buf = b""
        base = 0  # file offset of buf[0]
        start = 0  # first position of buf not yet looked at
        eof = False
        while not eof:
            data = f.read(CHUNK)
            eof = not data
            buf = buf + data if buf else data
            limit = len(buf) if eof else len(buf) - LOOKAHEAD
            if limit > start:
                self._scan_buffer(buf, base, start, limit)
                keep = max(0, limit - BACK)
                buf = buf[keep:]
                base += keep
                start = limit - keep

    def _scan_buffer(self, buf: bytes, base: int, start: int, limit: int) -> None:
        a = np.frombuffer(buf, dtype=np.uint8)
        end = min(limit, len(a) - 1)
        if end <= start:
            return
        first = np.frombuffer(buf.translate(self.first), dtype=bool)
        second = np.frombuffer(buf.translate(self.second), dtype=bool)
        idx = np.flatnonzero(first[start:end] & second[start + 1 : end + 1]) + start
        if not idx.size:
            return
        keys = a[idx].astype(np.uint16) | (a[idx + 1].astype(np.uint16) << 8)
        keep = self.pairs[keys]
        idx, keys = idx[keep], keys[keep]
        hits: list[tuple[int, Signature]] = []
        for pair in np.unique(keys):
            at_pair = idx[keys == pair]
            for sig in self.by_pair[int(pair)]:
                if sig.key in self.exhausted:
                    continue
                cand = at_pair[at_pair + len(sig.literal) <= len(a)]
                for j in range(2, len(sig.literal)):
                    cand = cand[a[cand + j] == sig.literal[j]]
                if sig is _PDF_EOF:  # markers need no check: kept without a Python loop
                    self.pdf_eof_count += len(cand)
                    if len(cand):
                        self.pdf_eof_last = base + int(cand[-1])
                    continue
                if sig is _EOCD:
                    self.eocd_count += len(cand)
                    room = MAX_EOCD_FIRST - len(self.eocd_first)
                    self.eocd_first.extend(base + int(x) for x in cand[:room])
                    self.eocd_last.extend(base + int(x) for x in cand[max(room, len(cand) - MAX_EOCD_LAST) :])
                    continue
                for pos in cand.tolist():
                    self.candidates[sig.key] += 1
                    if self.candidates[sig.key] > CANDIDATE_BUDGET:
                        self.exhausted.add(sig.key)
                        break
                    offset = base + pos - sig.start_delta
                    if offset < 0 or not sig.check(buf, pos):
                        continue
                    hits.append((offset, sig))
        hits.sort(key=lambda h: (h[0], h[1].key))
        for offset, sig in hits:
            # Offset 0 is the file's own format; a ZIP's own entries are not "embedded".
            if offset != 0 and not (sig.key == "zip" and offset in self.exclude):
                self.counts[sig.key] += 1
                if len(self.listed) < self.max_listed:
                    self.listed.append((offset, sig))

    def eocd_offsets(self) -> list[int]:
        return sorted(set(self.eocd_first) | set(self.eocd_last))


def identify(head: bytes) -> Signature | None:
    """The known format whose (checked) signature starts at head[0], if any."""
    for sig in SIGNATURES:
        p = sig.start_delta
        if head[p : p + len(sig.literal)] == sig.literal and sig.check(head, p):
            return sig
    return None


# --- format walkers: each returns (end offset or None, error or None, details) --------


class _Bytes:
    """Random access to single bytes with a 64 KiB cache (GIF sub-blocks, JPEG markers)."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size
        self.base, self.buf = 0, b""

    def at(self, pos: int) -> int | None:
        if pos >= self.size:
            return None
        if not self.base <= pos < self.base + len(self.buf):
            self.f.seek(pos)
            self.buf, self.base = self.f.read(1 << 16), pos
        return self.buf[pos - self.base]

    def read(self, pos: int, n: int) -> bytes:
        self.f.seek(pos)
        return self.f.read(n)


_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_scan_end(f, start: int) -> int | None:
    """Offset of the first marker after entropy-coded data starting at ``start``."""
    pos = start
    while True:
        f.seek(pos)
        chunk = f.read(1 << 20)
        if len(chunk) < 2:
            return None
        m = _JPEG_SCAN_END.search(chunk)
        if m:
            return pos + m.start()
        pos += len(chunk) - 1  # a marker may straddle the chunk boundary


def _walk_jpeg(f, size: int):
    r = _Bytes(f, size)
    info = {"scans": 0, "multi_picture": False}
    pos = 2
    while True:
        b0, b1 = r.at(pos), r.at(pos + 1)
        if b0 is None or b1 is None:
            return None, f"truncated: the JPEG ends at offset {pos} without an end-of-image marker", info
        if b0 != 0xFF:
            return None, f"corrupt: byte 0x{b0:02X} at offset {pos} where a JPEG marker was expected", info
        if b1 == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if b1 == 0xD9:
            return pos + 2, None, info
        if 0xD0 <= b1 <= 0xD7 or b1 == 0x01:
            pos += 2
            continue
        if b1 in (0x00, 0xD8):
            return None, f"corrupt: invalid JPEG marker 0xFF{b1:02X} at offset {pos}", info
        raw = r.read(pos + 2, 2)
        if len(raw) < 2:
            return None, f"truncated: the JPEG segment at offset {pos} has no length", info
        length = struct.unpack(">H", raw)[0]
        if length < 2:
            return None, f"corrupt: JPEG segment at offset {pos} declares length {length}", info
        seg_end = pos + 2 + length
        if seg_end > size:
            return None, f"truncated: the JPEG segment at offset {pos} runs past the end of the file", info
        if b1 == 0xE2 and r.read(pos + 4, 4) == b"MPF\x00":
            info["multi_picture"] = True
        if b1 == 0xDA:
            info["scans"] += 1
            nxt = _jpeg_scan_end(f, seg_end)
            if nxt is None:
                return None, f"truncated: the scan data starting at offset {seg_end} has no end", info
            pos = nxt
        else:
            pos = seg_end


def _walk_png(f, size: int):
    info = {"chunks": 0}
    pos = 8
    while True:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return None, f"truncated: the PNG ends at offset {pos} without an IEND chunk", info
        length, ctype = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF or not ctype.isalpha():
            return None, f"corrupt: invalid PNG chunk header at offset {pos}", info
        end = pos + 12 + length
        if end > size:
            return None, f"truncated: the PNG chunk {ctype.decode()} at offset {pos} runs past the end", info
        info["chunks"] += 1
        if ctype == b"IEND":
            return end, None, info
        pos = end


def _skip_sub_blocks(r: _Bytes, pos: int) -> int | None:
    while True:
        n = r.at(pos)
        if n is None:
            return None
        if n == 0:
            return pos + 1
        pos += 1 + n


def _walk_gif(f, size: int):
    r = _Bytes(f, size)
    info = {"images": 0}
    flags = r.at(10)
    if flags is None:
        return None, "truncated: the GIF header is incomplete", info
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        b = r.at(pos)
        if b is None:
            return None, f"truncated: the GIF ends at offset {pos} without a trailer", info
        if b == 0x3B:
            return pos + 1, None, info
        if b == 0x21:  # extension: introducer, label, sub-blocks
            nxt = _skip_sub_blocks(r, pos + 2)
        elif b == 0x2C:  # image: descriptor, local colour table, LZW code size, sub-blocks
            desc = r.read(pos + 1, 9)
            if len(desc) < 9:
                return None, f"truncated: the GIF image descriptor at offset {pos} is incomplete", info
            local = 3 << ((desc[8] & 7) + 1) if desc[8] & 0x80 else 0
            info["images"] += 1
            nxt = _skip_sub_blocks(r, pos + 10 + local + 1)
        else:
            return (
                None,
                f"corrupt: unexpected byte 0x{b:02X} at offset {pos} in the GIF block structure",
                info,
            )
        if nxt is None:
            return None, f"truncated: the GIF block at offset {pos} runs past the end of the file", info
        pos = nxt


def _pdf_end(f, eof_marker: int | None, size: int) -> int | None:
    if eof_marker is None:
        return None
    end = eof_marker + 5
    f.seek(end)
    tail = f.read(2)
    if tail[:2] == b"\r\n":
        return end + 2
    if tail[:1] in (b"\r", b"\n"):
        return end + 1
    return end


def _padding_only(f, start: int, end: int) -> bool:
    f.seek(start)
    pos = start
    while pos < end:
        chunk = f.read(min(1 << 20, end - pos))
        if not chunk:
            break
        if chunk.strip(b"\x00\t\n\r\f ") != b"":
            return False
        pos += len(chunk)
    return True


# --- the analyzer ---------------------------------------------------------------


def _zip_records(f, size: int, offsets: list[int]) -> list[_filezip.EndRecord]:
    records = []
    for off in offsets:
        try:
            records.append(_filezip.read_end_record(f, off, size))
        except _filezip.ZipFormatError:
            continue
    return records


def _primary_zip_local_headers(f, record: _filezip.EndRecord) -> tuple[frozenset[int], str | None]:
    """Offsets of the local headers the archive's own directory points to (not 'embedded' files)."""
    offsets = set()
    try:
        for entry in _filezip.iter_entries(f, record):
            if entry.index >= MAX_PRIMARY_ZIP_ENTRIES:
                break
            offsets.add(record.start + entry.local_header_offset)
    except _filezip.ZipFormatError as exc:
        return frozenset(offsets), str(exc)
    return frozenset(offsets), None


def _container_note(container: str | None, leading: Signature | None, start: int) -> str:
    if container is None:
        return "no known format signature at the start of the file"
    if start:
        return f"the {container} starts at offset {start}, after other data"
    if leading is not None and leading.key == container:
        return f"from the signature at offset 0: {leading.description}"
    if container == "zip":
        return "from the ZIP's end-of-central-directory record"
    return "from the signature near the start of the file"


def analyze(path: str, params: dict, ctx) -> dict:
    max_listed = int(params.get("max_signatures", PARAMETERS["max_signatures"]["default"]))
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")  # closed below (the with block)
    except OSError as exc:
        raise AnalysisError(f"the file cannot be read: {exc.strerror}") from None
    with f:
        return _analyze(f, size, max_listed)


def _analyze(f, size: int, max_listed: int) -> dict:
    findings: list[dict] = []
    head = f.read(LOOKAHEAD)
    leading = identify(head)
    pdf_at = head.find(b"%PDF-", 0, 1024)

    # A ZIP at offset 0: its own local headers are not embedded files (found from its
    # directory before the scan, when its end record is where ZIP readers look for it).
    own_headers: frozenset[int] = frozenset()
    cd_error = None
    tail_zip = None
    if head[:4] in (_filezip.LFH_SIG, _filezip.EOCD_SIG):
        try:
            tail_zip = _filezip.find_end_record(f, size)
        except _filezip.ZipFormatError:
            tail_zip = None
        if tail_zip is not None and tail_zip.start == 0:
            own_headers, cd_error = _primary_zip_local_headers(f, tail_zip)

    # One pass: every signature, the ZIP end records and the PDF %%EOF markers.
    scanner = _Scanner(max_listed, own_headers)
    f.seek(0)
    scanner.scan(f)
    zips = _zip_records(f, size, scanner.eocd_offsets())

    container = None
    end = error = None
    start = 0
    details: dict = {}
    end_note = ""
    primary_zip = None
    if leading is not None and leading.key in ("jpeg", "png", "gif"):
        container = leading.key
        walker = {"jpeg": _walk_jpeg, "png": _walk_png, "gif": _walk_gif}[container]
        end, error, details = walker(f, size)
        end_note = {
            "jpeg": "end of the JPEG's end-of-image marker, found by walking its segments and scan data",
            "png": "end of the PNG's IEND chunk, found by walking its chunks",
            "gif": "the GIF's trailer byte, found by walking its blocks",
        }[container] + " (offset of the first byte after the format)"
    elif pdf_at >= 0:
        container, start = "pdf", pdf_at
        end = _pdf_end(f, scanner.pdf_eof_last, size)
        if end is None or end <= pdf_at:
            end, error = None, "truncated or damaged: the PDF has no %%EOF marker"
        end_note = "first byte after the PDF's last %%EOF marker and its end-of-line"
        details = {"linearized": b"/Linearized" in head[:1024]}
    else:
        if head[:4] in (_filezip.LFH_SIG, _filezip.EOCD_SIG):
            at_zero = [z for z in zips if z.start == 0]
            primary_zip = tail_zip if tail_zip is not None and tail_zip.start == 0 else None
            primary_zip = primary_zip or (at_zero[-1] if at_zero else None)
        elif leading is None or leading.key == "pe":
            # Self-extracting archives and other prepended data: an archive that ends the file.
            ending = [z for z in zips if z.end == size]
            primary_zip = ending[-1] if ending else None
        if primary_zip is not None:
            container, start, end = "zip", primary_zip.start, primary_zip.end
            end_note = "end of the ZIP's end-of-central-directory record and its comment"
            details = {"entries": primary_zip.entries, "zip64": primary_zip.zip64}
        elif head[:4] == _filezip.LFH_SIG:
            container = "zip"
            error = "truncated or damaged: no consistent ZIP end-of-central-directory record"
        elif leading is not None:
            container = leading.key

    findings.append(
        finding(
            "container_format",
            "fact",
            container,
            note=_container_note(container, leading, start),
        )
    )
    if container in ("jpeg", "png", "gif", "pdf", "zip"):
        findings.append(finding("format_end", "fact", end, unit="bytes", note=end_note, **details))
    elif container is not None:
        findings.append(
            finding(
                "format_end",
                "fact",
                None,
                note=f"the end of a {container} file is not determined by this analyzer",
            )
        )
    if error:
        findings.append(
            finding(
                "format_error", "fact", error, note="the format's structure could not be walked to its end"
            )
        )

    if end is not None:
        appended = size - end
        extra = {"offset": end}
        follows = None
        if appended:
            f.seek(end)
            follows = identify(f.read(LOOKAHEAD))
            extra["starts_with"] = follows.key if follows else None
            extra["padding_only"] = _padding_only(f, end, size)
        note = (
            f"{appended} bytes after the end of the {container}"
            + (f", starting with a {follows.description}" if follows else "")
            if appended
            else f"none: the {container} ends at the last byte of the file"
        )
        if appended and details.get("multi_picture"):
            note += (
                "; the JPEG declares a multi-picture (MPF) index, so extra images after its end are expected"
            )
        findings.append(finding("appended_data", "fact", appended, unit="bytes", note=note, **extra))
    if start:
        findings.append(
            finding(
                "prepended_data",
                "fact",
                start,
                unit="bytes",
                offset=0,
                note=f"{start} bytes before the {container} starts",
            )
        )
    if container == "pdf":
        n = scanner.pdf_eof_count
        findings.append(
            finding(
                "pdf_eof_markers",
                "fact",
                n,
                linearized=details.get("linearized", False),
                note=f"{n} %%EOF markers: "
                + (
                    "one per save; more than one means incremental updates were appended"
                    + (" (a linearized PDF has two by design)" if details.get("linearized") else "")
                ),
            )
        )

    # ZIP archives found anywhere (including the container itself).
    if cd_error:
        findings.append(finding("format_error", "fact", cd_error, note="reading the ZIP's central directory"))
    for z in zips[:MAX_ZIP_FINDINGS]:
        findings.append(
            finding(
                "zip_archive",
                "fact",
                {"start": z.start, "end": z.end, "entries": z.entries, "zip64": z.zip64},
                note="a consistent ZIP end record and central directory: the archive spans [start, end)",
            )
        )

    # Embedded signatures (not the file's own at offset 0, nor its own ZIP entries).
    listed = 0
    counts = scanner.counts
    for offset, sig in scanner.listed:
        listed += 1
        note = sig.description
        if sig.short:
            note += "; short signature: can occur by chance"
        findings.append(finding("embedded_signature", "fact", sig.key, offset=offset, note=note))
    lower_bounds = sorted(scanner.exhausted & set(counts))
    findings.append(
        finding(
            "embedded_signature_counts",
            "fact",
            {k: v for k, v in counts.items() if v},
            listed=listed,
            lower_bound=lower_bounds,
            note=(
                "matches of each signature after offset 0"
                + ("; the container's own ZIP entries are not counted" if own_headers else "")
                + (f"; only the first {max_listed} are listed" if sum(counts.values()) > listed else "")
                + (f"; counting stopped early for {', '.join(lower_bounds)}" if lower_bounds else "")
            ),
        )
    )
    return {"findings": findings, "libraries": {"numpy": np.__version__}}
