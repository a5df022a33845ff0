"""Reading a ZIP's end record and central directory without decompressing anything.

Shared by file.structure (where does an embedded ZIP start and end) and
file.archive (what does it list). Only the directory at the end of the file is
read: no entry is ever opened, so a decompression bomb costs nothing here.
Memory stays flat: entries are yielded one at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

EOCD_SIG = b"PK\x05\x06"
EOCD_LEN = 22
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_LOCATOR_LEN = 20
ZIP64_EOCD_SIG = b"PK\x06\x06"
ZIP64_EOCD_LEN = 56
CD_SIG = b"PK\x01\x02"
CD_LEN = 46
LFH_SIG = b"PK\x03\x04"
LFH_LEN = 30
MAX_COMMENT = 0xFFFF

METHODS = {
    0: "stored",
    1: "shrunk",
    6: "imploded",
    8: "deflated",
    9: "deflate64",
    12: "bzip2",
    14: "lzma",
    93: "zstd",
    95: "xz",
    96: "jpeg",
    97: "wavpack",
    98: "ppmd",
    99: "aes",
}


class ZipFormatError(ValueError):
    """The bytes are not a readable ZIP directory; the message says why, in plain words."""


@dataclass
class EndRecord:
    eocd_offset: int  # where the end-of-central-directory record is in the file
    end: int  # first byte after the record and its comment
    entries: int  # as declared
    cd_size: int
    cd_offset: int  # as declared, relative to the archive's start
    cd_start: int  # where the central directory really is in the file
    start: int  # where the archive starts in the file (bytes before it were prepended)
    zip64: bool
    multi_disk: bool
    comment: bytes


@dataclass
class Entry:
    index: int
    name: str
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc32: int
    compressed_size: int
    size: int
    local_header_offset: int  # relative to the archive's start, as declared
    name_length: int

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & 0x1)

    @property
    def method_name(self) -> str:
        return METHODS.get(self.method, f"method {self.method}")

    @property
    def modified(self) -> str | None:
        return dos_datetime(self.dos_date, self.dos_time)


def dos_datetime(date: int, time: int) -> str | None:
    """MS-DOS date and time fields as 'YYYY-MM-DDTHH:MM:SS' (local time of the writer, no zone)."""
    year, month, day = 1980 + (date >> 9), (date >> 5) & 0xF, date & 0x1F
    hour, minute, second = time >> 11, (time >> 5) & 0x3F, (time & 0x1F) * 2
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"


def decode_name(raw: bytes, flags: int) -> str:
    """Names are UTF-8 when flag bit 11 is set, else code page 437 (as zipfile does).

    Undecodable bytes are shown as backslash escapes so the result is always valid text.
    """
    if flags & 0x800:
        return raw.decode("utf-8", "backslashreplace")
    return raw.decode("cp437")


def read_end_record(f, eocd_offset: int, file_size: int) -> EndRecord:
    """Parse the end record at ``eocd_offset`` (and its ZIP64 companions); check it is consistent."""
    f.seek(eocd_offset)
    rec = f.read(EOCD_LEN)
    if rec[:4] != EOCD_SIG:
        raise ZipFormatError(f"no ZIP end record at offset {eocd_offset}")
    if len(rec) < EOCD_LEN:
        raise ZipFormatError(
            f"the ZIP end record at offset {eocd_offset} is cut short: the file is truncated"
        )
    _sig, disk, disk_cd, _n_disk, n_total, cd_size, cd_offset, comment_len = struct.unpack("<4s4H2LH", rec)
    end = eocd_offset + EOCD_LEN + comment_len
    if end > file_size:
        raise ZipFormatError("the ZIP end record's comment runs past the end of the file")
    comment = f.read(comment_len)
    multi_disk = disk != 0 or disk_cd != 0
    zip64 = False
    cd_end = eocd_offset
    if eocd_offset >= ZIP64_LOCATOR_LEN:
        f.seek(eocd_offset - ZIP64_LOCATOR_LEN)
        loc = f.read(ZIP64_LOCATOR_LEN)
        if loc[:4] == ZIP64_LOCATOR_SIG:
            _s, _z64disk, z64_offset, n_disks = struct.unpack("<4sLQL", loc)
            # The ZIP64 record normally sits right before its locator (no extensible data).
            rec_pos = eocd_offset - ZIP64_LOCATOR_LEN - ZIP64_EOCD_LEN
            rec64 = b""
            if rec_pos >= 0:
                f.seek(rec_pos)
                rec64 = f.read(ZIP64_EOCD_LEN)
            if rec64[:4] != ZIP64_EOCD_SIG:
                raise ZipFormatError("a ZIP64 locator points to no ZIP64 end record")
            (_s, _size, _vm, _vn, d64, dcd64, _nd64, n_total, cd_size, cd_offset) = struct.unpack(
                "<4sQ2H2L4Q", rec64
            )
            zip64 = True
            multi_disk = multi_disk or d64 != 0 or dcd64 != 0 or n_disks > 1
            cd_end = rec_pos
    cd_start = cd_end - cd_size
    if cd_start < 0:
        raise ZipFormatError("the declared central directory is larger than the bytes before its end record")
    start = cd_start - cd_offset
    if start < 0:
        raise ZipFormatError("the central directory's declared offset points before the start of the file")
    if n_total:
        f.seek(cd_start)
        if f.read(4) != CD_SIG:
            raise ZipFormatError(f"no central directory where the end record says (offset {cd_start})")
    return EndRecord(
        eocd_offset=eocd_offset,
        end=end,
        entries=n_total,
        cd_size=cd_size,
        cd_offset=cd_offset,
        cd_start=cd_start,
        start=start,
        zip64=zip64,
        multi_disk=multi_disk,
        comment=comment,
    )


def find_end_record(f, file_size: int) -> EndRecord:
    """Find the end record in the last 64 KiB, as ZIP readers do.

    Prefers a record whose comment ends exactly at the end of the file; otherwise
    the last one that is consistent (the file then has bytes appended).
    """
    tail = min(file_size, EOCD_LEN + MAX_COMMENT)
    base = file_size - tail
    f.seek(base)
    data = f.read(tail)
    positions = []
    i = data.rfind(EOCD_SIG)
    while i != -1:
        positions.append(i)
        i = data.rfind(EOCD_SIG, 0, i)
    if not positions:
        raise ZipFormatError(
            "no ZIP end-of-central-directory record in the last 64 KiB: "
            "the file is truncated, not a ZIP, or has more than 64 KiB appended"
        )
    exact = [
        p
        for p in positions
        if p + EOCD_LEN <= len(data)
        and p + EOCD_LEN + struct.unpack("<H", data[p + 20 : p + 22])[0] == len(data)
    ]
    last_error = None
    for p in exact + [p for p in positions if p not in exact]:
        try:
            return read_end_record(f, base + p, file_size)
        except ZipFormatError as exc:
            last_error = exc
    raise ZipFormatError(f"the ZIP end record is corrupt: {last_error}")


def _zip64_extra(extra: bytes, size: int, csize: int, lho: int) -> tuple[int, int, int]:
    """Apply the ZIP64 extended-information extra field (id 0x0001) where a field is 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            values = []
            for k in range(0, len(body) - 7, 8):
                values.append(struct.unpack_from("<Q", body, k)[0])
            it = iter(values)
            try:
                if size == 0xFFFFFFFF:
                    size = next(it)
                if csize == 0xFFFFFFFF:
                    csize = next(it)
                if lho == 0xFFFFFFFF:
                    lho = next(it)
            except StopIteration:
                raise ZipFormatError("a ZIP64 extra field is too short for the sizes it must hold") from None
            break
        pos += 4 + length
    return size, csize, lho


