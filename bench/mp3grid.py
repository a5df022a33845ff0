"""Prototype measurements: the MP3 granule grid in decoded speech (``forensics/analyzers/_mp3grid``).

    python bench/mp3grid.py [--clips 24] [--seconds 10]

Builds ``--clips`` clips per condition from the Asterisk speakers (rooms,
device chains and noise as in ``forensics/evaluation/frames``, at 16 or
44.1 kHz), and per clip:

- MP3-encoded (libmp3lame 64 or 128 kbit/s) and decoded, saved as 16-bit:
  probes every second; a probe hits when its best offset is the true grid
  (FFmpeg's decoder drops LAME's encoder delay of 576 + 529 samples, so the
  granules of the decoded output start at 47 mod 576);
- the same with a span of 0.3-3 s deleted after decoding at 3-6 s: the grid
  after the cut moves by the deleted length; both grids are traced granule by
  granule and the change is placed between the last granule on the old grid
  and the first on the new one;
- never MP3-encoded (16-bit WAV, or AAC 48 kbit/s decoded): the same probes,
  whose peak contrast should stay low.

Prints per condition the probe hit rate, the contrast (``_mp3grid.probe``:
peak minus median sparsity over the 576 offsets, as a share of what the
median leaves) of hits, misses and never-MP3 probes, the
files in which at least ``MIN_AGREE`` probes agree on one offset with
contrast above each threshold, and the cut localisation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensics.analyzers import _audio, _mp3grid  # noqa: E402
from forensics.evaluation import audio, sources  # noqa: E402

TRUE_OFFSET = (-(576 + 529)) % 576  # 47
MIN_AGREE = 2
CONTRASTS = (0.03, 0.04, 0.05, 0.06)  # of the probe contrast (see _mp3grid.probe)
# (label, sample rate, first encoding: codec name in audio.CODECS, bit rate), MP3 first
CONDITIONS = [
    ("mp3 64k 16k", 16000, "mp3", 64000),
    ("mp3 128k 16k", 16000, "mp3", 128000),
    ("mp3 64k 44.1k", 44100, "mp3_128k_44k", 64000),
    ("mp3 128k 44.1k", 44100, "mp3_128k_44k", 128000),
    ("wav 16k", 16000, None, None),
    ("wav 44.1k", 44100, None, None),
    ("aac 48k 16k", 16000, "aac", 48000),
]


def q16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767) / 32767


def clip(i: int, sr: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(9100 + i)
    speakers = list(sources.SPEAKERS)
    x = audio.resample(sources.speech(speakers[i % len(speakers)], seconds, rng), sources.SAMPLE_RATE, sr)
    x = audio.room(x, sr, rng, float(rng.choice([0.0, 0.25, 0.5, 0.8])))
    x = audio.device(x, sr, str(rng.choice(["none", "highpass", "agc", "phone"])))
    x = x + audio.noise(len(x), sr, rng, str(rng.choice(["pink", "brown"])), float(rng.uniform(-60, -40)))
    return x * min(1.0, 0.9 / (np.max(np.abs(x)) or 1.0))


def lossy(x: np.ndarray, sr: int, codec: str | None, bit_rate: int | None) -> np.ndarray:
    if codec is None:
        return q16(x)
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "first" + audio.suffix(codec))
        with open(path, "wb") as f:
            f.write(audio.encode(x, codec, sr, bit_rate=bit_rate))
        decoded = _audio.decode(path, sample_rate=None)
    if decoded.sample_rate != sr:
        raise RuntimeError(f"decoded at {decoded.sample_rate} Hz, expected {sr}")
    return q16(decoded.samples.astype(np.float64))


def probes(y: np.ndarray, sr: int) -> list[tuple[int, float]]:
    out = []
    for start in range(0, len(y), sr):
        found = _mp3grid.probe(y, start)
        if found:
            out.append((found[0], found[2]))
    return out


def file_grid(found: list[tuple[int, float]], contrast: float) -> int | None:
    """The offset at least ``MIN_AGREE`` probes above ``contrast`` agree on, or None."""
    votes = Counter(o for o, c in found if c > contrast)
    if not votes:
        return None
    offset, n = votes.most_common(1)[0]
    return offset if n >= MIN_AGREE else None


def locate(y: np.ndarray, sr: int, before: int, after: int, min_run: int = 6) -> tuple[float, float] | None:
    """The interval (s) between the last run on grid ``before`` and the first run on ``after`` after it."""
    a, b = _mp3grid.trace(y, before), _mp3grid.trace(y, after)
    n = min(len(a.excess), len(b.excess))
    ea, eb = a.excess[:n], b.excess[:n]
    label = np.where((ea > 0.05) & (ea >= eb), 0, np.where(eb > 0.05, 1, -1))

    def runs(lab: int) -> list[tuple[int, int]]:
        out, start = [], None
        for j, v in enumerate([*label, -9]):
            if v == lab and start is None:
                start = j
            elif v != lab and start is not None:
                if j - start >= min_run:
                    out.append((start, j - 1))
                start = None
        return out

    ra, rb = runs(0), runs(1)
    if not ra or not rb:
        return None
    first_b = rb[0][0]
    earlier = [r for r in ra if r[1] < first_b]
    if not earlier:
        return None
    last_a = earlier[-1][1]
    half = _mp3grid.SPAN / 2
    return float((a.starts[last_a] + half) / sr), float((b.starts[first_b] + half) / sr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    t0 = time.time()
    _mp3grid.basis()
    print(f"basis from the decoder: {time.time() - t0:.2f} s")
    negatives: list[float] = []
    neg_files = Counter()
    neg_total = 0
    for label, sr, codec, bit_rate in CONDITIONS:
        t0 = time.time()
        hits, total = 0, 0
        hit_c, miss_c, file_found = [], [], Counter()
        cut_found, cut_errors, cut_total = 0, [], 0
        for i in range(args.clips):
            x = clip(i, sr, args.seconds + 3.0)
            y = lossy(x, sr, codec, bit_rate)
            found = probes(y[: int(args.seconds * sr)], sr)
            if codec is None or codec == "aac":
                negatives += [c for _, c in found]
                neg_total += 1
                for th in CONTRASTS:
                    neg_files[th] += file_grid(found, th) is not None
                total += len(found)
                miss_c += [c for _, c in found]
                continue
            for o, c in found:
                total += 1
                if o == TRUE_OFFSET:
                    hits += 1
                    hit_c.append(c)
                else:
                    miss_c.append(c)
            for th in CONTRASTS:
                file_found[th] += file_grid(found, th) == TRUE_OFFSET
            # a deletion after decoding
            rng = np.random.default_rng(5100 + i)
            cut = int(rng.uniform(3.0, 6.0) * sr)
            gap = int(rng.uniform(0.3, 3.0) * sr)
            z = np.concatenate([y[:cut], y[cut + gap :]])[: int(args.seconds * sr)]
            after = (TRUE_OFFSET - gap) % 576
            cut_total += 1
            if after == TRUE_OFFSET:
                continue
            interval = locate(z, sr, TRUE_OFFSET, after)
            t = cut / sr
            if interval and interval[0] - 0.1 <= t <= interval[1] + 0.1:
                cut_found += 1
                cut_errors.append(abs((interval[0] + interval[1]) / 2 - t))
        elapsed = time.time() - t0
        if codec is None or codec == "aac":
            print(
                f"{label}: {args.clips} never-MP3 clips, {total} probes; contrast p50 "
                f"{np.median(miss_c):.4f} p99 {np.percentile(miss_c, 99):.4f} max {np.max(miss_c):.4f} "
                f"({elapsed:.0f} s)"
            )
            continue
        print(
            f"{label}: {args.clips} clips, probes on the true grid {hits}/{total}; contrast of hits p10 "
            f"{np.percentile(hit_c, 10) if hit_c else float('nan'):.4f} p50 "
            f"{np.median(hit_c) if hit_c else float('nan'):.4f}; of misses max "
            f"{np.max(miss_c) if miss_c else float('nan'):.4f} ({elapsed:.0f} s)"
        )
        print(
            "  files with the true grid (>= 2 agreeing probes above contrast): "
            + ", ".join(f"{th}: {file_found[th]}/{args.clips}" for th in CONTRASTS)
        )
        errs = (
            f"|midpoint - cut| p50 {np.median(cut_errors):.3f} s, max {np.max(cut_errors):.3f} s"
            if cut_errors
            else ""
        )
        print(f"  deletions 0.3-3 s found in the change interval (+-0.1 s): {cut_found}/{cut_total}; {errs}")
    print(
        f"never-MP3 probes: {len(negatives)}, contrast max {np.max(negatives):.4f}; files with a grid "
        "(>= 2 agreeing probes above contrast): "
        + ", ".join(f"{th}: {neg_files[th]}/{neg_total}" for th in CONTRASTS)
    )


if __name__ == "__main__":
    main()
