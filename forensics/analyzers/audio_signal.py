"""Signal measurements of an audio file at its own sample rate, plus waveform and spectrogram pictures.

Everything is computed in one pass over the decoded samples, block by block
(``_audio_stream``), at the source's native rate and channels: clipping, DC
offset and exact zeros are properties of the native samples (resampling or
mixing to mono would smear them), and the bandwidth cannot be seen above the
Nyquist frequency of a lower rate.

Methods (all numbers rounded as stated, so results are reproducible):
- levels: peak |x| and RMS per channel in dBFS (0 dBFS = full scale), 0.01 dB;
- DC offset: the mean of each channel, in units of full scale, 6 decimals;
- clipping: runs of at least ``clip_min_samples`` consecutive samples with
  |x| >= ``clip_level`` in one channel; count, samples in runs, fraction of
  all samples, and the longest runs with their times (1 ms);
- digital silence: runs of samples that are exactly 0.0 in every channel for
  at least ``silence_min_ms``; start and end times to 1 ms;
- bandwidth: Hann-windowed STFT (about 20 Hz bins), power averaged over the
  whole file and smoothed over about 100 Hz; the effective bandwidth is the
  highest frequency whose smoothed level is within ``bandwidth_floor_db`` of
  the smoothed spectrum's peak, moved down to the highest unsmoothed bin
  still within the floor (the smoothing must not widen a steep edge);
  rounded to 10 Hz. ``cutoff_drop_db`` is how far the
  level falls from the kilohertz below that edge to the 2 kHz above it: a
  large drop well below Nyquist is a low-pass, typically a lossy encoder's.
"""

from __future__ import annotations

import math

import av
import numpy as np
import scipy
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from . import _audio_plot, _audio_stream, _figure
from .base import AnalysisError, finding

NAME = "audio.signal"
VERSION = "1.2.0"  # 1.2.0: waveform and spectrogram as labelled figures; 1.1.0: the decoded_coverage finding
TIME_LIMIT = 3600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 3 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["audio/*", "video/*", "application/ogg", "application/octet-stream"]
DESCRIPTION = (
    "Measurements on the decoded samples at their native rate: effective bandwidth (a cutoff that "
    "reveals an earlier lower-bitrate encode), clipping, DC offset, exact digital silence runs with "
    "their times, peak and RMS levels; waveform and spectrogram pictures."
)
LIMITS = [
    "Lossy decoders (Opus, AAC, MP3, AMR) rarely output exact zeros, even for silent input: "
    "digital silence runs are meaningful for PCM, FLAC and other lossless sources, and their "
    "absence in a lossy file says nothing.",
    "Clipping is counted on the decoded samples: a lossy codec smears flat clipped tops into "
    "ripples that may cross the clipping level only in places, so counts from lossy files "
    "understate clipping; peaks above 0 dBFS in a lossy file suggest the source was clipped or "
    "very loud before encoding.",
    "The effective bandwidth is the highest frequency within the floor of the spectrum's peak: "
    "a quiet recording can have its noise floor (dither) inside that range and then shows full "
    "bandwidth. Tested: white noise low-passed at 4 and 7 kHz and written as 48 kHz WAV measures "
    "within 300 Hz of the cutoff; an MP3 at 32 kbit/s written back as WAV shows its encoder's "
    "low-pass, far below 24 kHz.",
    "A low bandwidth is consistent with an earlier lossy encode, a telephone path, a low-rate "
    "recorder or a deliberate filter; it does not say which.",
    "Decoding uses FFmpeg's decoders through PyAV; packets that fail to decode are skipped and "
    "reported with their times.",
]
PARAMETERS = {
    "silence_min_ms": {
        "type": "int",
        "default": 20,
        "min": 1,
        "max": 600000,
        "help": "shortest run of exact zeros reported, in milliseconds",
    },
    "clip_level": {
        "type": "float",
        "default": 0.999,
        "min": 0.5,
        "max": 1.0,
        "help": "|sample| at or above this fraction of full scale counts as clipped",
    },
    "clip_min_samples": {
        "type": "int",
        "default": 3,
        "min": 1,
        "max": 100000,
        "help": "shortest run of clipped samples counted",
    },
    "bandwidth_floor_db": {
        "type": "float",
        "default": 60.0,
        "min": 20.0,
        "max": 120.0,
        "help": "level below the spectrum's peak that bounds the bandwidth, in dB",
    },
    "images": {"type": "bool", "default": True, "help": "draw the waveform and spectrogram pictures"},
}

