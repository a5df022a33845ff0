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
  the two sides divided by its standard error (neighbour-band noise and a
  model error of 3 degrees x k) is summed over harmonics as a chi-square and
  turned into a normal deviate. The strongest instant above THRESHOLD is a
  candidate; tests are then repeated with windows stopping at accepted
  candidates, until nothing is left above the threshold. Score =
  1 - THRESHOLD / statistic (0 at the threshold, 0.5 at twice it).

Precision of the numbers in findings (rounded, so results reproduce across
machines): times 0.01 s, frequencies 0.0001 Hz, SNR 0.1 dB, phase steps
1 degree, statistic 0.01, score 0.001, tested seconds 0.1 s.

Speed (one core, decoding included, measured by the tests on ten minutes):
about 7 s per hour of audio for WAV and 24 s for Opus, of which the ENF
analysis itself is under 2 s; the rest is decoding and resampling to 1 kHz.
"""

from __future__ import annotations

import av
import numpy as np
import PIL
import scipy
from scipy import stats

from . import _enf, _enf_plot
from ._audio import decode
from .base import AnalysisError, finding

NAME = "audio.enf"
VERSION = "1.1.0"  # 1.1.0: the decoded_coverage finding; decoding stops are stated
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

# Where an edit candidate is placed: its time +- this (the 90th percentile of
# the timing errors measured below, rounded up).
TIMING_UNCERTAINTY_S = 0.5

# Measured by tests/test_analyzers_enf.py on the labelled set of
# tests/enf_fixtures.py (the test recomputes these and fails if they drift).
MEASURED: dict[str, dict] = {
    "wav": {
        "edits": 38,
        "detected": 30,
        "detection_rate": 0.789,
        "detection_rate_step30": 0.879,
        "unedited_files": 14,
        "unedited_minutes": 5.42,
        "false_alarms_unedited": 0,
        "false_alarms_per_file": 0.0,
        "false_alarms_per_minute": 0.0,
        "false_alarms_edited": 0,
        "timing_error_median_s": 0.043,
        "timing_error_p90_s": 0.34,
        "hum_files": 30,
        "usable_files": 30,
        "no_hum_files": 4,
        "false_usable": 0,
    },
    "flac": {
        "edits": 38,
        "detected": 30,
        "detection_rate": 0.789,
        "detection_rate_step30": 0.879,
        "unedited_files": 14,
        "unedited_minutes": 5.42,
        "false_alarms_unedited": 0,
        "false_alarms_per_file": 0.0,
        "false_alarms_per_minute": 0.0,
        "false_alarms_edited": 0,
        "timing_error_median_s": 0.043,
        "timing_error_p90_s": 0.34,
        "hum_files": 30,
        "usable_files": 30,
        "no_hum_files": 4,
        "false_usable": 0,
    },
    "mp3_64k": {
        "edits": 38,
        "detected": 30,
        "detection_rate": 0.789,
        "detection_rate_step30": 0.879,
        "unedited_files": 14,
        "unedited_minutes": 5.42,
        "false_alarms_unedited": 0,
        "false_alarms_per_file": 0.0,
        "false_alarms_per_minute": 0.0,
        "false_alarms_edited": 0,
        "timing_error_median_s": 0.042,
        "timing_error_p90_s": 0.312,
        "hum_files": 30,
        "usable_files": 30,
        "no_hum_files": 4,
        "false_usable": 0,
    },
    "opus_24k": {
        "edits": 38,
        "detected": 29,
        "detection_rate": 0.763,
        "detection_rate_step30": 0.848,
        "unedited_files": 14,
        "unedited_minutes": 5.42,
        "false_alarms_unedited": 0,
        "false_alarms_per_file": 0.0,
        "false_alarms_per_minute": 0.0,
        "false_alarms_edited": 0,
        "timing_error_median_s": 0.051,
        "timing_error_p90_s": 0.281,
        "hum_files": 30,
        "usable_files": 30,
        "no_hum_files": 4,
        "false_usable": 0,
    },
    "aac_48k": {
        "edits": 38,
        "detected": 31,
        "detection_rate": 0.816,
        "detection_rate_step30": 0.909,
        "unedited_files": 14,
        "unedited_minutes": 5.42,
        "false_alarms_unedited": 0,
        "false_alarms_per_file": 0.0,
        "false_alarms_per_minute": 0.0,
        "false_alarms_edited": 0,
        "timing_error_median_s": 0.045,
        "timing_error_p90_s": 0.325,
        "hum_files": 30,
        "usable_files": 30,
        "no_hum_files": 4,
        "false_usable": 0,
    },
    "amr_nb": {
        "edits": 38,
        "detected": 17,
        "detection_rate": 0.447,
        "detection_rate_step30": 0.515,
        "unedited_files": 14,
        "unedited_minutes": 5.42,
        "false_alarms_unedited": 0,
        "false_alarms_per_file": 0.0,
        "false_alarms_per_minute": 0.0,
        "false_alarms_edited": 1,
        "timing_error_median_s": 0.061,
        "timing_error_p90_s": 0.331,
        "hum_files": 30,
        "usable_files": 23,
        "no_hum_files": 4,
        "false_usable": 0,
    },
}

CODEC_SETTINGS = {
    "wav": "16 kHz PCM",
    "flac": "16 kHz",
    "mp3_64k": "LAME 64 kbit/s, 16 kHz, -q 7",
    "opus_24k": "libopus 24 kbit/s in Ogg, 16 kHz input, complexity 5",
    "aac_48k": "FFmpeg AAC 48 kbit/s in M4A, 16 kHz, fast coder",
    "amr_nb": "AMR-NB 12.2 kbit/s in 3GP, 8 kHz",
}

SET_DESCRIPTION = (
    "Measured on a synthetic labelled set (tests/enf_fixtures.py): 34 clips of 20-40 s, espeak-ng "
    "speech at -22 dBFS with mains hum at -72 to -40 dBFS (fundamental; 2nd and 3rd harmonics "
    "0-12 dB below), a grid frequency wandering by a random walk within +-0.05 Hz, pink noise at "
    "-66 to -50 dBFS; 10 unedited clips, 4 without hum, 8 cuts of 0.5-5 s, 6 insertions of 1-6 s "
    "from another recording, 6 reorderings of two 4-8 s segments (38 edits); every third clip "
    "on a 60 Hz grid. An edit counts as found when a candidate lies within 1 s of it. Real "
    "recordings wander, switch and distort in ways this set does not, and its unedited minutes are "
    "few: read the false alarm figures with their upper bounds."
)


def _limits() -> list[str]:
    lines = [
        "Indicator: a jump in the phase of the mains hum. Unedited recordings can show one when a "
        "hum source switches on or off, the microphone moves between sources, or a device's noise "
        "suppression or automatic gain acts on the hum; an edit is not proven by a candidate.",
        "A splice leaves no phase jump when the removed or inserted material spans a whole number "
        "of mains cycles (20 ms at 50 Hz, 16.7 ms at 60 Hz) to within a few degrees: such cuts "
        "cannot be found by this method. Steps under about 30 degrees are usually missed.",
        "Edits closer than about 1 s to each other or to the ends of the file, or inside parts where "
        "the hum is too weak (see the tested seconds), cannot be found.",
        f"'No usable ENF' (no grid harmonic {_enf.MIN_SNR_DB:g} dB above its neighbour bands) is "
        "neutral: battery-powered recorders and phones with noise suppression often pick up little "
        "or no hum. AMR-NB's encoder high-pass filter lowered the fundamental's SNR by a median "
        "12 dB on the set (the harmonics by about 1 dB), Opus by 1.5 dB, AAC by 0.7 dB, MP3 not at all.",
        "The trace is not compared with any grid frequency database: this analyzer does not date "
        "a recording or say where it was made.",
    ]
    if SET_DESCRIPTION:
        lines.append(SET_DESCRIPTION)
    for codec, m in MEASURED.items():
        fa = m["false_alarms_unedited"]
        upper = stats.chi2.ppf(0.95, 2 * fa + 2) / 2 / m["unedited_minutes"]  # Poisson, one-sided 95%
        lines.append(
            f"{codec} ({CODEC_SETTINGS[codec]}): found {m['detected']}/{m['edits']} edits within +-1 s "
            f"({m['detection_rate']:.0%}; {m['detection_rate_step30']:.0%} of those with a hum phase step "
            f"of 30 degrees or more); false alarms {fa} on {m['unedited_files']} unedited files "
            f"({m['unedited_minutes']:g} min: {m['false_alarms_per_file']:.2f} per file, "
            f"{m['false_alarms_per_minute']:.2f} per minute, 95% upper bound {upper:.2f} per minute) and "
            f"{m['false_alarms_edited']} away from the edits in edited files; timing error median "
            f"{m['timing_error_median_s']:.2f} s, 90th percentile {m['timing_error_p90_s']:.2f} s; ENF usable "
            f"in {m['usable_files']}/{m['hum_files']} files with hum and {m['false_usable']}/{m['no_hum_files']} "
            "without."
        )
    return lines


LIMITS = _limits()

_TIME = 2  # decimals for seconds
_HZ = 4  # decimals for frequencies
_DB = 1  # decimals for dB


def _round(x: float, nd: int) -> float:
    return float(round(float(x), nd))


def _trace_csv(res: _enf.Result) -> bytes:
    ks = sorted(res.trace_k)
    head = ["time_s", "enf_hz"] + [f"h{k * res.grid}_over_{k}_hz" for k in ks] + ["snr_db"]
    rows = [",".join(head)]
    snr = res.frame_snr_db[res.grid]
    for i, t in enumerate(res.times):
        vals = [f"{t:.1f}", _fmt(res.trace[i])] + [_fmt(res.trace_k[k][i]) for k in ks] + [f"{snr[i]:.1f}"]
        rows.append(",".join(vals))
    return ("\n".join(rows) + "\n").encode()


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.{_HZ}f}"


def analyze(path: str, params: dict, ctx) -> dict:
    grid = None if params.get("grid", "auto") == "auto" else int(params["grid"])
    decoded = decode(path, sample_rate=_enf.FS, mono=True)
    if decoded.sample_count < _enf.FS:
        raise AnalysisError("less than one second of audio: too short to trace the mains hum")
    res = _enf.analyse(decoded.samples, grid=grid)

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
            "over the median of the bins 1.5-4 Hz away, in the spectrum averaged over the file",
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
        ok = np.isfinite(res.trace)
        trace_ref = ctx.add_artifact("enf_trace.csv", "text/csv", _trace_csv(res))
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
                    "median": _round(np.median(v), _HZ),
                    "min": _round(v.min(), _HZ),
                    "max": _round(v.max(), _HZ),
                    "std": _round(v.std(), _HZ),
                }
            )
        findings.append(
            finding(
                "enf_trace",
                "measurement",
                summary,
                unit="Hz",
                artifact=trace_ref,
                note="the ENF trace (per frame, in the CSV artifact) and its summary; frames where no "
                f"harmonic is {_enf.FRAME_SNR_DB:g} dB above the noise are gaps",
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
        for cand in res.candidates:
            t = _round(cand["time"], _TIME)
            steps = {str(f): int(round(d)) for f, d in cand["steps_deg"].items()}
            score = _round(1 - _enf.THRESHOLD / cand["statistic"], 3)
            candidates.append(cand)
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
                    at=[
                        _round(max(0.0, t - TIMING_UNCERTAINTY_S), _TIME),
                        _round(min(res.duration, t + TIMING_UNCERTAINTY_S), _TIME),
                    ],
                    score=score,
                    note=f"the mains hum's phase jumps at {t:.2f} s ("
                    + ", ".join(f"{d} deg at {f} Hz" for f, d in steps.items())
                    + "): consistent with a cut, an insertion or a reordering here, or with a hum source "
                    "switching. Score 0 at the detection threshold, 0.5 at twice it.",
                )
            )
    findings.append(
        finding(
            "edit_candidate_count",
            "measurement",
            len(candidates),
            note="number of ENF phase jumps above the threshold"
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
            note="top: the ENF trace (black) and each harmonic divided by its number (dots), edit "
            "candidates in red; middle: the phase-jump statistic and its threshold; bottom: hum SNR "
            "per frame for both grids",
        )
    )
    return {
        "findings": findings,
        "libraries": {
            "av": av.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "Pillow": PIL.__version__,
        },
    }
