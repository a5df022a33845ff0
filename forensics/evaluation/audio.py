"""What happens to speech between the mouth and the evidence file, simulated.

Every function takes a numpy ``Generator`` for its random choices, so a set is
rebuilt bit for bit from its seeds. Levels are in dBFS of float samples in
[-1, 1].

- ``resample``: to the working rate (speech sources are 8 kHz);
- ``room``: a synthetic impulse response (direct sound, early reflections,
  an exponentially decaying diffuse tail of a given RT60);
- ``noise``: pink (broadband), brown (HVAC rumble) or babble (other speech);
- ``device``: what phones and recorders do: a high-pass filter, automatic gain
  control (attack/release on a level follower) and noise suppression (a
  spectral gate that pulls bins towards a noise estimate);
- ``hum``: mains hum at 50/60 Hz with its 2nd and 3rd harmonics, the grid
  frequency wandering as a bounded random walk (mHz), and its phase;
- ``encode``: through FFmpeg's encoders (PyAV), into the bytes of a file.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
from scipy import signal


def db(x: float) -> float:
    return 10 ** (x / 20)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x
    g = np.gcd(rate_in, rate_out)
    return signal.resample_poly(x, rate_out // g, rate_in // g)


def room(
    x: np.ndarray, sr: int, rng: np.random.Generator, rt60: float, direct_ratio_db: float = 3.0
) -> np.ndarray:
    """Convolve with a synthetic room response of reverberation time ``rt60`` seconds."""
    if rt60 <= 0:
        return x
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    tail[: int(0.003 * sr)] = 0.0
    for _ in range(6):  # early reflections 3-25 ms
        tail[int(rng.uniform(0.003, 0.025) * sr)] += rng.uniform(-0.6, 0.6)
    tail *= db(-direct_ratio_db) / (np.sqrt(np.sum(tail**2)) or 1.0)
    h = np.concatenate([[1.0], tail[1:]])
    y = signal.fftconvolve(x, h)[: len(x)]
    return y * (np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(y**2)) or 1.0))


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y**2)) or 1.0)


def brown(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    y = np.cumsum(rng.standard_normal(n))
    sos = signal.butter(2, 20, "highpass", fs=sr, output="sos")
    y = signal.sosfilt(sos, y)
    return y / (np.sqrt(np.mean(y**2)) or 1.0)


def noise(
    n: int, sr: int, rng: np.random.Generator, kind: str, level_db: float, babble: np.ndarray | None = None
) -> np.ndarray:
    """``n`` samples of background noise at ``level_db`` dBFS RMS."""
    if kind == "pink":
        y = pink(n, rng)
    elif kind == "brown":
        y = brown(n, rng, sr)
    elif kind == "babble":
        if babble is None or len(babble) < n:
            raise ValueError("babble noise needs at least n samples of other speech")
        y = babble[:n] / (np.sqrt(np.mean(babble[:n] ** 2)) or 1.0)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return y * db(level_db)


def highpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, cutoff, "highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def agc(
    x: np.ndarray,
    sr: int,
    target_db: float = -20.0,
    attack: float = 0.01,
    release: float = 0.4,
    max_gain_db: float = 20.0,
) -> np.ndarray:
    """Automatic gain control: a level follower (fast attack, slow release) sets the gain."""
    block = max(1, sr // 100)  # 10 ms
    n = len(x) // block
    if n == 0:
        return x
    levels = np.sqrt(np.mean(x[: n * block].reshape(n, block) ** 2, axis=1) + 1e-12)
    a_att = np.exp(-block / (attack * sr))
    a_rel = np.exp(-block / (release * sr))
    env = np.empty(n)
    e = levels[0]
    for i, lv in enumerate(levels):
        a = a_att if lv > e else a_rel
        e = a * e + (1 - a) * lv
        env[i] = e
    gain = np.minimum(db(target_db) / env, db(max_gain_db))
    g = np.interp(np.arange(len(x)), (np.arange(n) + 0.5) * block, gain)
    return x * g


def suppress(x: np.ndarray, sr: int, strength: float = 0.8, floor_db: float = -15.0) -> np.ndarray:
    """Noise suppression: a spectral gate against the 10th percentile of each bin's level."""
    f, t, z = signal.stft(x, fs=sr, nperseg=512, noverlap=384)
    mag = np.abs(z)
    noise_floor = np.percentile(mag, 10, axis=1, keepdims=True)
    gain = np.clip(1 - strength * (noise_floor * 2.0 / (mag + 1e-12)) ** 2, db(floor_db), 1.0)
    _, y = signal.istft(z * gain, fs=sr, nperseg=512, noverlap=384)
    return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


# the high-pass filter's cutoff (Hz) in each device chain that has one
DEVICE_HIGHPASS_HZ = {"highpass": 80.0, "phone": 100.0}