MAX_LISTED_RUNS = 200  # silence runs reported one by one (the count is always complete)
WORST_CLIPS = 10
BLOCK_SECONDS = 5.0


class _Runs:
    """Runs of True in a boolean signal fed block by block (runs may cross blocks)."""

    def __init__(self, min_len: int, keep: int, longest: bool):
        self.min_len, self.keep, self.longest = min_len, keep, longest
        self.open_start: int | None = None
        self.count = 0
        self.samples = 0
        self.kept = np.zeros((0, 2), dtype=np.int64)

    def feed(self, mask: np.ndarray, offset: int) -> None:
        n = mask.size
        d = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
        starts = np.flatnonzero(d == 1) + offset
        ends = np.flatnonzero(d == -1) + offset
        if self.open_start is not None:
            if starts.size and starts[0] == offset:
                starts[0] = self.open_start
            else:
                starts = np.concatenate(([self.open_start], starts))
                ends = np.concatenate(([offset], ends))
            self.open_start = None
        if ends.size and ends[-1] == offset + n and n:
            self.open_start = int(starts[-1])
            starts, ends = starts[:-1], ends[:-1]
        self._close(starts, ends)

    def close_at(self, end: int) -> None:
        if self.open_start is not None:
            self._close(np.array([self.open_start]), np.array([end]))
            self.open_start = None

    def _close(self, starts: np.ndarray, ends: np.ndarray) -> None:
        lengths = ends - starts
        ok = lengths >= self.min_len
        if not ok.any():
            return
        runs = np.stack([starts[ok], ends[ok]], axis=1)
        self.count += int(ok.sum())
        self.samples += int(lengths[ok].sum())
        if self.longest:
            merged = np.concatenate([self.kept, runs])
            order = np.lexsort((merged[:, 0], -(merged[:, 1] - merged[:, 0])))  # longest, then earliest
            self.kept = merged[order[: self.keep]]
        elif len(self.kept) < self.keep:
            self.kept = np.concatenate([self.kept, runs[: self.keep - len(self.kept)]])


