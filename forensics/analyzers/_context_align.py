"""Where each part of a clip occurs in a longer reference recording (the context-alignment method).

Both recordings are decoded to 8 kHz mono and reduced to spectral peaks: local
maxima of the log-magnitude spectrogram (64 ms window, 16 ms hop, 250-3500 Hz,
the band every speech codec keeps) that stand above the band's noise floor.
Peaks are what survives low-bit-rate coding best: a codec spends its bits on
the strongest spectral components and drops or smears the rest.

1. Fingerprints (Wang's landmarks, as in Shazam): each peak is paired with a
   few later peaks nearby; a pair's (frequency, frequency step, time step) is a
   hash, kept with the anchor's time. Clip hashes are looked up in the sorted
   reference hashes, tolerating one bin / one frame of jitter in each
   coordinate, and every hit votes for an offset (reference time - clip time).
   Speed first: a clip resampled faster or slower (up to SPEED_MAX) leaves a slanting band
   of hits instead of a line; its slope is measured (also when no single offset stands out),
   the clip stretched back and aligned again, before any segmentation.
2. Candidate offsets: the peaks of the vote histogram that stand far above
   chance. Within a part cut from the reference the offset is constant; it
   jumps at every cut, reordering or insertion.
3. Segmentation: a Viterbi pass over 128 ms blocks of the clip, one state per
   candidate offset plus "not in the reference", scored with the binomial
   log-likelihood ratio of the block's matched / unmatched hashes, with a
   fixed cost for changing state. Runs of a state are the parts.
4. Refinement, peak by peak: each part's offset to a fraction of a frame (the
   median time difference of matched peaks, interpolated within frames); each
   boundary where the evidence for one part gives way to the next (or to
   foreign material). The evidence is two-sided: clip peaks found or not in
   the reference at the part's offset, and reference peaks found or not in the
   clip (so that a clip falling silent where the reference speaks counts too),
   each weighed by how often peaks of its strength are found within the part
   (weak peaks are often noise, and a codec loses many of them).
   A boundary is not only a position but the span of positions whose evidence is within
   TIE_NATS of the best: in speech a point, in a pause of both recordings the pause
   (any point of it is equally consistent with both sides), widened as far as the tie
   goes. Foreign material between two parts is its own span only where its peaks
   explain the frames clearly better (NONE_COST), so its ends are trimmed peak by peak.
5. Clean-up: weak short parts (a word that happens to resemble another place)
   are dropped, neighbouring parts at the same offset joined, and clip spans
   that match no part and hold enough peaks reported as foreign material.

Everything is deterministic NumPy / SciPy; no randomness, no threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sfft
from scipy.ndimage import maximum_filter
from scipy.signal import resample_poly

RATE = 8000
NFFT = 512
HOP = 128  # 16 ms
FRAME_S = HOP / RATE
F_LO, F_HI = 16, 224  # bins: 250 Hz .. 3500 Hz
PEAK_T, PEAK_F = 9, 17  # neighbourhood of a peak (frames, bins)
PEAK_DB = 14.0  # dB above the band's noise floor (its 20th percentile)
# Strength classes of peaks: a weak peak (often noise) that finds no partner says less
# than a strong one; the share found is estimated per class and per part.
STRENGTH_DB = np.array([18.0, 24.0])
CHUNK = 4096  # frames per chunk of the spectrogram (~65 s) to bound memory
FAN = 6  # pairs per anchor peak
DT_MAX, DF_MAX = 40, 31  # target zone: 0.64 s ahead, +/- 31 bins
LOOKAHEAD = 40  # peaks scanned ahead of an anchor for its targets
MAX_OCC = 200  # hashes more common than this in the reference vote for nothing
OFFSET_TOL = 1  # frames either side of a candidate offset
MAX_CANDIDATES = 200  # offsets considered at most
SPEED_MAX, SPEED_STEP = 0.06, 0.0005  # speed differences measured: +/- 6 %, in steps of 0.05 %
SPEED_SIGMAS = 4.0  # a sloped line must hold clearly more hits than a flat one (Poisson sigmas)
MATCH_PAIRS = (
    4_000_000  # hits held in memory at a time, about (measured: 1e-4 hit per clip hash per reference hash)
)
BLOCK = 8  # frames per Viterbi block (128 ms)
SWITCH_COST = 25.0  # nats to change from one part to another
NONE_COST = 18.0  # nats to enter or leave "not in the reference"
MIN_PART_S = 1.0
MIN_PART_NATS = 40.0  # two-sided peak evidence a part needs
MIN_INSERT_S = 0.5
DAMAGED = 0.05  # prior that a block of a true part matches only by chance
WEAK_PART_S, WEAK_SHARE = 5.0, 0.6  # parts shorter than this must match at least this share
SAME_OFFSET = 2.5  # frames: adjacent runs closer than this are one part
REFINE_S = 2.5  # boundaries are re-placed within this distance of the coarse ones
TIE_NATS = 1.0  # boundary positions within this much of the best are equally good


@dataclass
class Peaks:
    t: np.ndarray  # int frame
    f: np.ndarray  # int bin (relative to F_LO)
    tf: np.ndarray  # float frame (parabolic interpolation in time)
    lv: np.ndarray  # strength class: 0, 1, 2 for < 18, 18-24, >= 24 dB above the band's floor
    frames: int
    duration: float


@dataclass
class Part:
    clip_start: float
    clip_end: float
    offset: float  # seconds: reference time = clip time + offset
    state: int
    llr: float
    matched: int  # clip peaks found in the reference at this offset
    peaks: int  # clip peaks in the part
    speed: float = 1.0  # reference seconds per clip second (see align)
    # clip times (s) between which the part's start / end is equally consistent with the
    # evidence of both sides (a join in a pause of both recordings: the pause)
    start_span: tuple[float, float] = (0.0, 0.0)
    end_span: tuple[float, float] = (0.0, 0.0)

    @property
    def reference_start(self) -> float:
        return self.clip_start * self.speed + self.offset

    @property
    def reference_end(self) -> float:
        return self.clip_end * self.speed + self.offset


@dataclass
class Unmatched:
    clip_start: float
    clip_end: float
    evidence: float  # nats against the neighbouring parts' material (robust per block)
    peaks: int


@dataclass
class Alignment:
    parts: list[Part]
    unmatched: list[Unmatched]
    clip_duration: float
    reference_duration: float
    match_rate: float  # fraction of clip hashes found at their part's offset
    candidates: int
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (clip s, ref s) of matched peaks
    speed: float = 1.0  # reference seconds per clip second: > 1 when the clip plays fast

    def rescale(self, speed: float) -> None:
        """Express clip times of an alignment made on the clip stretched by ``speed`` in the clip's own."""
        self.speed = speed
        for p in self.parts:
            p.clip_start, p.clip_end, p.speed = p.clip_start / speed, p.clip_end / speed, speed
            p.start_span = (p.start_span[0] / speed, p.start_span[1] / speed)
            p.end_span = (p.end_span[0] / speed, p.end_span[1] / speed)
        for u in self.unmatched:
            u.clip_start, u.clip_end = u.clip_start / speed, u.clip_end / speed
        self.clip_duration /= speed
        if self.points.size:
            self.points = self.points * np.array([1 / speed, 1.0])


