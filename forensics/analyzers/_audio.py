"""Audio decoding shared by the audio analyzers (PyAV: FFmpeg in its wheels).

Decodes the first audio stream of any container FFmpeg reads (Ogg/Opus,
M4A/AAC, MP3, AMR/3GP, WAV, FLAC, WebM, video soundtracks) to float32 samples
in [-1, 1], optionally mixed to mono and resampled. Every result records the
decoder, its version, the output sample rate and the sample count, so a
result says exactly how its numbers were obtained.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from .base import AnalysisError

# Refuse to decode more than this (an hour of audio at 48 kHz stereo is
# ~1.4 GB of float32): analyzers choose a rate suited to what they measure.
MAX_SECONDS = 6 * 3600


@dataclass
class Decoded:
    samples: np.ndarray  # float32, shape (n,) if mono else (channels, n)
    sample_rate: int
    channels: int  # of the output
    source_channels: int
    source_sample_rate: int
    codec: str
    container: str

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.sample_rate

    @property
    def sample_count(self) -> int:
        return int(self.samples.shape[-1])

    def decoder_info(self) -> dict:
        return decoder_info(self.codec, self.container, self.sample_rate, self.channels, self.sample_count)


def decoder_info(codec: str, container: str, sample_rate: int, channels: int, sample_count: int) -> dict:
    """What every audio result records about how the file was decoded."""
    return {
        "decoder": "PyAV/FFmpeg",
        "pyav": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
        "codec": codec,
        "container": container,
        "output_sample_rate": sample_rate,
        "output_channels": channels,
        "sample_count": sample_count,
    }


def decode(
    path: str, sample_rate: int | None = None, mono: bool = True, max_seconds: float = MAX_SECONDS
) -> Decoded:
    """Decode the first audio stream; resample to ``sample_rate`` (None keeps the source rate)."""
    try:
        # Tags that are not valid UTF-8 must not stop the analysis.
        container = av.open(path, mode="r", metadata_errors="replace")
    except (av.error.InvalidDataError, av.error.FFmpegError, OSError) as exc:
        raise AnalysisError(f"not a readable audio or video file: {_reason(exc)}") from None
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise AnalysisError("the file has no audio stream")
        stream = streams[0]
        ctx = stream.codec_context
        source_rate = ctx.sample_rate or 0
        source_channels = ctx.channels or 0
        rate = sample_rate or source_rate
        if not rate:
            raise AnalysisError("the audio stream declares no sample rate")
        resampler = av.AudioResampler(format="fltp", layout="mono" if mono else None, rate=rate)
        limit = int(max_seconds * rate)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    array = out.to_ndarray()
                    chunks.append(array)
                    total += array.shape[-1]
                if total > limit:
                    raise AnalysisError(f"longer than {max_seconds / 3600:g} hours: refused")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
            if not chunks:
                raise AnalysisError(f"the audio stream cannot be decoded: {_reason(exc)}") from None
            # Truncated files decode up to the damage; what was decoded is kept
            # and the structural analyzers report the damage itself.
        if not chunks:
            raise AnalysisError("the audio stream holds no samples")
        samples = np.concatenate(chunks, axis=-1).astype(np.float32, copy=False)
        if mono:
            samples = samples.reshape(-1)
        return Decoded(
            samples=samples,
            sample_rate=rate,
            channels=1 if mono else samples.shape[0],
            source_channels=source_channels,
            source_sample_rate=source_rate,
            codec=ctx.name,
            container=container.format.name,
        )


def _reason(exc: Exception) -> str:
    """FFmpeg's message without the server-side path it may carry."""
    return getattr(exc, "strerror", None) or exc.__class__.__name__
