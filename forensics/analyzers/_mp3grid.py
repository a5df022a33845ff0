"""The MP3 granule grid in decoded audio, with the decoder's own filter bank.

An MP3 (MPEG-1/2 Layer III) encoder cuts the signal into granules of 576
samples; each granule's long-block spectrum comes from a hybrid filter bank
(a 32-band polyphase filter bank with a 512-tap prototype window, then an
18-line MDCT of 36 subband samples with a sine window per band, then alias
reduction butterflies) and is quantised, many coefficients to exactly zero.
The decoder's output is the synthesis of those coefficients. As with AAC
(``_frames``), analysing the decoded samples with the same filter bank on the
encoder's grid returns the quantised coefficients, zeros included; off the
grid the zeros are gone.

The analysis window table of the standard is not needed: the decoder is linear
in the dequantised coefficients, so a crafted Layer III frame whose only
non-zero value is coefficient ``k`` of one long-block granule decodes to the
synthesis function of coefficient ``k`` (through FFmpeg's own IMDCT, alias
reduction and polyphase synthesis window). ``basis`` builds the 576 functions
that way (1664 samples each: 36 subband samples of 32 samples plus the 512-tap
window) from FFmpeg's float decoder, once per process. The hybrid filter bank
is near orthogonal (the cross terms between these functions, within a granule
and with the neighbouring granules, are below 4e-5 of their norm), so the
analysis coefficient is the inner product with the normalised function.

- ``probe``: per analysis offset (0-575) the mean over ``THRESHOLDS`` of the
  share of coefficients below it, over ``PROBE_GRANULES`` granules; the
  contrast of the best offset is its excess over the median offset, as a
  share of the coefficients the median leaves above the thresholds (band-
  limited audio, such as a phone's, is sparse at every offset);
- ``trace``: per granule on a given offset, its sparsity minus the sparsity
  of the same granule shifted by 288 samples (silence is sparse everywhere).
"""

from __future__ import annotations

import functools

import av
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._frames import Trace  # the same per-frame record: here a frame is a granule

GRANULE = 576  # samples per long-block granule (MPEG-1 and MPEG-2 LSF alike)
SPAN = 1664  # samples one granule's coefficient reaches in the decoder's output
THRESHOLDS = (3e-5, 1e-4)  # of full scale, above the rounding of 16-bit PCM (about 9e-6)
PROBE_GRANULES = 12
PROBE_LENGTH = GRANULE * PROBE_GRANULES + SPAN  # samples one probe reads
# A probe finds a grid when its contrast (see ``probe``) exceeds this. On 40
# never-MP3 and 40 MP3-first items of the frames evaluation set (WAV), 1% of
# never-MP3 probes exceeded 0.045 and 76% of MP3-first probes 0.04; files
# with two agreeing probes above 0.04: 40/40 MP3-first, 0/40 never-MP3.
PROBE_CONTRAST = 0.04
# A granule is on a grid when its excess sparsity there exceeds this (AAC
# frames: 0.05). On 16 MP3-first items of the frames evaluation set (WAV),
# granules above 0.03 on the true grid: 66-440 of about 500 per item; on an
# offset 173 samples off it, and on 8 never-MP3 items: at most 66.
FRAME_EXCESS = 0.03
_FRAME_BYTES = 384  # MPEG-1 Layer III, 128 kbit/s, 48 kHz, no padding: 1152 samples


class _Bits:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, n: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(n - 1, -1, -1)]


