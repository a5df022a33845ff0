"""The AAC and MP3 frame grids left in decoded audio: earlier encodings and cuts that shift a grid.

Method (``_frames`` and ``_mp3grid`` explain why it works): the first channel
is decoded at its own sample rate; every ``probe_seconds`` a stretch is
analysed at every offset of a codec's frame with that codec's long-block
transform: for AAC 3072 samples with the MDCT (2048-sample Kaiser-Bessel-
derived window) at all 1024 offsets, for MP3 twelve granules with the hybrid
filter bank of FFmpeg's MP3 decoder at all 576 offsets. An offset whose share
of near-zero coefficients stands out (for AAC, peak minus median above 0.05;
for MP3, the same as a share of the coefficients not already near zero at the
median offset, above 0.04) is a candidate grid; informative stretches no
candidate explains are probed again (two rounds). Every candidate is then
traced over the whole file frame by frame (excess sparsity over the same frame
shifted by half a frame); each slot of one frame takes the grid that explains
it best (excess above 0.05 for AAC, 0.03 for MP3), silence is left out, runs shorter than
``min_run_frames`` are absorbed, and informative runs that no grid explains
are probed again. For an AAC or MP3 file, the grid of its own frames (from
the decoder's frame boundaries) is set aside: it is this file's encoding, not
an earlier one.

Findings:
- ``stream`` (fact): codec, container, frame size, sample rate, bit rate,
  the channel and the seconds analysed, the offset of the file's own AAC or
  MP3 frames; ``decoded_coverage`` (fact);
- ``frame_grid`` and ``mp3_grid`` (facts): the AAC (MP3) grids found, where,
  and how strongly; "none found" is neutral (never encoded with that codec,
  or resampled, filtered or re-encoded since);
- ``earlier_aac_encoding`` / ``earlier_mp3_encoding`` (indicators): a grid
  other than the file's own, i.e. the audio was AAC- (MP3-) encoded before it
  became this file (a decoded AAC or MP3 saved as WAV, transcoded to the other
  codec, or re-encoded with a shifted alignment);
- ``frame_grid_change`` / ``mp3_grid_change`` (indicators, one per change):
  the earlier AAC (MP3) grid jumps to another offset: material before and
  after was not contiguous in the encoded audio (a span deleted, other
  material inserted or spliced). ``at`` is the interval between the last
  frame on the old grid and the first on the new one (short runs next to the
  change included); the change is in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from . import _audio, _frames, _mp3grid, _rates
from .base import AnalysisError, finding

NAME = "audio.frames"
VERSION = "1.1.0"  # 1.1.0: the MP3 granule grid beside the AAC one (1.0.0: AAC only)
TIME_LIMIT = 3600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 3 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["audio/*", "video/*", "application/ogg", "application/octet-stream"]
DESCRIPTION = (
    "Finds the AAC frame grid and the MP3 granule grid that an earlier AAC or MP3 encoding leaves "
    "in decoded audio (transform coefficients that are exactly zero on that grid only): whether "
    "the audio was AAC- or MP3-encoded before it became this file (a WAV from an AAC or MP3, a "
    "transcode or a re-encode), and where a grid jumps to another offset because the audio was "
    "cut after decoding."
)
GENERAL_LIMITS = [
    "Only long-block grids are searched: AAC (1024 samples, Kaiser-Bessel-derived window, as "
    "FFmpeg's AAC encoder uses) and MP3 (576-sample granules through the hybrid filter bank, "
    "taken from FFmpeg's MP3 decoder); frames or granules coded with short blocks do not count.",
    "An MP3 at a high bit rate for its sample rate (such as 128 kbit/s at 16 kHz) leaves few "
    "zero coefficients, and its grid is seldom found; the evaluation's earlier MP3 encodings are "
    "64 kbit/s at 16 kHz only. The MP3 thresholds (probe contrast 0.04, granule excess 0.03) "
    "were chosen on items of the same evaluation set: its MP3 rates are not from a held-out half.",
    "The grid survives only while the samples keep the encoder's sample rate and timing: "
    "resampling, time stretching, filtering, mixing with other sound or a lossy re-encode at a "
    "low bit rate erase it. No grid found is therefore neutral: it does not mean the audio was "
    "never compressed or never edited.",
    "A cut whose removed or inserted length is a multiple of 1024 samples (AAC) or 576 samples "
    "(MP3) keeps that grid's offset and is invisible in it; cuts inside long silences are bounded "
    "only by the nearest informative frames on each side.",
    "An AAC (MP3) re-encode with the same alignment as the first encoding (a plain transcode of a "
    "whole file) puts both grids on the same offset: it is not reported as an earlier encoding.",
    "Only the first channel is analysed.",
]
LIMITS = GENERAL_LIMITS + _rates.limits(NAME)
PARAMETERS = {
    "probe_seconds": {
        "type": "float",
        "default": 2.0,
        "min": 0.2,
        "max": 10.0,
        "help": "distance between the stretches searched at all 1024 offsets, in seconds",
    },
    "min_run_frames": {
        "type": "int",
        "default": 6,
        "min": 2,
        "max": 200,
        "help": "shortest run of frames (AAC) or granules (MP3) on one grid that counts (shorter runs "
        "are absorbed)",
    },
    "max_seconds": {
        "type": "float",
        "default": 1800.0,
        "min": 1.0,
        "max": 21600.0,
        "help": "analyse at most this many seconds from the start (the stream fact says how many were)",
    },
}

EXTRA_PROBES = 48
LOSSLESS = ("pcm_", "flac", "alac", "wavpack", "tta", "ape")


def evidence_family(codec: str) -> str:
    if codec.startswith(LOSSLESS):
        return "pcm"
    if codec.startswith("aac"):
        return "aac"
    if codec.startswith("mp3"):
        return "mp3"
    return codec


def condition(codec: str, bit_rate: int | None, sample_rate: int) -> dict:
    """The condition the rate tables are indexed by, from the file's own stream."""
    family = evidence_family(codec)
    if family in ("aac", "mp3"):
        band = "unknown" if not bit_rate else ("<=64" if bit_rate <= 64500 else ">64")
        evidence = f"{family} {band} kbit/s"
    else:
        evidence = family
    return {"evidence": evidence, "sample_rate": str(sample_rate)}


