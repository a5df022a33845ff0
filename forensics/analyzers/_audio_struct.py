"""Structural parsers for audio containers, used by ``audio.container``.

Each parser reads the file's own bytes (not FFmpeg's view of them) and
returns a :class:`Report`: the values it parsed (``facts``), encoder strings
and creation tags it found, and the anomalies it met, each with the byte
offset where it was seen. The parsers never trust a size field: every length
is checked against its parent and the file before use, loops are bounded,
and a file too damaged to walk gives a ``truncated`` or ``junk_data``
anomaly, never an exception.

Formats: Ogg (Opus, Vorbis, FLAC, Speex), MP3 (MPEG audio with ID3v2/ID3v1/
APE tags, Xing/Info/LAME and VBRI headers), MP4/M4A/3GP/MOV (ISO boxes),
RIFF/WAVE (incl. BWF ``bext`` and ``LIST/INFO``), AMR-NB/WB storage format,
native FLAC, and EBML (Matroska/WebM).
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

MAX_ANOMALY_OFFSETS = 20  # offsets kept per anomaly kind (the count is always exact)
MAX_ITEMS = 5_000_000  # pages / frames / boxes walked before giving up (hostile files)


@dataclass
class Report:
    format: str
    facts: dict = field(default_factory=dict)
    encoders: list = field(default_factory=list)  # [{"source": ..., "value": ...}]
    creation: dict = field(default_factory=dict)  # {"source/tag": value}
    anomalies: dict = field(default_factory=dict)  # kind -> {"count": n, "offsets": [...], "note": str}
    streams: int | None = None  # logical streams found one after another (concatenation)

    def anomaly(self, kind: str, offset: int, note: str) -> None:
        entry = self.anomalies.setdefault(kind, {"count": 0, "offsets": [], "note": note})
        entry["count"] += 1
        if len(entry["offsets"]) < MAX_ANOMALY_OFFSETS:
            entry["offsets"].append(int(offset))

    def encoder(self, source: str, value) -> None:
        text = _text(value)
        if text and {"source": source, "value": text} not in self.encoders:
            self.encoders.append({"source": source, "value": text})


def _text(value) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).split(b"\x00", 1)[0].decode("utf-8", "replace")
    return str(value).strip() if value is not None else ""


def sniff(head: bytes) -> str | None:
    """The structural format of a file from its first bytes, or None if no parser applies."""
    if head.startswith(b"OggS"):
        return "ogg"
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "ebml"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        return "mp4"
    if head.startswith(b"ID3"):
        # ID3v2 is put before MP3 most often, but also (non-standard) before FLAC
        size = _syncsafe(head[6:10]) + 10 + (10 if len(head) > 5 and head[5] & 0x10 else 0)
        if head[size : size + 4] == b"fLaC":
            return "flac"
        return "mp3"
    if len(head) >= 7 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "adts"
    if len(head) >= 4 and _mp3_header(head, 0) is not None:
        return "mp3"
    return None


def parse(path: str) -> Report | None:
    """Parse ``path`` with the parser its first bytes call for; None if none applies."""
    with open(path, "rb") as f:
        head = f.read(4096)
        kind = sniff(head)
        if kind is None:
            return None
        if not head:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                return PARSERS[kind](data)
            except (struct.error, IndexError, ValueError, OverflowError) as exc:
                # a damaged header this parser does not anticipate: say so, don't fail the analysis
                report = Report(kind)
                report.anomaly("parser_gave_up", 0, f"the {kind} parser stopped on malformed data ({exc})")
                return report


# ---------------------------------------------------------------- Ogg

_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_ZERO_CRC: dict[int, int] = {}


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, initial value 0, no final xor).

    Computed with zlib's reflected CRC-32 on bit-reversed bytes, which is the
    same polynomial read backwards; zlib's initial value and final xor cancel
    out when xored with the CRC of as many zero bytes. Fast (C) and exact.
    """
    n = len(data)
    zero = _ZERO_CRC.get(n)
    if zero is None:
        zero = _ZERO_CRC[n] = zlib.crc32(bytes(n))
    reflected = zlib.crc32(bytes(data).translate(_BITREV)) ^ zero
    return int(f"{reflected:032b}"[::-1], 2)


def _ogg_codec(packet: bytes) -> str:
    for magic, name in (
        (b"OpusHead", "opus"),
        (b"\x01vorbis", "vorbis"),
        (b"\x7fFLAC", "flac"),
        (b"Speex   ", "speex"),
        (b"\x80theora", "theora"),
        (b"fishead\x00", "skeleton"),
    ):
        if packet.startswith(magic):
            return name
    return "unknown"


def _vorbis_comments(data: bytes, report: Report, source: str) -> dict:
    """Parse a Vorbis comment block (vendor + KEY=value list, little-endian lengths)."""
    out = {}
    try:
        (n,) = struct.unpack_from("<I", data, 0)
        vendor = data[4 : 4 + n]
        report.encoder(f"{source} vendor", vendor)
        pos = 4 + n
        (count,) = struct.unpack_from("<I", data, pos)
        pos += 4
        for _ in range(min(count, 1000)):
            (length,) = struct.unpack_from("<I", data, pos)
            item = data[pos + 4 : pos + 4 + length].decode("utf-8", "replace")
            pos += 4 + length
            key, _, value = item.partition("=")
            out[key.upper()] = value[:500]
    except struct.error:
        report.anomaly("bad_header", 0, "a comment header is cut short")
    for key, value in out.items():
        if key in ("ENCODER", "ENCODED_BY", "ENCODER_OPTIONS"):
            report.encoder(f"{source} {key}", value)
        if key in ("DATE", "CREATION_TIME", "CREATION_DATE"):
            report.creation[f"{source} {key}"] = value
    return out


