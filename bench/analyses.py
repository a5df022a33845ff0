"""Analysis throughput: image analyses per minute on 12-megapixel JPEGs, and file
analyses in MB/s against `sha256sum` on the same file, in the same run.

    python bench/analyses.py [--file-mib 512] [--images 3]

Runs the analyzers' pure functions (what a worker runs between claiming and
signing); one process, one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
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

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from forensics import analyzers  # noqa: E402
from forensics.analyzers.base import AnalysisContext  # noqa: E402


def timed(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_photo(path: Path, seed: int) -> None:
    """A 4000x3000 JPEG with photo-like content (gradients, shapes, noise), camera-like quality."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = np.stack([x / 4000 * 200, y / 3000 * 180, (x + y) / 7000 * 160], axis=-1)
    for _ in range(40):
        cx, cy, r = rng.uniform(0, 4000), rng.uniform(0, 3000), rng.uniform(50, 500)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        base[mask] = rng.uniform(0, 255, 3)
    base += rng.normal(0, 6, base.shape)
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)


def run(module, path: Path, params=None) -> None:
    ctx = AnalysisContext(original_name=path.name, media_type="", size=path.stat().st_size)
    module.analyze(str(path), analyzers_base_params(module, params), ctx)


def analyzers_base_params(module, params):
    from forensics.analyzers.base import validate_parameters

    return validate_parameters(module.PARAMETERS, params or {})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file-mib", type=int, default=512)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    registry = analyzers.registry()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(
            f"# analyses benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"Python {platform.python_version()}, {os.cpu_count()} cores"
        )

        # File analyses against sha256sum on the same file (page cache warm).
        blob = tmp / "blob.bin"
        block = os.urandom(1 << 20)
        with open(blob, "wb") as f:
            for i in range(args.file_mib):
                f.write(block if i % 4 else os.urandom(1 << 20))
        size_mb = blob.stat().st_size / 1e6
        subprocess.run(["sha256sum", str(blob)], capture_output=True, check=True)
        baseline = timed(lambda: subprocess.run(["sha256sum", str(blob)], capture_output=True, check=True))
        print(f"\nfile: {size_mb:.0f} MB; sha256sum {size_mb / baseline:.0f} MB/s (baseline)")
        print(f"{'analyzer':18} {'MB/s':>8} {'ratio to sha256sum':>20}")
        for name in ("file.hashes", "file.type", "file.entropy", "file.structure"):
            seconds = timed(lambda n=name: run(registry[n], blob), repeat=1)
            print(f"{name:18} {size_mb / seconds:8.0f} {baseline / seconds:20.2f}")

        # Image analyses on 12-megapixel JPEGs.
        photos = []
        for i in range(args.images):
            path = tmp / f"photo{i}.jpg"
            make_photo(path, i)
            photos.append(path)
        print(
            f"\nimages: {len(photos)} JPEGs of 4000x3000 (12 MP), ~{photos[0].stat().st_size / 1e6:.1f} MB each"
        )
        print(f"{'analyzer':18} {'s/image':>8} {'images/min':>12}")
        total = 0.0
        for name in ("image.metadata", "image.thumbnail", "image.jpeg", "image.ela"):
            seconds = statistics.median(
                timed(lambda n=name, p=p: run(registry[n], p), repeat=1) for p in photos
            )
            total += seconds
            print(f"{name:18} {seconds:8.2f} {60 / seconds:12.1f}")
        print(f"{'all four':18} {total:8.2f} {60 / total:12.1f}")


if __name__ == "__main__":
    main()