class _Spectra:
    """Short-time power spectra: one average for the bandwidth, columns for the spectrogram."""

    def __init__(self, rate: int, channels: int, expected_seconds: float | None):
        self.nfft = 2048 if rate > 24000 else 1024 if rate > 12000 else 512
        expected = int((expected_seconds or 60.0) * rate)
        # overlap frames for short files so that the picture has enough columns
        self.hop = int(min(self.nfft, max(self.nfft // 4, math.ceil(expected / _audio_plot.WIDTH))))
        self.per_column = max(1, math.ceil(expected / self.hop / _audio_plot.WIDTH))
        self.window = np.hanning(self.nfft).astype(np.float32)
        self.total = np.zeros(self.nfft // 2 + 1, dtype=np.float64)
        self.frames = 0
        self.col_sums: list[np.ndarray] = []
        self.col_counts: list[int] = []
        self.pending = np.zeros((channels, 0), dtype=np.float32)

    def feed(self, x: np.ndarray, final: bool = False) -> None:
        buf = np.concatenate([self.pending, x], axis=1) if self.pending.size else x
        n = buf.shape[1]
        if final and 0 < n < self.nfft and not self.frames:
            # a file shorter than one frame: zero-pad it (a cut-off frame at the end of a longer
            # file is left out instead, its edge would spread energy over every frequency)
            buf = np.pad(buf, ((0, 0), (0, self.nfft - n)))
            n = buf.shape[1]
        count = 0 if n < self.nfft else (n - self.nfft) // self.hop + 1
        if count:
            frames = (
                sliding_window_view(buf, self.nfft, axis=1)[:, : count * self.hop : self.hop] * self.window
            )
            spectrum = scipy.fft.rfft(frames, axis=-1)  # (channels, count, bins), complex64
            power = (spectrum.real**2 + spectrum.imag**2).sum(
                axis=0, dtype=np.float64
            )  # summed over channels
            self.total += power.sum(axis=0)
            self.frames += count
            self._columns(power)
        self.pending = buf[:, count * self.hop :] if not final else buf[:, :0]

    def _columns(self, power: np.ndarray) -> None:
        i = 0
        while i < len(power):
            if not self.col_counts or self.col_counts[-1] >= self.per_column:
                self.col_sums.append(np.zeros(power.shape[1]))
                self.col_counts.append(0)
            take = min(self.per_column - self.col_counts[-1], len(power) - i)
            self.col_sums[-1] += power[i : i + take].sum(axis=0)
            self.col_counts[-1] += take
            i += take
        if len(self.col_sums) > 2 * _audio_plot.WIDTH:  # longer than expected: halve the time resolution
            sums, counts = self.col_sums, self.col_counts
            self.col_sums = [
                sums[k] + sums[k + 1] if k + 1 < len(sums) else sums[k] for k in range(0, len(sums), 2)
            ]
            self.col_counts = [
                counts[k] + (counts[k + 1] if k + 1 < len(counts) else 0) for k in range(0, len(counts), 2)
            ]
            self.per_column *= 2

    def spectrogram(self) -> np.ndarray:
        if not self.col_sums:
            return np.zeros((1, self.nfft // 2 + 1))
        return np.stack(self.col_sums) / np.array(self.col_counts, dtype=np.float64)[:, None]


def bandwidth(mean_power: np.ndarray, rate: int, floor_db: float) -> dict:
    """Effective bandwidth of an averaged power spectrum (see the module's docstring)."""
    bins = mean_power.size
    hz = rate / 2 / (bins - 1)
    width = max(1, int(round(100 / hz)))
    smooth = np.convolve(mean_power, np.ones(width) / width, mode="same")
    level = 10 * np.log10(np.maximum(smooth, 1e-30))
    peak_bin = int(np.argmax(level[1:]) + 1)  # ignore the DC bin
    peak = float(level[peak_bin])
    above = np.flatnonzero(level[1:] >= peak - floor_db) + 1
    edge = int(above[-1]) if above.size else peak_bin
    # the moving average spreads a steep edge upwards by up to its width: take the highest
    # unsmoothed bin above the floor within that width instead
    raw = 10 * np.log10(np.maximum(mean_power[max(1, edge - width) : edge + 1], 1e-30))
    hits = np.flatnonzero(raw >= peak - floor_db)
    if hits.size:
        edge = max(1, edge - width) + int(hits[-1])
    edge_hz = edge * hz
    below = level[max(1, edge - int(1000 / hz)) : edge + 1]
    after = level[min(bins - 1, edge + int(200 / hz)) : min(bins, edge + int(2000 / hz) + 1)]
    drop = float(np.median(below) - np.median(after)) if after.size and below.size else None
    return {
        "bandwidth_hz": int(round(edge_hz / 10.0)) * 10,
        "peak_hz": int(round(peak_bin * hz / 10.0)) * 10,
        "cutoff_drop_db": round(drop, 1) if drop is not None else None,
        "nyquist_hz": rate // 2,
        "resolution_hz": round(hz, 2),
    }


def _db(value: float) -> float | None:
    return round(20 * math.log10(value), 2) if value > 0 else None


def analyze(path: str, params: dict, ctx) -> dict:
    info, blocks = _audio_stream.open_blocks(path, block_seconds=BLOCK_SECONDS)
    rate, channels = info.sample_rate, info.channels
    clip_level, clip_min = float(params["clip_level"]), int(params["clip_min_samples"])
    silence_min = max(1, int(round(params["silence_min_ms"] * rate / 1000)))
    draw = bool(params["images"])

    sums = np.zeros(channels)
    squares = np.zeros(channels)
    peaks = np.zeros(channels)
    over = np.zeros(channels, dtype=np.int64)  # samples beyond full scale (lossy overshoot)
    clips = [_Runs(clip_min, WORST_CLIPS, longest=True) for _ in range(channels)]
    silence = _Runs(silence_min, MAX_LISTED_RUNS, longest=False)
    spectra = _Spectra(rate, channels, info.expected_seconds)
    # waveform envelope: one min/max per step, 1 to 10 ms, about two steps per picture column
    expected = int((info.expected_seconds or 60.0) * rate)
    step = int(min(max(1, rate // 100), max(1, rate // 1000, expected // (2 * _audio_plot.WIDTH))))
    env_min, env_max, env_clip, env_zero = [], [], [], []
    env_pending = np.zeros((channels, 0), dtype=np.float32)
    offset = 0

    for x in blocks:
        n = x.shape[1]
        sums += x.sum(axis=1, dtype=np.float64)
        squares += np.square(x).sum(axis=1, dtype=np.float64)
        ax = np.abs(x)
        peaks = np.maximum(peaks, ax.max(axis=1))
        over += (ax > 1.0).sum(axis=1)
        hot = ax >= clip_level
        for c in range(channels):
            clips[c].feed(hot[c], offset)
        silence.feed(~x.any(axis=0), offset)
        spectra.feed(x)
        if draw:
            env = np.concatenate([env_pending, x], axis=1) if env_pending.size else x
            whole = (env.shape[1] // step) * step
            if whole:
                e = env[:, :whole].reshape(channels, -1, step)
                env_min.append(e.min(axis=2).T)
                env_max.append(e.max(axis=2).T)
                env_clip.append((np.abs(e) >= clip_level).any(axis=2).T)
                env_zero.append(~e.any(axis=(0, 2)))
            env_pending = env[:, whole:]
        offset += n
    total = offset
    if total == 0:
        raise AnalysisError("the audio stream holds no samples")
    for run in clips:
        run.close_at(total)
    silence.close_at(total)
    spectra.feed(np.zeros((channels, 0), dtype=np.float32), final=True)

    def t(sample) -> float:
        return round(int(sample) / rate, 3)

    findings = []
    add = findings.append
    decoder = info.decoder_info()
    decoder["source_sample_format"] = info.source_sample_format
    add(finding("decoder", "fact", decoder, note="how the samples measured here were obtained"))
    add(info.coverage())
    if info.decode_errors:
        add(
            finding(
                "decode_errors",
                "fact",
                len(info.decode_errors),
                at=[info.decode_errors[0][0], info.decode_errors[-1][0]],
                unit="count",
                errors=[{"at_s": a, "message": m[:200]} for a, m in info.decode_errors[:20]],
                note="packets the decoder rejected (skipped): damage, truncation or joined streams",
            )
        )
    add(
        finding(
            "decoded_duration",
            "measurement",
            t(total),
            unit="s",
            note="decoded samples per channel / sample rate",
        )
    )
    add(
        finding(
            "peak_level",
            "measurement",
            _db(float(peaks.max())),
            unit="dBFS",
            per_channel=[_db(float(p)) for p in peaks],
            samples_over_full_scale=int(over.sum()),
            note="largest |sample|; above 0 dBFS only in decoded lossy audio (overshoot)",
        )
    )
    rms = np.sqrt(squares / total)
    add(
        finding(
            "rms_level",
            "measurement",
            _db(float(np.sqrt((squares.sum()) / (total * channels)))),
            unit="dBFS",
            per_channel=[_db(float(r)) for r in rms],
            note="root mean square over the whole file",
        )
    )
    dc = [round(float(s / total), 6) + 0.0 for s in sums]  # + 0.0: no "-0.0"
    add(
        finding(
            "dc_offset",
            "measurement",
            dc,
            unit="FS",
            note="mean of each channel as a fraction of full scale; a constant offset comes from the "
            "recording hardware or a processing step",
        )
    )

    clip_runs = sum(r.count for r in clips)
    clip_samples = sum(r.samples for r in clips)
    worst = sorted(
        ((int(s), int(e), c) for c, r in enumerate(clips) for s, e in r.kept),
        key=lambda w: (-(w[1] - w[0]), w[0], w[2]),
    )[:WORST_CLIPS]
    add(
        finding(
            "clipping",
            "measurement",
            clip_runs,
            unit="runs",
            clipped_samples=clip_samples,
            fraction=round(clip_samples / (total * channels), 6),
            per_channel=[r.count for r in clips],
            level=clip_level,
            min_run=clip_min,
            note=f"runs of >= {clip_min} consecutive samples with |x| >= {clip_level} of full scale",
        )
    )
    for s, e, c in worst:
        add(
            finding(
                "clipped_run",
                "measurement",
                e - s,
                unit="samples",
                at=[t(s), t(e)],
                channel=c,
                note="one of the longest clipped runs",
            )
        )

    add(
        finding(
            "digital_silence",
            "measurement",
            silence.count,
            unit="runs",
            total_s=t(silence.samples),
            min_ms=params["silence_min_ms"],
            note="runs of samples exactly 0 in every channel; lossy decoders rarely output exact zeros",
        )
    )
    for s, e in silence.kept:
        add(
            finding(
                "silence_run",
                "measurement",
                round(int(e - s) / rate, 3),
                unit="s",
                at=[t(s), t(e)],
                note="exact digital silence",
            )
        )
    if silence.count > len(silence.kept):
        add(
            finding(
                "silence_runs_not_listed",
                "fact",
                silence.count - len(silence.kept),
                unit="runs",
                note=f"only the first {MAX_LISTED_RUNS} silence runs are listed one by one",
            )
        )

    mean_power = spectra.total / max(1, spectra.frames)
    if not mean_power[1:].any():
        add(
            finding(
                "bandwidth",
                "measurement",
                None,
                unit="Hz",
                nyquist_hz=rate // 2,
                note="no signal above 0 Hz: the recording is silent (or constant), there is no bandwidth to measure",
            )
        )
    else:
        bw = bandwidth(mean_power, rate, float(params["bandwidth_floor_db"]))
        sharp = (
            bw["cutoff_drop_db"] is not None
            and bw["cutoff_drop_db"] >= 20
            and bw["bandwidth_hz"] < 0.9 * bw["nyquist_hz"]
        )
        note = "highest frequency within the floor of the spectrum's peak; " + (
            "a sharp cutoff well below Nyquist: the audio was low-passed, e.g. by an earlier "
            "lossy encode at a lower bit rate or sample rate"
            if sharp
            else "no sharp cutoff well below Nyquist"
        )
        extra = {k: v for k, v in bw.items() if k != "bandwidth_hz"}
        add(
            finding(
                "bandwidth",
                "measurement",
                bw["bandwidth_hz"],
                unit="Hz",
                floor_db=params["bandwidth_floor_db"],
                sharp_cutoff=sharp,
                note=note,
                **extra,
            )
        )

    if draw:
        mins = np.concatenate(env_min) if env_min else np.zeros((1, channels))
        maxs = np.concatenate(env_max) if env_max else np.zeros((1, channels))
        clipped = np.concatenate(env_clip) if env_clip else None
        zero = np.concatenate(env_zero) if env_zero else None
        wave_ref = ctx.add_artifact(
            "waveform.png",
            "image/png",
            _audio_plot.waveform_png(mins, maxs, clipped, zero, duration=t(total)),
        )
        add(
            finding(
                "waveform",
                "visual",
                artifact=wave_ref,
                at=[0.0, t(total)],
                note="min/max envelope per channel against time, amplitude in full scale (dBFS marks "
                "on the right); red band at the top: clipping; blue band at the bottom: exact digital silence",
            )
        )
        spec_ref = ctx.add_artifact(
            "spectrogram.png",
            "image/png",
            _audio_plot.spectrogram_png(spectra.spectrogram(), rate=rate, duration=t(total)),
        )
        add(
            finding(
                "spectrogram",
                "visual",
                artifact=spec_ref,
                at=[0.0, t(total)],
                frequency_range=[0, rate // 2],
                db_range=_audio_plot.DB_RANGE,
                note="time across, 0 Hz at the bottom to Nyquist at the top; the colour bar gives the "
                "power in dB below the loudest cell, over a 90 dB range",
            )
        )
    return {
        "findings": findings,
        "libraries": {
            "pyav": av.__version__,
            "libavcodec": decoder["libavcodec"],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "pillow": _pillow_version(),
            **({"matplotlib": _figure.version()} if draw else {}),
        },
    }


def _pillow_version() -> str:
    import PIL

    return PIL.__version__
