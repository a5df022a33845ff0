"""Container and codec facts of an audio file (or a video's soundtrack), its structure, a payload hash.

Two views of the same bytes are reported side by side:
- FFmpeg's (through PyAV): format, codec, bit rate, duration, channels,
  sample rate, every metadata tag of the container and its streams;
- this project's own parsers (``_audio_struct``), which walk the container
  byte by byte and report what FFmpeg silently tolerates: Ogg CRC errors and
  page sequence gaps, chained (joined) streams, MP3 frame counts against the
  Xing/Info header, MP4 box anomalies and sample data outside ``mdat``,
  RIFF sizes, AMR frame flags, FLAC STREAMINFO, Matroska apps and dates.

The payload hash is SHA-256 over the audio stream's coded packets in decode
order, as the demuxer hands them over, without container framing. It stays
the same when the packets are copied into another container (remuxed) and
changes when the audio is decoded and encoded again. The file is demuxed,
not decoded: this analyzer is cheap (about a second per hour of audio).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from fractions import Fraction

import av
import numpy as np

from . import _audio, _audio_struct
from .base import AnalysisError, finding

NAME = "audio.container"
VERSION = "1.0.0"
TIME_LIMIT = 1800  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["audio/*", "video/*", "application/ogg", "application/octet-stream"]
DESCRIPTION = (
    "Container and codec facts (format, codec, bit rate, duration, channels, encoder strings, "
    "creation tags), structural integrity (Ogg pages and CRCs, joined streams, MP3 frame counts "
    "against the Xing/Info header, MP4 boxes, RIFF sizes) and a hash of the coded audio packets "
    "that survives remuxing but not re-encoding."
)
LIMITS = [
    "Facts are what the file says about itself: tags, encoder strings and creation times can be "
    "written by anyone, and their absence proves nothing.",
    "The payload hash covers the first audio stream's packets as FFmpeg's demuxer delivers them "
    "(ADTS headers removed for AAC). Tested to stay equal for Opus Ogg <-> WebM/Matroska, AAC "
    "M4A <-> Matroska <-> ADTS, MP3 -> Matroska, AMR-NB .amr <-> .3gp; any re-encode changes it. "
    "PCM (WAV) is hashed as one byte stream; a change of sample format or byte order (WAV -> "
    "AIFF) changes it. A remux that drops or trims packets (cutting, a different start) changes it.",
    "Two MP3 demuxers may differ on whether a second Xing/Info frame in a joined file is audio; "
    "the hash follows FFmpeg's.",
    "Structural parsers cover Ogg, MP3, ADTS, MP4/M4A/3GP/MOV, WAV/RF64, AMR, FLAC and "
    "Matroska/WebM headers; frames inside FLAC and Matroska clusters are not walked. Other "
    "containers get FFmpeg's facts only.",
    "A clean structure does not mean an unedited recording: an editor that re-encodes and writes "
    "a fresh file leaves a clean structure.",
]
PARAMETERS: dict = {}

# metadata keys (lower-cased) that name the software that wrote the file
_ENCODER_KEYS = {
    "encoder",
    "encoded_by",
    "encoding_tool",
    "software",
    "writing_app",
    "muxing_app",
    "handler_name",
    "vendor_id",
    "com.apple.quicktime.software",
    "tsse",
    "tenc",
    "encoder_options",
}
_CREATION_KEYS = re.compile(r"creation|date|time|year|day|modif", re.IGNORECASE)
# encoder names written into the coded bitstream itself (AAC fill elements, MP3 ancillary data)
_BITSTREAM_ENCODER = re.compile(rb"(?:Lavc|LAME|Lavf|libfaac|FAAC|Nero|iTunes|FhG)[0-9A-Za-z. \-]{0,24}")


def _round(value, digits=3):
    return None if value is None else round(float(value), digits)


def _adts_header_length(packet: bytes) -> int:
    if len(packet) >= 7 and packet[0] == 0xFF and packet[1] & 0xF6 == 0xF0:
        return 7 if packet[1] & 1 else 9
    return 0


def payload_hash(container, stream) -> dict:
    """SHA-256 over the coded packets of ``stream`` in demux (= decode) order.

    Each packet is hashed as a 4-byte big-endian length followed by its bytes,
    so packet boundaries count (Opus packets are not self-delimiting). PCM
    codecs are the exception: the demuxer cuts PCM into arbitrary blocks, so
    the samples are hashed as one byte stream. AAC packets lose their ADTS
    header, which only a raw .aac file carries.
    """
    pcm = stream.codec_context.name.startswith("pcm_")
    aac = stream.codec_context.name == "aac"
    digest = hashlib.sha256()
    packets = 0
    payload = 0
    duration = 0
    time_base = stream.time_base or Fraction(1, stream.codec_context.sample_rate or 1)
    first = b""
    errors = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the end-of-stream marker, not data
            data = bytes(packet)
            if aac:
                data = data[_adts_header_length(data) :]
            if not first:
                first = data[:4096]
            if not pcm:
                digest.update(struct.pack(">I", len(data)))
            digest.update(data)
            packets += 1
            payload += len(data)
            duration += packet.duration or 0
    except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
        errors.append(f"demuxing stopped after {packets} packets: {_reason(exc)}")
    return {
        "hash": "sha256:" + digest.hexdigest(),
        "packets": packets,
        "bytes": payload,
        "duration": float(duration * time_base),
        "first_packet": first,
        "errors": errors,
        "framing": "one byte stream (PCM)" if pcm else "length-prefixed packets",
    }


def _stream_info(stream) -> dict:
    cc = stream.codec_context
    info = {"index": stream.index, "type": stream.type, "codec": cc.name if cc else None}
    if cc is None:
        return info
    if stream.type == "audio":
        info.update(
            sample_rate=cc.sample_rate,
            channels=cc.channels,
            layout=cc.layout.name if cc.layout else None,
            sample_format=cc.format.name if cc.format else None,
        )
    elif stream.type == "video":
        info.update(width=cc.width, height=cc.height)
    if stream.duration and stream.time_base:
        info["duration_s"] = _round(stream.duration * stream.time_base)
    if cc and cc.bit_rate:
        info["bit_rate"] = cc.bit_rate
    return info


def _tags(metadata) -> dict:
    return {str(k): str(v)[:1000] for k, v in sorted(dict(metadata).items())}


def analyze(path: str, params: dict, ctx) -> dict:
    size = os.path.getsize(path)
    if size == 0:
        raise AnalysisError("the file is empty")
    report = _audio_struct.parse(path)
    try:
        container = av.open(path, mode="r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as exc:
        raise AnalysisError(f"not a readable audio or video file: {_reason(exc)}") from None
    with container:
        audio = [s for s in container.streams if s.type == "audio"]
        if not audio:
            raise AnalysisError("the file has no audio stream")
        stream = audio[0]
        _audio.check_stream(stream)
        cc = stream.codec_context
        streams = [_stream_info(s) for s in container.streams]
        container_tags = _tags(container.metadata)
        stream_tags = _tags(stream.metadata)
        fmt, fmt_long = container.format.name, container.format.long_name
        container_duration = container.duration / 1e6 if container.duration else None
        container_bit_rate = container.bit_rate or None
        codec_long = cc.codec.long_name if cc.codec else None
        profile = cc.profile
        stream_duration = (
            float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        )
        sample_rate, channels = cc.sample_rate, cc.channels
        layout = cc.layout.name if cc.layout else None
        stream_bit_rate = cc.bit_rate or None
        codec = cc.name
        hashed = payload_hash(container, stream)

    findings = []
    add = findings.append
    versions = {
        k: ".".join(map(str, v))
        for k, v in av.library_versions.items()
        if k in ("libavcodec", "libavformat", "libavutil")
    }
    add(
        finding(
            "decoder",
            "fact",
            {
                "decoder": "PyAV/FFmpeg",
                "pyav": av.__version__,
                **versions,
                "codec": codec,
                "container": fmt,
                "output_sample_rate": sample_rate,
                "output_channels": channels,
                "sample_count": int(round(hashed["duration"] * sample_rate)) if sample_rate else None,
                "decoded": False,
            },
            note="demuxed with PyAV, not decoded: the sample count comes from the packets' durations",
        )
    )
    add(finding("container_format", "fact", fmt, long_name=fmt_long, note="FFmpeg's name for the container"))
    add(
        finding(
            "codec",
            "fact",
            codec,
            long_name=codec_long,
            profile=profile,
            note="the first audio stream's codec",
        )
    )
    add(
        finding(
            "streams", "fact", streams, note="every stream in the file (a video's soundtrack is one of them)"
        )
    )
    add(finding("sample_rate", "fact", sample_rate, unit="Hz", note="as the stream declares it"))
    add(finding("channels", "fact", channels, layout=layout, note="as the stream declares it"))
    durations = {
        "container": _round(container_duration),
        "stream": _round(stream_duration),
        "packets": _round(hashed["duration"]),
    }
    if report is not None and report.facts.get("duration_s") is not None:
        durations["structure"] = report.facts["duration_s"]
    best = next((v for v in (durations["container"], durations["stream"], durations["packets"]) if v), None)
    add(
        finding(
            "duration",
            "fact",
            best,
            unit="s",
            sources=durations,
            note="seconds; from the container header, the stream header, the sum of packet durations "
            "and this project's parser (where it knows)",
        )
    )
    add(
        finding(
            "bit_rate",
            "fact",
            container_bit_rate or stream_bit_rate,
            unit="bit/s",
            stream=stream_bit_rate,
            note="declared or estimated by FFmpeg",
        )
    )
    if hashed["duration"] > 0:
        add(
            finding(
                "payload_bit_rate",
                "measurement",
                int(round(hashed["bytes"] * 8 / hashed["duration"])),
                unit="bit/s",
                note="coded audio bytes x 8 / packet duration (container overhead excluded)",
            )
        )
    add(
        finding(
            "tags",
            "fact",
            {"container": container_tags, "stream": stream_tags},
            note="every metadata tag FFmpeg reads from the container and the audio stream",
        )
    )

    encoders = []
    for source, tags in (("container tag", container_tags), ("stream tag", stream_tags)):
        for key, value in tags.items():
            if key.lower() in _ENCODER_KEYS and value.strip("[]0 "):  # "[0][0][0][0]": an empty vendor
                encoders.append({"source": f"{source} {key}", "value": value})
    if report is not None:
        encoders += [e for e in report.encoders if e not in encoders]
    match = _BITSTREAM_ENCODER.search(hashed["first_packet"])
    if match:
        encoders.append({"source": "first audio packet", "value": match.group().decode("ascii").strip()})
    add(
        finding(
            "encoder_strings",
            "fact",
            encoders,
            note="names of the software that wrote the file, where it left them (tags, headers, bitstream)",
        )
    )

    creation = {}
    for source, tags in (("container", container_tags), ("stream", stream_tags)):
        for key, value in tags.items():
            if _CREATION_KEYS.search(key) and key.lower() not in ("duration",):
                creation[f"{source} {key}"] = value
    if report is not None:
        creation.update(report.creation)
    add(
        finding(
            "creation_tags",
            "fact",
            creation,
            note="dates and times the file states about itself (writable by anyone)",
        )
    )

    add(
        finding(
            "payload_hash",
            "fact",
            hashed["hash"],
            packets=hashed["packets"],
            bytes=hashed["bytes"],
            codec=codec,
            framing=hashed["framing"],
            note="SHA-256 of the coded audio packets without container framing: equal after a remux into "
            "another container, different after re-encoding",
        )
    )
    for error in hashed["errors"]:
        add(finding("demux_error", "fact", error, note="FFmpeg could not read the rest of the file"))

    if report is None:
        add(
            finding(
                "structure",
                "fact",
                None,
                parser=None,
                note=f"no structural parser for this container ({fmt}); FFmpeg's facts only",
            )
        )
    else:
        anomalies = report.anomalies
        add(
            finding(
                "structure",
                "fact",
                report.facts,
                parser=report.format,
                anomaly_count=sum(a["count"] for a in anomalies.values()),
                logical_streams=report.streams,
                note="what this project's parser read from the container's own headers",
            )
        )
        for kind in sorted(anomalies):
            entry = anomalies[kind]
            add(
                finding(
                    kind,
                    "fact",
                    entry["count"],
                    offsets=entry["offsets"],
                    unit="count",
                    note=entry["note"] + " (byte offsets of the first ones listed)",
                )
            )
    return {
        "findings": _jsonable(findings),
        "libraries": {"pyav": av.__version__, **versions, "numpy": np.__version__},
    }


def _jsonable(value):
    """Findings as plain JSON types (numpy scalars and tuples converted)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


def _reason(exc: Exception) -> str:
    """FFmpeg's plain reason, without the errno number or the (server-side) file path."""
    return getattr(exc, "strerror", None) or type(exc).__name__
