"""Single clips for the ENF analyzer's tests: speech with mains hum, edited at known times.

Every clip is made here from seeds, so it is the same on every run:
- speech from espeak-ng (a formant synthesiser; a crude stand-in when it is
  missing);
- mains hum at 50 Hz (or 60 Hz) with a slow random-walk wander of the grid
  frequency (within +-0.05 Hz of a base that is itself up to 0.02 Hz off
  nominal), its 2nd and 3rd harmonics;
- pink background noise;
- cuts, insertions of another recording and reorderings at known times, with
  a short crossfade (5-20 ms) and the true jump of the mains phase recorded
  (steps_deg);
- encodings through PyAV: WAV, FLAC, MP3 64k, Opus 24k in Ogg, AAC 48k in
  M4A, AMR-NB 12.2k in 3GP (8 kHz).

These clips test how the analyzer behaves (shapes, determinism, speed). The
error rates it quotes are measured on real speech instead:
forensics/evaluation/enf.py, rerun by the quick-subset test and
bench/evaluate.py.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass, field

import numpy as np

from forensics.evaluation import audio as evaluation_audio

SR = 16000  # the master clips' sample rate

HAVE_ESPEAK = shutil.which("espeak-ng") is not None

SENTENCES = [
    "The delivery arrived on Tuesday morning, a little after nine.",
    "I told him that the keys were in the drawer by the door.",
    "We drove along the river until the road turned to gravel.",
    "Nobody answered the phone at the office all afternoon.",
    "She said the meeting had been moved to the second floor.",
    "The invoice was paid in full, and the receipt was filed.",
    "Please call me back when you have checked the schedule.",
    "It was raining hard, so we waited inside the station.",
    "The car was parked behind the warehouse on the north side.",
    "He asked whether anyone had seen the package since Monday.",
    "They agreed to meet again next week to finish the report.",
    "I never signed that contract, and I want that on record.",
    "The lights in the hall were off when I came back.",
    "Our flight was delayed by two hours because of the fog.",
    "You can leave the documents with the receptionist downstairs.",
    "The numbers did not match, so we counted everything twice.",
    "After lunch the manager went out and did not return.",
    "There were three people in the room when the alarm started.",
    "I remember the date because it was my sister's birthday.",
    "The window was open, and the papers were all over the floor.",
    "We will need the original files, not the printed copies.",
    "He promised to send the money before the end of the month.",
    "The shop closes at six, but the back door stays open later.",
    "Everything was quiet until the truck pulled into the yard.",
]

VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-us+m3", "en+f2", "en-gb-x-rp", "en-us+f4"]


# ---------------------------------------------------------------- speech ---


def _espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    # espeak-ng writes a WAV header with an unknown length to stdout: read the
    # rate from the header and take everything after the "data" tag.
    rate = int.from_bytes(out[24:28], "little")
    data = out.index(b"data") + 8
    pcm = np.frombuffer(out[data : data + (len(out) - data) // 2 * 2], dtype="<i2").astype(np.float64)
    from scipy.signal import resample_poly

    g = np.gcd(SR, rate)
    return resample_poly(pcm / 32768.0, SR // g, rate // g)


def _crude_voice(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A stand-in when espeak-ng is missing: pulse trains through formant resonators."""
    from scipy.signal import lfilter

    n = int(seconds * SR)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        syl = int(rng.uniform(0.12, 0.3) * SR)
        f0 = rng.uniform(90, 220)
        pulses = np.zeros(syl)
        pulses[:: int(SR / f0)] = 1.0
        sig = pulses
        for fc in rng.uniform([300, 900, 2200], [800, 1800, 3000]):
            r = np.exp(-np.pi * 120 / SR)
            sig = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * fc / SR), r * r], sig)
        end = min(n, pos + syl)
        out[pos:end] = sig[: end - pos] * np.hanning(syl)[: end - pos]
        pos = end + int(rng.uniform(0.02, 0.5) * SR)
    return out