def device(x: np.ndarray, sr: int, kind: str) -> np.ndarray:
    """A device's processing chain by name: 'none', 'highpass', 'agc', 'phone' (all three)."""
    if kind == "none":
        return x
    if kind == "highpass":
        return highpass(x, sr, DEVICE_HIGHPASS_HZ[kind])
    if kind == "agc":
        return agc(x, sr)
    if kind == "phone":
        return suppress(agc(highpass(x, sr, DEVICE_HIGHPASS_HZ[kind]), sr), sr)
    raise ValueError(f"unknown device {kind!r}")


def device_phase(kind: str, sr: int, freq: float) -> float:
    """The phase (radians) a device chain adds to a steady tone at ``freq`` Hz.

    Only its high-pass filter shifts the phase: gain control and the noise gate
    scale the signal by real, slowly changing gains.
    """
    if kind not in ("none", "highpass", "agc", "phone"):
        raise ValueError(f"unknown device {kind!r}")
    if kind not in DEVICE_HIGHPASS_HZ:
        return 0.0
    sos = signal.butter(2, DEVICE_HIGHPASS_HZ[kind], "highpass", fs=sr, output="sos")
    _, h = signal.sosfreqz(sos, worN=[freq], fs=sr)
    return float(np.angle(h[0]))


def grid_frequency(
    n: int, sr: int, nominal: float, rng: np.random.Generator, wander_hz: float = 0.02, offset_hz: float = 0.0
) -> np.ndarray:
    """Instantaneous grid frequency per sample: a smoothed bounded random walk around nominal+offset."""
    steps = max(2, int(n / sr) + 2)  # one value per second
    walk = np.cumsum(rng.standard_normal(steps)) * wander_hz / 4
    walk = np.clip(walk - walk.mean(), -wander_hz, wander_hz)
    per_second = nominal + offset_hz + walk
    return np.interp(np.arange(n) / sr, np.arange(steps), per_second)


def hum(
    freq: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    level_db: float,
    harmonics_db: tuple[float, float] = (-6.0, -10.0),
    phase: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    """Mains hum following ``freq`` (Hz per sample) at ``level_db`` dBFS (fundamental, peak).

    Returns (samples, phase of the fundamental in radians per sample, offsets):
    harmonic k's phase is ``k * phase + offsets[k]`` (offsets[1] is 0).
    """
    phi0 = rng.uniform(0, 2 * np.pi) if phase is None else phase
    ph = phi0 + 2 * np.pi * np.cumsum(freq) / sr
    y = np.sin(ph) * db(level_db)
    offsets = {1: 0.0}
    for k, h_db in zip((2, 3), harmonics_db, strict=True):
        offsets[k] = float(rng.uniform(0, 2 * np.pi))
        y += np.sin(k * ph + offsets[k]) * db(level_db + h_db)
    return y, ph, offsets


# name -> (container, suffix, encoder, rate, bit rate, options)
CODECS = {
    "wav": ("wav", ".wav", "pcm_s16le", 16000, None, {}),
    "flac": ("flac", ".flac", "flac", 16000, None, {}),
    "mp3": ("mp3", ".mp3", "libmp3lame", 16000, 64000, {"compression_level": "7"}),
    "mp3_128k_44k": ("mp3", ".mp3", "libmp3lame", 44100, 128000, {}),
    "aac": ("ipod", ".m4a", "aac", 16000, 48000, {"aac_coder": "fast"}),
    "opus": ("ogg", ".ogg", "libopus", 16000, 24000, {"compression_level": "5"}),
    "vorbis": ("ogg", ".ogg", "libvorbis", 16000, 48000, {}),
    "amr_nb": ("3gp", ".3gp", "libopencore_amrnb", 8000, 12200, {}),
    "g722": ("wav", ".wav", "g722", 16000, 64000, {}),
}


def encode(x: np.ndarray, codec: str, sr: int, bit_rate: int | None = None) -> bytes:
    """Encode mono float samples through ``CODECS[codec]``; returns the file's bytes.

    ``bit_rate`` (bits per second) replaces the codec's default bit rate.
    """
    fmt, _suffix, name, rate, default_rate, options = CODECS[codec]
    bit_rate = bit_rate or default_rate
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(name, rate=rate, layout="mono", options=dict(options))
        if bit_rate:
            stream.bit_rate = bit_rate
        cc = stream.codec_context
        resampler = av.AudioResampler(
            format=cc.format.name, layout="mono", rate=rate, frame_size=cc.frame_size or 1024
        )
        step = 4096
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + step], format="s16", layout="mono")
            frame.sample_rate = sr
            frame.pts = i
            frame.time_base = Fraction(1, sr)
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    return buf.getvalue()


def suffix(codec: str) -> str:
    return CODECS[codec][1]
