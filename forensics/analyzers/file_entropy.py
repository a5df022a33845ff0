"""file.entropy: Shannon entropy of the bytes, overall and per block, with a plot.

Method: H = -sum(p_i * log2 p_i) over the 256 byte values, where p_i is the
share of byte value i in the bytes considered (the whole file, or one block).
0 bits/byte means one repeated value; 8 means all 256 values equally often.
The file is read in chunks; memory stays flat whatever its size.
"""

from __future__ import annotations

import os

import numpy as np
import PIL

from . import _figure, _fileplot
from .base import AnalysisError, finding

NAME = "file.entropy"
VERSION = "1.1.0"  # 1.1.0: the plot is a labelled matplotlib figure
TIME_LIMIT = 3600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 1 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["*/*"]
DESCRIPTION = (
    "Shannon entropy (bits per byte) of the whole file and of each block, the blocks with the "
    "highest and lowest entropy, a table of every block (CSV) and a plot of entropy along the file."
)
LIMITS = [
    "Entropy cannot tell encrypted data from compressed data (both are close to 8 bits/byte), "
    "nor either from random data; it says how varied the byte values are, not what they are.",
    "Entropy ignores the order of bytes: 'abab...' and 'aabb...' score the same.",
    "A block shorter than 256 bytes cannot reach 8 bits/byte; the last block is usually shorter "
    "than the others.",
    "A small embedded region of different entropy is averaged away inside a block; choose a smaller "
    "block_size to see it. To keep results bounded the block size is doubled until the file has at "
    "most 65,536 blocks (the result says so).",
    "Values are rounded to 4 decimals.",
]
PARAMETERS = {
    "block_size": {
        "type": "int",
        "default": 65536,
        "min": 1024,
        "max": 64 << 20,
        "help": "bytes per block for the per-block entropy (1 KiB to 64 MiB)",
    }
}

MAX_BLOCKS = 65536
READ_SIZE = 4 << 20
DECIMALS = 4


def _entropy(hist: np.ndarray, n: int) -> float:
    p = hist[hist > 0] / n
    return float(-(p * np.log2(p)).sum())


def _r(x: float) -> float:
    return round(float(x), DECIMALS) + 0.0  # "+ 0.0" turns -0.0 into 0.0


def analyze(path: str, params: dict, ctx) -> dict:
    requested = int(params.get("block_size", PARAMETERS["block_size"]["default"]))
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise AnalysisError(f"the file cannot be read: {exc.strerror}") from None
    if size == 0:
        raise AnalysisError("the file is empty: entropy is undefined for zero bytes")
    block = requested
    while -(-size // block) > MAX_BLOCKS:
        block *= 2
    n_blocks = -(-size // block)

    entropies = np.empty(n_blocks, dtype=np.float64)
    lengths = np.empty(n_blocks, dtype=np.int64)
    total = np.zeros(256, dtype=np.int64)
    hist = np.zeros(256, dtype=np.int64)
    filled = 0
    index = 0
    with open(path, "rb", buffering=0) as f:
        while data := f.read(READ_SIZE):
            a = np.frombuffer(data, dtype=np.uint8)
            pos = 0
            while pos < len(a):
                take = min(block - filled, len(a) - pos)
                hist += np.bincount(a[pos : pos + take], minlength=256)
                filled += take
                pos += take
                if filled == block:
                    if index >= n_blocks:
                        raise AnalysisError("the file grew while it was read")
                    entropies[index], lengths[index] = _entropy(hist, filled), filled
                    total += hist
                    hist[:] = 0
                    filled = 0
                    index += 1
    if filled:
        if index >= n_blocks:
            raise AnalysisError("the file grew while it was read")
        entropies[index], lengths[index] = _entropy(hist, filled), filled
        total += hist
        index += 1
    if index != n_blocks or int(total.sum()) != size:
        raise AnalysisError("the file changed size while it was read")

    overall = _entropy(total, size)
    rounded = np.round(entropies, DECIMALS)
    i_max, i_min = int(np.argmax(rounded)), int(np.argmin(rounded))

    csv_lines = ["offset,length,entropy_bits_per_byte"]
    csv_lines += [f"{i * block},{int(lengths[i])},{rounded[i]:.4f}" for i in range(n_blocks)]
    csv_ref = ctx.add_artifact(
        "entropy_blocks.csv", "text/csv", ("\n".join(csv_lines) + "\n").encode("ascii")
    )
    png = _fileplot.series_png(
        rounded,
        span=size,
        block=block,
        y_max=8.0,
        y_ticks=[0, 2, 4, 6, 8],
        title=f"Shannon entropy per {_fileplot.human_bytes(block)} block ({n_blocks} blocks)",
        y_label="entropy (bits/byte)",
    )
    png_ref = ctx.add_artifact("entropy_plot.png", "image/png", png)

    block_note = f"{n_blocks} blocks of {block} bytes"
    if block != requested:
        block_note += (
            f" (block size raised from {requested} so that the file has at most {MAX_BLOCKS} blocks)"
        )
    if lengths[-1] != block:
        block_note += f"; the last block has {int(lengths[-1])} bytes"
    findings = [
        finding(
            "entropy_overall",
            "measurement",
            _r(overall),
            unit="bits/byte",
            note=f"Shannon entropy of the byte histogram of all {size} bytes (0 = one repeated value, 8 = uniform)",
        ),
        finding(
            "entropy_blocks",
            "measurement",
            {
                "block_size": block,
                "blocks": n_blocks,
                "min": _r(rounded[i_min]),
                "max": _r(rounded[i_max]),
            },
            unit="bits/byte",
            artifact=csv_ref,
            note=f"entropy of each block; every value is in the CSV artifact; {block_note}",
        ),
        finding(
            "entropy_max_block",
            "measurement",
            _r(rounded[i_max]),
            unit="bits/byte",
            offset=i_max * block,
            length=int(lengths[i_max]),
            note="the first block with the highest entropy (offset and length in bytes)",
        ),
        finding(
            "entropy_min_block",
            "measurement",
            _r(rounded[i_min]),
            unit="bits/byte",
            offset=i_min * block,
            length=int(lengths[i_min]),
            note="the first block with the lowest entropy (offset and length in bytes)",
        ),
        finding(
            "entropy_plot",
            "visual",
            None,
            artifact=png_ref,
            note="entropy of each block along the file: a band shows the range of the blocks that share "
            "a pixel column, the line their mean; no verdict",
        ),
    ]
    return {
        "findings": findings,
        "libraries": {"numpy": np.__version__, "Pillow": PIL.__version__, "matplotlib": _figure.version()},
    }
