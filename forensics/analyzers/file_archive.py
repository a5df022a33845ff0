"""file.archive: list what an archive holds, without extracting or decompressing it.

- ZIP: the central directory is read entry by entry (forensics.analyzers._filezip);
  no entry is opened, so a zip bomb (a few KiB declaring terabytes, nested
  archives like 42.zip, or overlapping entries) costs nothing to list.
- tar: headers are read and the data between them skipped by seeking.
- tar inside gzip, bzip2 or xz: the stream has to be decompressed to reach the
  headers; at most max_decompressed_mib are decompressed (and an entry whose
  declared size would pass that limit stops the listing before it is read).
- gzip, bzip2 or xz holding one file: the name and size the header declares.
- 7z: the archive header, via py7zr (which caps a compressed header at 256 MiB).
Nested archives are named, never opened.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import lzma
import os
import struct
import tarfile
import zlib
from array import array
from importlib import metadata

import numpy as np

from . import _filezip, _rates
from .base import AnalysisError, finding

NAME = "file.archive"
VERSION = "1.1.0"  # 1.1.0: the bomb indicator quotes its rates measured for the archive's format
TIME_LIMIT = 3600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = [
    "application/zip",
    "application/x-zip-compressed",
    "application/java-archive",
    "application/vnd.android.package-archive",
    "application/epub+zip",
    "application/vnd.openxmlformats-officedocument.*",
    "application/vnd.oasis.opendocument.*",
    "application/x-7z-compressed",
    "application/x-tar",
    "application/gzip",
    "application/x-gzip",
    "application/x-bzip2",
    "application/x-xz",
]
DESCRIPTION = (
    "Lists the entries of a ZIP, 7z or tar archive (also tar inside gzip, bzip2 or xz) without "
    "extracting anything: names, sizes, compressed sizes, CRCs and dates as the archive declares them, "
    "totals and compression ratios, nested archives, unsafe names, and flags possible decompression bombs."
)
LIMITS = [
    "Sizes, CRCs and dates are as the archive declares them; nothing is decompressed to check them. "
    "An archive can lie: a bomb that declares small sizes is not flagged by the ratio rules.",
    "possible_decompression_bomb is a rule, not a trained detector: it fires when the declared total "
    "exceeds size_threshold_gib, when declared bytes per archive byte exceed ratio_threshold (for the "
    "whole archive or an entry of at least 1 MiB), or when ZIP entries overlap; its score is 1 when a rule "
    "fires, 0 otherwise (not a probability). It cannot see a bomb whose declared sizes are small (only "
    "declared sizes are read) nor a 42.zip-style nest (nested archives are named, not opened); very "
    "repetitive legitimate data (sparse disk images, logs) can pass the ratio. The finding quotes the "
    "rates measured for its archive format with the default thresholds (forensics/evaluation/archive.py); "
    "with other thresholds they do not apply.",
    "Nested archives are recognised by their names only and are not opened.",
    "Dates in ZIP entries are the writer's local time without a time zone; tar and 7z dates are UTC.",
    "A tar inside gzip, bzip2 or xz must be decompressed to be listed: the listing stops after "
    "max_decompressed_mib of decompressed data and says so. A lone gzip stream declares its size "
    "modulo 4 GiB; bzip2 streams declare no size.",
    "Multi-volume (split) archives and RAR are not supported.",
] + _rates.limits(NAME)
PARAMETERS = {
    "max_entries": {
        "type": "int",
        "default": 1000,
        "min": 0,
        "max": 10000,
        "help": "list at most this many entries (all are counted)",
    },
    "ratio_threshold": {
        "type": "float",
        "default": 100.0,
        "min": 2.0,
        "max": 1000000.0,
        "help": "declared uncompressed bytes per archive byte above which a decompression bomb is suspected",
    },
    "size_threshold_gib": {
        "type": "float",
        "default": 10.0,
        "min": 0.001,
        "max": 1000000.0,
        "help": "declared total size (GiB) above which a decompression bomb is suspected",
    },
    "max_decompressed_mib": {
        "type": "int",
        "default": 1024,
        "min": 1,
        "max": 65536,
        "help": "for a tar inside gzip/bzip2/xz: decompress at most this many MiB to read its headers",
    },
}

ARCHIVE_EXTENSIONS = (
    ".zip",
    ".7z",
    ".rar",
    ".tar",
    ".gz",
    ".tgz",
    ".bz2",
    ".tbz2",
    ".xz",
    ".txz",
    ".zst",
    ".jar",
    ".apk",
    ".cab",
    ".iso",
)
MAX_NAMED = 20  # names quoted in nested/unsafe findings
MIN_RATIO_ENTRY = 1 << 20  # only entries at least this large count for the per-entry ratio rule
MAX_OVERLAP_TRACKED = 2_000_000
GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
SEVENZ_MAGIC = b"7z\xbc\xaf\x27\x1c"


MAX_NAME = 4096  # characters of a name (or comment) kept in a finding


def _default_thresholds(p: dict) -> bool:
    return all(
        p[k] == PARAMETERS[k]["default"]
        for k in ("ratio_threshold", "size_threshold_gib", "max_decompressed_mib")
    )


def _text(name: str) -> str:
    """Always-valid text of bounded length: undecodable bytes become backslash escapes."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone UTF-16 surrogates (7z names)
        raw = name.encode("utf-8", "surrogatepass")
    text = raw.decode("utf-8", "backslashreplace")
    return text if len(text) <= MAX_NAME else text[:MAX_NAME] + "...[cut]"