def parse_ogg(data) -> Report:
    """Walk every Ogg page: capture pattern, version, CRC, per-serial page sequence and granule.

    Chained streams (a logical stream that begins after another one ended,
    i.e. files joined end to end) are counted in ``streams``.
    """
    r = Report("ogg")
    size = len(data)
    pos = 0
    pages = 0
    serials: dict[int, dict] = {}
    open_serials: set[int] = set()
    chain_groups = 0
    in_bos_group = False
    while pos < size and pages < MAX_ITEMS:
        if data[pos : pos + 4] != b"OggS":
            nxt = data.find(b"OggS", pos + 1)
            r.anomaly("junk_data", pos, "bytes that are not an Ogg page (capture pattern lost)")
            if nxt < 0:
                break
            pos = nxt
            continue
        if pos + 27 > size:
            r.anomaly("truncated", pos, "the file ends inside an Ogg page header")
            break
        version, htype, granule, serial, seq, crc, nseg = struct.unpack_from("<BBqIIIB", data, pos + 4)
        if pos + 27 + nseg > size:
            r.anomaly("truncated", pos, "the file ends inside an Ogg page header")
            break
        lacing = data[pos + 27 : pos + 27 + nseg]
        body = sum(lacing)
        end = pos + 27 + nseg + body
        if end > size:
            r.anomaly("truncated", pos, "the file ends inside an Ogg page")
            break
        pages += 1
        if version != 0:
            r.anomaly("ogg_bad_version", pos, "an Ogg page with a version other than 0")
        page = bytearray(data[pos:end])
        page[22:26] = b"\0\0\0\0"
        if ogg_crc(page) != crc:
            r.anomaly("ogg_crc_errors", pos, "pages whose CRC-32 does not match their bytes")
        bos, eos = bool(htype & 2), bool(htype & 4)
        st = serials.get(serial)
        if bos:
            if not in_bos_group:
                chain_groups += 1
                in_bos_group = True
            if st is not None:
                r.anomaly(
                    "ogg_serial_reused",
                    pos,
                    "a logical stream begins again with a serial number already used",
                )
            payload = bytes(data[pos + 27 + nseg : end])
            st = serials[serial] = {
                "serial": serial,
                "codec": _ogg_codec(payload),
                "bos_offset": pos,
                "pages": 0,
                "first_granule": None,
                "last_granule": None,
                "eos": False,
                "seq": seq - 1,
                "packets": [],
                "partial": b"",
                "head": {},
            }
            open_serials.add(serial)
        else:
            in_bos_group = False
            if st is None:
                r.anomaly(
                    "ogg_missing_bos", pos, "pages of a logical stream whose first (BOS) page is missing"
                )
                st = serials[serial] = {
                    "serial": serial,
                    "codec": "unknown",
                    "bos_offset": None,
                    "pages": 0,
                    "first_granule": None,
                    "last_granule": None,
                    "eos": False,
                    "seq": seq - 1,
                    "packets": [],
                    "partial": b"",
                    "head": {},
                }
        if seq != (st["seq"] + 1) & 0xFFFFFFFF:
            r.anomaly(
                "ogg_page_sequence_gaps", pos, "page sequence numbers that skip (pages missing or reordered)"
            )
        st["seq"] = seq
        st["pages"] += 1
        if granule != -1:
            if st["last_granule"] is not None and granule < st["last_granule"]:
                r.anomaly("ogg_granule_backwards", pos, "granule positions that go backwards within a stream")
            if st["first_granule"] is None:
                st["first_granule"] = granule
            st["last_granule"] = granule
        if st["eos"]:
            r.anomaly("ogg_pages_after_eos", pos, "pages of a logical stream after its end-of-stream page")
        if eos:
            st["eos"] = True
            open_serials.discard(serial)
        # keep the first two packets of each stream (identification and comment headers)
        if len(st["packets"]) < 2:
            start = pos + 27 + nseg
            packet = st["partial"]
            for lace in lacing:
                packet += data[start : start + lace]
                start += lace
                if lace < 255:
                    st["packets"].append(packet)
                    packet = b""
                    if len(st["packets"]) == 2:
                        break
            st["partial"] = packet if len(packet) < 1 << 20 else b""
        pos = end
    streams = []
    for st in serials.values():
        info = {
            k: st[k]
            for k in ("serial", "codec", "bos_offset", "pages", "first_granule", "last_granule", "eos")
        }
        packets = st["packets"]
        if st["codec"] == "opus" and packets:
            head = packets[0]
            if len(head) >= 19:
                ver, ch, pre, rate, gain, family = struct.unpack_from("<BBHIhB", head, 8)
                info.update(
                    opus_version=ver,
                    channels=ch,
                    pre_skip=pre,
                    input_sample_rate=rate,
                    output_gain_q8=gain,
                    mapping_family=family,
                )
                if st["last_granule"] is not None:
                    info["duration_s"] = round(max(0, st["last_granule"] - pre) / 48000, 3)
            if len(packets) > 1 and packets[1].startswith(b"OpusTags"):
                info["tags"] = _vorbis_comments(packets[1][8:], r, "OpusTags")
        elif st["codec"] == "vorbis" and packets:
            head = packets[0]
            if len(head) >= 30:
                _ver, ch, rate, bmax, bnom, bmin = struct.unpack_from("<IBIiii", head, 7)
                info.update(
                    channels=ch, sample_rate=rate, bitrate_nominal=bnom, bitrate_max=bmax, bitrate_min=bmin
                )
                if st["last_granule"] is not None and rate:
                    info["duration_s"] = round(st["last_granule"] / rate, 3)
            if len(packets) > 1 and packets[1].startswith(b"\x03vorbis"):
                info["tags"] = _vorbis_comments(packets[1][7:], r, "Vorbis comment")
        if not st["eos"]:
            r.anomaly(
                "ogg_missing_eos",
                st["bos_offset"] or 0,
                "logical streams without an end-of-stream page (cut off, or still being written)",
            )
        streams.append(info)
    r.facts = {"pages": pages, "logical_streams": streams}
    r.streams = chain_groups
    if chain_groups > 1:
        r.anomaly("concatenated_streams", 0, "Ogg logical streams chained one after another (files joined)")
        # the count of chained groups, not of anomalies: one per join
        r.anomalies["concatenated_streams"]["count"] = chain_groups - 1
        r.anomalies["concatenated_streams"]["offsets"] = [
            s["bos_offset"] for s in streams[1:] if s["bos_offset"]
        ][:MAX_ANOMALY_OFFSETS]
    return r


# ---------------------------------------------------------------- MP3