# --- peaks and hashes -------------------------------------------------------------------------------


def peaks(samples: np.ndarray) -> Peaks:
    """Spectral peaks of a mono 8 kHz signal, computed chunk by chunk."""
    x = np.asarray(samples, dtype=np.float32)
    frames = 1 + max(0, (x.size - NFFT) // HOP) if x.size >= NFFT else 0
    window = np.hanning(NFFT).astype(np.float32)
    margin = PEAK_T  # overlap so that peaks at chunk edges see their neighbours
    ts, fs, tfs, lvs = [], [], [], []
    windows = sliding_window_view(x, NFFT)[::HOP] if frames else None
    for start in range(0, frames, CHUNK):
        a = max(0, start - margin)
        b = min(frames, start + CHUNK + margin)
        spec = np.abs(sfft.rfft(windows[a:b] * window, axis=1, workers=1)[:, F_LO:F_HI])
        level = 20 * np.log10(spec + 1e-7, dtype=np.float32)
        level -= np.percentile(level[::4], 20, axis=0).astype(np.float32)  # the band's noise floor
        top = maximum_filter(level, size=(PEAK_T, PEAK_F), mode="constant", cval=-1e9)
        t, f = np.nonzero((level == top) & (level > PEAK_DB))
        keep = (t + a >= start) & (t + a < start + CHUNK)
        t, f = t[keep], f[keep]
        # sub-frame time of each peak: vertex of the parabola through its neighbours in time
        prev = level[np.maximum(t - 1, 0), f]
        nxt = level[np.minimum(t + 1, level.shape[0] - 1), f]
        cur = level[t, f]
        denom = prev - 2 * cur + nxt
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(denom < 0, 0.5 * (prev - nxt) / denom, 0.0)
        ts.append(t + a)
        fs.append(f)
        tfs.append(t + a + np.clip(delta, -0.5, 0.5))
        lvs.append(np.searchsorted(STRENGTH_DB, cur, "right").astype(np.int8))
    if ts:
        t = np.concatenate(ts).astype(np.int64)
        f = np.concatenate(fs).astype(np.int64)
        tf = np.concatenate(tfs)
        lv = np.concatenate(lvs)
        order = np.lexsort((f, t))
        t, f, tf, lv = t[order], f[order], tf[order], lv[order]
    else:
        t = f = np.zeros(0, np.int64)
        tf = np.zeros(0)
        lv = np.zeros(0, np.int8)
    return Peaks(t=t, f=f, tf=tf, lv=lv, frames=frames, duration=x.size / RATE)


def _key(f1, df, dt):
    return (f1 << 13) | ((df + DF_MAX + 2) << 6) | dt


def hashes(p: Peaks) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Landmark pairs: (anchor bin, bin step, frame step, anchor frame), FAN per anchor at most."""
    t, f = p.t, p.f
    n = t.size
    taken = np.zeros(n, np.int64)
    out = [[], [], [], []]
    for j in range(1, LOOKAHEAD + 1):
        if j >= n:
            break
        a = np.arange(n - j)
        b = a + j
        dt = t[b] - t[a]
        df = f[b] - f[a]
        ok = (dt >= 1) & (dt <= DT_MAX) & (np.abs(df) <= DF_MAX) & (taken[a] < FAN)
        anchors = a[ok]
        taken[anchors] += 1
        for lst, v in zip(out, (f[anchors], df[ok], dt[ok], t[anchors]), strict=True):
            lst.append(v)
    if not out[0]:
        return tuple(np.zeros(0, np.int64) for _ in range(4))
    return tuple(np.concatenate(v).astype(np.int64) for v in out)


def _variants():
    # one bin of jitter in each peak's frequency, one frame in the time step
    return [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]


def match(keys: np.ndarray, tr: np.ndarray, clip: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Every (clip hash index, offset in frames) where a clip hash is found in the reference.

    ``keys`` are the reference's hash keys in ascending order, ``tr`` their anchor frames.
    """
    cf1, cdf, cdt, tc = clip
    idx_all, off_all = [], []
    for a, b, c in _variants():
        q = _key(np.clip(cf1 + a, 0, 255), np.clip(cdf + b - a, -DF_MAX - 2, DF_MAX + 2), cdt + c)
        order = np.argsort(q, kind="stable")  # sorted needles make the binary searches cheaper
        q = q[order]
        lo = np.searchsorted(keys, q, "left")
        hi = np.searchsorted(keys, q, "right")
        n = hi - lo
        n[n > MAX_OCC] = 0
        if not n.any():
            continue
        ci = np.repeat(order, n)
        first = np.repeat(lo - (np.cumsum(n) - n), n)
        ri = first + np.arange(ci.size)
        idx_all.append(ci)
        off_all.append(tr[ri] - tc[ci])
    if not idx_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(idx_all), np.concatenate(off_all)


# --- candidate offsets and segmentation -----------------------------------------------------------


def _candidates(votes: np.ndarray, n_hashes: int) -> tuple[np.ndarray, float]:
    """Offsets (indices into ``votes``) whose vote count stands far above chance, strongest first.

    Also returns the chance that a clip hash votes for a given offset (+/- OFFSET_TOL).
    """
    smooth = np.convolve(votes, np.ones(2 * OFFSET_TOL + 1), "same")
    chance = smooth.sum() / max(votes.size, 1)  # a window's expected votes if offsets were random
    need = max(12.0, chance + 8 * np.sqrt(chance + 1))
    order = np.argsort(-smooth, kind="stable")
    picked: list[int] = []
    taken = np.zeros(votes.size, bool)
    for i in order:
        if smooth[i] < need or len(picked) >= MAX_CANDIDATES:
            break
        if taken[i]:
            continue
        picked.append(int(i))
        taken[max(0, i - 2 * OFFSET_TOL - 1) : i + 2 * OFFSET_TOL + 2] = True
    return np.array(picked, np.int64), chance / max(n_hashes, 1)


def _speed_windows(votes: np.ndarray, frames: int, count: int = 16) -> np.ndarray:
    """Offsets (indices into ``votes``) within reach of the strongest broad humps of votes."""
    reach = int(np.ceil(SPEED_MAX * frames)) + 2
    broad = np.convolve(votes, np.ones(2 * reach + 1), "same")
    near = np.zeros(votes.size, bool)
    for _ in range(count):
        i = int(np.argmax(broad))
        if broad[i] <= 0:
            break
        near[max(0, i - 2 * reach) : i + 2 * reach + 1] = True
        broad[max(0, i - 2 * reach) : i + 2 * reach + 1] = 0
    return near


def _speed(tc: np.ndarray, off: np.ndarray, frames: int) -> float:
    """Reference seconds per clip second, from hits (clip frame, offset): 1.0 unless clearly not.

    Within a part the offset grows by (speed - 1) frames per clip frame: for each slope of a
    grid, the hits are counted along lines of that slope; the slope whose best line holds
    clearly more hits than the best flat line (by SPEED_SIGMAS standard deviations of a count,
    and a fifth) is the clip's speed, then refined by least squares on the hits of its lines.
    """
    if tc.size == 0:
        return 1.0
    margin = int(np.ceil(SPEED_MAX * frames)) + 4
    base = int(off.min()) - margin
    size = int(off.max()) - base + margin + 1

    def height(slope: float) -> float:
        votes = np.bincount(np.rint(off - slope * tc).astype(np.int64) - base, minlength=size)
        return float(np.convolve(votes, np.ones(2 * OFFSET_TOL + 1), "valid").max())

    grid = np.arange(-SPEED_MAX, SPEED_MAX + SPEED_STEP / 2, SPEED_STEP)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]  # ties go to the slower slope
    heights = np.array([height(s) for s in grid])
    best = int(np.argmax(heights))
    gain = heights[best] - heights[0]
    if (
        grid[best] == 0
        or heights[best] < 20
        or gain < max(SPEED_SIGMAS * np.sqrt(heights[0] + 1), 0.2 * heights[0])
    ):
        return 1.0
    return round(1.0 + _fit_slope(tc, off, float(grid[best])), 6)