@dataclass(frozen=True)
class Bank:
    """One codec's frame grid: how to probe and trace it, and the names of its findings."""

    family: str  # codec family whose own frames are set aside ("aac", "mp3")
    label: str  # for notes
    hop: int  # samples per frame (granule)
    centre: int  # samples from an analysis window's start to its centre
    probe_length: int  # samples one probe reads
    contrast: float  # a probe finds a grid when its peak exceeds the median by this
    min_earlier_slots: int  # slots on earlier grids before an earlier encoding is reported
    frame_excess: float  # a slot is on a grid when its excess sparsity there is above this
    probe: Callable
    trace: Callable
    fact: str
    earlier: str
    change: str


BANKS = [
    Bank(
        "aac",
        "AAC",
        _frames.HOP,
        _frames.HOP,
        3 * _frames.HOP,
        _frames.PROBE_CONTRAST,
        16,
        _frames.FRAME_EXCESS,
        _frames.probe,
        _frames.trace,
        "frame_grid",
        "earlier_aac_encoding",
        "frame_grid_change",
    ),
    Bank(
        "mp3",
        "MP3",
        _mp3grid.GRANULE,
        _mp3grid.SPAN // 2,
        _mp3grid.PROBE_LENGTH,
        _mp3grid.PROBE_CONTRAST,
        28,  # about as long as 16 AAC frames
        _mp3grid.FRAME_EXCESS,
        _mp3grid.probe,
        _mp3grid.trace,
        "mp3_grid",
        "earlier_mp3_encoding",
        "mp3_grid_change",
    ),
]


