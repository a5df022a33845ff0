"""ENF (electric network frequency) signal processing for audio_enf.

Pure numpy/scipy on a mono signal already decoded at FS = 1000 Hz.

1. Baseband. For each grid g in (50, 60) and harmonic k in (1, 2, 3), the
   signal is shifted down by k*g (multiplied by exp(-2j*pi*k*g*t)), low-passed
   (301-tap Hamming FIR, flat to 4.5 Hz, -54 dB from 15.5 Hz) and decimated
   to R = 20 complex samples/s. The hum at that harmonic becomes a slowly
   turning phasor near 0 Hz; its phase is the mains phase times k.
2. Spectra. Frames of 4 s (Hann), hop 1 s, zero-padded to 0.039 Hz bins.
   Hum band: nominal +-(0.1 + 0.2 k) Hz; neighbour bands 1.5-4 Hz either side.
   SNR = strongest hum-band bin / median neighbour bin. The file's SNR per
   harmonic uses the mean spectrum over all frames; a grid is "present" when
   its best harmonic reaches MIN_SNR_DB, and the stronger grid is kept.
3. Trace. Per frame and usable harmonic, the peak is refined by parabolic
   interpolation of the log power; harmonics are combined as f_k / k,
   weighted by k^2 * SNR (frames whose harmonic is below FRAME_SNR_DB are
   left out). Frames with no harmonic above it are gaps in the trace.
4. Phase test (edit candidates). Each harmonic's baseband is de-rotated by
   the smoothed trace (a 5-frame running median), leaving a nearly constant
   phasor, and divided by the hum's amplitude (its mean phasor over
   AMPLITUDE_S, less the noise's share), so that a louder hum on one side
   of a splice does not pull the statistic's peak away from it. At every
   instant t (every 0.05 s) the mean phasor over W seconds before t - G is compared with the mean over W seconds after t + G
   (G = 0.25 s): a splice (cut, insertion, reordering) of a recording with
   hum shows up as a phase step, because the mains phase at the two sides of
   a splice is unrelated. Three tests: W = 1 s and W = 3 s with a common
   frequency, and W = 3 s where each side's phase is extrapolated to t from
   its own two halves (material at another frequency: insertions). A step is
   divided by its standard error (neighbour-band noise over hum amplitude,
   plus a model error of FLOOR_DEG x k, widened per file when the steps
   spread more than the model says: _Tester._calibrate); squared and summed
   over harmonics it is a chi-square with K degrees of freedom when nothing
   changes, turned into a normal deviate (Wilson-Hilferty). The statistic
   is the largest over the three tests. The strongest instant at or above
   THRESHOLD (THRESHOLD_WEAK where the hum is under WEAK_SNR_DB) becomes a
   candidate (placed by the gap-free test within REFINE_S of it, _refine),
   the tests are redone with windows stopping at it, and so on until
   nothing reaches the threshold. Phase steps near a whole number of
   cycles cannot be seen: a cut removing an exact multiple of 20 ms
   (50 Hz) leaves no trace in the hum.
5. Instantaneous-frequency test (_if_test, after Esquef, Apolinario and
   Biscainho, IEEE TIFS 2014): disturbances of the hum's instantaneous
   frequency over a threshold set on unedited material; adds candidates the
   phase test did not give.
6. Hum level test (_level_test): spans where the hum disappears (inserted
   hum-free material; a voiced moment inside it does not split it) and its
   phase after the span does not continue the phase before it (_bridge, run
   on across the span at the trace or at its two sides' frequency); their
   ends, placed by a fit of hum on one side and none on the other
   (_level_edge), are edit candidates.
7. Placement (_place): each phase-test and IF candidate is moved, within
   PLACE_S, to the instant where a split model fits the de-rotated hum
   best (each side its own phase and grid frequency; the hum divided by its
   short-term amplitude, so only its phase and frequency count).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

FS = 1000  # decode rate (Hz)
R = 20  # baseband rate (Hz)
GRIDS = (50, 60)
HARMONICS = (1, 2, 3)

FRAME_S = 4.0
HOP_S = 1.0
NFFT = 512
NEIGHBOUR_HZ = (1.5, 4.0)

MIN_SNR_DB = 8.0  # file-level: a grid/harmonic with less is not used
FRAME_SNR_DB = 10.0  # frame-level: a harmonic's frame with less is not in the trace

WINDOWS_S = (1.0, 3.0)  # W: averaging on each side of a tested instant (two scales)
SLOPE_WINDOWS_S = (3.0,)  # the same with each side's own frequency
GAP_S = 0.25  # G: left out around the instant (filter transient)
LOCAL_SNR_DB = 5.0  # a harmonic is tested at t only if each side's mean phasor has this SNR
AMPLITUDE_S = 2.0  # the phase test divides the hum by its amplitude measured over this window
REFINE_S = 1.0  # a split is placed within this of the statistic's peak (_refine)
FLOOR_DEG = 3.0  # phase error of the model (wander the trace does not follow), per harmonic number
ROBUST_SPREAD_MAX = 1.0  # see _Tester._calibrate
THRESHOLD = 5.0  # combined phase step as a normal deviate (Wilson-Hilferty); above this: candidate
# THRESHOLD_WEAK: the threshold in files whose best harmonic is under WEAK_SNR_DB (the evaluation's
# lowest hum SNR band); the lowest with at most 1 false alarm per hour on that band's unedited audio of
# the tuning half (2 in 2.9 h; at THRESHOLD there were 18): where the hum is that weak the steps of a
# harmonic near LOCAL_SNR_DB are far from normal.
THRESHOLD_WEAK = 6.5
WEAK_SNR_DB = 12.0
MAX_CANDIDATES = 500
MEDIAN_FRAMES = 5

# Instantaneous-frequency test (step 5): the phase advance of the de-rotated hum over IF_WINDOW_S
# just after an instant against just before it, per harmonic over its robust spread in this file.
IF_WINDOW_S = 0.5
# IF_THRESHOLD: normal deviate; the lowest of 13-16 that adds no false alarm to the phase and level
# tests' on the unedited clips of the evaluation's tuning half (even seeds; audio_enf 2.2.0). There it
# adds 3 splices at hum SNR >= 12 dB; at 10 it added the same 3 and 10 false alarms in 7.1 h, at 13 two.
IF_THRESHOLD = 14.0
MERGE_S = 1.0  # a candidate of a later test this close to an earlier one is the same splice

# Placement (step 7, _place): each phase-test and IF candidate is moved to the instant where a split model
# (the hum on each side with its own phase and grid frequency) fits the de-rotated hum best, within PLACE_S
# of where the tests put it.
PLACE_S = 1.5
# PLACE_AMPLITUDE_S: the hum is divided by its incoherent amplitude over this before the fit. On the tuning
# half (hum SNR >= 12 dB) 0.25 and 0.35 s placed 177/247 splices within 0.5 s (the tests alone: 172), 0.05
# and 0.15 s 175, 0.5 s 173, 1 s 171; a free amplitude per sample (no division) 174.
PLACE_AMPLITUDE_S = 0.25
PLACE_MIN_S = 0.25  # shortest side the model is fitted to (and the nearest it places a split to another)
PLACE_FREQ_HZ = 0.1  # each side's own grid frequency within this of the trace's
PLACE_FREQ_STEP_HZ = 0.005
# PLACE_MIN_GAIN: a candidate moves only when the best instant's log-likelihood gain exceeds that of the
# tests' own instant by this (a likelihood ratio of e^3, about 20). On the tuning half 1-4 placed the same
# 177/247 (8: 173); without it (2.5.0 as first run) the held-out half lost 12 splices, 9 of them
# reorderings with small steps, whose correct candidates moved 0.5-1.3 s away, and gained 8: 202/296.
PLACE_MIN_GAIN = 3.0

# Hum level test (step 6): spans where the hum's coherent SNR falls LEVEL_DROP_DB below the file's median
LEVEL_WINDOW_S = 1.0
LEVEL_DROP_DB = 10.0
LEVEL_MIN_S = 0.8
# LEVEL_CLOSE_S: low runs closer than this are one span (audio.enf 2.6.0). On the tuning half (even seeds,
# hum SNR >= 12 dB) 0.6-2.0 s found 187/247 splices (without: 177; 0.4 s: 184), false alarms unchanged (6 in
# 7.1 h of unedited audio), candidates away from the splices in edited files 38 at 1.2-2.0 s (without: 49)
LEVEL_CLOSE_S = 1.2
# A span's ends are placed by a fit (_level_edge): within LEVEL_EDGE_S of where the level crosses, the hum's
# side fitted over LEVEL_EDGE_FIT_S beyond that (audio.enf 2.7.0). On the tuning half (even seeds, hum SNR
# >= 12 dB, with the two changes below): 1.0 s and 4-5 s found 202/247 splices (3 s: 201; 2 s: 198; 0.6 or
# 1.5 s and 4 s: 200; without the fit: 195), false alarms unchanged (6 in 7.1 h of unedited audio)
LEVEL_EDGE_S = 1.0
LEVEL_EDGE_FIT_S = 4.0
# LEVEL_REF_MIN_DB: below this median local SNR a drop cannot be told from the noise. 12 (was 14 before
# the bridge test): on the tuning half the bridge removes every span of an unedited file down to 10, and
# 12 and 10 found the same splices there (14: 3 fewer)
LEVEL_REF_MIN_DB = 12.0
# LEVEL_REF_WEAK_DB, LEVEL_BRIDGE_Z_WEAK: files whose median local SNR is 8-12 dB are tested too (2.7.0), a
# span kept there only with a bridge statistic of 3.5. On the tuning half every span of an unedited file at
# 8-12 dB bridged at 2.6 or less (575 spans), the hum-free insertions there at 4.2 or more (7 spans); 3.0-3.5
# found 202-203/247 splices, 4.5: 200; without these files: 190; false alarms unchanged (6 in 7.1 h). The
# bridge there is the larger of two (_level_test): the trace's alone found 194, the sides' frequency alone 190
LEVEL_REF_WEAK_DB = 8.0
LEVEL_BRIDGE_Z_WEAK = 3.5
LEVEL_ABSENT_DB = 6.0  # a span's median local SNR must be under this: the hum is (nearly) gone
# A span is kept only if the hum's phase after it does not continue the phase before it (_bridge):
# material inserted between the two sides shifts the later side's phase by the mains frequency x its
# length, while a dropout of the hum (a codec's, a noise suppressor's) leaves it where it was.
BRIDGE_WINDOW_S = 2.0
# the trace's frequency error over a span, per harmonic number (not tuned: about the trace's median error
# at 12-20 dB in the evaluation's report)
BRIDGE_WANDER_HZ = 0.005
# LEVEL_BRIDGE_Z: normal deviate. On the tuning half (even seeds, 10 dB reference) every span in unedited
# files and every span not at an edit bridged at 0.7 or less, the hum-free insertions at 0.1 to 10 (all
# but one of them at 1.1 or more)
LEVEL_BRIDGE_Z = 1.0

_LOWPASS = signal.firwin(301, 10.0, fs=FS)


def band_halfwidth(k: int) -> float:
    return 0.1 + 0.2 * k


_CHUNK = 600 * FS  # baseband and spectra are computed in pieces, so hours of audio fit in memory
_HALF = (len(_LOWPASS) - 1) // 2  # 150 samples: the filter's delay
_DOWN = FS // R


def baseband(x: np.ndarray, freq: int) -> np.ndarray:
    """x shifted down by ``freq`` Hz, low-passed and decimated to R samples/s (complex).

    Output sample m is centred on input sample m * FS / R (the filter is
    symmetric and its delay is removed).
    """
    # freq / FS is a ratio of small integers: the oscillator repeats every ``period`` samples
    period = FS // int(np.gcd(int(freq), FS))
    osc = np.exp(-2j * np.pi * freq * np.arange(period) / FS).astype(np.complex64)
    n_out = -(-len(x) // _DOWN)
    out = np.empty(n_out, dtype=np.complex128)
    for start in range(0, n_out * _DOWN, _CHUNK):
        stop = min(start + _CHUNK, n_out * _DOWN)
        lo, hi = start - _HALF, stop + _HALF
        seg = np.zeros(hi - lo, dtype=np.float32)
        seg[max(0, -lo) : (hi - lo) - max(0, hi - len(x))] = x[max(0, lo) : min(hi, len(x))]
        z = seg * osc[np.arange(lo, hi) % period]
        # full convolution index j is centred on seg index j - _HALF; we want seg
        # indices _HALF + m * _DOWN, i.e. j = 2 * _HALF + m * _DOWN (2 * _HALF is 6 * _DOWN)
        y = signal.upfirdn(_LOWPASS, z, up=1, down=_DOWN)
        first = 2 * _HALF // _DOWN
        count = (stop - start) // _DOWN + (1 if (stop - start) % _DOWN else 0)
        out[start // _DOWN : start // _DOWN + count] = y[first : first + count]
    return out


@dataclass
class Harmonic:
    grid: int
    k: int
    z: np.ndarray  # baseband
    snr_db: float = 0.0  # file level
    frame_snr_db: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frame_freq: np.ndarray = field(default_factory=lambda: np.zeros(0))  # Hz (absolute, this harmonic)
    noise_var: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per baseband sample, per frame


_WIN = np.hanning(int(FRAME_S * R))
_FREQS = np.fft.fftshift(np.fft.fftfreq(NFFT, 1 / R))
_KEEP = np.flatnonzero(np.abs(_FREQS) <= NEIGHBOUR_HZ[1])  # the bins any measure looks at
_FRAMES_PER_CHUNK = 2048


def _measure(h: Harmonic) -> None:
    """Hum SNR (file and per frame), per-frame peak frequency and noise floor of one harmonic."""
    n = int(FRAME_S * R)
    hop = int(HOP_S * R)
    z = h.z
    if len(z) < n:
        z = np.concatenate([z, np.zeros(n - len(z), z.dtype)])
    frames = np.lib.stride_tricks.sliding_window_view(z, n)[::hop]
    freqs = _FREQS[_KEEP]
    band = np.flatnonzero(np.abs(freqs) <= band_halfwidth(h.k))
    neigh = (np.abs(freqs) >= NEIGHBOUR_HZ[0]) & (np.abs(freqs) <= NEIGHBOUR_HZ[1])
    tiny = 1e-30
    total = np.zeros(len(_KEEP))
    snr, freq, floor_all = [], [], []
    for i in range(0, len(frames), _FRAMES_PER_CHUNK):
        spec = np.fft.fftshift(np.fft.fft(frames[i : i + _FRAMES_PER_CHUNK] * _WIN, NFFT, axis=1), axes=1)
        power = np.abs(spec[:, _KEEP]) ** 2
        total += power.sum(axis=0)
        p = power[:, band]
        floor = np.median(power[:, neigh], axis=1) + tiny
        peak = np.argmax(p, axis=1)
        rows = np.arange(len(p))
        snr.append(10 * np.log10((p[rows, peak] + tiny) / floor))
        # parabolic interpolation of the log power around the peak bin
        lp = np.log(p + tiny)
        inner = np.clip(peak, 1, p.shape[1] - 2)
        a, b, c = lp[rows, inner - 1], lp[rows, inner], lp[rows, inner + 1]
        den = a - 2 * b + c
        offset = np.where(den < 0, 0.5 * (a - c) / np.where(den < 0, den, -1), 0.0)
        offset = np.where(peak == inner, np.clip(offset, -0.5, 0.5), 0.0)
        freq.append(h.k * h.grid + freqs[band[0]] + (peak + offset) * (R / NFFT))
        floor_all.append(floor)
    mean = total / len(frames)
    h.snr_db = float(10 * np.log10((mean[band].max() + tiny) / (np.median(mean[neigh]) + tiny)))
    h.frame_snr_db = np.concatenate(snr)
    h.frame_freq = np.concatenate(freq)
    # complex white noise of variance s2 per sample gives E|X|^2 = s2 * sum(w^2);
    # the median of an exponential variable is ln 2 times its mean
    h.noise_var = np.concatenate(floor_all) / (np.log(2) * np.sum(_WIN**2))


def frame_times(n_frames: int) -> np.ndarray:
    return (np.arange(n_frames) * HOP_S + FRAME_S / 2).round(6)


@dataclass
class Result:
    duration: float
    snr_db: dict  # {grid: {k: dB}}
    grid: int | None  # None: no usable ENF
    harmonics: list  # usable Harmonic objects of the chosen grid
    times: np.ndarray  # frame centres (s)
    trace: np.ndarray  # Hz, NaN in gaps
    trace_k: dict  # {k: Hz/k per frame, NaN where below FRAME_SNR_DB}
    frame_snr_db: dict  # {grid: best harmonic's frame SNR}
    stat_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    statistic: np.ndarray = field(default_factory=lambda: np.zeros(0))  # normal deviate, NaN untested
    candidates: list = field(default_factory=list)  # dicts
    if_statistic: np.ndarray = field(default_factory=lambda: np.zeros(0))  # at stat_times
    level_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    level_db: np.ndarray = field(default_factory=lambda: np.zeros(0))  # local coherent hum SNR
    level_ref_db: float = float("nan")
    level_spans: list = field(default_factory=list)  # dicts: start, end, depth_db

    @property
    def tested_seconds(self) -> float:
        return float(np.count_nonzero(np.isfinite(self.statistic)) / R)


def analyse(x: np.ndarray, grid: int | None = None) -> Result:
    """Run steps 1-4 on x (float, FS samples/s). ``grid`` forces 50 or 60."""
    duration = len(x) / FS
    grids = GRIDS if grid is None else (grid,)
    per_grid = {}
    for g in GRIDS:
        hs = []
        for k in HARMONICS:
            z = baseband(x, k * g)
            h = Harmonic(g, k, z)
            _measure(h)
            hs.append(h)
        per_grid[g] = hs
    snr = {g: {k * g: round(h.snr_db, 1) for h, k in zip(per_grid[g], HARMONICS, strict=True)} for g in GRIDS}
    best = {g: max(h.snr_db for h in per_grid[g]) for g in grids}
    chosen = max(grids, key=lambda g: (best[g], -g))
    n_frames = len(per_grid[chosen][0].frame_freq)
    times = frame_times(n_frames)
    frame_snr = {g: np.max([h.frame_snr_db for h in per_grid[g]], axis=0) for g in GRIDS}
    if best[chosen] < MIN_SNR_DB:
        nan = np.full(n_frames, np.nan)
        return Result(duration, snr, None, [], times, nan, {}, frame_snr)
    usable = [h for h in per_grid[chosen] if h.snr_db >= MIN_SNR_DB]
    num = np.zeros(n_frames)
    den = np.zeros(n_frames)
    trace_k = {}
    for h in usable:
        ok = h.frame_snr_db >= FRAME_SNR_DB
        w = np.where(ok, h.k**2 * 10 ** (h.frame_snr_db / 10), 0.0)
        num += w * h.frame_freq / h.k
        den += w
        trace_k[h.k] = np.where(ok, h.frame_freq / h.k, np.nan)
    trace = np.where(den > 0, num / np.maximum(den, 1e-30), np.nan)
    res = Result(duration, snr, chosen, usable, times, trace, trace_k, frame_snr)
    tester = _phase_test(res)
    if tester is not None:
        _if_test(res, tester)
        _level_test(res, tester)
        _place(res, tester)
    return res


def _smooth_trace(res: Result) -> np.ndarray:
    """Running median (MEDIAN_FRAMES frames) of the trace, gaps filled by interpolation."""
    t, f = res.times, res.trace
    ok = np.isfinite(f)
    if not ok.any():
        return np.full(len(f), float(res.grid))
    filled = np.interp(t, t[ok], f[ok])
    if len(filled) >= MEDIAN_FRAMES:
        filled = signal.medfilt(filled, MEDIAN_FRAMES)
    return filled


def _wilson_hilferty(chi: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Chi-square values with ``dof`` degrees of freedom as normal deviates (NaN where dof = 0)."""
    out = np.full(len(chi), np.nan)
    t = dof > 0
    k = dof[t]
    out[t] = ((chi[t] / k) ** (1 / 3) - (1 - 2 / (9 * k))) / np.sqrt(2 / (9 * k))
    return out