def _fit_slope(tc: np.ndarray, off: np.ndarray, slope: float) -> float:
    """Least-squares slope of the hits on the strongest lines near ``slope`` (one intercept each)."""
    for _ in range(2):
        c = off - slope * tc
        base = int(np.floor(c.min()))
        hist = np.convolve(np.bincount(np.rint(c).astype(np.int64) - base), np.ones(3), "same")
        top = hist.max()
        sxx = sxy = 0.0
        for _ in range(8):
            i = int(np.argmax(hist))
            if hist[i] < max(0.2 * top, 10):
                break
            hist[max(0, i - 4) : i + 5] = 0
            sel = np.abs(c - (i + base)) <= 2
            dt = tc[sel] - tc[sel].mean()
            sxx += float(dt @ dt)
            sxy += float(dt @ (off[sel] - off[sel].mean()))
        if sxx <= 0:
            break
        slope = sxy / sxx
    return slope


def _viterbi(emit: np.ndarray) -> np.ndarray:
    """Best state path; states 0..K-1 are offsets, state K is "not in the reference"."""
    nb, ns = emit.shape
    none = ns - 1
    cost = np.full((ns, ns), SWITCH_COST)
    cost[:, none] = NONE_COST
    cost[none, :] = NONE_COST
    np.fill_diagonal(cost, 0.0)
    score = emit[0].copy()
    back = np.zeros((nb, ns), np.int32)
    for b in range(1, nb):
        # score of moving from state i to j = score[i] - cost[i, j]; the cost has a simple
        # structure, so the best predecessor of j is j itself, the best part or "none"
        parts = score[:none]
        best_part = int(np.argmax(parts)) if none else 0
        best_val = parts[best_part] if none else -np.inf
        cand_stay = score
        cand_part = np.full(ns, best_val - SWITCH_COST)
        cand_part[none] = best_val - NONE_COST
        cand_none = np.full(ns, score[none] - NONE_COST)
        stack = np.stack([cand_stay, cand_part, cand_none])
        pick = np.argmax(stack, axis=0)
        src = np.where(pick == 0, np.arange(ns), np.where(pick == 1, best_part, none))
        back[b] = src
        score = stack[pick, np.arange(ns)] + emit[b]
    path = np.empty(nb, np.int32)
    path[-1] = int(np.argmax(score))
    for b in range(nb - 1, 0, -1):
        path[b - 1] = back[b, path[b]]
    return path


