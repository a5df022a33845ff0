"""Block-by-block decoding at the source's own rate and channels (PyAV).

``_audio.decode`` returns the whole recording as one array, which is right
for analyzers that resample to a low rate. Measurements that need the
native samples (clipping, DC offset, exact zeros, bandwidth) would hold an
hour of 48 kHz stereo as 1.4 GB of float32 that way; this module hands the
same samples over in blocks instead, so memory stays bounded.

Samples are converted exactly as FFmpeg's resampler converts them to float
(integers divided by 2**(bits-1)), so an integer 0 stays an exact 0.0 and
full scale is -1.0 / (1 - 2**-(bits-1)). Packets the decoder rejects are
counted with their times and skipped, instead of ending the decode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np

from ._audio import MAX_SECONDS, check_stream, coverage_finding, declared_seconds, decoder_info
from .base import AnalysisError

_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


@dataclass
class StreamInfo:
    """What was decoded and how; filled in while the blocks are read."""

    codec: str = ""
    container: str = ""
    sample_rate: int = 0
    channels: int = 0
    source_sample_format: str = ""
    expected_seconds: float | None = None  # what the headers say, before decoding
    sample_count: int = 0  # per channel, after decoding
    decode_errors: list = field(default_factory=list)  # [(time_s, message)]
    start_seconds: float | None = None  # the file's time of the first decoded sample
    end_seconds: float | None = None  # ...and the end of the last decoded frame
    stopped: bool = False  # the decoding ended at an error (the rest of the file was not read)

    def decoder_info(self) -> dict:
        return decoder_info(self.codec, self.container, self.sample_rate, self.channels, self.sample_count)

    def coverage(self) -> dict:
        """The ``decoded_coverage`` finding; call after the blocks are consumed."""
        decoded = self.sample_count / self.sample_rate
        start = max(0.0, self.start_seconds or 0.0)
        end = self.end_seconds if self.end_seconds is not None else start + decoded
        return coverage_finding(
            decoded_s=decoded,
            start_s=start,
            end_s=max(start, end),
            declared_s=self.expected_seconds,
            errors=self.decode_errors,
            stopped=self.stopped,
        )


_DTYPES = {
    "u8": np.uint8,
    "s16": np.int16,
    "s32": np.int32,
    "s64": np.int64,
    "flt": np.float32,
    "dbl": np.float64,
}


def _raw(frame: av.AudioFrame, channels: int) -> tuple[str, np.ndarray]:
    """(sample format without "p", (channels, n) array of the frame's own samples, not copied)."""
    fmt = frame.format.name
    base = fmt.rstrip("p")
    dtype = _DTYPES.get(base)
    if dtype is None:
        raise AnalysisError(f"unsupported decoded sample format {fmt}")
    n = frame.samples
    if not frame.format.is_planar:
        return base, np.frombuffer(frame.planes[0], dtype, count=n * channels).reshape(n, channels).T
    if channels == 1:
        return base, np.frombuffer(frame.planes[0], dtype, count=n).reshape(1, n)
    return base, np.stack([np.frombuffer(plane, dtype, count=n) for plane in frame.planes[:channels]])


def _to_float(base: str, raw: list[np.ndarray]) -> np.ndarray:
    """Join raw frames into one C-ordered (channels, n) float32 block, scaled like FFmpeg's resampler."""
    # C order matters: packed (interleaved) frames arrive transposed, and reductions along
    # time on a column-major block run several times slower
    array = np.concatenate(raw, axis=1) if len(raw) > 1 else raw[0]
    if base in ("flt", "dbl"):
        return np.ascontiguousarray(array, dtype=np.float32)
    if base == "u8":
        return np.ascontiguousarray((array.astype(np.float32) - 128.0) / 128.0, dtype=np.float32)
    work = np.float64 if base in ("s32", "s64") else np.float32
    return np.ascontiguousarray(array.astype(work) / _SCALE[base], dtype=np.float32)


def open_blocks(
    path: str, block_seconds: float = 5.0, max_seconds: float = MAX_SECONDS
) -> tuple[StreamInfo, Iterator[np.ndarray]]:
    """Open the first audio stream; return its info and an iterator of (channels, n) float32 blocks.

    The iterator fills ``info.sample_count`` and ``info.decode_errors`` as it
    goes. Raises AnalysisError for unreadable files, files without audio and
    streams that yield no samples at all.
    """
    try:
        container = av.open(path, mode="r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as exc:
        raise AnalysisError(f"not a readable audio or video file: {_reason(exc)}") from None
    streams = [s for s in container.streams if s.type == "audio"]
    if not streams:
        container.close()
        raise AnalysisError("the file has no audio stream")
    stream = streams[0]
    try:
        check_stream(stream)
    except AnalysisError:
        container.close()
        raise
    cc = stream.codec_context
    info = StreamInfo(
        codec=cc.name,
        container=container.format.name,
        sample_rate=cc.sample_rate or 0,
        channels=cc.channels or 0,
        source_sample_format=cc.format.name if cc.format else "",
    )
    info.expected_seconds = declared_seconds(container, stream)

    def blocks() -> Iterator[np.ndarray]:
        block = max(1, int(block_seconds * info.sample_rate))
        limit = int(max_seconds * info.sample_rate)
        pending: list[np.ndarray] = []
        pending_format = ""
        held = 0
        with container:
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.error.FFmpegError, OSError) as exc:
                    info.decode_errors.append((round(info.sample_count / info.sample_rate, 3), _reason(exc)))
                    info.stopped = True
                    break  # the demuxer cannot go on (truncated or broken container)
                try:
                    frames = packet.decode()
                except (av.error.FFmpegError, ValueError) as exc:
                    at = (
                        packet.pts * packet.time_base if packet.pts is not None and packet.time_base else None
                    )
                    at = float(at) if at is not None else info.sample_count / info.sample_rate
                    info.decode_errors.append((round(at, 3), _reason(exc)))
                    continue
                for frame in frames:
                    if frame.sample_rate != info.sample_rate or len(frame.layout.channels) != info.channels:
                        # joined files with another rate or layout: not mixed into one array
                        info.decode_errors.append(
                            (
                                round(info.sample_count / info.sample_rate, 3),
                                "sample rate or channel layout changes; the rest is not analysed",
                            )
                        )
                        info.stopped = True
                        if pending:
                            yield _to_float(pending_format, pending)
                        return
                    base, x = _raw(frame, info.channels)
                    if frame.time is not None:
                        if info.start_seconds is None:
                            info.start_seconds = float(frame.time)
                        info.end_seconds = float(frame.time) + x.shape[1] / info.sample_rate
                    if pending and base != pending_format:
                        yield _to_float(pending_format, pending)
                        pending, held = [], 0
                    pending_format = base
                    info.sample_count += x.shape[1]
                    if info.sample_count > limit:
                        raise AnalysisError(f"longer than {max_seconds / 3600:g} hours: refused")
                    pending.append(x)
                    held += x.shape[1]
                    if held >= block:
                        yield _to_float(pending_format, pending)
                        pending, held = [], 0
            if pending:
                yield _to_float(pending_format, pending)

    return info, blocks()


def _reason(exc: Exception) -> str:
    """FFmpeg's plain reason, without the errno number or the (server-side) file path."""
    return getattr(exc, "strerror", None) or type(exc).__name__