def iter_entries(f, end: EndRecord) -> Iterator[Entry]:
    """Yield the central directory's entries one by one (never the data)."""
    f.seek(end.cd_start)
    limit = end.cd_start + end.cd_size
    pos = end.cd_start
    for index in range(end.entries):
        header = f.read(CD_LEN)
        if len(header) < CD_LEN or header[:4] != CD_SIG or pos + CD_LEN > limit:
            raise ZipFormatError(
                f"central directory entry {index + 1} of {end.entries} (offset {pos}) is missing or corrupt: "
                "the archive is truncated or damaged"
            )
        (
            _sig,
            _made,
            _need,
            flags,
            method,
            dos_time,
            dos_date,
            crc,
            csize,
            size,
            nlen,
            xlen,
            clen,
            _disk,
            _iattr,
            _eattr,
            lho,
        ) = struct.unpack("<4s6H3L5H2L", header)
        raw_name = f.read(nlen)
        extra = f.read(xlen)
        if clen:
            f.seek(clen, 1)
        pos += CD_LEN + nlen + xlen + clen
        if len(raw_name) < nlen or len(extra) < xlen or pos > limit:
            raise ZipFormatError(
                f"central directory entry {index + 1} runs past the end of the directory: the archive is damaged"
            )
        size, csize, lho = _zip64_extra(extra, size, csize, lho)
        yield Entry(
            index=index,
            name=decode_name(raw_name, flags),
            flags=flags,
            method=method,
            dos_time=dos_time,
            dos_date=dos_date,
            crc32=crc,
            compressed_size=csize,
            size=size,
            local_header_offset=lho,
            name_length=nlen,
        )
