"""Real recordings to build evaluation sets from, as Debian packages ship them.

Speech: the Asterisk PBX prompt sets (``asterisk-core-sounds-*-wav``), studio
recordings of professional speakers, 8 kHz 16-bit mono WAV, a few hundred
prompts each (about 25-30 minutes per speaker):

- en_US_f_Allison, es_MX_f_Allison: a female speaker (English, Spanish);
- fr_CA_f_June: a female speaker (French);
- it_IT_m_Carlo: a male speaker (Italian);
- ru_RU_f_IvrvoiceRU: a female speaker (Russian).

``./scripts/test`` and ``bench/evaluate.py`` install them with apt-get when
missing (``DEBIAN_PACKAGES``).
"""

from __future__ import annotations

import functools
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOUNDS_DIR = Path("/usr/share/asterisk/sounds")
SAMPLE_RATE = 8000

# speaker directory -> (Debian package, sex of the speaker, language)
SPEAKERS = {
    "en_US_f_Allison": ("asterisk-core-sounds-en-wav", "female", "en"),
    "it_IT_m_Carlo": ("asterisk-core-sounds-it-wav", "male", "it"),
    "fr_CA_f_June": ("asterisk-core-sounds-fr-wav", "female", "fr"),
    "ru_RU_f_IvrvoiceRU": ("asterisk-core-sounds-ru-wav", "female", "ru"),
    "es_MX_f_Allison": ("asterisk-core-sounds-es-wav", "female", "es"),
}
DEBIAN_PACKAGES = sorted({p for p, _, _ in SPEAKERS.values()})


class MissingSource(RuntimeError):
    pass


@dataclass(frozen=True)
class Prompt:
    speaker: str
    path: Path
    seconds: float


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != SAMPLE_RATE:
            raise ValueError(f"{path}: not 8 kHz 16-bit mono")
        data = w.readframes(w.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


@functools.cache
def prompts(speaker: str) -> tuple[Prompt, ...]:
    """The speaker's prompts longer than 1 s, in a fixed (sorted) order."""
    base = SOUNDS_DIR / speaker
    if not base.is_dir():
        package = SPEAKERS[speaker][0]
        raise MissingSource(f"{base} is missing: install the Debian package {package}")
    out = []
    for path in sorted(base.rglob("*.wav")):
        with wave.open(str(path), "rb") as w:
            seconds = w.getnframes() / w.getframerate()
            if w.getframerate() != SAMPLE_RATE or w.getsampwidth() != 2 or w.getnchannels() != 1:
                continue
        if seconds >= 1.0:
            out.append(Prompt(speaker, path, seconds))
    return tuple(out)


def speech(
    speaker: str, seconds: float, rng: np.random.Generator, pause: tuple[float, float] = (0.2, 0.9)
) -> np.ndarray:
    """About ``seconds`` of one speaker's prompts, drawn by ``rng``, with pauses between them.

    Each prompt is trimmed of its leading and trailing silence (below -45 dBFS)
    and normalised to -20 dBFS RMS; pauses are digital silence (rooms and
    noise are added later). Returns float samples at 8 kHz.
    """
    pool = prompts(speaker)
    parts: list[np.ndarray] = []
    total = 0
    target = int(seconds * SAMPLE_RATE)
    while total < target:
        x = _read(pool[int(rng.integers(len(pool)))].path)
        x = _trim(x)
        if len(x) < SAMPLE_RATE // 2:
            continue
        rms = np.sqrt(np.mean(x**2)) or 1.0
        x = x * (10 ** (-20 / 20) / rms)
        gap = np.zeros(int(rng.uniform(*pause) * SAMPLE_RATE))
        parts += [x, gap]
        total += len(x) + len(gap)
    return np.concatenate(parts)[:target]


def _trim(x: np.ndarray, floor_db: float = -45.0, frame: int = 160) -> np.ndarray:
    n = len(x) // frame
    if n == 0:
        return x
    energy = 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > floor_db)
    if len(loud) == 0:
        return x[:0]
    return x[loud[0] * frame : (loud[-1] + 1) * frame]


def available() -> list[str]:
    """The speakers whose package is installed."""
    return [s for s in SPEAKERS if (SOUNDS_DIR / s).is_dir()]
