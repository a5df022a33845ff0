"""ENF: the mains hum (50/60 Hz and harmonics) traced through a recording; splices as phase jumps.

Recordings made near mains wiring often carry a faint hum at the grid
frequency (50 or 60 Hz) and its harmonics. The grid frequency wanders
slowly (tens of mHz) and its phase runs on continuously, so in an unedited
recording the hum's phase is continuous. A cut, an insertion from another
recording or a reordering joins two pieces whose hum phases are unrelated:
the phase jumps at the splice.

Method (details in forensics/analyzers/_enf.py):
- decode to mono at 1000 samples/s (PyAV resampling);
- shift each of 50/100/150 Hz and 60/120/180 Hz to 0 Hz, low-pass to
  +-4.5 Hz, keep 20 samples/s;
- hum SNR per harmonic: strongest bin within +-(0.1 + 0.2 k) Hz of the
  nominal, over the median of the bins 1.5-4 Hz away (4 s Hann frames, 1 s
  hop, 0.039 Hz bins, averaged over the file). The grid whose best harmonic
  reaches MIN_SNR_DB is used; if neither does, the result is "no usable
  ENF", a neutral finding with no edit candidates;
- ENF trace: per frame, the interpolated spectral peak of each usable
  harmonic (divided by k), combined weighted by k^2 x SNR;
- edit candidates: the phase of each harmonic, de-rotated by the trace, is
  averaged before and after every instant (1 s and 3 s windows, and a 3 s
  window that also lets each side have its own frequency); the jump between
  the two sides (the hum divided by its amplitude, so a louder side does
  not dominate) divided by its standard error (neighbour-band noise and a
  model error of 3 degrees x k) is summed over harmonics as a chi-square and
  turned into a normal deviate. The strongest instant above THRESHOLD is a
  candidate; tests are then repeated with windows stopping at accepted
  candidates, until nothing is left above the threshold.
- instantaneous-frequency disturbances (after Esquef, Apolinario and
  Biscainho 2014): the phase advance of the de-rotated hum across an
  instant against the advances just before and after it, over its robust
  spread in this file; candidates the phase test did not already give;
- hum level: spans where the hum's local SNR falls 10 dB below the file's
  median (of at least 8 dB) and the hum is gone (inserted hum-free
  material), kept only when the hum's phase after the span does not
  continue its phase before it (a dropout of the hum in place leaves the
  phase running on; run on at the trace, or at the frequency of the span's
  two sides); reported as hum_level_change spans, their ends (fitted to
  where the hum stops and starts again) as edit candidates;
- placement: each phase-test and instantaneous-frequency candidate moves
  (at most 1.5 s, never past another candidate) to the instant where a
  split model fits the de-rotated hum best: on each side its own phase and
  grid frequency, the hum divided by its amplitude over 0.25 s (so a louder
  side is no change). None is added or removed.

Every indicator carries the error rates measured for this file's condition
(codec and hum SNR band: forensics/evaluation/enf.py, rates/audio.enf.json)
and a calibrated score (the measured probability that a candidate of its
raw score marks a real splice); the raw score is the statistic over its
test's threshold.

Precision of the numbers in findings (rounded, so results reproduce across
machines): times 0.01 s, SNR 0.1 dB, phase steps 1 degree, statistic 0.01,
score 0.001, tested seconds 0.1 s; frequencies to the decade of the trace
error measured for the file's condition (1 mHz when it is 1-9 mHz).

Speed: tests/test_analyzers_enf.py checks that ten minutes of WAV and Opus
take under 60 CPU seconds per hour of audio (decoding included) and prints
the figure; decoding and resampling to 1 kHz take most of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
import PIL
import scipy

from . import _enf, _enf_plot, _figure, _rates
from ._audio import decode
from .base import AnalysisError, finding

NAME = "audio.enf"
# 2.0.0: instantaneous-frequency and hum-level tests; rates, calibrated scores and the trace's
#        uncertainty from the real-speech evaluation (issue 11) instead of synthetic-set figures
# 1.1.0: the decoded_coverage finding; decoding stops are stated
# 2.1.0: the ENF picture is a labelled matplotlib figure (axes with units, numbered candidates)
# 2.2.0: the phase test sees the hum at unit amplitude, tests down to a local SNR of 5 dB and places a
#        split within 1 s of the statistic's peak; in files under 12 dB a candidate needs a statistic of 6.5 (was 5);
#        the level test judges the hum gone against a span's own noise too; IF threshold 14 (was 10)
# 2.3.0: a hum-level span is kept only if the hum's phase across it jumps (the bridge test: a dropout in
#        place, a codec's or a noise suppressor's, leaves the phase running on); the level test then runs
#        in files down to a 12 dB median local SNR (was 14)
# 2.4.0: the level test's local hum SNR is the hum's power less the local noise's share, so inserted
#        material much noisier than the file no longer reads as hum and breaks its span into pieces
# 2.5.0: each phase-test and IF candidate is placed where a split model (the hum, divided by its amplitude
#        over 0.25 s, with its own phase and grid frequency on each side) fits best within 1.5 s (_place)
# 2.6.0: the hum-level test joins runs of low level less than 1.2 s apart into one span (a voiced
#        moment of inserted hum-free speech no longer splits it into pieces whose ends are not the splices)
# 2.7.0: hum-level spans also in files whose median local hum SNR is 8-12 dB (with a bridge statistic of
#        3.5 there); a span's ends fitted to the hum (_level_edge); the bridge also runs the phase on across
#        the span at its two sides' frequency, where the trace inside followed noise or speech
VERSION = "2.7.0"
TIME_LIMIT = 3600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 4 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["audio/*", "video/*"]
DESCRIPTION = (
    "Mains hum (ENF, 50/60 Hz and harmonics) traced over time and plotted; "
    "jumps in the hum's phase reported as edit candidates (cuts, insertions, reorderings)"
)
PARAMETERS = {
    "grid": {
        "type": "str",
        "default": "auto",
        "choices": ["auto", "50", "60"],
        "help": "mains frequency to look for; 'auto' picks the grid with the stronger hum",
    },
}

# An edit counts as found by the evaluation when a candidate lies within this of it
# (forensics/evaluation/enf.py); "at" uses the measured 90th percentile when there is one.
TOLERANCE_S = 0.5
MIN_TIMED = 10


def _limits() -> list[str]:
    general = [
        "Indicator: a jump in the phase of the mains hum, a disturbance of its instantaneous frequency, "
        "or a span where the hum disappears. Unedited recordings can show these when a hum source "
        "switches on or off, the microphone moves between sources, or a device's noise suppression or "
        "automatic gain acts on the hum; an edit is not proven by a candidate.",
        "A splice leaves no phase jump when the removed or inserted material spans a whole number of "
        "mains cycles (20 ms at 50 Hz, 16.7 ms at 60 Hz) to within a few degrees and the hum's level "
        "does not change: such edits cannot be found by this method.",
        "A span where the hum is gone is reported only when the hum's phase after it does not continue "
        f"its phase before it (a statistic of at least {_enf.LEVEL_BRIDGE_Z:g}, given as bridge_z, or "
        f"{_enf.LEVEL_BRIDGE_Z_WEAK:g} in files whose median local hum SNR is under "
        f"{_enf.LEVEL_REF_MIN_DB:g} dB; none is looked for under {_enf.LEVEL_REF_WEAK_DB:g} dB; a span "
        "whose two sides cannot be compared is not reported): "
        "inserted hum-free material lasting a whole number of mains cycles to within a few tens of "
        "degrees is not reported as a span, and a dropout of the hum in place is not reported at all.",
        "Edits closer than about 1 s to each other or to the ends of the file, or inside parts where "
        "the hum is too weak (see the tested seconds), cannot be found.",
        f"'No usable ENF' (no grid harmonic {_enf.MIN_SNR_DB:g} dB above its neighbour bands) is "
        "neutral: battery-powered recorders and phones with noise suppression often pick up little "
        "or no hum.",
        "The trace is not compared with any grid frequency database: this analyzer does not date "
        "a recording or say where it was made.",
    ]
    return general + _rates.limits(NAME)


LIMITS = _limits()

_TIME = 2  # decimals for seconds
_DB = 1  # decimals for dB


def _round(x: float, nd: int) -> float:
    return float(round(float(x), nd))


def _hz_decimals(error_hz: float | None) -> int:
    """Digits a frequency is given to: the last one is the decade of the measured error (1 mHz for 1-9 mHz)."""
    if not error_hz or error_hz <= 0:
        return 2
    return int(min(4, max(1, -math.floor(math.log10(error_hz)))))


def _trace_csv(res: _enf.Result, hz: int) -> bytes:
    ks = sorted(res.trace_k)
    head = ["time_s", "enf_hz"] + [f"h{k * res.grid}_over_{k}_hz" for k in ks] + ["snr_db"]
    rows = [",".join(head)]
    snr = res.frame_snr_db[res.grid]

    def fmt(v: float) -> str:
        return "" if not np.isfinite(v) else f"{v:.{hz}f}"

    for i, t in enumerate(res.times):
        vals = [f"{t:.1f}", fmt(res.trace[i])] + [fmt(res.trace_k[k][i]) for k in ks] + [f"{snr[i]:.1f}"]
        rows.append(",".join(vals))
    return ("\n".join(rows) + "\n").encode()


SNR_BANDS = ("<12 dB", "12-20 dB", ">=20 dB")


def snr_band(snr_db: float) -> str:
    """The hum SNR band of a file (its best harmonic's SNR as reported in enf_snr)."""
    if snr_db < 12:
        return SNR_BANDS[0]
    return SNR_BANDS[1] if snr_db < 20 else SNR_BANDS[2]


def codec_family(codec: str) -> str:
    """The evaluation's codec name for a decoder's codec name (pcm_* -> wav, libopus -> opus...)."""
    if codec.startswith("pcm_"):
        return "wav"
    for family in ("mp3", "aac", "opus", "amr_nb", "flac", "vorbis", "g722"):
        if family.replace("_", "") in codec.replace("_", "").replace("lib", ""):
            return family
    return codec


@dataclass
class Detection:
    decoded: object
    result: _enf.Result
    snr_db: float  # the best harmonic's SNR on the chosen (or stronger) grid
    condition: dict  # {"codec": ..., "hum_snr_band": ...}
    candidates: list
    level_spans: list


def detect(path: str, grid: int | None = None) -> Detection:
    """Decode and run every test: what analyze() reports, without the findings and the picture."""
    decoded = decode(path, sample_rate=_enf.FS, mono=True)
    if decoded.sample_count < _enf.FS:
        raise AnalysisError("less than one second of audio: too short to trace the mains hum")
    res = _enf.analyse(decoded.samples, grid=grid)
    grids = [res.grid] if res.grid is not None else ([grid] if grid else list(_enf.GRIDS))
    snr = max(v for g in grids for v in res.snr_db[g].values())
    condition = {"codec": codec_family(decoded.codec), "hum_snr_band": snr_band(snr)}
    return Detection(decoded, res, snr, condition, res.candidates, res.level_spans)


def _trace_uncertainty(rates: dict) -> tuple[dict, int]:
    """The trace's uncertainty for this file's condition, and the digits it supports."""
    if rates.get("measured") and rates.get("trace_error_p90_hz") is not None:
        err = rates["trace_error_p90_hz"]
        return (
            {
                "value": err,
                "unit": "Hz",
                "meaning": "90th percentile of the absolute error of the per-frame trace against the true "
                f"grid frequency on the evaluation set, condition {_rates.describe(rates['condition'])} "
                f"({rates.get('trace_frames')} frames of unedited clips)",
            },
            _hz_decimals(err),
        )
    table = _rates.table(NAME) or {}
    worst = [
        r["trace_error_p90_hz"]
        for r in table.get("indicators", {}).get("edit_candidate", {}).get("rows", [])
        if r.get("trace_error_p90_hz") is not None
    ]
    return (
        {
            "value": None,
            "unit": "Hz",
            "meaning": f"not measured for this condition ({_rates.describe(rates['condition'])}); digits "
            "are limited to the largest error measured in any condition",
        },
        _hz_decimals(max(worst) if worst else None),
    )


def analyze(path: str, params: dict, ctx) -> dict:
    grid = None if params.get("grid", "auto") == "auto" else int(params["grid"])
    det = detect(path, grid)
    decoded, res = det.decoded, det.result
    edit_rates = _rates.for_condition(NAME, "edit_candidate", det.condition)
    level_rates = _rates.for_condition(NAME, "hum_level_change", det.condition)

    findings = [
        finding(
            "decoder", "fact", decoded.decoder_info(), note="how the audio was decoded for this analysis"
        ),
        decoded.coverage(),
        finding(
            "enf_snr",
            "measurement",
            {str(g): {str(f): v for f, v in res.snr_db[g].items()} for g in _enf.GRIDS},
            unit="dB",
            note="hum-to-noise ratio at each grid harmonic: strongest 0.039 Hz bin near the harmonic "
            "over the median of the bins 1.5-4 Hz away, in the spectrum averaged over the file; "
            f"this file's condition for the error rates: {_rates.describe(det.condition)}",
        ),
    ]
    candidates = []
    if res.grid is None:
        findings.append(
            finding(
                "enf_usable",
                "measurement",
                False,
                note=f"No usable ENF: no harmonic of 50 Hz or 60 Hz is {_enf.MIN_SNR_DB:g} dB above its "
                "neighbour bands. This is a neutral result: it neither supports nor questions the "
                "recording, and no edit can be looked for with this method.",
            )
        )
    else:
        usable = [h.k * res.grid for h in res.harmonics]
        findings.append(
            finding(
                "enf_usable",
                "measurement",
                True,
                note=f"mains hum found on the {res.grid} Hz grid, at {', '.join(f'{f} Hz' for f in usable)}",
            )
        )
        findings.append(
            finding("enf_grid", "measurement", res.grid, unit="Hz", note="nominal mains frequency of the hum")
        )
        uncertainty, hz = _trace_uncertainty(edit_rates)
        ok = np.isfinite(res.trace)
        trace_ref = ctx.add_artifact("enf_trace.csv", "text/csv", _trace_csv(res, hz))
        summary = {
            "frames": int(len(res.trace)),
            "frames_traced": int(ok.sum()),
            "frame_s": _enf.FRAME_S,
            "hop_s": _enf.HOP_S,
        }
        if ok.any():
            v = res.trace[ok]
            summary.update(
                {
                    "median": _round(np.median(v), hz),
                    "min": _round(v.min(), hz),
                    "max": _round(v.max(), hz),
                    "std": _round(v.std(), hz),
                }
            )
        findings.append(
            finding(
                "enf_trace",
                "measurement",
                summary,
                unit="Hz",
                artifact=trace_ref,
                uncertainty=uncertainty,
                note="the ENF trace (per frame, in the CSV artifact, to the digits its measured error "
                f"supports) and its summary; frames where no harmonic is {_enf.FRAME_SNR_DB:g} dB above "
                "the noise are gaps",
            )
        )
        findings.append(
            finding(
                "enf_tested",
                "measurement",
                _round(res.tested_seconds, 1),
                unit="s",
                note="seconds of the recording where the hum was strong enough on both sides to test "
                "for a phase jump; elsewhere an edit cannot be found by this method",
            )
        )
        # a 90th percentile from fewer than MIN_TIMED found edits says little: the tolerance instead
        timed = edit_rates.get("measured") and edit_rates.get("detected", 0) >= MIN_TIMED
        half = edit_rates.get("timing_error_p90_s") if timed else None
        where = (
            f"+-{half:g} s: the 90th percentile of the timing errors measured in this condition"
            if half
            else f"+-{TOLERANCE_S:g} s: the evaluation's matching tolerance (timing not measured on "
            f"{MIN_TIMED} or more found edits in this condition)"
        )
        half = half or TOLERANCE_S
        for cand in res.candidates:
            t = _round(cand["time"], _TIME)
            steps = {str(f): int(round(d)) for f, d in cand["steps_deg"].items()}
            raw = _round(cand["raw_score"], 3)
            candidates.append(cand)
            what = {
                "if": "the hum's instantaneous frequency is disturbed",
                "level": "the mains hum disappears or comes back",
            }.get(
                cand["test"],
                "the mains hum's phase jumps ("
                + ", ".join(f"{d} deg at {f} Hz" for f, d in steps.items())
                + ")",
            )
            findings.append(
                finding(
                    "edit_candidate",
                    "indicator",
                    {
                        "time": t,
                        "statistic": _round(cand["statistic"], 2),
                        "test": cand["test"],
                        "phase_step_deg": steps,
                    },
                    unit="s",
                    at=[_round(max(0.0, t - half), _TIME), _round(min(res.duration, t + half), _TIME)],
                    score=_rates.calibrated(NAME, "edit_candidate", raw),
                    raw_score=raw,
                    rates=edit_rates,
                    note=f"at {t:.2f} s {what}: consistent with a cut, an insertion or a reordering here, "
                    f"or with a hum source switching; placed {where}. Score: the measured probability "
                    "that a candidate of this raw score (statistic over its test's threshold) marks a "
                    "real splice (see rates).",
                )
            )
        for span in res.level_spans:
            a, b = _round(span["start"], _TIME), _round(span["end"], _TIME)
            raw = _round(span["raw_score"], 3)
            findings.append(
                finding(
                    "hum_level_change",
                    "indicator",
                    {
                        "start": a,
                        "end": b,
                        "depth_db": _round(span["depth_db"], _DB),
                        "inside_db": _round(span["inside_db"], _DB),
                        "bridge_z": _round(span["bridge_z"], 2),
                        "phase_step_across_deg": {
                            str(f): round(v) for f, v in sorted(span["bridge_steps_deg"].items())
                        },
                    },
                    unit="s",
                    at=[a, b],
                    score=_rates.calibrated(NAME, "hum_level_change", raw),
                    raw_score=raw,
                    rates=level_rates,
                    note=f"from {a:.2f} s to {b:.2f} s the mains hum is gone (its local SNR falls "
                    f"{span['depth_db']:.0f} dB below the rest of the file) and its phase after the span "
                    "does not continue its phase before it: consistent with material recorded elsewhere "
                    "(without hum) inserted here, or with the hum source switching off for a while.",
                )
            )
    findings.append(
        finding(
            "edit_candidate_count",
            "measurement",
            len(candidates),
            note="number of edit candidates (phase jumps, frequency disturbances, ends of hum-free spans)"
            if res.grid is not None
            else "not tested: no usable ENF",
        )
    )
    png = _enf_plot.render(res, candidates)
    ref = ctx.add_artifact("enf_trace.png", "image/png", png)
    findings.append(
        finding(
            "enf_plot",
            "visual",
            artifact=ref,
            note="top: the ENF trace in Hz (right axis: offset from the nominal frequency in mHz), "
            "black, and each harmonic divided by its number (dots), edit candidates as red lines "
            "numbered in the order of the edit_candidate findings; middle: the phase-jump statistic "
            "and its threshold; bottom: hum SNR per frame for both grids",
        )
    )
    return {
        "findings": findings,
        "libraries": {
            "av": av.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "Pillow": PIL.__version__,
            "matplotlib": _figure.version(),
        },
    }