def _frame(coefficient: int | None, gain: int = 178) -> bytes:
    """One mono MPEG-1 Layer III frame of two long-block granules, all zero but ``coefficient`` of granule 0.

    The value is +1 (Huffman table 1, every pair before it coded as (0, 0));
    the decoder scales it by 2 ** ((gain - 210) / 4). No scale factors, no
    bit reservoir.
    """
    b = _Bits()
    # header: sync, MPEG-1, layer III, no CRC, 128 kbit/s, 48 kHz, no padding, mono
    for value, n in [(0x7FF, 11), (3, 2), (1, 2), (1, 1), (9, 4), (1, 2), (0, 1), (0, 1), (3, 2), (0, 6)]:
        b.put(value, n)
    main = _Bits()
    b.put(0, 9 + 5 + 4)  # main_data_begin, private bits, scfsi
    for granule in range(2):
        start = len(main.bits)
        pairs = 0
        if granule == 0 and coefficient is not None:
            pairs = coefficient // 2 + 1
            main.put((1 << (pairs - 1)) - 1, pairs - 1)  # pairs of (0, 0), a 1 bit each
            if coefficient % 2 == 0:
                main.put(0b010, 3)  # (1, 0) then its sign bit (+)
            else:
                main.put(0b0010, 4)  # (0, 1) then its sign bit (+)
        b.put(len(main.bits) - start, 12)  # part2_3_length (no scale factors)
        b.put(pairs, 9)  # big_values
        b.put(gain, 8)  # global_gain
        b.put(0, 4 + 1)  # scalefac_compress, window_switching_flag
        b.put(0b000010000100001, 15)  # table_select: table 1 in all three regions
        b.put(15, 4)  # region0_count
        b.put(7, 3)  # region1_count
        b.put(0, 3)  # preflag, scalefac_scale, count1table_select
    bits = b.bits + main.bits
    bits += [0] * (8 * _FRAME_BYTES - len(bits))
    return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _decode(data: bytes) -> np.ndarray:
    ctx = av.CodecContext.create("mp3float", "r")
    out = [f.to_ndarray()[0] for p in ctx.parse(data) for f in ctx.decode(p)]
    out += [f.to_ndarray()[0] for f in ctx.decode(None)]
    return np.concatenate(out).astype(np.float64)


@functools.cache
def basis() -> np.ndarray:
    """The 576 long-block synthesis functions of FFmpeg's MP3 decoder (rows of ``SPAN`` samples, unit norm).

    Row k is coefficient k of a granule that starts at sample 0: the frame is
    the second of four, so the decoder's start-up is over and the next frames
    add nothing.
    """
    silent = _frame(None)
    rows = []
    for k in range(GRANULE):
        y = _decode(silent + _frame(k) + silent + silent)
        rows.append(y[1152 : 1152 + SPAN])
    b = np.array(rows)
    norm = np.sqrt(np.sum(b**2, axis=1, keepdims=True))
    if not np.all(norm > 0):
        raise RuntimeError("the MP3 decoder returned silence for a crafted frame")
    return (b / norm).astype(np.float32)


def _sparsity(windows: np.ndarray) -> np.ndarray:
    """Per row of ``SPAN`` samples: mean over ``THRESHOLDS`` of the share of its 576 coefficients below it."""
    mag = np.abs(windows.astype(np.float32) @ basis().T)
    return np.mean([np.mean(mag < t, axis=-1) for t in THRESHOLDS], axis=0)


def probe(x: np.ndarray, start: int, granules: int = PROBE_GRANULES) -> tuple[int, float, float] | None:
    """Search all 576 offsets from ``start``: (grid offset mod 576, peak, contrast) or None.

    Each offset's value is the sparsity averaged over ``granules`` granules;
    the contrast is (peak - median) / (1 - median).
    """
    need = GRANULE * granules + SPAN
    if start < 0 or start + need > len(x):
        return None
    view = sliding_window_view(np.asarray(x[start : start + need], dtype=np.float32), SPAN)
    values = _sparsity(view[: GRANULE * granules]).reshape(granules, GRANULE).mean(axis=0)
    best = int(np.argmax(values))
    median = float(np.median(values))
    contrast = (values[best] - median) / max(1.0 - median, 1e-6)
    return (start + best) % GRANULE, float(values[best]), float(contrast)


SILENT = 0.5  # share of coefficients below 3e-5 half a granule off the grid: silence


def trace(x: np.ndarray, offset: int) -> Trace:
    """Excess sparsity of every granule on the grid ``offset`` (windows start at offset + k * 576)."""
    x = np.asarray(x, dtype=np.float32)
    count = max(0, (len(x) - offset - SPAN - GRANULE // 2) // GRANULE + 1)
    starts = offset + GRANULE * np.arange(count)
    on = np.empty(count)
    off = np.empty(count)
    quiet = np.empty(count)
    b = basis()
    for i in range(0, count, 512):
        idx = starts[i : i + 512]
        on[i : i + 512] = _sparsity(np.stack([x[s : s + SPAN] for s in idx]))
        shifted = np.stack([x[s + GRANULE // 2 : s + GRANULE // 2 + SPAN] for s in idx])
        mag = np.abs(shifted @ b.T)
        off[i : i + 512] = np.mean([np.mean(mag < t, axis=-1) for t in THRESHOLDS], axis=0)
        quiet[i : i + 512] = np.mean(mag < THRESHOLDS[0], axis=-1)
    return Trace(offset=offset, starts=starts, excess=on - off, informative=quiet < SILENT)