def _unsafe(name: str) -> bool:
    """Absolute paths, '..' components and control characters: a naive extractor would misplace them."""
    parts = name.replace("\\", "/").split("/")
    return (
        name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")
        or ".." in parts
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )


def _utc(seconds: float | int | None) -> str | None:
    if seconds is None:
        return None
    try:
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=int(seconds))
    except (OverflowError, ValueError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Tally:
    """Totals and checks over all entries (listed or not), in constant memory."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self.listed: list[dict] = []
        self.count = 0
        self.total = 0
        self.total_compressed = 0
        self.has_compressed = False
        self.max_ratio: tuple[float, str] | None = None
        self.nested: list[str] = []
        self.nested_count = 0
        self.unsafe: list[str] = []
        self.unsafe_count = 0
        self.encrypted = 0

    def add(self, entry: dict, *, link: str | None = None) -> None:
        self.count += 1
        name = entry["name"]
        size = entry.get("size") or 0
        self.total += size
        csize = entry.get("compressed_size")
        if csize is not None:
            self.has_compressed = True
            self.total_compressed += csize
            if size >= MIN_RATIO_ENTRY:
                ratio = size / max(csize, 1)
                if self.max_ratio is None or ratio > self.max_ratio[0]:
                    self.max_ratio = (ratio, name)
        if entry.get("encrypted"):
            self.encrypted += 1
        if not entry.get("is_dir") and name.lower().endswith(ARCHIVE_EXTENSIONS):
            self.nested_count += 1
            if len(self.nested) < MAX_NAMED:
                self.nested.append(name)
        if _unsafe(name) or (link is not None and _unsafe(link)):
            self.unsafe_count += 1
            if len(self.unsafe) < MAX_NAMED:
                self.unsafe.append(name)
        if len(self.listed) < self.max_entries:
            self.listed.append(entry)


# --- ZIP ---------------------------------------------------------------------------


def _list_zip(f, size: int, tally: _Tally) -> dict:
    try:
        end = _filezip.find_end_record(f, size)
    except _filezip.ZipFormatError as exc:
        raise AnalysisError(f"not a readable ZIP: {exc}") from None
    if end.multi_disk:
        raise AnalysisError("multi-volume (split) ZIP archives are not supported")
    starts, ends = array("q"), array("q")
    try:
        for e in _filezip.iter_entries(f, end):
            entry = {
                "name": _text(e.name),
                "size": e.size,
                "compressed_size": e.compressed_size,
                "crc32": f"{e.crc32:08x}",
                "modified": e.modified,
                "method": e.method_name,
                "encrypted": e.encrypted,
                "is_dir": e.is_dir,
            }
            tally.add(entry)
            if len(starts) < MAX_OVERLAP_TRACKED:
                # The data ends at least this far: local header + name + compressed data.
                header = end.start + e.local_header_offset
                starts.append(header)
                ends.append(header + _filezip.LFH_LEN + e.name_length + e.compressed_size)
    except _filezip.ZipFormatError as exc:
        raise AnalysisError(str(exc)) from None
    overlapping = past_directory = 0
    if len(starts):
        s, e = np.frombuffer(starts, dtype=np.int64), np.frombuffer(ends, dtype=np.int64)
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
        # An entry overlaps when its header starts before an earlier entry's data has ended.
        reach = np.maximum.accumulate(e)
        overlapping = int(np.count_nonzero(s[1:] < reach[:-1]))
        past_directory = int(np.count_nonzero(e > end.cd_start))
    return {
        "format": "zip",
        "declared_entries": end.entries,
        "overlapping": overlapping,
        "past_directory": past_directory,
        "comment": _text(_filezip.decode_name(end.comment, 0)) if end.comment else None,
        "prepended": end.start,
        "appended": size - end.end,
        "zip64": end.zip64,
    }


# --- tar -----------------------------------------------------------------------------

_TAR_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char_device",
    tarfile.BLKTYPE: "block_device",
    tarfile.FIFOTYPE: "fifo",
    tarfile.GNUTYPE_SPARSE: "sparse_file",
}


def _tar_entry(m: tarfile.TarInfo) -> tuple[dict, str | None]:
    kind = _TAR_TYPES.get(m.type, "other")
    entry = {
        "name": _text(m.name),
        "size": m.size,
        "type": kind,
        "mode": f"{m.mode:04o}",
        "modified": _utc(m.mtime),
        "uid": m.uid,
        "gid": m.gid,
        "is_dir": m.isdir(),
    }
    link = None
    if m.issym() or m.islnk():
        link = _text(m.linkname)
        entry["link"] = link
    return entry, link


class _Budgeted:
    """A read-only stream that counts what it hands out and refuses to pass a limit."""

    class Exceeded(Exception):
        pass

    def __init__(self, raw, limit: int):
        self.raw, self.limit, self.count = raw, limit, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.limit - self.count + 1
        data = self.raw.read(min(n, self.limit - self.count + 1))
        self.count += len(data)
        if self.count > self.limit:
            raise self.Exceeded
        return data


def _decompressor(kind: str, f):
    if kind == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(f, mode="rb")
    return lzma.LZMAFile(f, mode="rb")


_STREAM_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, tarfile.TarError, ValueError)


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _list_tar(f, size: int, tally: _Tally) -> dict:
    f.seek(0)  # TarFile starts reading wherever the file stands
    try:
        tf = tarfile.open(fileobj=f, mode="r:", encoding="utf-8", errors="surrogateescape")
    except tarfile.TarError as exc:
        raise AnalysisError(f"not a readable tar archive: {exc}") from None
    try:
        while True:
            m = tf.next()
            if m is None:
                break
            tf.members.clear()  # TarFile keeps every member it reads; memory must stay flat
            entry, link = _tar_entry(m)
            tally.add(entry, link=link)
    except tarfile.TarError as exc:
        raise AnalysisError(f"the tar archive is truncated or corrupt: {exc}") from None
    # tarfile stops quietly at a bad header after the first: tell an end marker from damage.
    f.seek(tf.offset)
    block = f.read(512)
    if block and block.strip(b"\0"):
        if len(block) < 512:
            raise AnalysisError(f"the tar archive is truncated: a partial header at offset {tf.offset}")
        raise AnalysisError(f"the tar header at offset {tf.offset} is invalid: the archive is corrupt")
    return {"format": "tar", "end_marker": bool(block)}


def _list_compressed_tar(f, kind: str, limit: int, tally: _Tally) -> dict:
    f.seek(0)
    stream = _Budgeted(_decompressor(kind, f), limit)
    incomplete = None
    try:
        tf = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape")
        while True:
            m = tf.next()
            if m is None:
                break
            tf.members.clear()  # Python 3.11 keeps every member even when streaming
            entry, link = _tar_entry(m)
            tally.add(entry, link=link)
            if m.isreg() and stream.count + m.size > limit:
                incomplete = (
                    f"stopped after entry {tally.count}: reading past its {m.size} bytes would decompress more "
                    f"than max_decompressed_mib ({limit >> 20} MiB)"
                )
                break
    except _Budgeted.Exceeded:
        incomplete = f"stopped after {limit >> 20} MiB of decompressed data (max_decompressed_mib)"
    except _STREAM_ERRORS as exc:
        raise AnalysisError(f"the compressed tar archive is truncated or corrupt: {exc}") from None
    return {"format": f"tar+{kind}", "incomplete": incomplete, "decompressed": stream.count}


# --- single compressed streams ------------------------------------------------------


def _gzip_single(f, size: int, tally: _Tally) -> dict:
    f.seek(0)
    head = f.read(10)
    flags, mtime = head[3], struct.unpack("<I", head[4:8])[0]
    name = None
    if flags & 0x04:  # FEXTRA
        xlen = struct.unpack("<H", f.read(2))[0]
        f.seek(xlen, 1)
    if flags & 0x08:  # FNAME, latin-1, zero-terminated
        raw = bytearray()
        while (c := f.read(1)) not in (b"", b"\0") and len(raw) < 4096:
            raw += c
        name = raw.decode("latin-1")
    f.seek(size - 4)
    isize = struct.unpack("<I", f.read(4))[0]
    tally.add(
        {
            "name": _text(name) if name else "",
            "size": isize,
            "compressed_size": size,
            "modified": _utc(mtime) if mtime else None,
            "is_dir": False,
        }
    )
    return {"format": "gzip", "size_note": "the gzip trailer's size (modulo 4 GiB, of the last member)"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad xz index")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def _xz_declared_size(f, size: int) -> int | None:
    """Sum of uncompressed sizes in the xz index of the last stream (None if unreadable)."""
    try:
        end = size
        while end >= 4:  # stream padding
            f.seek(end - 4)
            if f.read(4) != b"\0\0\0\0":
                break
            end -= 4
        f.seek(end - 12)
        footer = f.read(12)
        if footer[10:12] != b"YZ":
            return None
        index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
        if index_size > min(end - 12, 64 << 20):
            return None
        f.seek(end - 12 - index_size)
        index = f.read(index_size)
        if index[:1] != b"\0":
            return None
        records, pos = _varint(index, 1)
        total = 0
        for _ in range(records):
            _unpadded, pos = _varint(index, pos)
            uncompressed, pos = _varint(index, pos)
            total += uncompressed
        return total
    except (ValueError, struct.error):
        return None


def _single_stream(f, kind: str, size: int, tally: _Tally) -> dict:
    if kind == "gzip":
        return _gzip_single(f, size, tally)
    declared = _xz_declared_size(f, size) if kind == "xz" else None
    tally.add({"name": "", "size": declared, "compressed_size": size, "modified": None, "is_dir": False})
    note = "the xz index's total" if declared is not None else "no size is declared without decompressing"
    return {"format": kind, "size_note": note}


# --- 7z -------------------------------------------------------------------------------


def _filetime(ft) -> str | None:
    if ft is None:
        return None
    return _utc(int(ft) // 10_000_000 - 11_644_473_600)


def _list_7z(path: str, tally: _Tally) -> dict:
    import py7zr  # imported here: heavy, and only 7z needs it

    try:
        with py7zr.SevenZipFile(path, mode="r") as z:
            methods = z.archiveinfo().method_names
            for item in z.files:
                tally.add(
                    {
                        "name": _text(item.filename),
                        "size": item.uncompressed,
                        "compressed_size": item.compressed,
                        "crc32": f"{item.crc32:08x}" if item.crc32 is not None else None,
                        "modified": _filetime(item.lastwritetime),
                        "is_dir": item.is_directory,
                    }
                )
    except py7zr.PasswordRequired:
        raise AnalysisError(
            "the 7z archive's header is encrypted: it cannot be listed without the password"
        ) from None
    except Exception as exc:  # any failure to parse untrusted bytes is a reason to record
        raise AnalysisError(
            f"the 7z archive is truncated or corrupt ({exc.__class__.__name__}: {exc})"
        ) from None
    encrypted = any("AES" in m for m in methods)
    return {"format": "7z", "methods": sorted(methods), "encrypted_data": encrypted}


# --- the analyzer --------------------------------------------------------------------------


def _detect(f, size: int) -> str:
    head = f.read(512 + 8)
    if head.startswith((_filezip.LFH_SIG, _filezip.EOCD_SIG)):
        return "zip"
    if head.startswith(SEVENZ_MAGIC):
        return "7z"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if _is_tar_header(head):
        return "tar"
    try:  # a ZIP with something before it (self-extracting archive)
        _filezip.find_end_record(f, size)
        return "zip"
    except _filezip.ZipFormatError:
        pass
    raise AnalysisError("not an archive this analyzer reads (ZIP, 7z, tar, gzip, bzip2, xz)")


def _compressed_holds_tar(f, kind: str) -> bool:
    f.seek(0)
    try:
        with _decompressor(kind, f) as d:
            return _is_tar_header(d.read(512))
    except _STREAM_ERRORS as exc:
        raise AnalysisError(f"the {kind} stream is truncated or corrupt: {exc}") from None


def analyze(path: str, params: dict, ctx) -> dict:
    p = {k: params.get(k, rule["default"]) for k, rule in PARAMETERS.items()}
    tally = _Tally(int(p["max_entries"]))
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")  # closed below (the with block)
    except OSError as exc:
        raise AnalysisError(f"the file cannot be read: {exc.strerror}") from None
    if size == 0:
        f.close()
        raise AnalysisError("the file is empty: it is not an archive")
    with f:
        kind = _detect(f, size)
        if kind == "zip":
            info = _list_zip(f, size, tally)
        elif kind == "tar":
            info = _list_tar(f, size, tally)
        elif kind == "7z":
            info = _list_7z(path, tally)
        elif _compressed_holds_tar(f, kind):
            info = _list_compressed_tar(f, kind, int(p["max_decompressed_mib"]) << 20, tally)
        else:
            info = _single_stream(f, kind, size, tally)
    return {"findings": _findings(info, tally, size, p), "libraries": _libraries(info)}


def _libraries(info: dict) -> dict:
    if info["format"] == "7z":
        return {"py7zr": metadata.version("py7zr")}
    return {}


def _findings(info: dict, tally: _Tally, size: int, p: dict) -> list[dict]:
    fmt = info["format"]
    out = [finding("archive_format", "fact", fmt, note="read from the archive's own signature and headers")]
    declared = info.get("declared_entries")
    count_note = f"{tally.count} entries in the directory"
    if declared is not None and declared != tally.count:
        count_note += f" (the end record declares {declared})"
    if info.get("incomplete"):
        count_note = f"{tally.count} entries read before the listing stopped"
    out.append(
        finding(
            "entry_count",
            "fact",
            tally.count,
            listed=len(tally.listed),
            note=count_note
            + (f"; the first {len(tally.listed)} are listed" if len(tally.listed) < tally.count else ""),
        )
    )
    if info.get("incomplete"):
        out.append(
            finding(
                "listing_incomplete", "fact", info["incomplete"], note="the totals cover the entries read"
            )
        )
    for k, entry in enumerate(tally.listed):
        out.append(finding("archive_entry", "fact", entry, index=k, note="as declared by the archive"))

    out.append(
        finding(
            "declared_total_size",
            "fact",
            tally.total,
            unit="bytes",
            note="sum of the uncompressed sizes the entries declare"
            + (f" ({info['size_note']})" if "size_note" in info else ""),
        )
    )
    if tally.has_compressed:
        out.append(
            finding(
                "declared_compressed_size",
                "fact",
                tally.total_compressed,
                unit="bytes",
                note="sum of the compressed sizes the entries declare",
            )
        )
    ratio = tally.total / size
    out.append(
        finding(
            "compression_ratio",
            "measurement",
            round(ratio, 2),
            unit="ratio",
            note=f"declared uncompressed bytes per byte of the {size}-byte archive file",
        )
    )
    if tally.max_ratio is not None:
        out.append(
            finding(
                "max_entry_compression_ratio",
                "measurement",
                round(tally.max_ratio[0], 2),
                unit="ratio",
                entry=tally.max_ratio[1],
                note="highest declared size / compressed size among entries of at least 1 MiB",
            )
        )
    if tally.encrypted or info.get("encrypted_data"):
        out.append(
            finding(
                "encrypted_entries",
                "fact",
                tally.encrypted if fmt != "7z" else True,
                note="entries whose data is encrypted" if fmt != "7z" else "the 7z data uses AES encryption",
            )
        )
    out.append(
        finding(
            "nested_archives",
            "fact",
            tally.nested_count,
            names=tally.nested,
            note="entries named like archives (never opened: nested archives are not listed)",
        )
    )
    out.append(
        finding(
            "unsafe_entry_names",
            "fact",
            tally.unsafe_count,
            names=tally.unsafe,
            note="absolute paths, '..' components, control characters, or links pointing outside the archive",
        )
    )
    if fmt == "zip":
        out.append(
            finding(
                "overlapping_entries",
                "fact",
                info["overlapping"],
                note="entries whose local header lies inside an earlier entry's data "
                "(the trick of non-recursive zip bombs)",
            )
        )
        if info["past_directory"]:
            out.append(
                finding(
                    "entries_past_data_area",
                    "fact",
                    info["past_directory"],
                    note="entries whose declared data runs into the central directory: the archive is inconsistent",
                )
            )
        if info["comment"] is not None:
            out.append(finding("archive_comment", "fact", info["comment"], note="the ZIP's archive comment"))
        if info["prepended"] or info["appended"]:
            out.append(
                finding(
                    "data_outside_archive",
                    "fact",
                    {"before": info["prepended"], "after": info["appended"]},
                    unit="bytes",
                    note="bytes before the archive's first entry and after its end record",
                )
            )
    if fmt == "tar" and not info["end_marker"]:
        out.append(finding("tar_end_marker", "fact", False, note="the tar has no end-of-archive blocks"))

    reasons = []
    size_limit = float(p["size_threshold_gib"]) * (1 << 30)
    threshold = float(p["ratio_threshold"])
    if tally.total > size_limit:
        reasons.append(f"declared total {tally.total} bytes exceeds {p['size_threshold_gib']} GiB")
    if ratio > threshold:
        reasons.append(f"declared/archive size ratio {ratio:.1f} exceeds {threshold:g}")
    if tally.max_ratio is not None and tally.max_ratio[0] > threshold:
        reasons.append(
            f"entry {tally.max_ratio[1]!r} has ratio {tally.max_ratio[0]:.1f}, above {threshold:g}"
        )
    if fmt == "zip" and info["overlapping"]:
        reasons.append(f"{info['overlapping']} entries start inside another entry's data")
    out.append(
        finding(
            "possible_decompression_bomb",
            "indicator",
            bool(reasons),
            score=1.0 if reasons else 0.0,
            reasons=reasons,
            rates=_rates.for_condition(NAME, "possible_decompression_bomb", {"format": fmt})
            if _default_thresholds(p)
            else {
                "condition": {"format": fmt},
                "measured": False,
                "note": "rates were measured with the default thresholds only; these parameters were changed",
            },
            note="; ".join(reasons) if reasons else "no rule fired (see limits for what the rules can miss)",
        )
    )
    return out