_MP3_BITRATES = {
    (3, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (3, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (3, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MP3_VERSIONS = {3: "MPEG-1", 2: "MPEG-2", 0: "MPEG-2.5"}
_MP3_MODES = ("stereo", "joint stereo", "dual channel", "mono")


def _syncsafe(b: bytes) -> int:
    return (
        (b[0] & 0x7F) << 21 | (b[1] & 0x7F) << 14 | (b[2] & 0x7F) << 7 | (b[3] & 0x7F) if len(b) == 4 else 0
    )


def _mp3_header(data, pos: int):
    """(frame length, version id, layer id, sample rate, bitrate kbit/s, mode, samples) or None."""
    b = data[pos : pos + 4]
    if len(b) < 4 or b[0] != 0xFF or b[1] & 0xE0 != 0xE0:
        return None
    version, layer = (b[1] >> 3) & 3, (b[1] >> 1) & 3
    br_index, sr_index, padding, mode = b[2] >> 4, (b[2] >> 2) & 3, (b[2] >> 1) & 1, b[3] >> 6
    if version == 1 or layer == 0 or br_index in (0, 15) or sr_index == 3:
        return None
    bitrate = _MP3_BITRATES[(3 if version == 3 else 2, layer)][br_index]
    rate = _MP3_RATES[version][sr_index]
    if layer == 3:  # Layer I
        length, samples = (12 * bitrate * 1000 // rate + padding) * 4, 384
    elif layer == 2 or version == 3:  # Layer II, or Layer III MPEG-1
        length, samples = 144 * bitrate * 1000 // rate + padding, 1152
    else:  # Layer III MPEG-2/2.5
        length, samples = 72 * bitrate * 1000 // rate + padding, 576
    return length, version, layer, rate, bitrate, mode, samples


def _mp3_vbr_header(data, pos: int, hdr) -> dict | None:
    """A Xing/Info (with LAME tag) or VBRI header inside the frame at ``pos``, if any."""
    length, version, layer, _rate, _br, mode, _samples = hdr
    if layer != 1:
        return None
    side = (32 if mode != 3 else 17) if version == 3 else (17 if mode != 3 else 9)
    crc = 0 if data[pos + 1] & 1 else 2
    frame = bytes(data[pos : pos + length])
    off = 4 + crc + side
    if frame[off : off + 4] not in (b"Xing", b"Info"):
        for alt in (b"Xing", b"Info"):  # some writers put it elsewhere
            found = frame.find(alt, 4, 64)
            if found >= 0:
                off = found
                break
    if frame[off : off + 4] in (b"Xing", b"Info"):
        out = {"type": frame[off : off + 4].decode()}
        try:
            (flags,) = struct.unpack_from(">I", frame, off + 4)
            p = off + 8
            if flags & 1:
                out["frames"] = struct.unpack_from(">I", frame, p)[0]
                p += 4
            if flags & 2:
                out["bytes"] = struct.unpack_from(">I", frame, p)[0]
                p += 4
            if flags & 4:
                p += 100
            if flags & 8:
                out["quality"] = struct.unpack_from(">I", frame, p)[0]
                p += 4
            encoder = frame[p : p + 9]
            if encoder[:4] in (b"LAME", b"Lavc", b"Lavf", b"GOGO", b"L3.9") or encoder.isascii():
                text = _text(encoder)
                if text and text.isprintable():
                    out["encoder"] = text
                    if len(frame) >= p + 36:
                        out["lowpass_hz"] = frame[p + 10] * 100
                        d = frame[p + 21 : p + 24]
                        out["encoder_delay"] = d[0] << 4 | d[1] >> 4
                        out["encoder_padding"] = (d[1] & 0x0F) << 8 | d[2]
                        tag_crc = struct.unpack_from(">H", frame, p + 34)[0] if len(frame) >= p + 36 else None
                        if encoder.startswith(b"LAME") and tag_crc is not None:
                            out["tag_crc_ok"] = _crc16_arc(frame[: p + 34]) == tag_crc
        except struct.error:
            out["cut_short"] = True
        return out
    if frame[36:40] == b"VBRI":
        try:
            ver, delay, quality, nbytes, frames = struct.unpack_from(">HHHII", frame, 40)
            return {
                "type": "VBRI",
                "version": ver,
                "encoder_delay": delay,
                "quality": quality,
                "bytes": nbytes,
                "frames": frames,
            }
        except struct.error:
            return {"type": "VBRI", "cut_short": True}
    return None


def _crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (reflected 0x8005), as used by the LAME tag's own CRC."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _id3v2(data, pos: int) -> int:
    """Length of the ID3v2 tag at ``pos`` (header, body, footer)."""
    flags = data[pos + 5]
    size = _syncsafe(data[pos + 6 : pos + 10]) + 10 + (10 if flags & 0x10 else 0)
    return size


def parse_mp3(data) -> Report:
    """Walk MPEG audio frames; compare the count with the Xing/Info/VBRI header's.

    A second VBR header after the first audio frames, or a change of MPEG
    version/sample rate/channel mode mid-stream, means files were joined.
    """
    r = Report("mp3")
    size = len(data)
    pos = 0
    tags = []
    while data[pos : pos + 3] == b"ID3" and pos + 10 <= size:
        n = _id3v2(data, pos)
        tags.append({"type": f"ID3v2.{data[pos + 3]}", "offset": pos, "size": n})
        pos += n
    if pos > size:
        r.anomaly("truncated", tags[-1]["offset"], "the file ends inside an ID3v2 tag")
        pos = size
    frames = 0
    audio_bytes = 0
    samples = 0
    first = None
    vbr = None
    vbr_headers = 0
    bitrates: dict[int, int] = {}
    last_format = None
    audio_start = None
    while pos < size and frames < MAX_ITEMS:
        hdr = _mp3_header(data, pos)
        if hdr is not None and first is None and vbr is None:
            # the first frame must be followed by another frame, a tag or the end (no false sync)
            nxt = pos + hdr[0]
            if (
                nxt + 4 <= size
                and _mp3_header(data, nxt) is None
                and data[nxt : nxt + 3] not in (b"TAG", b"ID3")
                and data[nxt : nxt + 8] != b"APETAGEX"
            ):
                hdr = None
        if hdr is not None:
            length = hdr[0]
            if pos + length > size:
                r.anomaly("truncated", pos, "the last MPEG audio frame is cut short")
                break
            fmt = (hdr[1], hdr[2], hdr[3], hdr[5])
            probe = data[pos + 4 : pos + 64]
            header = None
            if b"Xing" in probe or b"Info" in probe or probe[32:36] == b"VBRI":
                header = _mp3_vbr_header(data, pos, hdr)
            if header is not None:
                vbr_headers += 1
                header["offset"] = pos
                header["frame_bytes"] = length
                if vbr is None and frames == 0:
                    vbr = header
                else:
                    r.anomaly(
                        "mp3_vbr_header_mid_stream",
                        pos,
                        "a Xing/Info/VBRI header after audio frames: usually a second file joined on",
                    )
                if "encoder" in header:
                    r.encoder("MP3 Xing/LAME tag", header["encoder"])
                if header.get("tag_crc_ok") is False:
                    r.anomaly(
                        "mp3_lame_tag_crc_errors", pos, "a LAME tag whose CRC does not match (edited header)"
                    )
                pos += length
                continue
            if first is None:
                first = hdr
                audio_start = pos
            if last_format is not None and fmt != last_format:
                r.anomaly(
                    "mp3_format_changes",
                    pos,
                    "the MPEG version, layer, sample rate or channel mode changes mid-stream",
                )
            last_format = fmt
            frames += 1
            audio_bytes += length
            samples += hdr[6]
            bitrates[hdr[4]] = bitrates.get(hdr[4], 0) + 1
            pos += length
            continue
        head = data[pos : pos + 10]
        if head[:3] == b"TAG" and size - pos == 128:
            tags.append({"type": "ID3v1", "offset": pos, "size": 128})
            pos += 128
            continue
        if head[:3] == b"ID3" and len(head) == 10:
            n = _id3v2(data, pos)
            tags.append({"type": f"ID3v2.{head[3]}", "offset": pos, "size": n})
            if frames:
                r.anomaly("mp3_id3_mid_stream", pos, "an ID3v2 tag between audio frames (files joined?)")
            pos += n
            continue
        if head[:8] == b"APETAGEX" and size - pos >= 32:
            (ape_size,) = struct.unpack_from("<I", data, pos + 12)
            tags.append({"type": "APE", "offset": pos, "size": ape_size + 32})
            pos += 32 if (size - pos) == 32 else ape_size + 32
            continue
        # lost sync: find the next plausible frame (one followed by another)
        start = pos
        pos += 1
        while pos < size:
            pos = data.find(b"\xff", pos)
            if pos < 0:
                pos = size
                break
            h = _mp3_header(data, pos)
            if h is not None and (pos + h[0] == size or _mp3_header(data, pos + h[0]) is not None):
                break
            pos += 1
        if frames == 0 and pos >= size:
            r.anomaly("no_mpeg_frames", start, "no MPEG audio frames found")
            break
        kind = "trailing_data" if pos >= size else "junk_data"
        r.anomaly(kind, start, "bytes that are not MPEG audio frames or tags")
    facts = {
        "frames": frames,
        "audio_bytes": audio_bytes,
        "tags": tags[:50],
        "bitrates_kbps": {str(k): v for k, v in sorted(bitrates.items())},
        "cbr": len(bitrates) == 1,
        "audio_start": audio_start,
    }
    if first is not None:
        facts.update(
            mpeg_version=_MP3_VERSIONS[first[1]],
            layer=4 - first[2],
            sample_rate=first[3],
            channel_mode=_MP3_MODES[first[5]],
            duration_s=round(samples / first[3], 3),
        )
    if vbr is not None:
        facts["vbr_header"] = vbr
        if "frames" in vbr and vbr["frames"] != frames:
            r.anomaly(
                "mp3_frame_count_mismatch",
                vbr["offset"],
                f"the {vbr['type']} header declares {vbr['frames']} frames; {frames} were found",
            )
        # writers count the audio bytes with or without the header frame itself
        if "bytes" in vbr and vbr["bytes"] not in (audio_bytes, audio_bytes + vbr["frame_bytes"]):
            r.anomaly(
                "mp3_byte_count_mismatch",
                vbr["offset"],
                f"the {vbr['type']} header declares {vbr['bytes']} bytes; the frames hold {audio_bytes}",
            )
    r.facts = facts
    r.streams = vbr_headers if vbr_headers > 1 else 1
    if vbr_headers > 1:
        r.anomaly("concatenated_streams", 0, "MP3 files joined end to end (several VBR headers)")
        r.anomalies["concatenated_streams"]["count"] = vbr_headers - 1
    return r


# ---------------------------------------------------------------- MP4 / 3GP / MOV

_MP4_CONTAINERS = {
    b"moov",
    b"trak",
    b"mdia",
    b"minf",
    b"stbl",
    b"udta",
    b"edts",
    b"dinf",
    b"mvex",
    b"moof",
    b"traf",
    b"mfra",
    b"meta",
    b"ilst",
    b"sinf",
    b"schi",
    b"tref",
}
_MP4_TOP = {
    b"ftyp",
    b"moov",
    b"mdat",
    b"free",
    b"skip",
    b"wide",
    b"uuid",
    b"pdin",
    b"moof",
    b"mfra",
    b"meta",
    b"styp",
    b"sidx",
    b"ssix",
    b"prft",
    b"emsg",
    b"pnot",
    b"junk",
    b"PICT",
}
_MP4_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)
_ILST_TAGS = {
    b"\xa9too": "encoder",
    b"\xa9swr": "software",
    b"\xa9enc": "encoded_by",
    b"\xa9day": "date",
    b"\xa9nam": "title",
    b"\xa9cmt": "comment",
    b"\xa9mak": "make",
    b"\xa9mod": "model",
}


def _mp4_time(seconds: int) -> str | None:
    if not seconds:
        return None
    try:
        return (_MP4_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:
        return f"invalid ({seconds})"


class _Mp4:
    def __init__(self, data, r: Report):
        self.data, self.r = data, r
        self.size = len(data)
        self.boxes = 0
        self.tracks: list[dict] = []
        self.track: dict | None = None
        self.mdats: list[tuple[int, int]] = []

    def walk(self, start: int, end: int, depth: int, parent: bytes) -> list:
        out = []
        pos = start
        while pos + 8 <= end and self.boxes < MAX_ITEMS:
            self.boxes += 1
            size, kind = struct.unpack_from(">I4s", self.data, pos)
            header = 8
            if size == 1:
                if pos + 16 > end:
                    self.r.anomaly("truncated", pos, "the file ends inside a box header")
                    break
                (size,) = struct.unpack_from(">Q", self.data, pos + 8)
                header = 16
            elif size == 0:
                size = end - pos  # "to the end of the file/parent"
            if size < header:
                self.r.anomaly("mp4_box_size_invalid", pos, "boxes with an impossible size field")
                break
            if pos + size > end:
                if end == self.size:
                    self.r.anomaly("truncated", pos, f"a '{_fourcc(kind)}' box runs past the end of the file")
                else:
                    self.r.anomaly(
                        "mp4_box_beyond_parent", pos, "boxes that run past the box containing them"
                    )
                size = end - pos
            body = pos + header
            out.append((kind, pos, size))
            if kind == b"mdat" and depth == 0:
                self.mdats.append((body, pos + size))
            self.box(kind, body, pos + size, depth, parent)
            pos += size
        if 0 < end - pos < 8:
            self.r.anomaly(
                "trailing_data" if depth == 0 else "mp4_box_beyond_parent",
                pos,
                "bytes too few to be a box after the last box",
            )
        return out

    def box(self, kind: bytes, body: int, end: int, depth: int, parent: bytes) -> None:
        d = self.data
        if depth > 32:
            return
        try:
            if kind == b"trak":
                self.track = {}
                self.tracks.append(self.track)
            if kind == b"meta":
                # ISO 'meta' is a full box (4 bytes of version/flags); QuickTime's is not
                skip = 0 if d[body + 4 : body + 8] in (b"hdlr", b"keys", b"ilst") else 4
                self.walk(body + skip, end, depth + 1, kind)
            elif kind in _MP4_CONTAINERS:
                self.walk(body, end, depth + 1, kind)
            elif parent == b"ilst":
                self.ilst_item(kind, body, end)
            elif kind == b"mvhd":
                self.r.facts["mvhd"] = self.header_times(body, "movie")
            elif kind == b"mdhd" and self.track is not None:
                self.track.update(self.header_times(body, "track"))
                lang = struct.unpack_from(">H", d, body + (24 if d[body] == 0 else 36) - 4)[0]
                self.track["language"] = "".join(chr(((lang >> s) & 31) + 0x60) for s in (10, 5, 0))
            elif kind == b"hdlr":
                handler = d[body + 8 : body + 12]
                name = _text(d[body + 24 : end]).lstrip("\x00")
                if self.track is not None and parent == b"mdia":
                    self.track["handler"] = _fourcc(handler)
                    if name:
                        self.track["handler_name"] = name
                if name:
                    self.r.encoder(f"MP4 hdlr name ({_fourcc(handler)})", name)
            elif kind == b"stsd" and self.track is not None:
                self.track["sample_entry"] = _fourcc(d[body + 12 : body + 16])
            elif kind in (b"stsz", b"stz2", b"stco", b"co64", b"stsc") and self.track is not None:
                self.sample_table(kind, body, end)
        except (struct.error, IndexError, ValueError):
            self.r.anomaly("mp4_box_size_invalid", body, "boxes too short for their own fields")

    def header_times(self, body: int, what: str) -> dict:
        d = self.data
        if d[body] == 1:
            created, modified, scale, duration = struct.unpack_from(">QQIQ", d, body + 4)
        else:
            created, modified, scale, duration = struct.unpack_from(">IIII", d, body + 4)
        out = {
            "creation_time": _mp4_time(created),
            "modification_time": _mp4_time(modified),
            "timescale": scale,
            "duration_s": round(duration / scale, 3) if scale else None,
        }
        if created:
            key = f"mp4 {what} creation_time" + (f" #{len(self.tracks)}" if what == "track" else "")
            self.r.creation[key] = out["creation_time"]
        if modified and modified != created:
            key = f"mp4 {what} modification_time" + (f" #{len(self.tracks)}" if what == "track" else "")
            self.r.creation[key] = out["modification_time"]
        return out

    def ilst_item(self, kind: bytes, body: int, end: int) -> None:
        d = self.data
        if d[body + 4 : body + 8] != b"data":
            return
        (length,) = struct.unpack_from(">I", d, body)
        value = _text(d[body + 16 : min(body + length, end)])
        tag = _ILST_TAGS.get(kind)
        if tag in ("encoder", "software", "encoded_by"):
            self.r.encoder(f"MP4 {_fourcc(kind)}", value)
        elif tag == "date":
            self.r.creation[f"MP4 {_fourcc(kind)}"] = value

    def sample_table(self, kind: bytes, body: int, end: int) -> None:
        d, t = self.data, self.track
        if kind == b"stsz":
            sample_size, count = struct.unpack_from(">II", d, body + 4)
            if sample_size:
                t["sizes"] = np.full(count, sample_size, dtype=np.int64) if count <= MAX_ITEMS * 10 else None
            else:
                if body + 12 + 4 * count > end:
                    raise ValueError("stsz")
                t["sizes"] = np.frombuffer(d, ">u4", count, body + 12).astype(np.int64)
        elif kind == b"stco":
            (count,) = struct.unpack_from(">I", d, body + 4)
            if body + 8 + 4 * count > end:
                raise ValueError("stco")
            t["offsets"] = np.frombuffer(d, ">u4", count, body + 8).astype(np.int64)
        elif kind == b"co64":
            (count,) = struct.unpack_from(">I", d, body + 4)
            if body + 8 + 8 * count > end:
                raise ValueError("co64")
            t["offsets"] = np.frombuffer(d, ">u8", count, body + 8).astype(np.int64)
        elif kind == b"stsc":
            (count,) = struct.unpack_from(">I", d, body + 4)
            if body + 8 + 12 * count > end:
                raise ValueError("stsc")
            t["stsc"] = np.frombuffer(d, ">u4", count * 3, body + 8).reshape(-1, 3).astype(np.int64)

    def check_chunks(self) -> None:
        """Every chunk must lie inside an mdat, chunks must not overlap, and mdat bytes should be used."""
        ranges = []
        for i, t in enumerate(self.tracks, 1):
            sizes, offsets, stsc = t.pop("sizes", None), t.pop("offsets", None), t.pop("stsc", None)
            if sizes is None or offsets is None or stsc is None:
                continue
            t["samples"] = int(sizes.size)
            nchunks = offsets.size
            if nchunks == 0:
                continue
            first = stsc[:, 0]
            if stsc.size == 0 or first[0] != 1 or np.any(np.diff(first) <= 0) or first[-1] > nchunks:
                self.r.anomaly(
                    "mp4_sample_table_inconsistent", 0, f"track {i}: the sample-to-chunk table is malformed"
                )
                continue
            runs = np.diff(np.append(first, nchunks + 1))
            per_chunk = np.repeat(stsc[:, 1], runs)
            if int(per_chunk.sum()) != sizes.size:
                self.r.anomaly(
                    "mp4_sample_table_inconsistent",
                    0,
                    f"track {i}: chunks hold {int(per_chunk.sum())} samples, the size table lists {sizes.size}",
                )
                continue
            bounds = np.concatenate(([0], np.cumsum(sizes)))
            starts_idx = np.concatenate(([0], np.cumsum(per_chunk)[:-1]))
            lengths = bounds[starts_idx + per_chunk] - bounds[starts_idx]
            ranges.append(np.stack([offsets, offsets + lengths], axis=1))
        if not ranges:
            return
        chunks = np.concatenate(ranges)
        chunks = chunks[np.argsort(chunks[:, 0], kind="stable")]
        inside = np.zeros(len(chunks), dtype=bool)
        for a, b in self.mdats:
            inside |= (chunks[:, 0] >= a) & (chunks[:, 1] <= b)
        for start in chunks[~inside, 0][:MAX_ANOMALY_OFFSETS]:
            self.r.anomaly(
                "mp4_chunk_outside_mdat", int(start), "sample data referenced outside any mdat box"
            )
        outside = int((~inside).sum())
        if outside > MAX_ANOMALY_OFFSETS:
            self.r.anomalies["mp4_chunk_outside_mdat"]["count"] = outside
        overlaps = np.nonzero(chunks[1:, 0] < chunks[:-1, 1])[0]
        for k in overlaps[:MAX_ANOMALY_OFFSETS]:
            self.r.anomaly("mp4_chunk_overlap", int(chunks[k + 1, 0]), "chunks of sample data that overlap")
        referenced = 0  # bytes of mdat covered by at least one chunk (the union of the chunks inside)
        reach = -1
        for start, end in chunks[inside].tolist():
            start = max(start, reach)
            if end > start:
                referenced += end - start
                reach = end
        mdat_bytes = sum(b - a for a, b in self.mdats)
        self.r.facts["mdat_bytes"] = mdat_bytes
        self.r.facts["referenced_sample_bytes"] = referenced
        if mdat_bytes > referenced and self.mdats:
            self.r.anomaly(
                "mp4_mdat_unreferenced_bytes",
                self.mdats[0][0],
                f"{mdat_bytes - referenced} bytes inside mdat are not referenced by any track",
            )


def _fourcc(b: bytes) -> str:
    return bytes(b).decode("latin-1")


def parse_mp4(data) -> Report:
    """Walk ISO/QuickTime boxes: sizes against parents and the file, top-level layout, sample tables."""
    r = Report("mp4")
    m = _Mp4(data, r)
    top = m.walk(0, len(data), 0, b"")
    kinds = [k for k, _, _ in top]
    ftyp = next(((p, s) for k, p, s in top if k == b"ftyp"), None)
    if ftyp:
        p, s = ftyp
        brand, minor = struct.unpack_from(">4sI", data, p + 8) if s >= 16 else (b"????", 0)
        compat = [_fourcc(data[i : i + 4]) for i in range(p + 16, p + s - 3, 4)][:32]
        r.facts.update(major_brand=_fourcc(brand), minor_version=minor, compatible_brands=compat)
        if kinds[0] != b"ftyp":
            r.anomaly("mp4_ftyp_not_first", p, "the ftyp box is not the first box")
    r.facts["top_level_boxes"] = [{"type": _fourcc(k), "offset": p, "size": s} for k, p, s in top[:64]]
    moovs = [p for k, p, _ in top if k == b"moov"]
    if not moovs:
        r.anomaly(
            "mp4_missing_moov",
            0,
            "no moov box: the index of the media is missing (cut short or not finished)",
        )
    for p in moovs[1:]:
        r.anomaly("mp4_duplicate_moov", p, "more than one moov box")
    if not m.mdats and b"moof" not in kinds:
        r.anomaly("mp4_missing_mdat", 0, "no mdat box: there is no media data")
    for k, p, _ in top:
        if k not in _MP4_TOP:
            r.anomaly("mp4_unknown_top_level_box", p, "top-level boxes of a type this parser does not know")
    r.facts["free_bytes"] = sum(s for k, _, s in top if k in (b"free", b"skip", b"wide"))
    r.facts["fragmented"] = b"moof" in kinds
    r.facts["moov_before_mdat"] = bool(moovs and m.mdats and moovs[0] < m.mdats[0][0])
    if not r.facts["fragmented"]:
        m.check_chunks()
    r.facts["tracks"] = m.tracks
    r.streams = max(1, len(moovs))
    return r


# ---------------------------------------------------------------- WAV

_WAV_FORMATS = {
    1: "PCM",
    3: "IEEE float",
    6: "A-law",
    7: "mu-law",
    0x11: "IMA ADPCM",
    0x55: "MPEG Layer 3",
    0xFFFE: "extensible",
}
_INFO_TAGS = {
    b"ISFT": "software",
    b"ICRD": "creation date",
    b"INAM": "title",
    b"IART": "artist",
    b"ICMT": "comment",
    b"IENG": "engineer",
    b"ITCH": "technician",
    b"ISRC": "source",
}


def parse_wav(data) -> Report:
    """Walk RIFF chunks: RIFF size vs file size, fmt consistency, data size, INFO and BWF bext tags."""
    r = Report("wav")
    size = len(data)
    riff, riff_size = bytes(data[0:4]), struct.unpack_from("<I", data, 4)[0]
    endian = ">" if riff == b"RIFX" else "<"
    if riff == b"RIFX":
        riff_size = struct.unpack_from(">I", data, 4)[0]
    r.facts["riff"] = riff.decode()
    if riff != b"RF64" and riff_size + 8 != size:
        kind = "truncated" if riff_size + 8 > size else "trailing_data"
        r.anomaly(kind, 4, f"the RIFF header declares {riff_size + 8} bytes; the file has {size}")
    pos = 12
    chunks = []
    fmt = None
    data_chunks = []
    while pos + 8 <= size and len(chunks) < 10_000:
        cid, csize = bytes(data[pos : pos + 4]), struct.unpack_from(endian + "I", data, pos + 4)[0]
        body = pos + 8
        chunks.append({"id": _fourcc(cid), "offset": pos, "size": csize})
        end = body + csize
        if cid == b"data":
            data_chunks.append((body, csize))
            if riff == b"RF64" or csize == 0xFFFFFFFF:
                end = size
        if end > size:
            r.anomaly(
                "truncated", pos, f"the '{_fourcc(cid)}' chunk declares {csize} bytes; the file ends first"
            )
        if cid == b"fmt " and csize >= 16:
            tag, ch, rate, byte_rate, align, bits = struct.unpack_from(endian + "HHIIHH", data, body)
            fmt = {
                "format": _WAV_FORMATS.get(tag, f"0x{tag:04x}"),
                "format_tag": tag,
                "channels": ch,
                "sample_rate": rate,
                "byte_rate": byte_rate,
                "block_align": align,
                "bits_per_sample": bits,
            }
            if tag in (1, 3, 0xFFFE) and (align != ch * ((bits + 7) // 8) or byte_rate != rate * align):
                r.anomaly(
                    "wav_fmt_inconsistent", pos, "the fmt chunk's byte rate or block alignment do not match"
                )
        elif cid == b"LIST" and data[body : body + 4] == b"INFO":
            p = body + 4
            while p + 8 <= min(end, size):
                sid, ssize = bytes(data[p : p + 4]), struct.unpack_from(endian + "I", data, p + 4)[0]
                value = _text(data[p + 8 : p + 8 + ssize])
                if sid in (b"ISFT", b"IENG", b"ITCH"):
                    r.encoder(f"WAV INFO {_fourcc(sid)}", value)
                elif sid == b"ICRD":
                    r.creation["WAV INFO ICRD"] = value
                if sid in _INFO_TAGS:
                    r.facts.setdefault("info", {})[_INFO_TAGS[sid]] = value[:500]
                p += 8 + ssize + (ssize & 1)
        elif cid == b"bext" and csize >= 348:
            b = bytes(data[body : body + min(csize, 65536)])
            bext = {
                "description": _text(b[0:256]),
                "originator": _text(b[256:288]),
                "originator_reference": _text(b[288:320]),
                "origination_date": _text(b[320:330]),
                "origination_time": _text(b[330:338]),
                "time_reference_samples": struct.unpack_from("<Q", b, 338)[0],
                "coding_history": _text(b[602:])[:2000] if len(b) > 602 else "",
            }
            r.facts["bext"] = bext
            r.encoder("BWF bext originator", bext["originator"])
            if bext["origination_date"]:
                r.creation["BWF bext origination"] = (
                    f"{bext['origination_date']} {bext['origination_time']}".strip()
                )
        pos = end + (csize & 1)
    if 0 < size - pos < 8 and pos < size:
        r.anomaly("trailing_data", pos, "bytes after the last chunk, too few to be a chunk")
    r.facts["chunks"] = chunks[:64]
    if fmt:
        r.facts["fmt"] = fmt
    if not data_chunks:
        r.anomaly("wav_missing_data", 12, "no data chunk")
    for body, _ in data_chunks[1:]:
        r.anomaly("wav_multiple_data_chunks", body - 8, "more than one data chunk (joined or edited)")
    if data_chunks and fmt and fmt["block_align"]:
        body, csize = data_chunks[0]
        available = min(csize, size - body)
        r.facts["data_bytes"] = available
        if available % fmt["block_align"]:
            r.anomaly(
                "wav_partial_sample_frame",
                body - 8,
                "the data chunk does not hold a whole number of sample frames (cut)",
            )
        if fmt["byte_rate"]:
            r.facts["duration_s"] = round(available / fmt["byte_rate"], 3)
    return r


# ---------------------------------------------------------------- AMR

_AMR_NB = (13, 14, 16, 18, 20, 21, 27, 32, 6, 1, 1, 1, 1, 1, 1, 1)  # with the 1-byte header
_AMR_WB = (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 1, 1, 1, 1, 1, 1)
_AMR_NB_MODES = ("4.75", "5.15", "5.9", "6.7", "7.4", "7.95", "10.2", "12.2")
_AMR_WB_MODES = ("6.6", "8.85", "12.65", "14.25", "15.85", "18.25", "19.85", "23.05", "23.85")


def parse_amr(data) -> Report:
    """The AMR storage format (RFC 4867 section 5): magic, then 20 ms frames with a mode byte each."""
    r = Report("amr")
    head = bytes(data[:16])
    if head.startswith(b"#!AMR-WB\n"):
        sizes, modes, pos, variant = _AMR_WB, _AMR_WB_MODES, 9, "AMR-WB"
    elif head.startswith(b"#!AMR\n"):
        sizes, modes, pos, variant = _AMR_NB, _AMR_NB_MODES, 6, "AMR-NB"
    else:
        r.anomaly("amr_unsupported_variant", 0, "an AMR variant this parser does not read (multichannel?)")
        r.facts["variant"] = head.split(b"\n")[0].decode("latin-1")
        return r
    size = len(data)
    frames = no_data = sid = bad_quality = 0
    mode_counts: dict[str, int] = {}
    nspeech = len(modes)
    while pos < size and frames < MAX_ITEMS:
        b = data[pos]
        ft, q = (b >> 3) & 0x0F, (b >> 2) & 1
        if b & 0x83:
            r.anomaly("amr_padding_bits", pos, "frame headers with non-zero padding bits (not an AMR frame?)")
        if nspeech <= ft < 15 and ft != (8 if variant == "AMR-NB" else 9):
            r.anomaly("amr_reserved_frame_type", pos, "frames of a reserved type")
        length = sizes[ft]
        if pos + length > size:
            r.anomaly("truncated", pos, "the last AMR frame is cut short")
            break
        frames += 1
        if ft == 15:
            no_data += 1
        elif ft < nspeech:
            mode_counts[modes[ft]] = mode_counts.get(modes[ft], 0) + 1
        else:
            sid += 1
        if not q:
            bad_quality += 1
        pos += length
    r.facts = {
        "variant": variant,
        "frames": frames,
        "duration_s": round(frames * 0.02, 3),
        "modes_kbps": mode_counts,
        "no_data_frames": no_data,
        "sid_frames": sid,
        "bad_quality_frames": bad_quality,
    }
    if bad_quality:
        r.anomalies["amr_bad_quality_frames"] = {
            "count": bad_quality,
            "offsets": [],
            "note": "frames flagged as damaged (Q bit 0) by the encoder/receiver",
        }
    return r


# ---------------------------------------------------------------- ADTS (raw AAC)

_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_PROFILES = ("Main", "LC", "SSR", "LTP")


def parse_adts(data) -> Report:
    """Walk ADTS frames (raw AAC): sync word, layer, frame length; count frames and lost sync."""
    r = Report("adts")
    size = len(data)
    pos = frames = 0
    first = None
    while pos < size and frames < MAX_ITEMS:
        b = data[pos : pos + 7]
        if len(b) == 7 and b[0] == 0xFF and b[1] & 0xF6 == 0xF0:
            length = ((b[3] & 3) << 11) | (b[4] << 3) | (b[5] >> 5)
            if length >= 7:
                if pos + length > size:
                    r.anomaly("truncated", pos, "the last ADTS frame is cut short")
                    break
                if first is None:
                    first = b
                frames += 1
                pos += length
                continue
        if b[:3] == b"TAG" and size - pos == 128:
            break
        nxt = data.find(b"\xff", pos + 1)
        r.anomaly("junk_data" if nxt >= 0 else "trailing_data", pos, "bytes that are not ADTS frames")
        if nxt < 0:
            break
        pos = nxt
    r.facts["frames"] = frames
    if first is not None:
        rate_index = (first[2] >> 2) & 15
        rate = _ADTS_RATES[rate_index] if rate_index < len(_ADTS_RATES) else None
        r.facts.update(
            profile=_AAC_PROFILES[first[2] >> 6],
            sample_rate=rate,
            channel_config=((first[2] & 1) << 2) | (first[3] >> 6),
            crc_present=not first[1] & 1,
        )
        if rate:
            r.facts["duration_s"] = round(frames * 1024 / rate, 3)
    return r


# ---------------------------------------------------------------- FLAC

_FLAC_BLOCKS = {
    0: "STREAMINFO",
    1: "PADDING",
    2: "APPLICATION",
    3: "SEEKTABLE",
    4: "VORBIS_COMMENT",
    5: "CUESHEET",
    6: "PICTURE",
}


def parse_flac(data) -> Report:
    """Native FLAC metadata blocks: STREAMINFO (rate, channels, bits, total samples, MD5) and tags."""
    r = Report("flac")
    pos = data.find(b"fLaC", 0, 1 << 20)
    if pos > 0:
        r.facts["leading_tag_bytes"] = pos
    pos += 4
    size = len(data)
    blocks = []
    while pos + 4 <= size and len(blocks) < 1000:
        header = data[pos]
        kind, length = header & 0x7F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        body = pos + 4
        blocks.append({"type": _FLAC_BLOCKS.get(kind, str(kind)), "offset": pos, "size": length})
        if body + length > size:
            r.anomaly("truncated", pos, "the file ends inside a FLAC metadata block")
            break
        if kind == 0 and length >= 34:
            b = bytes(data[body : body + 34])
            minb, maxb = struct.unpack_from(">HH", b, 0)
            packed = int.from_bytes(b[10:18], "big")
            rate, ch, bits, total = (
                packed >> 44,
                ((packed >> 41) & 7) + 1,
                ((packed >> 36) & 31) + 1,
                packed & ((1 << 36) - 1),
            )
            md5 = b[18:34].hex()
            r.facts["streaminfo"] = {
                "min_block": minb,
                "max_block": maxb,
                "sample_rate": rate,
                "channels": ch,
                "bits_per_sample": bits,
                "total_samples": total,
                "md5": md5,
            }
            if rate:
                r.facts["duration_s"] = round(total / rate, 3)
            if md5 == "0" * 32:
                r.anomaly(
                    "flac_md5_unset",
                    body + 18,
                    "STREAMINFO carries no MD5 of the audio (the writer did not compute it)",
                )
            if not total:
                r.anomaly(
                    "flac_total_samples_unset",
                    body + 10,
                    "STREAMINFO does not say how many samples there are",
                )
        elif kind == 4:
            r.facts["tags"] = _vorbis_comments(bytes(data[body : body + length]), r, "FLAC Vorbis comment")
        pos = body + length
        if header & 0x80:
            break
    r.facts["metadata_blocks"] = blocks[:64]
    r.facts["audio_offset"] = pos
    if pos < size and data[pos : pos + 2] not in (b"\xff\xf8", b"\xff\xf9"):
        r.anomaly("junk_data", pos, "the first audio frame does not follow the metadata blocks")
    return r


# ---------------------------------------------------------------- EBML (Matroska / WebM)

_EBML_MASTER = {
    0x18538067: "Segment",
    0x1549A966: "Info",
    0x1654AE6B: "Tracks",
    0xAE: "TrackEntry",
    0xE1: "Audio",
    0x1F43B675: "Cluster",
    0x1254C367: "Tags",
    0x7373: "Tag",
    0x67C8: "SimpleTag",
    0x1A45DFA3: "EBML",
}
_EBML_TOP = {
    0x114D9B74,
    0x1549A966,
    0x1654AE6B,
    0x1F43B675,
    0x1C53BB6B,
    0x1941A469,
    0x1043A770,
    0x1254C367,
    0xEC,
}
_EBML_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)


def _vint(data, pos: int, mask: bool):
    first = data[pos]
    if first == 0:
        return None, 1
    length = 8 - first.bit_length() + 1
    value = int.from_bytes(data[pos : pos + length], "big")
    if mask:
        unknown = value == (1 << (7 * length)) - 1 | (1 << (7 * length))
        value &= (1 << (7 * length)) - 1
        if unknown:
            return -1, length
    return value, length


def parse_ebml(data) -> Report:
    """Walk EBML elements of Matroska/WebM: header DocType, Segment Info (apps, date), Tracks, Clusters."""
    r = Report("ebml")
    size = len(data)
    counts = {"segments": 0, "clusters": 0, "ebml_headers": 0, "elements": 0}
    tracks: list[dict] = []
    current: dict = {}

    def walk(pos: int, end: int, depth: int, parent: int) -> int:
        while pos < end and counts["elements"] < MAX_ITEMS:
            counts["elements"] += 1
            if pos + 2 > size:
                r.anomaly("truncated", pos, "the file ends inside an element header")
                return size
            eid, ilen = _vint(data, pos, mask=False)
            if eid is None or pos + ilen >= size:
                r.anomaly("junk_data", pos, "bytes that are not an EBML element")
                return end
            esize, slen = _vint(data, pos + ilen, mask=True)
            if esize is None:
                r.anomaly("junk_data", pos, "bytes that are not an EBML element")
                return end
            body = pos + ilen + slen
            if parent == 0x1F43B675 and eid in _EBML_TOP:
                return pos  # an unknown-size Cluster ends where the next top-level element begins
            if esize == -1:
                stop = end
            else:
                stop = body + esize
                if stop > size:
                    r.anomaly("truncated", pos, "an element runs past the end of the file")
                    stop = size
            if eid == 0x1A45DFA3:
                counts["ebml_headers"] += 1
            if eid == 0x18538067:
                counts["segments"] += 1
            if eid == 0x1F43B675:
                counts["clusters"] += 1
                # frames are not parsed, only the Cluster boundaries
                pos = walk(body, stop, depth + 1, eid) if esize == -1 else stop
                continue
            if eid == 0xAE:
                current.clear()
                tracks.append(current.copy())
            if eid in _EBML_MASTER and depth < 8:
                walk(body, stop, depth + 1, eid)
                if eid == 0xAE:
                    tracks[-1] = dict(current)
            else:
                leaf(eid, body, stop)
            pos = stop
        return pos

    def leaf(eid: int, body: int, stop: int) -> None:
        raw = bytes(data[body : min(stop, body + 4096)])
        if eid == 0x4282:
            r.facts["doctype"] = _text(raw)
        elif eid == 0x4D80:
            r.encoder("Matroska MuxingApp", raw)
        elif eid == 0x5741:
            r.encoder("Matroska WritingApp", raw)
        elif eid == 0x4461 and len(raw) == 8:
            ns = int.from_bytes(raw, "big", signed=True)
            r.creation["Matroska DateUTC"] = (_EBML_EPOCH + timedelta(microseconds=ns // 1000)).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            )
        elif eid == 0x4489 and len(raw) in (4, 8):
            r.facts["segment_duration_ticks"] = struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0]
        elif eid == 0x2AD7B1:
            r.facts["timecode_scale_ns"] = int.from_bytes(raw, "big")
        elif eid == 0x86:
            current["codec_id"] = _text(raw)
        elif eid == 0x83:
            current["track_type"] = int.from_bytes(raw, "big")
        elif eid == 0xB5 and len(raw) in (4, 8):
            current["sampling_frequency"] = struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0]
        elif eid == 0x9F:
            current["channels"] = int.from_bytes(raw, "big")
        elif eid == 0x63A2:
            current["codec_private_bytes"] = stop - body

    walk(0, size, 0, 0)
    r.facts.update(segments=counts["segments"], clusters=counts["clusters"], tracks=tracks)
    ticks = r.facts.pop("segment_duration_ticks", None)
    if ticks is not None:
        r.facts["duration_s"] = round(ticks * r.facts.get("timecode_scale_ns", 1_000_000) / 1e9, 3)
    r.streams = max(1, counts["segments"])
    if counts["segments"] > 1:
        r.anomaly("concatenated_streams", 0, "several Matroska segments one after another (files joined)")
        r.anomalies["concatenated_streams"]["count"] = counts["segments"] - 1
    return r


PARSERS = {
    "ogg": parse_ogg,
    "mp3": parse_mp3,
    "adts": parse_adts,
    "mp4": parse_mp4,
    "wav": parse_wav,
    "amr": parse_amr,
    "flac": parse_flac,
    "ebml": parse_ebml,
}