def _runs(path):
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [path.size]])
    return [(int(s), int(e), int(path[s])) for s, e in zip(starts, ends, strict=True)]


# --- peak-level evidence ------------------------------------------------------------------------


class _RefPeaks:
    """Peaks (of the reference, or of the clip) searchable by (bin, time)."""

    def __init__(self, p: Peaks):
        self.width = p.frames + 4 * DT_MAX + 16
        key = p.f * self.width + p.t
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.tf = p.tf[order]
        self.density = p.t.size / max(p.frames * (F_HI - F_LO), 1)

    def hits(self, t: np.ndarray, f: np.ndarray, offset: float) -> tuple[np.ndarray, np.ndarray]:
        """For peaks (t, f) of one recording: is there a peak of this one within 1 frame / 1 bin at t + offset?

        Returns the hit flags and, for hits, the reference peak's interpolated time (else NaN).
        """
        hit = np.zeros(t.size, bool)
        when = np.full(t.size, np.nan)
        centre = np.rint(t + offset).astype(np.int64)
        for df in (0, -1, 1):
            ff = f + df
            valid = (ff >= 0) & (ff < F_HI - F_LO) & (centre >= 1) & (centre < self.width - 1) & ~hit
            if not valid.any():
                continue
            base = ff * self.width + centre
            lo = np.searchsorted(self.key, base - OFFSET_TOL, "left")
            hi = np.searchsorted(self.key, base + OFFSET_TOL, "right")
            found = valid & (hi > lo)
            hit |= found
            when[found] = self.tf[lo[found]]
        return hit, when


def _robust(llr):
    """Block evidence allowing for damage: with probability DAMAGED a block of a true part
    matches no better than chance (a pause drowned by coding noise), so no block alone
    can count more than log(DAMAGED) against a part."""
    return np.logaddexp(np.log(DAMAGED), np.log1p(-DAMAGED) + llr)


def _llr_per_peak(hit, p_hit, p_chance):
    return np.where(hit, np.log(p_hit / p_chance), np.log((1 - p_hit) / (1 - p_chance)))


# --- the whole method ---------------------------------------------------------------------------


@dataclass
class Reference:
    """What the method keeps of a reference recording: its peaks and sorted hashes."""

    peaks: Peaks
    keys: np.ndarray
    times: np.ndarray
    searchable: _RefPeaks

    @property
    def duration(self) -> float:
        return self.peaks.duration


