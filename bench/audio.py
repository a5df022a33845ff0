"""Seconds of analysis per hour of audio, for each audio analyzer, on one core.

    python bench/audio.py [--minutes 10] [--codec opus]

Builds a recording of the given length (synthetic speech-like signal, mains
hum with a slow wander, background noise), encodes it like a leaked clip
(Opus 24 kbit/s in Ogg by default), runs each audio analyzer's pure function
in this process and reports CPU seconds per hour of audio and the share of
real time. Target for the whole suite: at most 1/30 of real time (120 s per
hour). The context alignment is timed for a 3-minute clip against the whole
recording as reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "custody.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

import av  # noqa: E402
import numpy as np  # noqa: E402

from forensics import analyzers  # noqa: E402
from forensics.analyzers.base import AnalysisContext, validate_parameters  # noqa: E402

RATE = 16000


def synthesize(seconds: float, seed: int = 1) -> np.ndarray:
    """Speech-like bursts (formant-ish tones with syllable envelopes) over hum and noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n, dtype=np.float32)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.08, 0.35) * RATE)
        end = min(n, pos + length)
        seg = t[pos:end]
        f0 = rng.uniform(90, 220)
        burst = sum(
            np.sin(2 * np.pi * f * seg) / (k + 1)
            for k, f in enumerate([f0, 2 * f0, rng.uniform(500, 900), rng.uniform(1200, 2400)])
        )
        out[pos:end] = (0.25 * burst * np.hanning(end - pos)).astype(np.float32)
        pos = end + int(rng.uniform(0.02, 0.4) * RATE)
    wander = np.cumsum(rng.normal(0, 0.0005, n)).clip(-0.05, 0.05)
    hum = 0.01 * np.sin(2 * np.pi * np.cumsum(50 + wander) / RATE)
    return (out + hum + rng.normal(0, 0.003, n)).astype(np.float32)


def encode(samples: np.ndarray, path: Path, codec: str) -> None:
    fmt = {
        "opus": ("ogg", "libopus", 48000, 24000),
        "wav": ("wav", "pcm_s16le", RATE, None),
        "aac": ("ipod", "aac", 48000, 64000),
        "mp3": ("mp3", "libmp3lame", 44100, 64000),
    }[codec]
    container = av.open(str(path), "w", format=fmt[0])
    stream = container.add_stream(fmt[1], rate=fmt[2])
    stream.layout = "mono"
    if fmt[3]:
        stream.bit_rate = fmt[3]
    resampler = av.AudioResampler(
        format=stream.format.name if fmt[1] != "pcm_s16le" else "s16", layout="mono", rate=fmt[2]
    )
    for start in range(0, len(samples), RATE):
        frame = av.AudioFrame.from_ndarray(
            samples[start : start + RATE].reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = RATE
        for out in resampler.resample(frame):
            for packet in stream.encode(out):
                container.mux(packet)
    for out in resampler.resample(None):
        for packet in stream.encode(out):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--codec", default="opus", choices=["opus", "wav", "aac", "mp3"])
    args = parser.parse_args()
    registry = analyzers.registry()
    audio = sorted(name for name in registry if name.startswith("audio."))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = args.minutes * 60
        samples = synthesize(seconds)
        recording = tmp / f"recording.{args.codec}"
        encode(samples, recording, args.codec)
        clip = tmp / f"clip.{args.codec}"
        encode(
            samples[int(60 * RATE) : int(240 * RATE)]
            if seconds >= 240
            else samples[: int(seconds * RATE / 2)],
            clip,
            args.codec,
        )
        print(
            f"# audio benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"Python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )
        print(f"recording: {args.minutes:g} min, {args.codec}; CPU seconds, scaled to one hour of audio\n")
        print(f"{'analyzer':16} {'s/hour':>8} {'x real time':>12}")
        total = 0.0
        for name in audio:
            module = registry[name]
            ctx = AnalysisContext(original_name=recording.name, size=recording.stat().st_size)
            if any(rule["type"] == "evidence" for rule in module.PARAMETERS.values()):
                ref = next(k for k, rule in module.PARAMETERS.items() if rule["type"] == "evidence")
                params = validate_parameters(module.PARAMETERS, {ref: "reference"})
                params[ref] = str(recording)
                used = cpu_time(lambda m=module, p=params, c=ctx: m.analyze(str(clip), p, c))
                label = f"{name}*"
            else:
                params = validate_parameters(module.PARAMETERS, {})
                used = cpu_time(lambda m=module, p=params, c=ctx: m.analyze(str(recording), p, c))
                label = name
            per_hour = used * 3600 / seconds
            total += per_hour
            print(f"{label:16} {per_hour:8.1f} {per_hour / 3600:12.4f}")
        print("* a 3-minute clip aligned against the whole recording (per hour of recording)")
        verdict = "PASS" if total <= 120 else "FAIL"
        print(f"{'all':16} {total:8.1f} {total / 3600:12.4f}   target <= 120 s/hour (1/30): {verdict}")


if __name__ == "__main__":
    main()