def _stream_info(path: str) -> dict:
    """Codec, bit rate, frame size and (for AAC and MP3) the offset of the file's own frame grid."""
    try:
        container = av.open(path, mode="r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as exc:
        raise AnalysisError(f"not a readable audio or video file: {_audio._reason(exc)}") from None
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise AnalysisError("the file has no audio stream")
        stream = streams[0]
        _audio.check_stream(stream)
        cc = stream.codec_context
        info = {
            "codec": cc.name,
            "bit_rate": int(stream.bit_rate or cc.bit_rate or 0) or None,
            "frame_size": int(cc.frame_size or 0) or None,
            "own_offset": None,
        }
        hop = {b.family: b.hop for b in BANKS}.get(evidence_family(cc.name))
        if hop:
            try:
                for frame in container.decode(stream):
                    if frame.samples:
                        # the decoder's frames are the encoder's: the first
                        # full frame starts where the (trimmed) first one
                        # ends (an MP3 frame holds one or two granules)
                        info["own_offset"] = int(frame.samples) % hop
                        info["frame_size"] = info["frame_size"] or int(frame.samples)
                        break
            except av.error.FFmpegError:
                pass
    return info


def _grids(bank: Bank, x: np.ndarray, probe_step: int, min_run: int, exclude: int | None):
    """Candidate grids, slot labels and segments (the file's own grid ``exclude`` set aside).

    Probes every ``probe_step`` samples, then once more in the middle of each
    informative run no grid explains (a short insert may fall between the
    regular probes), up to two rounds.
    """
    votes: dict[int, list[float]] = {}
    probed: set[int] = set()

    def run_probe(start: int) -> None:
        start = max(0, min(start, len(x) - bank.probe_length))
        if start in probed:
            return
        probed.add(start)
        found = bank.probe(x, start)
        if found and found[2] > bank.contrast and found[0] != exclude:
            votes.setdefault(found[0], []).append(found[2])

    def labels(traces):
        return _frames.labels(traces, len(x), hop=bank.hop, centre=bank.centre, min_excess=bank.frame_excess)

    for start in range(0, max(1, len(x) - bank.probe_length + 1), probe_step):
        run_probe(start)
    # A trace on an offset nobody claims (the own grid, or 0) only tells
    # silence from sound, so that runs no grid explains are seen.
    background = bank.trace(x, exclude if exclude is not None else 0)
    background.excess = np.full_like(background.excess, -1.0)
    traces = {o: bank.trace(x, o) for o in votes}
    for _round in range(2):
        label, excess = labels([background, *traces.values()])
        segs = _frames.segments(label, excess, min_run)
        unexplained = [s for s in segs if s.label is None][:EXTRA_PROBES]
        before = set(votes)
        for s in unexplained:
            # the probe centred on the run's middle slot
            run_probe(((s.first + s.last) // 2) * bank.hop + bank.hop // 2 - bank.probe_length // 2)
        new = set(votes) - before
        if not new:
            break
        traces.update({o: bank.trace(x, o) for o in new})
    label, excess = labels([background, *traces.values()])
    return label, excess, _frames.segments(label, excess, min_run)


def _refine(label: np.ndarray, a, b) -> tuple[int, int]:
    """Narrow the gap between two runs with shorter runs (two slots or more) on the same grids.

    Pairs of adjacent slots on grid ``a`` (or ``b``) in runs too short to count
    still bound the change, as long as they keep the order (all of a's before
    all of b's); single slots are left out (one frame can match a wrong grid
    by chance).
    """
    j = np.arange(a.last + 1, b.first)
    pair_b = j[(label[j] == b.label) & (label[j + 1] == b.label)]
    limit = int(pair_b[0]) if len(pair_b) else b.first
    pair_a = j[(label[j] == a.label) & (label[j - 1] == a.label) & (j < limit)]
    last_a = int(pair_a[-1]) if len(pair_a) else a.last
    pair_b = pair_b[pair_b > last_a]
    first_b = int(pair_b[0]) if len(pair_b) else b.first
    return last_a, first_b


def _t(slot: float, sr: int, hop: int = _frames.HOP) -> float:
    return round(slot * hop / sr, 3)


def _search(bank: Bank, x: np.ndarray, sr: int, probe_step: int, min_run: int, own, cond: dict) -> list:
    """The findings of one codec's grid: the fact, an earlier encoding and the grid changes."""
    out: list = []
    label, excess, segs = _grids(bank, x, probe_step, min_run, own)
    gridded = []
    for s in segs:
        if s.label is None:
            continue
        if gridded and gridded[-1].label == s.label:
            g = gridded[-1]
            g.mean_excess = (g.mean_excess * g.support + s.mean_excess * s.support) / (g.support + s.support)
            g.last, g.support = s.last, g.support + s.support
        else:
            gridded.append(s)
    informative = int(np.sum(label != -2))
    on_grid = sum(s.support for s in gridded)
    per_offset = {}
    for s in gridded:
        d = per_offset.setdefault(s.label, {"offset": s.label, "slots": 0, "runs": []})
        d["slots"] += s.support
        d["runs"].append([_t(s.first, sr, bank.hop), _t(s.last + 1, sr, bank.hop), round(s.mean_excess, 3)])
    grids = sorted(per_offset.values(), key=lambda d: -d["slots"])
    out.append(
        finding(
            bank.fact,
            "fact",
            {
                "found": bool(grids),
                "grids": grids[:20],
                "grid_count": len(grids),
                "informative_slots": informative,
                "slots_on_earlier_grids": on_grid,
                "slot_samples": bank.hop,
                "own_grid_offset": own,
            },
            note=(
                f"{len(grids)} {bank.label} frame grid(s) other than the file's own found; {on_grid} of "
                f"{informative} informative {bank.hop}-sample slots lie on one (runs: [from s, to s, "
                "mean excess sparsity])"
                if grids
                else f"no {bank.label} frame grid other than the file's own found: neutral (never {bank.label}-encoded, "
                "or resampled, filtered or re-encoded since)"
            ),
        )
    )
    if on_grid >= bank.min_earlier_slots and grids:
        raw = round(on_grid / max(1, informative), 3)
        out.append(
            finding(
                bank.earlier,
                "indicator",
                {"grid_offsets": [g["offset"] for g in grids[:20]], "slots": on_grid},
                score=_rates.calibrated(NAME, bank.earlier, raw),
                raw_score=raw,
                rates=_rates.for_condition(NAME, bank.earlier, cond),
                note=(
                    f"{on_grid} of {informative} informative slots ({100 * raw:.0f}%) lie on the frame "
                    f"grid of an {bank.label} encoding that is not this file's own: the audio was {bank.label}-encoded "
                    "before it became this file"
                ),
            )
        )
    rates_change = _rates.for_condition(NAME, bank.change, cond)
    for a, b in zip(gridded, gridded[1:], strict=False):
        last_a, first_b = _refine(label, a, b)
        lo, hi = sorted((_t(last_a + 1, sr, bank.hop), _t(first_b, sr, bank.hop)))
        raw = float(min(a.support, b.support, 200))
        shift = (b.label - a.label) % bank.hop
        unc = rates_change.get("localisation_p90_s")
        out.append(
            finding(
                bank.change,
                "indicator",
                {
                    "from_offset": a.label,
                    "to_offset": b.label,
                    "shift_samples": shift,
                    "estimate_s": round((lo + hi) / 2, 3),
                },
                unit="s",
                at=[lo, hi],
                score=_rates.calibrated(NAME, bank.change, raw),
                raw_score=raw,
                rates=rates_change,
                uncertainty=(
                    {
                        "value": unc,
                        "unit": "s",
                        "meaning": "90th percentile of |estimate_s - true edit time| on the evaluation "
                        f"set, condition {_rates.describe(rates_change['condition'])}",
                    }
                    if unc is not None
                    else None
                ),
                note=(
                    f"the earlier {bank.label} grid moves by {shift} samples (mod {bank.hop}) between {lo:.2f} s and "
                    f"{hi:.2f} s: the audio on either side was not contiguous when it was {bank.label}-encoded "
                    f"({a.support} and {b.support} slots support the two grids)"
                ),
            )
        )
    return out


def analyze(path: str, params: dict, ctx) -> dict:
    info = _stream_info(path)
    decoded = _audio.decode(path, sample_rate=None, mono=False, max_seconds=_audio.MAX_SECONDS)
    sr = decoded.sample_rate
    samples = decoded.samples if decoded.samples.ndim == 1 else decoded.samples[0]
    limit = int(params["max_seconds"] * sr)
    x = np.asarray(samples[:limit], dtype=np.float64)
    if len(x) < 3 * _frames.HOP:
        raise AnalysisError(f"too short for a frame-grid analysis: {len(x)} samples (at least 3072)")
    analysed = len(x) / sr
    cond = condition(info["codec"], info["bit_rate"], sr)
    findings = [
        finding(
            "stream",
            "fact",
            {
                "codec": info["codec"],
                "container": decoded.container,
                "frame_size": info["frame_size"],
                "sample_rate": sr,
                "bit_rate": info["bit_rate"],
                "channels": decoded.source_channels,
                "channel_analysed": 1,
                "analysed_s": round(analysed, 3),
                "decoded_s": round(decoded.duration, 3),
                "own_grid_offset": info["own_offset"],
            },
            note=(
                f"{info['codec']} in {decoded.container}, {sr} Hz; the first channel's first "
                f"{analysed:.2f} s of {decoded.duration:.2f} s decoded were analysed"
            ),
        ),
        decoded.coverage(),
    ]

    probe_step = max(_frames.HOP, int(round(params["probe_seconds"] * sr)))
    min_run = int(params["min_run_frames"])
    for bank in BANKS:
        if len(x) >= bank.probe_length:
            own = info["own_offset"] if evidence_family(info["codec"]) == bank.family else None
            findings += _search(bank, x, sr, probe_step, min_run, own, cond)
    return {
        "findings": findings,
        "condition": cond,
        "libraries": {"av": av.__version__, "numpy": np.__version__},
    }