def prepare(reference: np.ndarray) -> Reference:
    """Fingerprint a reference (8 kHz mono) once, for any number of clips."""
    rp = peaks(reference)
    f1, df, dt, tr = hashes(rp)
    keys = _key(f1, df, dt)
    order = np.argsort(keys, kind="stable")
    return Reference(peaks=rp, keys=keys[order], times=tr[order], searchable=_RefPeaks(rp))


def align(
    clip: np.ndarray, reference: Reference | np.ndarray, points: int = 4000, detect_speed: bool = True
) -> Alignment:
    """Align a clip (8 kHz mono) against a reference (prepared, or 8 kHz mono samples).

    When the clip plays at another speed than the reference (resampled: time and pitch
    together, within SPEED_MAX), the speed is measured from the matches, the clip is
    stretched back and aligned again; the result's clip times are the clip's own.
    """
    if not isinstance(reference, Reference):
        reference = prepare(reference)
    cp = peaks(clip)
    rp = reference.peaks
    ch = hashes(cp)
    n_hashes = ch[0].size
    empty = Alignment([], [], cp.duration, rp.duration, 0.0, 0)
    if n_hashes == 0 or reference.keys.size == 0:
        return _all_unmatched(cp, empty)
    # Clip hashes are matched in chunks so that memory stays bounded for long recordings
    # (about 50 hits per clip hash per hour of reference): a first pass counts the votes,
    # a second keeps the hits near the chosen offsets (one pass when there is one chunk).
    size = max(2000, int(MATCH_PAIRS / (1e-4 * reference.keys.size + 1)))
    chunks = [slice(i, min(i + size, n_hashes)) for i in range(0, n_hashes, size)]
    lo = -cp.frames - 1
    span = rp.frames + cp.frames + 2 * DT_MAX + 4
    votes = np.zeros(span)
    hits = None
    for part in chunks:
        ci, off = match(reference.keys, reference.times, tuple(v[part] for v in ch))
        votes += np.bincount(off - lo, minlength=span)
        hits = (ci + part.start, off) if len(chunks) == 1 else None
    if not votes.any():
        return _all_unmatched(cp, empty)
    cands, q_rate = _candidates(votes, n_hashes)
    if cands.size == 0:
        # a clip several per cent faster or slower spreads its votes over a slanting band, so
        # that no single offset stands out: measure the speed before giving up
        if detect_speed:
            speed = _speed_from_band(reference, ch, chunks, votes, lo, cp.frames, hits)
            if speed != 1.0:
                return _restretched(clip, reference, points, speed)
        return _all_unmatched(cp, empty)

    # votes of each clip hash for each candidate (a hash counts once per candidate)
    lookup = np.full(span, -1, np.int64)
    for k, c in enumerate(cands):
        lookup[max(0, c - OFFSET_TOL) : c + OFFSET_TOL + 1] = k
    cands = cands + lo
    # and the hits around the strongest offsets, where a clip at another speed than the
    # reference leaves a slanting band of hits instead of a line
    near = _speed_windows(votes, cp.frames) if detect_speed else None
    found, slant_t, slant_off = [], [], []
    for part in chunks:
        if hits is None:
            ci, off = match(reference.keys, reference.times, tuple(v[part] for v in ch))
            ci = ci + part.start
        else:
            ci, off = hits
        pair_k = lookup[off - lo]
        sel = pair_k >= 0
        found.append(np.unique(ci[sel] * cands.size + pair_k[sel]))
        if near is not None:
            sel = near[off - lo]
            slant_t.append(ch[3][ci[sel]])
            slant_off.append(off[sel])
    if near is not None:
        speed = _speed(np.concatenate(slant_t), np.concatenate(slant_off), cp.frames)
        if speed != 1.0:
            return _restretched(clip, reference, points, speed)
    hk = np.concatenate(found)
    h_idx, h_k = hk // cands.size, hk % cands.size
    tc = ch[3]
    nblocks = max(1, -(-cp.frames // BLOCK))
    k_all = cands.size
    counts = np.bincount((tc[h_idx] // BLOCK) * k_all + h_k, minlength=nblocks * k_all).reshape(
        nblocks, k_all
    )
    n_block = np.bincount(tc // BLOCK, minlength=nblocks).astype(np.float64)

    q = float(np.clip(q_rate, 1e-7, 0.02))
    p = 0.2
    for _ in range(2):
        gain, loss = np.log(p / q), np.log((1 - p) / (1 - q))
        emit = np.zeros((nblocks, k_all + 1))
        emit[:, :k_all] = _robust(counts * gain + (n_block[:, None] - counts) * loss)
        path = _viterbi(emit)
        in_part = path < k_all
        total = n_block[in_part].sum()
        if total == 0:
            break
        p_new = float(counts[in_part, path[in_part]].sum() / total)
        p = float(np.clip(p_new, 0.02, 0.8))
    match_rate = p

    runs = _clean_runs(_runs(path), k_all, counts, n_block, gain, loss)
    return _refine(runs, cands, cp, reference, k_all, match_rate, points)


def _restretched(clip: np.ndarray, reference: Reference, points: int, speed: float) -> Alignment:
    """Stretch the clip back to the reference's speed, align it, express the result in clip times."""
    ratio = Fraction(speed).limit_denominator(4000)
    stretched = resample_poly(np.asarray(clip, dtype=np.float64), ratio.numerator, ratio.denominator)
    out = align(stretched.astype(np.float32), reference, points, detect_speed=False)
    out.rescale(ratio.numerator / ratio.denominator)
    return out


def _speed_from_band(reference: Reference, ch, chunks, votes, lo, frames, hits) -> float:
    """The clip's speed from the hits near the strongest broad humps of votes (see _speed)."""
    near = _speed_windows(votes, frames)
    slant_t, slant_off = [], []
    for part in chunks:
        if hits is None:
            ci, off = match(reference.keys, reference.times, tuple(v[part] for v in ch))
            ci = ci + part.start
        else:
            ci, off = hits
        sel = near[off - lo]
        slant_t.append(ch[3][ci[sel]])
        slant_off.append(off[sel])
    return _speed(np.concatenate(slant_t), np.concatenate(slant_off), frames)


def _all_unmatched(cp: Peaks, empty: Alignment) -> Alignment:
    if cp.t.size:
        empty.unmatched = [Unmatched(0.0, round(cp.duration, 2), 0.0, int(cp.t.size))]
    return empty


def _clean_runs(runs, none, counts, n_block, gain, loss):
    """Drop parts too short or too weak to stand alone; merge what is left."""
    out = []
    for s, e, k in runs:
        if k != none:
            c = counts[s:e, k].sum()
            llr = c * gain + (n_block[s:e].sum() - c) * loss
            if (e - s) * BLOCK * FRAME_S < MIN_PART_S or c < 8 or llr < 2 * NONE_COST:
                k = none
        if out and out[-1][2] == k:
            out[-1] = (out[-1][0], e, k)
        else:
            out.append((s, e, k))
    return out


def _refine(runs, cands, cp: Peaks, reference: Reference, none, match_rate, points) -> Alignment:
    ref, rp = reference.searchable, reference.peaks
    chance = float(np.clip(ref.density * 9, 1e-4, 0.5))
    t, f, tf = cp.t, cp.f, cp.tf
    nframes = cp.frames

    # the evidence for a part is two-sided: the clip's peaks found in the reference at the
    # part's offset, and the reference's peaks found in the clip (so that a clip falling
    # silent where the reference speaks counts against the part, not only the reverse)
    mine = _RefPeaks(cp)
    chance_clip = float(np.clip(mine.density * 9, 1e-4, 0.5))

    def ref_side(offset, lo, hi):
        r0, r1 = np.searchsorted(rp.t, [lo + offset - 0.5, hi + offset - 0.5])
        rt, rf = rp.t[r0:r1], rp.f[r0:r1]
        hit, _ = mine.hits(rt, rf, -offset)
        frame = np.clip(np.rint(rt - offset).astype(np.int64) - lo, 0, max(hi - lo - 1, 0))
        return hit, frame

    def rates(hit, lv, floor):
        """Share of peaks found, per strength class (shrunk towards the overall share)."""
        overall = hit.mean() if hit.size else 0.5
        n = np.bincount(lv, minlength=3)[:3]
        k = np.bincount(lv, weights=hit, minlength=3)[:3]
        return np.clip((k + 4 * overall) / (n + 4), floor * 2, 0.95), float(overall)

    def p_hit(offset, a, b):
        sel = (t >= a) & (t < b)
        hit, _ = ref.hits(t[sel], f[sel], offset)
        r0, r1 = np.searchsorted(rp.t, [a + offset - 0.5, b + offset - 0.5])
        back, _ = ref_side(offset, a, b)
        clip_side, overall = rates(hit, cp.lv[sel], chance)
        ref_rates, _ = rates(back, rp.lv[r0:r1], chance_clip)
        return clip_side, ref_rates, overall

    def evidence(item, lo, hi):
        """Per-frame evidence (nats) for a part against foreign material over frames [lo, hi)."""
        n = max(hi - lo, 0)
        sel = (t >= lo) & (t < hi)
        hit, _ = ref.hits(t[sel], f[sel], item["offset"])
        llr = _llr_per_peak(hit, item["p"][0][cp.lv[sel]], chance)
        per = np.zeros(n)
        per += np.bincount(t[sel] - lo, weights=llr, minlength=n)[:n]
        r0, r1 = np.searchsorted(rp.t, [lo + item["offset"] - 0.5, hi + item["offset"] - 0.5])
        back, frame = ref_side(item["offset"], lo, hi)
        llr = _llr_per_peak(back, item["p"][1][rp.lv[r0:r1]], chance_clip)
        per += np.bincount(frame, weights=llr, minlength=n)[:n]
        return per

    def foreign(item, a, b):
        """Evidence (nats, robust per block) that frames [a, b) are not the part's material."""
        if b <= a:
            return 0.0
        per = evidence(item, a, b)
        blocks = np.add.reduceat(per, np.arange(0, per.size, BLOCK))
        return float(-_robust(blocks).sum())

    # runs -> parts with a precise offset and the share of their peaks found in the reference
    first_pass = []
    for s, e, k in runs:
        a, b = s * BLOCK, min(e * BLOCK, nframes)
        item = {"k": None if k == none else k, "a": a, "b": b}
        if k != none:
            item["offset"] = _offset(ref, t, f, tf, a, b, float(cands[k]))
            item["p"] = p_hit(item["offset"], a, b)
        first_pass.append(item)
    # a short part matching much worse than the clip's parts do is foreign material that
    # happens to resemble some other place of the reference (a word said the same way)
    weights = [(it["b"] - it["a"], it["p"][2]) for it in first_pass if it["k"] is not None]
    typical = sum(w * q for w, q in weights) / max(sum(w for w, _ in weights), 1)
    # and a part whose own peaks, both ways, barely favour it is not one (a click, a cough)
    for it in first_pass:
        if it["k"] is None:
            continue
        short = (it["b"] - it["a"]) * FRAME_S < WEAK_PART_S
        if (short and it["p"][2] < WEAK_SHARE * typical) or evidence(
            it, it["a"], it["b"]
        ).sum() < MIN_PART_NATS:
            it["k"] = None

    # a part at the same offset as the one before, with nothing or only weak
    # foreign-looking material between, continues it
    items = []
    for item in first_pass:
        if items and item["k"] is None and items[-1]["k"] is None:
            items[-1]["b"] = item["b"]
            continue
        if item["k"] is None:
            items.append(item)
            continue
        a, b, offset = item["a"], item["b"], item["offset"]
        if items and items[-1]["k"] is not None and abs(offset - items[-1]["offset"]) < SAME_OFFSET:
            item["a"] = items.pop()["a"]
        elif (
            len(items) >= 2
            and items[-1]["k"] is None
            and abs(offset - items[-2]["offset"]) < SAME_OFFSET
            and foreign(items[-2], items[-1]["a"], items[-1]["b"]) < NONE_COST
        ):
            items.pop()
            item["a"] = items.pop()["a"]
        if item["a"] != a:
            item["offset"] = _offset(ref, t, f, tf, item["a"], b, offset)
            item["p"] = p_hit(item["offset"], item["a"], b)
        items.append(item)
    info = [it for it in items if it["k"] is not None]
    if not info:
        return _all_unmatched(cp, Alignment([], [], cp.duration, rp.duration, match_rate, int(cands.size)))

    # boundaries between consecutive parts, from the peaks around the coarse ones
    margin = int(REFINE_S / FRAME_S)
    for left, right in zip(info, info[1:], strict=False):
        lo = max(left["a"], left["b"] - margin)
        hi = min(right["b"], right["a"] + margin)
        for _ in range(4):
            b1, b2, s1, s2 = _split(evidence(left, lo, hi), evidence(right, lo, hi))
            # a span of equally good positions reaching the window's edge (a long pause, or
            # silence added at the join) goes on beyond it: widen the window and look again
            grow_lo = s1[0] == 0 and lo > left["a"]
            grow_hi = s2[1] == hi - lo and hi < right["b"]
            if not (grow_lo or grow_hi):
                break
            lo = max(left["a"], lo - margin) if grow_lo else lo
            hi = min(right["b"], hi + margin) if grow_hi else hi
        left["b"], right["a"] = lo + b1, lo + b2
        left["b_span"], right["a_span"] = (lo + s1[0], lo + s1[1]), (lo + s2[0], lo + s2[1])
    # foreign material at the ends of the clip: only where it clearly explains the peaks better
    first, last = info[0], info[-1]
    if first["a"] > 0:
        hi = min(first["b"], first["a"] + margin)
        suf = np.concatenate([np.cumsum(evidence(first, 0, hi)[::-1])[::-1], [0.0]])
        b0, b1 = _plateau(suf)
        b = (b0 + b1) // 2
        first["a"] = b if suf[b] > suf[0] + NONE_COST else 0
        first["a_span"] = (b0, b1) if first["a"] else (0, 0)
    if last["b"] < nframes:
        lo = max(last["a"], last["b"] - margin)
        pre = np.concatenate([[0.0], np.cumsum(evidence(last, lo, nframes))])
        b0, b1 = _plateau(pre)
        b = (b0 + b1) // 2
        last["b"] = lo + b if pre[b] > pre[-1] + NONE_COST else nframes
        last["b_span"] = (lo + b0, lo + b1) if last["b"] < nframes else (nframes, nframes)

    # frame index -> seconds at the frame's centre; the clip's own ends stay its ends
    half = NFFT / 2 / RATE

    def sec(frame):
        return 0.0 if frame <= 0 else (cp.duration if frame >= nframes else frame * FRAME_S + half)

    unmatched = []
    spans = [(None, 0, first["a"], first)]
    spans += [(left, left["b"], right["a"], right) for left, right in zip(info, info[1:], strict=False)]
    spans += [(last, last["b"], nframes, None)]
    for left, a, b, right in spans:
        if b <= a:
            continue
        npeaks = int(((t >= a) & (t < b)).sum())
        ev = min(foreign(side, a, b) for side in (left, right) if side is not None)
        if (b - a) * FRAME_S >= MIN_INSERT_S and npeaks >= 10 and ev >= NONE_COST:
            unmatched.append(Unmatched(sec(a), sec(b), ev, npeaks))
            continue
        # too short, silent or too like the parts to call foreign: the parts share it
        if left is None:
            right["a"], right["a_span"] = 0, (0, 0)
        elif right is None:
            left["b"], left["b_span"] = nframes, (nframes, nframes)
        else:
            left["b"] = right["a"] = (a + b) // 2
            span = (min(a, left["b_span"][0]), max(b, right["a_span"][1]))
            left["b_span"] = right["a_span"] = span

    parts = []
    for item in info:
        # a part cannot reach before the reference's start or past its end
        a = max(item["a"], int(np.ceil(-item["offset"])))
        b = min(item["b"], int(np.floor(rp.frames - item["offset"])))
        if b <= a:
            continue
        sel = (t >= a) & (t < b)
        hit, _ = ref.hits(t[sel], f[sel], item["offset"])
        a_span = item.get("a_span", (a, a))
        b_span = item.get("b_span", (b, b))
        parts.append(
            Part(
                clip_start=sec(a),
                clip_end=sec(b),
                offset=item["offset"] * FRAME_S,
                state=item["k"],
                llr=float(evidence(item, a, b).sum()),
                matched=int(hit.sum()),
                peaks=int(sel.sum()),
                start_span=(sec(min(a_span[0], a)), sec(max(a_span[1], a))),
                end_span=(sec(min(b_span[0], b)), sec(max(b_span[1], b))),
            )
        )

    # matched peaks, for the picture: (clip s, reference s), thinned evenly
    pts = []
    for part in parts:
        sel = (tf * FRAME_S + half >= part.clip_start) & (tf * FRAME_S + half < part.clip_end)
        hit, when = ref.hits(t[sel], f[sel], part.offset / FRAME_S)
        pts.append(np.stack([tf[sel][hit] * FRAME_S + half, when[hit] * FRAME_S + half], axis=1))
    pts = np.concatenate(pts) if pts else np.zeros((0, 2))
    if pts.shape[0] > points:
        pts = pts[np.linspace(0, pts.shape[0] - 1, points).astype(int)]
    return Alignment(
        parts=parts,
        unmatched=unmatched,
        clip_duration=cp.duration,
        reference_duration=rp.duration,
        match_rate=match_rate,
        candidates=int(cands.size),
        points=pts,
    )


def _offset(ref: _RefPeaks, t, f, tf, a, b, guess: float) -> float:
    """Offset (frames) of clip frames [a, b): median time difference of the peaks found at ``guess``."""
    sel = (t >= a) & (t < b)
    hit, when = ref.hits(t[sel], f[sel], guess)
    return float(np.median(when[hit] - tf[sel][hit])) if hit.sum() >= 5 else guess


def _plateau(score: np.ndarray) -> tuple[int, int]:
    """The run of near-equal best scores (within TIE_NATS) around the best: first and last index."""
    best = int(np.argmax(score))
    ok = score >= score[best] - TIE_NATS
    a = best
    while a > 0 and ok[a - 1]:
        a -= 1
    b = best
    while b < score.size - 1 and ok[b + 1]:
        b += 1
    return a, b


def _split(sa: np.ndarray, sb: np.ndarray) -> tuple[int, int, tuple[int, int], tuple[int, int]]:
    """Frames [0, b1) follow part A, [b2, n) part B, [b1, b2) neither (foreign), b1 <= b2.

    Also the spans of equally good positions of b1 and b2 (a join in a pause: the pause).
    """
    n = sa.size
    pre = np.concatenate([[0.0], np.cumsum(sa)])  # pre[i]: A over [0, i)
    suf = np.concatenate([np.cumsum(sb[::-1])[::-1], [0.0]])  # suf[i]: B over [i, n)
    single = pre + suf
    span = _plateau(single)
    b = (span[0] + span[1]) // 2
    # a foreign stretch between them, if it explains the frames clearly better
    best_pre = np.maximum.accumulate(pre)  # best end of A at or before i
    arg_pre = np.maximum.accumulate(np.where(pre >= best_pre, np.arange(n + 1), 0))
    two = best_pre + suf
    i2 = int(np.argmax(two))
    if two[i2] > single[b] + NONE_COST:
        b1 = int(arg_pre[i2])
        if (i2 - b1) * FRAME_S >= MIN_INSERT_S:
            s1 = _plateau(pre[: i2 + 1])
            s2 = _plateau(suf[b1:])
            return b1, i2, (min(s1[0], b1), max(s1[1], b1)), (min(b1 + s2[0], i2), max(b1 + s2[1], i2))
    return b, b, span, span
