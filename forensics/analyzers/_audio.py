"""Audio decoding shared by the audio analyzers (PyAV: FFmpeg in its wheels).

Decodes the first audio stream of any container FFmpeg reads (Ogg/Opus,
M4A/AAC, MP3, AMR/3GP, WAV, FLAC, WebM, video soundtracks) to float32 samples
in [-1, 1], optionally mixed to mono and resampled. Every result records the
decoder, its version, the output sample rate and the sample count, so a
result says exactly how its numbers were obtained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av
import numpy as np

from .base import AnalysisError, finding

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
    declared_seconds: float | None = None  # what the headers say, before decoding
    start_seconds: float = 0.0  # the file's time of the first decoded sample
    errors: list = field(default_factory=list)  # [(time_s, message)] that ended the decoding

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.sample_rate

    @property
    def sample_count(self) -> int:
        return int(self.samples.shape[-1])

    def decoder_info(self) -> dict:
        return decoder_info(self.codec, self.container, self.sample_rate, self.channels, self.sample_count)

    def coverage(self, subject: str = "") -> dict:
        """The ``decoded_coverage`` finding: what of the file this result is about."""
        return coverage_finding(
            subject=subject,
            decoded_s=self.duration,
            start_s=self.start_seconds,
            end_s=self.start_seconds + self.duration,
            declared_s=self.declared_seconds,
            errors=self.errors,
            stopped=bool(self.errors),
        )


def declared_seconds(container, stream) -> float | None:
    """The duration the headers declare (stream first, then container), before any decoding."""
    try:
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration:
            return container.duration / 1e6
    except (TypeError, ValueError, OverflowError):
        pass
    return None


def check_stream(stream) -> None:
    """Refuse streams whose header gives the decoder nothing to work with (hostile or broken headers)."""
    cc = stream.codec_context
    if cc is None:
        raise AnalysisError(
            "the audio stream cannot be opened: its header names no decodable codec or sample format "
            "(e.g. 0 bits per sample)"
        )
    if not cc.sample_rate or not cc.channels:
        raise AnalysisError("the audio stream declares no sample rate or no channels")
    if cc.format is None:
        raise AnalysisError(
            "the audio stream declares no usable sample format (e.g. 0 bits per sample): nothing can be decoded"
        )


# Decoded within this of the declared duration counts as all of it (encoder
# delay and padding, rounding of header fields).
COVERAGE_TOLERANCE_S = 0.1


def coverage_finding(
    *,
    decoded_s: float,
    start_s: float,
    end_s: float,
    declared_s: float | None,
    errors: list,
    stopped: bool,
    subject: str = "",
) -> dict:
    """A ``fact`` finding saying what was decoded, from where to where, of how much, and what failed.

    ``errors`` are (time_s, message) pairs; ``stopped`` says decoding ended at
    the first of them (the rest of the file was not analysed) rather than
    skipping the damaged packets.
    """
    declared = _r(declared_s) if declared_s is not None else None
    short = declared is not None and decoded_s < declared_s - max(COVERAGE_TOLERANCE_S, 0.001 * declared_s)
    complete = not errors and not short
    value = {
        **({"subject": subject} if subject else {}),
        "complete": complete,
        "decoded_s": _r(decoded_s),
        "from_s": _r(start_s),
        "to_s": _r(end_s),
        "declared_s": declared,
        "error_count": len(errors),
        "errors": [{"at_s": _r(at), "message": str(message)[:200]} for at, message in errors[:20]],
    }
    of = f"{subject}: " if subject else ""
    if complete:
        note = f"{of}decoded {decoded_s:.2f} s ({start_s:.2f}-{end_s:.2f} s), all the file declares"
    else:
        parts = [f"{of}PARTIAL: decoded {decoded_s:.2f} s ({start_s:.2f}-{end_s:.2f} s)"]
        parts.append(
            f"of the {declared_s:.2f} s the headers declare"
            if declared is not None
            else "(no declared duration)"
        )
        if errors and stopped:
            at, message = errors[0]
            parts.append(
                f"; decoding stopped at {at:.2f} s: {message}; the rest of the file was not analysed"
            )
        elif errors:
            parts.append(
                f"; {len(errors)} damaged packet(s) skipped, the first at {errors[0][0]:.2f} s ({errors[0][1]})"
            )
        if short and not errors:
            parts.append("; the file ends before the declared duration (truncated, or a false header)")
        parts.append(". Every duration and rate in this result refers to the decoded part only.")
        note = " ".join(parts).replace(" ;", ";").replace(" .", ".")
    return finding("decoded_coverage", "fact", value, unit="s", at=[_r(start_s), _r(end_s)], note=note)


def _r(x: float) -> float:
    return round(float(x), 3)


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
        check_stream(stream)
        ctx = stream.codec_context
        declared = declared_seconds(container, stream)
        source_rate = ctx.sample_rate or 0
        source_channels = ctx.channels or 0
        rate = sample_rate or source_rate
        if not rate:
            raise AnalysisError("the audio stream declares no sample rate")
        resampler = av.AudioResampler(format="fltp", layout="mono" if mono else None, rate=rate)
        limit = int(max_seconds * rate)
        chunks: list[np.ndarray] = []
        total = 0
        start = None
        errors = []
        try:
            for frame in container.decode(stream):
                if start is None and frame.time is not None:
                    start = float(frame.time)
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
            # Damaged or truncated files decode up to the damage, in one piece
            # (skipping packets would shift every later time); what was decoded
            # is kept, and the coverage finding says where it stopped and why.
            errors.append(((start or 0.0) + total / rate, _reason(exc)))
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
            declared_seconds=declared,
            start_seconds=max(0.0, start or 0.0),
            errors=errors,
        )


def _reason(exc: Exception) -> str:
    """FFmpeg's message without the server-side path it may carry."""
    return getattr(exc, "strerror", None) or exc.__class__.__name__