@functools.lru_cache(maxsize=32)
def speech(index: int, seconds: float = 75.0) -> np.ndarray:
    """A speech track (float64 at SR, RMS -22 dBFS), the same for the same index."""
    rng = np.random.default_rng(1000 + index)
    if HAVE_ESPEAK:
        voice = VOICES[index % len(VOICES)]
        order = rng.permutation(len(SENTENCES))
        text = " ".join(SENTENCES[i] for i in order) * 2
        track = _espeak(text, voice, int(rng.integers(140, 175)), int(rng.integers(30, 70)))
        while len(track) < seconds * SR:
            track = np.concatenate([track, np.zeros(SR // 2), track])
        track = track[: int(seconds * SR)]
    else:
        track = _crude_voice(seconds, rng)
    return track * (10 ** (-22 / 20) / max(np.sqrt(np.mean(track**2)), 1e-9))


# ------------------------------------------------------------ hum, noise ---


def enf_track(
    seconds: float, rng: np.random.Generator, nominal: float = 50.0, wander: float = 0.05
) -> np.ndarray:
    """Grid frequency at every sample: base (<= 0.02 Hz off nominal) + random walk within +-wander."""
    n = int(round(seconds * SR))
    steps = rng.normal(0.0, 0.001, int(seconds * 10) + 2)  # 10 steps/s: ~3 mHz per sqrt(s)
    walk = np.cumsum(steps) + rng.uniform(-wander / 2, wander / 2)
    # fold the walk back into [-wander, wander] (a reflecting boundary)
    walk = wander - np.abs((walk + wander) % (4 * wander) - 2 * wander)
    tw = np.arange(len(walk)) / 10.0
    base = nominal + rng.uniform(-0.02, 0.02)
    return base + np.interp(np.arange(n) / SR, tw, walk)


def hum_phase(freq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mains phase (radians) at every sample for a frequency track."""
    return 2 * np.pi * np.cumsum(freq) / SR + rng.uniform(0, 2 * np.pi)


def hum(
    phase: np.ndarray, rng: np.random.Generator, level_db: float, harmonics_db=(0.0, -8.0, -4.0)
) -> np.ndarray:
    """Mains hum with the fundamental at level_db dBFS RMS, and harmonics relative to it."""
    out = np.zeros(len(phase))
    for k, rel in enumerate(harmonics_db, start=1):
        amp = np.sqrt(2) * 10 ** ((level_db + rel) / 20)
        # the fundamental follows ``phase`` itself; harmonics have their own offsets
        offset = 0.0 if k == 1 else rng.uniform(0, 2 * np.pi)
        out += amp * np.cos(k * phase + offset)
    return out


def pink_noise(n: int, rng: np.random.Generator, level_db: float) -> np.ndarray:
    from scipy.signal import lfilter

    # Paul Kellet's economy pink filter, then scaled to the RMS asked for
    white = rng.normal(0.0, 1.0, n)
    pink = lfilter(
        [0.049922035, -0.095993537, 0.050612699, -0.004408786],
        [1, -2.494956002, 2.017265875, -0.522189400],
        white,
    )
    return pink * (10 ** (level_db / 20) / np.sqrt(np.mean(pink**2)))


@dataclass
class Recording:
    """An unedited recording: the sum of its parts, plus what was drawn."""

    samples: np.ndarray
    nominal: float
    hum_db: float | None
    noise_db: float
    phase: np.ndarray | None = None  # mains phase per sample (radians), None without hum


def recording(
    seconds: float,
    seed: int,
    nominal: float = 50.0,
    hum_db: float | None = None,
    speech_index: int | None = None,
    noise_db: float | None = None,
) -> Recording:
    """Speech + hum + noise. ``hum_db=None`` draws a level; use ``hum_db=-inf`` for no hum."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    idx = seed % 8 if speech_index is None else speech_index
    track = speech(idx)
    start = int(rng.integers(0, max(1, len(track) - n)))
    sig = np.resize(track[start:], n)  # repeated when the recording is longer than the track
    if hum_db is None:
        hum_db = float(rng.uniform(-72.0, -40.0))
    if noise_db is None:
        noise_db = float(rng.uniform(-66.0, -50.0))
    phase = None
    if np.isfinite(hum_db):
        phase = hum_phase(enf_track(seconds, rng, nominal), rng)
        harmonics = (0.0, float(rng.uniform(-12, -3)), float(rng.uniform(-8, 0)))
        sig += hum(phase, rng, hum_db, harmonics)
    sig += pink_noise(n, rng, noise_db)
    return Recording(sig, nominal, hum_db if np.isfinite(hum_db) else None, noise_db, phase)


# ----------------------------------------------------------------- edits ---


def _splice(parts: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[float], list[int]]:
    """Join parts with short crossfades (overlapping them, as editors do).

    Returns the signal, the splice times (s, middle of each crossfade) and the
    half-length of each crossfade in samples: the part before a splice is
    heard up to half a fade past its end point, the part after from half a
    fade before its start point.
    """
    out = parts[0]
    times, halves = [], []
    for p in parts[1:]:
        fade = 2 * int(rng.uniform(0.0025, 0.01) * SR)
        ramp = np.linspace(0.0, 1.0, fade)
        mixed = out[-fade:] * (1 - ramp) + p[:fade] * ramp
        times.append((len(out) - fade / 2) / SR)
        halves.append(fade // 2)
        out = np.concatenate([out[:-fade], mixed, p[fade:]])
    return out, times, halves


def _step(before: float, after: float) -> float:
    """The jump of the mains phase at a splice, in degrees within (-180, 180]."""
    return float(np.degrees(np.angle(np.exp(1j * (after - before)))))


@dataclass
class Clip:
    name: str
    kind: str  # "unedited" | "cut" | "insertion" | "reordering" | "no_hum"
    samples: np.ndarray
    edits: list[float] = field(default_factory=list)  # times (s) in this clip
    nominal: float = 50.0
    hum_db: float | None = None
    steps_deg: list[float] = field(default_factory=list)  # mains phase jump at each edit
    seconds: float = 0.0

    def __post_init__(self):
        self.seconds = len(self.samples) / SR


def make_cut(seed: int, seconds: float, nominal: float = 50.0) -> Clip:
    rng = np.random.default_rng(seed + 7)
    removed = float(rng.uniform(0.5, 5.0))
    rec = recording(seconds + removed, seed, nominal)
    at = float(rng.uniform(6.0, seconds - 6.0))
    a, b = int(at * SR), int((at + removed) * SR)
    sig, times, h = _splice([rec.samples[:a], rec.samples[b:]], rng)
    steps = [_step(rec.phase[a - h[0]], rec.phase[b + h[0]])]
    return Clip(f"cut-{seed}", "cut", sig, times, nominal, rec.hum_db, steps)


def make_insertion(seed: int, seconds: float, nominal: float = 50.0) -> Clip:
    rng = np.random.default_rng(seed + 11)
    length = float(rng.uniform(1.0, 6.0))
    rec = recording(seconds - length, seed, nominal)
    # another recording: other speech, other hum (phase, wander, level), other noise
    other = recording(length + 1.0, seed + 5000, nominal, speech_index=(seed + 3) % 8)
    at = float(rng.uniform(6.0, seconds - length - 6.0))
    a = int(at * SR)
    i0, i1 = int(0.5 * SR), int(0.5 * SR) + int(length * SR)
    sig, times, h = _splice([rec.samples[:a], other.samples[i0:i1], rec.samples[a:]], rng)
    steps = [
        _step(rec.phase[a - h[0]], other.phase[i0 + h[0]]),
        _step(other.phase[i1 - h[1]], rec.phase[a + h[1]]),
    ]
    return Clip(f"insertion-{seed}", "insertion", sig, times, nominal, rec.hum_db, steps)


def make_reordering(seed: int, seconds: float, nominal: float = 50.0) -> Clip:
    rng = np.random.default_rng(seed + 13)
    rec = recording(seconds, seed, nominal)
    la, lb = rng.uniform(4.0, 8.0, 2)
    at = float(rng.uniform(6.0, seconds - la - lb - 6.0))
    a, b, c = (int(x * SR) for x in (at, at + la, at + la + lb))
    s = rec.samples
    sig, times, h = _splice([s[:a], s[b:c], s[a:b], s[c:]], rng)
    ph = rec.phase
    steps = [
        _step(ph[a - h[0]], ph[b + h[0]]),
        _step(ph[c - h[1]], ph[a + h[1]]),
        _step(ph[b - h[2]], ph[c + h[2]]),
    ]
    return Clip(f"reordering-{seed}", "reordering", sig, times, nominal, rec.hum_db, steps)


def make_unedited(seed: int, seconds: float, nominal: float = 50.0, hum_db: float | None = None) -> Clip:
    rec = recording(seconds, seed, nominal, hum_db=hum_db)
    kind = "unedited" if rec.hum_db is not None else "no_hum"
    return Clip(f"{kind}-{seed}", kind, rec.samples, [], nominal, rec.hum_db)


# -------------------------------------------------------------- encoding ---


def write(tmp_path, name: str, samples: np.ndarray, codec: str) -> str:
    """Encode through the evaluation's codecs (forensics.evaluation.audio.CODECS) into a file."""
    path = tmp_path / f"{name}{evaluation_audio.suffix(codec)}"
    path.write_bytes(evaluation_audio.encode(samples, codec, SR))
    return str(path)