def _amplitude(y: np.ndarray, nv: np.ndarray, w: int) -> np.ndarray:
    """The hum's amplitude around each sample: |mean phasor| over w samples, less the noise's share."""
    w = max(1, min(w, len(y)))
    cs = np.concatenate([[0], np.cumsum(y)])
    cn = np.concatenate([[0], np.cumsum(nv)])
    a = np.clip(np.arange(len(y)) - w // 2, 0, len(y) - w)
    p = np.abs((cs[a + w] - cs[a]) / w) ** 2
    noise = (cn[a + w] - cn[a]) / w**2
    return np.sqrt(np.maximum(p - noise, noise))


class _Tester:
    """The phase-step statistic at split points, with windows that stop at accepted splits."""

    def __init__(self, res: Result):
        self.res = res
        n = len(res.harmonics[0].z)
        self.n = n
        t = np.arange(n) / R
        smooth = np.interp(t, res.times, _smooth_trace(res))
        self.smooth = smooth  # the trace per baseband sample (Hz), that de-rotates the hum
        self.ys, self.noises = [], []
        self.raw_ys, self.raw_noises = [], []
        for h in res.harmonics:
            phase = 2 * np.pi * h.k * np.cumsum(smooth - res.grid) / R
            y = h.z * np.exp(-1j * phase)
            nv = np.interp(t, res.times, h.noise_var)
            self.raw_ys.append(np.concatenate([[0], np.cumsum(y)]))
            self.raw_noises.append(np.concatenate([[0], np.cumsum(nv)]))
            # the phase test sees the hum at unit amplitude: a louder hum on one side of a splice
            # (inserted material) would otherwise dominate a window's mean as soon as the window
            # reaches it, and the statistic would peak a second or more before the splice
            a = _amplitude(y, nv, int(AMPLITUDE_S * R))
            y = y / a
            nv = nv / a**2
            self.ys.append(np.concatenate([[0], np.cumsum(y)]))
            self.noises.append(np.concatenate([[0], np.cumsum(nv)]))
        self.gap = int(GAP_S * R)
        self.tests = [("const", int(w * R)) for w in WINDOWS_S] + [
            ("slope", int(w * R)) for w in SLOPE_WINDOWS_S
        ]
        self.bounds: list[int] = []  # accepted split points (samples)
        self.inflation: dict[tuple, float] = {}  # (kind, w, k) -> factor on the standard error
        self._calibrate()

    def _calibrate(self) -> None:
        """Widen the error model where the hum's phase wanders more than the model allows.

        In an unedited recording each test's steps, divided by their modelled
        standard error, should be standard normal. Where their robust spread
        (1.4826 x median absolute value, over the whole file) exceeds
        ROBUST_SPREAD_MAX (a wandering grid the trace does not follow, a hum
        that is not mains), that test's errors for that harmonic are scaled up
        by spread / ROBUST_SPREAD_MAX; below it (edits themselves raise the
        spread somewhat) nothing changes.
        """
        for kind, w in self.tests:
            c = np.arange(self.gap + w, self.n - self.gap - w + 1, max(1, w // 4))
            if len(c) < 8:
                continue
            for k, r in self._one(c, kind, w, residuals=True).items():
                r = r[np.isfinite(r)]
                if len(r) >= 8:
                    spread = 1.4826 * float(np.median(np.abs(r)))
                    self.inflation[(kind, w, k)] = max(1.0, spread / ROBUST_SPREAD_MAX)

    def _sides(self, c: np.ndarray, w: int):
        """Left [lo, c - gap) and right [c + gap, hi) windows of w samples, cut short only at accepted splits.

        At the ends of the file the windows are not cut short: lo < 0 or hi > n there.
        """
        b = np.array(sorted(self.bounds), dtype=int)
        lo = c - self.gap - w
        hi = c + self.gap + w
        if len(b):
            j = np.searchsorted(b, c)
            prev = np.where(j > 0, b[np.maximum(j - 1, 0)] + self.gap, -(10**9))
            nxt = np.where(j < len(b), b[np.minimum(j, len(b) - 1)] - self.gap, 10**9)
            lo = np.maximum(lo, prev)
            hi = np.minimum(hi, nxt)
        return lo, c - self.gap, c + self.gap, hi

    def evaluate(self, c: np.ndarray):
        """(best z over the tests, index of that test, per-harmonic steps in degrees at that test)."""
        zs, steps = [], []
        for kind, w in self.tests:
            z, st = self._one(c, kind, w)
            zs.append(z)
            steps.append(st)
        zs = np.array(zs)
        finite = np.isfinite(zs)
        best = np.argmax(np.where(finite, zs, -np.inf), axis=0)
        stat = np.where(finite.any(axis=0), zs[best, np.arange(len(c))], np.nan)
        return stat, best, steps

    def _one(self, c: np.ndarray, kind: str, w: int, residuals: bool = False):
        l0, l1, r0, r1 = self._sides(c, w)
        need = w // 2 if kind == "const" else (3 * w) // 4
        inside = (l1 - l0 >= need) & (r1 - r0 >= need) & (l0 >= 0) & (r1 <= self.n)
        chi = np.zeros(len(c))
        dof = np.zeros(len(c), dtype=int)
        steps, resid = {}, {}
        l0, l1, r0, r1 = (np.where(inside, a, 0) for a in (l0, l1, r0, r1))
        l1 = np.where(inside, l1, 1)
        r1 = np.where(inside, r1, 1)
        snr_min = 10 ** (LOCAL_SNR_DB / 10)
        for h, cs, ncs in zip(self.res.harmonics, self.ys, self.noises, strict=True):
            if kind == "const":
                parts = [(l0, l1), (r0, r1)]
            else:
                lm, rm = (l0 + l1) // 2, (r0 + r1) // 2
                parts = [(l0, lm), (lm, l1), (r0, rm), (rm, r1)]
            m, var_part = [], []
            ok = inside.copy()
            for a, b in parts:
                length = np.maximum(b - a, 1)
                mi = (cs[b] - cs[a]) / length
                vi = (ncs[b] - ncs[a]) / length
                pi = np.abs(mi) ** 2
                ok &= pi * length >= vi * snr_min
                m.append(mi)
                var_part.append(vi / (2 * length * np.maximum(pi, 1e-30)))  # variance of angle(mi)
            floor = np.radians(FLOOR_DEG * h.k) ** 2
            if kind == "const":
                step = np.angle(m[1] * np.conj(m[0]))
                var = var_part[0] + var_part[1] + floor
            else:
                # each side's phase extrapolated to the split from its two halves' phases
                d_l = np.maximum((l1 - l0) / 2, 1)  # distance between the halves' centres
                d_r = np.maximum((r1 - r0) / 2, 1)
                e_l = ((l1 - lm) / 2 + self.gap) / d_l
                e_r = ((rm - r0) / 2 + self.gap) / d_r
                left = np.angle(m[1]) + e_l * np.angle(m[1] * np.conj(m[0]))
                right = np.angle(m[2]) - e_r * np.angle(m[3] * np.conj(m[2]))
                step = np.angle(np.exp(1j * (right - left)))
                var = (
                    e_l**2 * var_part[0]
                    + (1 + e_l) ** 2 * var_part[1]
                    + (1 + e_r) ** 2 * var_part[2]
                    + e_r**2 * var_part[3]
                    + 2 * floor
                )
            var = var * self.inflation.get((kind, w, h.k), 1.0) ** 2
            chi += np.where(ok, step**2 / var, 0.0)
            dof += ok
            steps[h.k] = np.where(ok, np.degrees(step), np.nan)
            resid[h.k] = np.where(ok, step / np.sqrt(var), np.nan)
        if residuals:
            return resid
        return _wilson_hilferty(chi, dof), steps


def _refine(tester: _Tester, centre: np.ndarray, p: int) -> int:
    """Place a split precisely: the same test with (almost) no gap, within REFINE_S of p.

    With the gap, the statistic is flat wherever the splice falls inside the
    gap; with adjacent windows it peaks at the splice (up to the low-pass
    filter's smearing, about 0.1 s). The search reaches REFINE_S either side
    (not past an accepted split): the 3 s windows' peak can lie up to a
    second from a splice that has another one a few seconds away.
    """
    gap = tester.gap
    reach = max(gap, int(REFINE_S * R))
    lo, hi = max(0, p - reach), min(len(centre), p + reach + 1)
    if tester.bounds:
        b = np.array(tester.bounds)
        below, above = b[b < centre[p]], b[b > centre[p]]
        if len(below):
            lo = max(lo, int(np.searchsorted(centre, below.max() + 2 * gap)))
        if len(above):
            hi = min(hi, int(np.searchsorted(centre, above.min() - 2 * gap)))
        lo = min(lo, p)
        hi = max(hi, p + 1)
    tester.gap = 1
    try:
        z = np.array([tester._one(centre[lo:hi], kind, w)[0] for kind, w in tester.tests if kind == "const"])
    finally:
        tester.gap = gap
    z = np.where(np.isfinite(z), z, -np.inf).max(axis=0)
    if not np.isfinite(z).any():
        return p
    return lo + int(np.argmax(z))


def _phase_test(res: Result) -> _Tester | None:
    tester = _Tester(res)
    gap = tester.gap
    wmin = min(w for _, w in tester.tests)
    centre = np.arange(gap + wmin // 2, tester.n - gap - wmin // 2 + 1)
    if len(centre) == 0:  # too short to test anything
        return None
    stat, best, steps = tester.evaluate(centre)
    res.stat_times = centre / R
    res.statistic = stat.copy()
    reach = 2 * gap + max(w for _, w in tester.tests)  # how far an accepted split changes the test
    current = stat.copy()
    names = [f"{kind}:{w / R:g}s" for kind, w in tester.tests]
    weak = max(res.snr_db[res.grid].values()) < WEAK_SNR_DB
    threshold = THRESHOLD_WEAK if weak else THRESHOLD
    while len(res.candidates) < MAX_CANDIDATES:
        s = np.where(np.isfinite(current), current, -np.inf)
        p = int(np.argmax(s))
        if s[p] < threshold:
            break
        # statistic, test and steps from the peak; the time from the refined position
        peak, test = p, best[p]
        p = _refine(tester, centre, p)
        tester.bounds.append(int(centre[p]))
        res.candidates.append(
            {
                "time": float(centre[p] / R),
                "statistic": float(current[peak]),
                "test": names[test],
                "steps_deg": {
                    h.k * res.grid: float(steps[test][h.k][peak])
                    for h in res.harmonics
                    if np.isfinite(steps[test][h.k][peak])
                },
            }
        )
        lo, hi = max(0, p - reach), min(len(centre), p + reach + 1)
        sub_stat, sub_best, sub_steps = tester.evaluate(centre[lo:hi])
        current[lo:hi] = sub_stat
        best = best.copy()
        best[lo:hi] = sub_best
        for j, st in enumerate(sub_steps):
            for k in st:
                steps[j][k][lo:hi] = st[k]
        current[max(0, p - gap) : p + gap + 1] = np.nan  # the accepted split itself
    for c in res.candidates:
        c["raw_score"] = c["statistic"] / THRESHOLD  # one scale for every file (the calibration's)
    res.candidates.sort(key=lambda c: c["time"])
    return tester


def _if_test(res: Result, tester: _Tester) -> None:
    """Step 5: disturbances of the hum's instantaneous frequency (after Esquef et al. 2014).

    Esquef, Apolinario and Biscainho (IEEE TIFS 2014) band-pass the ENF
    component narrowly, take its instantaneous frequency and flag edits where
    it departs from its own course by more than a threshold learned on
    unedited material. Here the hum is already in baseband and de-rotated by
    the trace, so its instantaneous frequency is the derivative of the
    residual phase. Four touching windows of IF_WINDOW_S give three phase
    advances (mean frequency x window); a disturbance at an instant is the
    advance across it (second and third windows) minus the mean of the
    advances just before and just after it: a splice adds its phase step to
    the middle advance only, a slow wander adds the same to all three. Per harmonic that difference is divided by its
    robust spread over the file (1.4826 x median absolute value, where the
    local SNR allows a phase), squared and summed over harmonics as a
    chi-square, and turned into a normal deviate. Local maxima at or above
    IF_THRESHOLD that are not within MERGE_S of a phase-test candidate become
    candidates of their own (test "if").
    """
    w = int(IF_WINDOW_S * R)
    n = tester.n
    c = np.arange(2 * w, n - 2 * w)
    if len(c) < 8:
        return
    chi = np.zeros(len(c))
    dof = np.zeros(len(c), dtype=int)
    snr_min = 10 ** (LOCAL_SNR_DB / 10)
    for cs, ncs in zip(tester.ys, tester.noises, strict=True):
        means = [(cs[a + w] - cs[a]) / w for a in (c - 2 * w, c - w, c, c + w)]
        var = (ncs[c + 2 * w] - ncs[c - 2 * w]) / (4 * w)
        ok = np.all([np.abs(m) ** 2 * w >= var * snr_min for m in means], axis=0)
        # the advance across the instant against the mean advance over the windows either side
        across = np.angle(means[2] * np.conj(means[1]))
        around = (np.angle(means[1] * np.conj(means[0])) + np.angle(means[3] * np.conj(means[2]))) / 2
        d = np.angle(np.exp(1j * (across - around)))
        if np.count_nonzero(ok) < 8:
            continue
        spread = max(1.4826 * float(np.median(np.abs(d[ok]))), np.radians(1.0))
        chi += np.where(ok, (d / spread) ** 2, 0.0)
        dof += ok
    z = _wilson_hilferty(chi, dof)
    res.if_statistic = np.interp(res.stat_times, c / R, z, left=np.nan, right=np.nan)
    zz = np.where(np.isfinite(z), z, -np.inf)
    order = np.argsort(-zz)
    taken = [k["time"] for k in res.candidates]
    for i in order:
        if zz[i] < IF_THRESHOLD or len(res.candidates) >= MAX_CANDIDATES:
            break
        t = float(c[i] / R)
        if any(abs(t - u) < MERGE_S for u in taken):
            continue
        taken.append(t)
        res.candidates.append(
            {
                "time": t,
                "statistic": float(zz[i]),
                "test": "if",
                "steps_deg": {},
                "raw_score": float(zz[i]) / IF_THRESHOLD,
            }
        )
    res.candidates.sort(key=lambda k: k["time"])


def _place(res: Result, tester: _Tester) -> None:
    """Step 7: move each phase-test and IF candidate to where a split model fits the hum best.

    The tests place a split from windowed statistics whose windows straddle
    it. Two things there pull the statistic's peak away from a splice (up to
    a second, on the tuning half): the amplitude the phase test divides the
    hum by is a mean phasor over AMPLITUDE_S, which cancels across a phase
    step, so next to a splice the hum is scaled up and the windows that
    reach it are dominated by it (and often fail the local SNR check right
    at the splice); and the trace that de-rotates the hum comes from 4 s
    frames that mix both sides, so it can be wrong by a frequency step for a
    few seconds. Here the de-rotated hum within PLACE_S of the candidate,
    not within PLACE_MIN_S of another candidate, is divided by its
    incoherent amplitude over PLACE_AMPLITUDE_S (the mean of |hum|^2 less the
    noise's share: it does not cancel across a phase step, and a louder or
    gated side no longer reads as a change) and fitted by a split model: on
    each side a constant phasor turning at that side's own grid frequency
    (the trace's plus an offset within PLACE_FREQ_HZ, common to the
    harmonics as k times the fundamental's; so the frequency is taken from
    that side only), samples weighted by their SNR. The model's
    log-likelihood gain, summed over harmonics, is |weighted sum|^2 / (sum
    of weights) on each side, maximised over each side's frequency; the
    candidate moves to the instant where the two sides' gains add up to the
    most, with at least PLACE_MIN_S on either side, if it fits better than
    the tests' own instant by PLACE_MIN_GAIN. Candidates only move (never
    more than PLACE_S, never past another): none is added or removed.
    Level candidates are not moved (one side has no hum to fit).
    """
    if not res.candidates:
        return
    n = tester.n
    half, edge = int(PLACE_S * R), int(PLACE_MIN_S * R)
    offsets = np.arange(-PLACE_FREQ_HZ, PLACE_FREQ_HZ + PLACE_FREQ_STEP_HZ / 2, PLACE_FREQ_STEP_HZ)
    box = np.ones(max(1, int(round(PLACE_AMPLITUDE_S * R))))
    box /= len(box)
    ys, ws = [], []
    for cs, ncs in zip(tester.raw_ys, tester.raw_noises, strict=True):
        y, nv = np.diff(cs), np.maximum(np.diff(ncs), 1e-30)
        power = np.convolve(np.abs(y) ** 2, box, mode="same")
        noise = np.convolve(nv, box, mode="same")
        amp = np.sqrt(np.maximum(power - noise, noise / len(box)))  # floored at the noise of the mean
        ys.append(y / amp)
        ws.append(amp**2 / nv)
    ks = [h.k for h in res.harmonics]
    times = [c["time"] for c in res.candidates]
    for i, c in enumerate(res.candidates):
        if c["test"] == "level":
            continue
        p = int(round(c["time"] * R))
        lo, hi = max(0, p - half), min(n, p + half + 1)
        if i > 0:
            lo = max(lo, int(np.ceil(times[i - 1] * R)) + edge)
        if i + 1 < len(times):
            hi = min(hi, int(np.floor(times[i + 1] * R)) - edge + 1)
        if hi - lo < 2 * edge + 1 or not lo + edge <= p <= hi - edge:
            continue
        m = np.arange(lo, hi)
        left = np.zeros((len(offsets), hi - lo + 1))  # [frequency offset, split before sample lo + j]
        right = np.zeros_like(left)
        for y, w, k in zip(ys, ws, ks, strict=True):
            rot = np.exp(-2j * np.pi * k * np.outer(offsets, m - p) / R)
            cy = np.concatenate([np.zeros((len(offsets), 1)), np.cumsum(y[m] * w[m] * rot, axis=1)], axis=1)
            cw = np.concatenate([[0.0], np.cumsum(w[m])])
            left += np.abs(cy) ** 2 / np.maximum(cw, 1e-30)
            right += np.abs(cy[:, -1:] - cy) ** 2 / np.maximum(cw[-1] - cw, 1e-30)
        fit = left.max(axis=0) + right.max(axis=0)
        j = edge + int(np.argmax(fit[edge : hi - lo - edge + 1]))
        if fit[j] - fit[p - lo] < PLACE_MIN_GAIN:
            continue  # the tests' own instant fits nearly as well: it stays
        c["time"] = float((lo + j - 0.5) / R)
        times[i] = c["time"]


def _bridge(tester: _Tester, s: int, e: int, interpolate: bool = False) -> tuple[float, dict]:
    """The hum's phase step across the span [s, e] (samples): BRIDGE_WINDOW_S before it against after it.

    As the phase test's constant-frequency step, with an extra error for the
    trace's frequency error over the bridged time (BRIDGE_WANDER_HZ x k);
    harmonics whose mean phasor on either side is under LOCAL_SNR_DB are left
    out. The phase is run on across the span at the trace, or with
    ``interpolate`` at the median of the trace over the two windows: inside a
    span without hum the trace follows whatever is left in the hum's band
    (noise, speech; a phone's noise suppression leaves little else), and over
    seconds that turns the reference by tens of degrees. Returns (normal
    deviate, or NaN when no harmonic can be tested; per-harmonic steps in
    degrees).
    """
    w, g, n = int(BRIDGE_WINDOW_S * R), tester.gap, tester.n
    a0, a1, b0, b1 = max(0, s - g - w), s - g, e + g, min(n, e + g + w)
    if a1 - a0 < w // 2 or b1 - b0 < w // 2:
        return float("nan"), {}
    snr_min = 10 ** (LOCAL_SNR_DB / 10)
    chi, dof, steps = 0.0, 0, {}
    bridged = ((b0 + b1) - (a0 + a1)) / 2 / R
    if interpolate:
        # the fundamental's reference turn between the windows' centres (in cycles x R): the trace's,
        # taken back, and instead the trace's up to the span and from it, with the two sides' median
        # frequency across it
        smooth, grid = tester.smooth, tester.res.grid
        ca, cb = (a0 + a1) // 2, (b0 + b1) // 2
        across = 0.5 * (float(np.median(smooth[a0:a1])) + float(np.median(smooth[b0:b1])))
        trace = float(np.sum(smooth[ca:cb] - grid))
        sides_only = float(np.sum(smooth[ca:a1] - grid) + np.sum(smooth[b0:cb] - grid)) + (across - grid) * (
            b0 - a1
        )
        correction = trace - sides_only
    for h, cs, ncs in zip(tester.res.harmonics, tester.ys, tester.noises, strict=True):
        sides = []
        for lo, hi in ((a0, a1), (b0, b1)):
            m, v = (cs[hi] - cs[lo]) / (hi - lo), (ncs[hi] - ncs[lo]) / (hi - lo)
            sides.append((m, v, hi - lo))
        if any(abs(m) ** 2 * ln < v * snr_min for m, v, ln in sides):
            continue
        var = sum(v / (2 * ln * abs(m) ** 2) for m, v, ln in sides)
        var += np.radians(FLOOR_DEG * h.k) ** 2 + (2 * np.pi * h.k * BRIDGE_WANDER_HZ * bridged) ** 2
        step = float(np.angle(sides[1][0] * np.conj(sides[0][0])))
        if interpolate:
            step = float(np.angle(np.exp(1j * (step + 2 * np.pi * h.k * correction / R))))
        chi += step**2 / var
        dof += 1
        steps[h.k * tester.res.grid] = float(np.degrees(step))
    if dof == 0:
        return float("nan"), steps
    return float(_wilson_hilferty(np.array([chi]), np.array([dof]))[0]), steps


def _level_edge(tester: _Tester, guess: int, hum_before: bool) -> int:
    """Where the hum stops (``hum_before``) or starts again, near baseband sample ``guess``.

    The level test's ends come from a mean over LEVEL_WINDOW_S, less a local
    noise taken from 4 s frames (which rises near a splice: the step leaks
    into the neighbour bands), and a hum an AGC has turned down next to the
    splice reads as gone: they can be a second off. Here the de-rotated hum of every
    usable harmonic is fitted by a hum present on one side of a split and
    absent on the other: the hum's side runs from a fixed outer end,
    LEVEL_EDGE_FIT_S beyond the search range, to the split, and the
    log-likelihood gain of a phasor there (samples weighted by their noise,
    turning at the trace's frequency plus an offset within PLACE_FREQ_HZ, as
    in _place) grows while the split moves through hum and falls once it
    takes in samples without it. The split with the largest gain within
    LEVEL_EDGE_S of the guess is the end.
    """
    n, reach, fit = tester.n, int(LEVEL_EDGE_S * R), int(LEVEL_EDGE_FIT_S * R)
    lo, hi = max(1, guess - reach), min(n - 1, guess + reach)
    if hi <= lo:
        return guess
    # samples from the outer end inwards, and the number of them on the hum's side of each split
    if hum_before:
        outer = max(0, lo - fit)
        m, counts = np.arange(outer, hi), np.arange(lo, hi + 1) - outer
    else:
        outer = min(n, hi + fit)
        m, counts = np.arange(lo, outer)[::-1], outer - np.arange(lo, hi + 1)
    offsets = np.arange(-PLACE_FREQ_HZ, PLACE_FREQ_HZ + PLACE_FREQ_STEP_HZ / 2, PLACE_FREQ_STEP_HZ)
    gain = np.zeros((len(offsets), len(counts)))
    first, last = int(m.min()), int(m.max()) + 1  # only the window's samples, not the file's
    for h, cs, ncs in zip(tester.res.harmonics, tester.raw_ys, tester.raw_noises, strict=True):
        y = np.diff(cs[first : last + 1])[m - first]
        nv = np.maximum(np.diff(ncs[first : last + 1]), 1e-30)[m - first]
        rot = np.exp(-2j * np.pi * h.k * np.outer(offsets, m - guess) / R)
        sy = np.concatenate([np.zeros((len(offsets), 1)), np.cumsum(rot * (y / nv), axis=1)], axis=1)
        sw = np.concatenate([[0.0], np.cumsum(1 / nv)])
        gain += np.abs(sy[:, counts]) ** 2 / np.maximum(sw[counts], 1e-30)
    return lo + int(np.argmax(gain.max(axis=0)))


def _level_test(res: Result, tester: _Tester) -> None:
    """Step 6: spans where the hum disappears or drops (inserted hum-free material).

    The local hum SNR is the power of the de-rotated hum's mean phasor over
    LEVEL_WINDOW_S, less the local noise's share of it, over the noise power
    of such a mean (from the neighbour bands, at most the file's median), on
    the file's strongest harmonic: at or under 0 dB where there is no hum,
    in inserted material noisier than the file too.
    A span is where it stays LEVEL_DROP_DB below the file's median for at
    least LEVEL_MIN_S (runs apart by less than LEVEL_CLOSE_S are one: inserted
    speech lifts the level at the hum's harmonics for a moment), its lower quartile is under LEVEL_ABSENT_DB (the hum is gone,
    not just turned down: phones' noise suppression turns a steady hum down
    between words, which is no edit; against the span's own noise or the
    file's, whichever says less: noisier inserted material would otherwise
    pass its noise off as hum) and it lies LEVEL_DROP_DB under the
    level just outside it on both sides. Its ends are first where the level
    crosses 6 dB under the level just outside (half the hum's amplitude, the
    middle of the window's ramp), then fitted to the hum itself within
    LEVEL_EDGE_S of that (_level_edge). Files whose median local SNR is under
    LEVEL_REF_WEAK_DB are not tested. A span is kept only when the hum's
    phase just after it differs from its phase just before it by at least
    LEVEL_BRIDGE_Z (_bridge; LEVEL_BRIDGE_Z_WEAK in files under
    LEVEL_REF_MIN_DB, where a drop is harder to tell from the noise):
    material inserted between the two sides moves the later side's phase by
    the mains frequency times its length, while a dropout of the hum in place
    (a codec's, a noise suppressor's) leaves the phase running on. The ends
    of a span are edit candidates (test "level").
    """
    w = int(LEVEL_WINDOW_S * R)
    n = tester.n
    if n < 4 * w:
        return
    a = np.arange(0, n - w)
    # the harmonic with the strongest hum in the file only: speech has energy at 100-180 Hz too,
    # and the best of several harmonics would mistake a voiced stretch for hum
    best = int(np.argmax([h.snr_db for h in res.harmonics]))
    cs, ncs = tester.raw_ys[best], tester.raw_noises[best]
    hum = np.abs((cs[a + w] - cs[a]) / w) ** 2
    # the local noise, but never above the file's median: the 4 s frames that overlap a splice
    # leak its step into the neighbour bands, which would lower the level a second early
    local = (ncs[a + w] - ncs[a]) / w
    noise = np.minimum(local, np.median(np.diff(ncs))) / w
    # the hum's power less the local noise's share of a mean phasor (as _amplitude): inserted material
    # much noisier than the file would otherwise read as hum against the file's noise, and its span
    # break up into pieces too short to count (floored 30 dB under that share)
    coherent = np.maximum(hum - local / w, 1e-3 * local / w)
    level = 10 * np.log10((coherent + 1e-30) / (noise + 1e-30))
    own = 10 * np.log10((hum + 1e-30) / (local / w + 1e-30))  # against the span's own noise
    res.level_times = (a + w / 2) / R
    res.level_db = level
    ref = float(np.median(level))
    res.level_ref_db = ref
    if ref < LEVEL_REF_WEAK_DB:
        return
    low = level < ref - LEVEL_DROP_DB
    edges = np.flatnonzero(np.diff(np.concatenate([[0], low.astype(int), [0]])))
    # a voiced stretch of the inserted material (speech has energy at the hum's harmonics) lifts the
    # level out of the span for a moment: runs apart by less than LEVEL_CLOSE_S are one span
    ends, starts = edges[1:-1:2], edges[2::2]
    for g0, g1 in zip(ends, starts, strict=True):
        if g1 - g0 < LEVEL_CLOSE_S * R:
            low[g0:g1] = True
    edges = np.flatnonzero(np.diff(np.concatenate([[0], low.astype(int), [0]])))
    for s, e in zip(edges[::2], edges[1::2], strict=True):
        if (e - s) / R < LEVEL_MIN_S or s < 2 * w or e > len(level) - 2 * w:
            continue  # short, or at the ends of the file (the hum may just start or stop there)
        inside = float(np.percentile(level[s:e], 25))  # the ends of a short span are still ramps
        # inserted material is often noisier than the file: against the file's noise its noise
        # reads as hum, against its own the hum is gone
        absent = min(inside, float(np.percentile(own[s:e], 25)))
        if absent > LEVEL_ABSENT_DB:
            continue  # the hum is weaker but still there: noise suppression and gain control do that
        # each end where the level crosses 6 dB under the level just outside (half the hum's amplitude)
        left = float(np.median(level[s - 2 * w : s - w // 2]))
        right = float(np.median(level[e + w // 2 : e + 2 * w]))
        a, b = s, e
        while a > s - w and level[a - 1] < max(left - 6.0, inside + 3.0):
            a -= 1
        while b < e + w and level[b] < max(right - 6.0, inside + 3.0):
            b += 1
        depth = min(left, right) - inside
        if depth < LEVEL_DROP_DB:
            continue
        start = _level_edge(tester, a + w // 2, hum_before=True)
        end = _level_edge(tester, b - 1 + w // 2, hum_before=False)
        if end - start < LEVEL_MIN_S * R:
            start, end = a + w // 2, b - 1 + w // 2
        # the phase across the span run on at the trace (which follows the grid's wander, where it has
        # a hum to follow inside the span), or at the frequency of its two sides (where what it
        # followed inside was noise or speech): the larger step counts
        bridge_z, bridge_steps = max(
            (_bridge(tester, start, end, interpolate) for interpolate in (False, True)),
            key=lambda b: b[0] if np.isfinite(b[0]) else -np.inf,
        )
        if not bridge_z >= (LEVEL_BRIDGE_Z if ref >= LEVEL_REF_MIN_DB else LEVEL_BRIDGE_Z_WEAK):
            continue
        span = {
            "start": float(start / R),
            "end": float(end / R),
            "depth_db": depth,
            "inside_db": inside,
            "bridge_z": bridge_z,
            "bridge_steps_deg": bridge_steps,
            "raw_score": depth / LEVEL_DROP_DB,
        }
        if res.level_spans and span["start"] - res.level_spans[-1]["end"] < MERGE_S:
            continue
        res.level_spans.append(span)
    # the ends of a span are edit candidates; they replace candidates of the other tests inside the
    # span or within MERGE_S of its ends (those tests cannot place a splice where the hum is gone)
    for span in res.level_spans:
        res.candidates = [
            k for k in res.candidates if not span["start"] - MERGE_S < k["time"] < span["end"] + MERGE_S
        ]
    for span in res.level_spans:
        for t in (span["start"], span["end"]):
            res.candidates.append(
                {
                    "time": t,
                    "statistic": span["depth_db"],
                    "test": "level",
                    "steps_deg": {},
                    "raw_score": span["raw_score"],
                }
            )
    res.candidates.sort(key=lambda k: k["time"])
