"""Context alignment: where each part of a clip occurs in a longer reference recording.

Given a clip and a second evidence item of the same case (a longer recording
of the same event), the analyzer reports each part of the clip found in the
reference (clip times, reference times, confidence), the reference material
left out between consecutive parts, parts played in another order than in the
reference, and clip material that the reference does not contain.

The method (``_context_align``) matches spectral-peak fingerprints at 8 kHz,
which survive re-encoding at low bit rates (Opus 16 kbit/s, AMR-NB 12.2
kbit/s...), segments the clip where the clip-to-reference offset changes and
refines each part's offset and boundaries peak by peak. Its error rates were
measured on a synthetic labelled set (tests/context_fixtures.py) and are
stated in LIMITS; tests/test_analyzers_context.py measures them again.

Findings (DESIGN.md, "Analyses and published results"):
- ``segment`` (measurement), one per matched part: ``at`` = [start, end] in the
  clip, ``value`` = {"reference_at": [start, end], "evidence": reference id,
  "offset_s": reference time - clip time}, ``score`` = confidence 0-1;
- ``removed`` (indicator): reference material absent from the clip between two
  consecutive parts: ``at`` = the join in the clip, ``value`` =
  {"reference_at": [s, e], "duration_s": d};
- ``reordered`` (indicator): a part that comes before or after material it
  follows or precedes in the reference;
- ``inserted`` (indicator): clip material not found in the reference (``kind``
  "not_in_reference"), or clip time that the reference does not account for at
  a join (``kind`` "overlap": material repeated, or silence added);
- ``speed_ratio`` (measurement), when the clip plays at another speed than the
  reference (reference seconds per clip second); clip times stay the clip's own;
- ``alignment_summary`` (fact), ``not_found`` (fact, when nothing matched),
  ``decoding`` (fact) and ``alignment_plot`` (visual).

The fingerprints of the last two references are kept in memory by SHA-256, so a
worker aligning several clips against one long reference decodes it once.
Times are rounded to 0.01 s, scores to 0.001.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from . import _context_align as method
from ._audio import decode
from ._context_plot import render
from .base import AnalysisError, finding

NAME = "audio.context"
VERSION = "1.1.0"  # 1.1.0: decoded_coverage findings for the clip and the reference
TIME_LIMIT = 7200  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 6 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["audio/*", "video/*", "application/ogg"]
DESCRIPTION = (
    "Finds where each part of an audio clip occurs in a longer reference recording of the same "
    "event (another evidence item): offsets, removed material, reordered parts, foreign material"
)
PARAMETERS = {
    "reference": {
        "type": "evidence",
        "help": "id of the reference recording (another evidence item of the same case)",
    },
}

MAX_CLIP_S = 3 * 3600
MAX_REFERENCE_S = 6 * 3600
MIN_REMOVED_S = 0.1  # offset changes smaller than this are not reported as removals
LOOSE_REMOVED_S = 1.0  # ...and pieces of reference bounded by a moved part shorter than this
MIN_OVERLAP_S = 0.25  # nor clip time unaccounted for at a join smaller than this
SCORE_SCALE = 100.0  # nats of evidence for a score of 1 - 1/e

# Measured on the labelled set of tests/context_fixtures.py (synthetic speech of four
# espeak-ng voices with pauses, room reverberation, pink noise at 24 dB SNR, 50 Hz hum;
# a 4-minute reference; clips of 30-45 s with known cuts, reorderings and insertions,
# encoded through each codec); tests/test_analyzers_context.py measures them again.
# "parts": matched parts found at the right offset (+/- 0.1 s) / parts in the clips;
# "boundary_*": clip-time error of each edit point (s); "offset_max": worst reference
# offset error of a found part (s); "removed": removals found at their join (+/- 1 s)
# with the right duration (+/- 0.5 s) / removals; "removed_error_max": worst duration
# error (s), "removed_error_plain_max" the same where no foreign material sits at the join;
# "reordered", "inserted": edits of that kind found / made; "false_alarms": removed /
# inserted / reordered findings on unedited excerpts, per excerpt; "spurious": such
# findings on edited clips that match no edit, per clip.
MEASURED = {
    "wav": {
        "parts": 1.0,
        "parts_n": "33/33",
        "boundary_median": 0.03,
        "boundary_max": 0.11,
        "offset_max": 0.003,
        "removed": 1.0,
        "removed_n": "11/11",
        "removed_error_max": 0.07,
        "removed_error_plain_max": 0.02,
        "reordered": 1.0,
        "reordered_n": "3/3",
        "inserted": 1.0,
        "inserted_n": "3/3",
        "false_alarms": 0.0,
        "false_alarms_n": "0 in 5 excerpts",
        "spurious": 0.0,
    },
    "opus16k": {
        "parts": 1.0,
        "parts_n": "33/33",
        "boundary_median": 0.03,
        "boundary_max": 0.23,
        "offset_max": 0.01,
        "removed": 1.0,
        "removed_n": "11/11",
        "removed_error_max": 0.02,
        "removed_error_plain_max": 0.02,
        "reordered": 1.0,
        "reordered_n": "3/3",
        "inserted": 1.0,
        "inserted_n": "3/3",
        "false_alarms": 0.0,
        "false_alarms_n": "0 in 5 excerpts",
        "spurious": 0.0,
    },
    "aac32k": {
        "parts": 1.0,
        "parts_n": "33/33",
        "boundary_median": 0.03,
        "boundary_max": 0.11,
        "offset_max": 0.007,
        "removed": 1.0,
        "removed_n": "11/11",
        "removed_error_max": 0.15,
        "removed_error_plain_max": 0.02,
        "reordered": 1.0,
        "reordered_n": "3/3",
        "inserted": 1.0,
        "inserted_n": "3/3",
        "false_alarms": 0.0,
        "false_alarms_n": "0 in 5 excerpts",
        "spurious": 0.0,
    },
    "mp3_32k": {
        "parts": 1.0,
        "parts_n": "33/33",
        "boundary_median": 0.03,
        "boundary_max": 0.13,
        "offset_max": 0.003,
        "removed": 1.0,
        "removed_n": "11/11",
        "removed_error_max": 0.07,
        "removed_error_plain_max": 0.02,
        "reordered": 1.0,
        "reordered_n": "3/3",
        "inserted": 1.0,
        "inserted_n": "3/3",
        "false_alarms": 0.0,
        "false_alarms_n": "0 in 5 excerpts",
        "spurious": 0.0,
    },
    "amrnb12k": {
        "parts": 1.0,
        "parts_n": "33/33",
        "boundary_median": 0.04,
        "boundary_max": 0.12,
        "offset_max": 0.003,
        "removed": 1.0,
        "removed_n": "11/11",
        "removed_error_max": 0.15,
        "removed_error_plain_max": 0.02,
        "reordered": 1.0,
        "reordered_n": "3/3",
        "inserted": 1.0,
        "inserted_n": "3/3",
        "false_alarms": 0.0,
        "false_alarms_n": "0 in 5 excerpts",
        "spurious": 0.0,
    },
    "amrnb12k/aac48k": {
        "parts": 1.0,
        "parts_n": "33/33",
        "boundary_median": 0.04,
        "boundary_max": 0.15,
        "offset_max": 0.003,
        "removed": 1.0,
        "removed_n": "11/11",
        "removed_error_max": 0.07,
        "removed_error_plain_max": 0.01,
        "reordered": 1.0,
        "reordered_n": "3/3",
        "inserted": 1.0,
        "inserted_n": "3/3",
        "false_alarms": 0.0,
        "false_alarms_n": "0 in 5 excerpts",
        "spurious": 0.0,
    },
}
# CPU seconds on one core (tests/test_analyzers_context.py checks the 1/30 real-time bound):
# a 3-minute Opus clip against a 1-hour 16 kHz WAV reference took 11.9 s from cold (decoding
# 5.2 s and fingerprinting the reference) and 2.1 s with the reference's fingerprints cached.
SPEED = {"per_reference_hour_s": 10.0, "per_clip_minute_s": 0.7}

_CODEC_NAMES = {
    "wav": "WAV (PCM) clip",
    "opus16k": "Opus 16 kbit/s (Ogg) clip",
    "aac32k": "AAC 32 kbit/s (M4A) clip",
    "mp3_32k": "MP3 32 kbit/s clip",
    "amrnb12k": "AMR-NB 12.2 kbit/s (3GP, 8 kHz) clip",
    "amrnb12k/aac48k": "AMR-NB 12.2 kbit/s clip against an AAC 48 kbit/s reference",
}


def _limits() -> list[str]:
    out = [
        "Finds material that the reference contains; says nothing of how the reference itself "
        "was made: a reference edited in the same way as the clip hides those edits.",
        "A clip playing at another speed than the reference, within +/- 2 %, is measured "
        "('speed_ratio', to about 0.05 %) and stretched back before matching: in the set, an edited "
        "clip 1.5 % slow; in checks, clips resampled 1.5 % slow to 2 % fast and time-stretched "
        "(pitch kept) 0.5 % and 2 % fast. Faster or slower than that, or at a speed that varies "
        "along the clip (tape wow), parts break up into pieces with false joins; many small evenly "
        "spaced cuts could pass for a speed change.",
        f"Not reported: parts shorter than {method.MIN_PART_S:g} s, removals shorter than "
        f"{MIN_REMOVED_S:g} s, foreign material shorter than {method.MIN_INSERT_S:g} s. In checks "
        "outside the labelled set (WAV and AMR-NB), a 1.5 s part moved elsewhere and a 0.15 s removal "
        "were found; 0.7-1 s of foreign speech, or 2 s of silence, added at a join was reported with "
        "its right duration, as its own span or as an 'overlap' at that join; foreign material "
        "replacing the same length of reference material was found at 2 s and missed at 1 s.",
        "A join that falls in a pause of both recordings is placed somewhere in the pause.",
        "Only 250-3500 Hz at 8 kHz is compared: material differing only outside that band "
        "(e.g. a music bed mixed at a low level) is not told apart.",
        "Repeated identical material in the reference (a jingle, a loop) matches at each "
        "repetition; the part is reported at one of them.",
        "Noise added after the edit (a re-recording in a noisy place): the labelled set holds clips "
        "at 12 and 15 dB SNR; in a check at 10, 5 and 0 dB SNR (AMR-NB), unedited excerpts gave no "
        "false alarm, but a moved 3 s part was lost (reported as removed plus inserted material) "
        "and at 0 dB a join was misplaced by 3 s.",
        "The labelled set is synthetic (espeak-ng voices, simulated room and noise) and small (per "
        "codec: 33 parts, 11 removals, 3 reorderings, 3 insertions, 5 unedited excerpts): rates of "
        "100 % or 0 false alarms on it bound nothing tightly, and real rooms, microphones and "
        "overlapping talkers are harder than this set.",
        "Scores are 1 - exp(-E/100) where E is the evidence in nats (spectral peaks of either "
        "recording found or not found in the other, compared with chance); they measure how "
        "strongly a part matches, not a probability that the clip is authentic.",
    ]
    for key, m in MEASURED.items():
        if not m:
            continue
        out.append(
            f"Measured on the synthetic labelled set, {_CODEC_NAMES[key]}: parts found "
            f"{m['parts']:.0%} ({m['parts_n']}); edit points placed within "
            f"{m['boundary_median']:.2f} s (median), {m['boundary_max']:.2f} s (worst); offsets "
            f"within {max(m['offset_max'], 0.01) * 1000:.0f} ms; removals found {m['removed']:.0%} "
            f"({m['removed_n']}), duration error at most {m['removed_error_plain_max']:.2f} s at a plain "
            f"join, {m['removed_error_max']:.2f} s next to foreign material; "
            f"reorderings found {m['reordered']:.0%} ({m['reordered_n']}); insertions found "
            f"{m['inserted']:.0%} ({m['inserted_n']}); false alarms on unedited excerpts "
            f"{m['false_alarms']:.2f} per excerpt ({m['false_alarms_n']}); findings matching "
            f"no edit on edited clips {m['spurious']:.2f} per clip."
        )
    if SPEED:
        out.append(
            f"Speed measured on one core: {SPEED['per_reference_hour_s']:.0f} s per hour of "
            f"reference plus {SPEED['per_clip_minute_s']:.1f} s per minute of clip, decoding included."
        )
    return out


LIMITS = _limits()


def _r(x: float) -> float:
    return round(float(x) + 0.0, 2)


def _score(nats: float) -> float:
    return round(float(1 - np.exp(-max(nats, 0.0) / SCORE_SCALE)), 3)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# Fingerprints of the last references used, by SHA-256 of their bytes: a worker that aligns
# several clips against the same long reference decodes and fingerprints it once. Same
# bytes, same fingerprints: the cache changes the time an analysis takes, never its result.
_REFERENCES: OrderedDict[str, tuple[dict, method.Reference, dict]] = OrderedDict()
_REFERENCES_KEPT = 2


def _reference(path: str, sha256: str) -> tuple[dict, method.Reference, dict]:
    if sha256 in _REFERENCES:
        _REFERENCES.move_to_end(sha256)
        return _REFERENCES[sha256]
    try:
        decoded = decode(path, sample_rate=method.RATE, max_seconds=MAX_REFERENCE_S)
    except AnalysisError as exc:
        raise AnalysisError(f"the reference recording: {exc}") from None
    coverage = decoded.coverage(subject="reference")
    del coverage["at"]  # the reference's own times: in value, not on the clip's time line
    entry = (decoded.decoder_info(), method.prepare(decoded.samples), coverage)
    _REFERENCES[sha256] = entry
    while len(_REFERENCES) > _REFERENCES_KEPT:
        _REFERENCES.popitem(last=False)
    return entry


def _library_versions() -> dict:
    out = {}
    for dist in ("av", "numpy", "scipy", "Pillow"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - a source build
            out[dist] = "unknown"
    return out


def _in_order(parts: list) -> list[int]:
    """Indices (clip order) of the heaviest chain of parts whose reference times increase.

    The parts off this chain are the moved ones; ties go to the earliest chain.
    """
    n = len(parts)
    best = [p.clip_end - p.clip_start for p in parts]
    prev = [-1] * n
    for j in range(n):
        for i in range(j):
            if parts[i].reference_start < parts[j].reference_start:
                w = best[i] + parts[j].clip_end - parts[j].clip_start
                if w > best[j] + 1e-9:
                    best[j], prev[j] = w, i
    if not n:
        return []
    j = int(np.argmax(best))
    chain = []
    while j >= 0:
        chain.append(j)
        j = prev[j]
    return chain[::-1]


def _uncovered(span: tuple[float, float], spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The pieces of ``span`` that none of ``spans`` covers."""
    s, e = span
    out, cursor = [], s
    for a, b in sorted(spans):
        if b <= cursor or a >= e:
            continue
        if a > cursor:
            out.append((cursor, min(a, e)))
        cursor = max(cursor, b)
    if cursor < e:
        out.append((cursor, e))
    return out


def analyze(path: str, params: dict, ctx) -> dict:
    reference_path = params.get("reference")
    if not reference_path:
        raise AnalysisError("a reference recording (another evidence item of the case) is required")
    known = (getattr(ctx, "references", None) or {}).get("reference") or {}
    ref_id = known.get("id")
    ref_sha = known.get("sha256") or _sha256(reference_path)

    clip = decode(path, sample_rate=method.RATE, max_seconds=MAX_CLIP_S)
    if clip.duration < 1.0:
        raise AnalysisError("the clip is shorter than one second: too short to align")
    ref_info, reference, ref_coverage = _reference(reference_path, ref_sha)
    clip_coverage = clip.coverage(subject="clip")
    clip_coverage["at"] = [_r(t) for t in clip_coverage["at"]]

    al = method.align(clip.samples, reference)
    parts = al.parts
    chain = _in_order(parts)
    on_chain = set(chain)
    findings = [
        finding(
            "decoding",
            "fact",
            {"clip": clip.decoder_info(), "reference": ref_info},
            note="how both recordings were decoded (mono, 8 kHz) before matching",
        ),
        clip_coverage,
        ref_coverage,
    ]

    if al.speed != 1.0:
        faster = al.speed > 1
        findings.append(
            finding(
                "speed_ratio",
                "measurement",
                round(al.speed, 4),
                note=(
                    f"the clip plays {abs(al.speed - 1) * 100:.2f} % {'faster' if faster else 'slower'} than "
                    "the reference (reference seconds per clip second); it was stretched back before "
                    "matching, and the times below are the clip's own"
                ),
            )
        )

    plot_parts, plot_removed, plot_inserted = [], [], []
    for i, p in enumerate(parts):
        findings.append(
            finding(
                "segment",
                "measurement",
                {
                    "reference_at": [
                        _r(max(p.reference_start, 0.0)),
                        _r(min(p.reference_end, reference.duration)),
                    ],
                    "evidence": ref_id,
                    "offset_s": _r(p.reference_start - p.clip_start),
                    "matched_peaks": round(p.matched / max(p.peaks, 1), 3),
                },
                unit="s",
                at=[_r(p.clip_start), _r(p.clip_end)],
                score=_score(p.llr),
                note=(
                    f"clip {p.clip_start:.2f}-{p.clip_end:.2f} s is reference "
                    f"{p.reference_start:.2f}-{p.reference_end:.2f} s"
                ),
            )
        )
        plot_parts.append(
            {
                "clip_at": (p.clip_start, p.clip_end),
                "reference_at": (p.reference_start, p.reference_end),
                "moved": i not in on_chain,
            }
        )

    indicators = []
    for i, p in enumerate(parts):
        if i in on_chain:
            continue
        indicators.append(
            finding(
                "reordered",
                "indicator",
                {"reference_at": [_r(p.reference_start), _r(p.reference_end)], "evidence": ref_id},
                at=[_r(p.clip_start), _r(p.clip_end)],
                score=_score(p.llr),
                note=(
                    f"clip {p.clip_start:.2f}-{p.clip_end:.2f} s (reference {p.reference_start:.2f}-"
                    f"{p.reference_end:.2f} s) is out of the reference's order"
                ),
            )
        )
    spans = [(p.reference_start, p.reference_end) for p in parts]
    for i, j in zip(chain, chain[1:], strict=False):
        a, b = parts[i], parts[j]
        jump = b.reference_start - a.reference_end
        if jump >= MIN_REMOVED_S:
            for s, e in _uncovered((a.reference_end, b.reference_start), spans):
                # an end set by another part's boundary (not by this join's offsets) is only
                # as precise as that boundary: such pieces must be longer to count
                # (and so are both ends when clip material lies between the two parts)
                loose = s != a.reference_end or e != b.reference_start or b.clip_start - a.clip_end > 0.05
                if e - s < (LOOSE_REMOVED_S if loose else MIN_REMOVED_S):
                    continue
                indicators.append(
                    finding(
                        "removed",
                        "indicator",
                        {"reference_at": [_r(s), _r(e)], "duration_s": _r(e - s), "evidence": ref_id},
                        unit="s",
                        at=[_r(a.clip_end), _r(b.clip_start)],
                        score=min(_score(a.llr), _score(b.llr)),
                        note=f"{e - s:.2f} s of the reference ({s:.2f}-{e:.2f} s) is missing at clip {b.clip_start:.2f} s",
                    )
                )
                plot_removed.append({"at": (a.clip_end, b.clip_start), "reference_at": (s, e)})
        elif jump <= -MIN_OVERLAP_S and j == i + 1:
            indicators.append(
                finding(
                    "inserted",
                    "indicator",
                    {
                        "kind": "overlap",
                        "duration_s": _r(-jump),
                        "reference_at": [_r(b.reference_start), _r(a.reference_end)],
                    },
                    unit="s",
                    at=[_r(b.clip_start), _r(b.clip_start)],
                    score=min(_score(a.llr), _score(b.llr)),
                    note=(
                        f"at clip {b.clip_start:.2f} s the clip runs {-jump:.2f} s longer than the reference: "
                        "material repeated or added (silence, noise) at this join"
                    ),
                )
            )
    for u in al.unmatched if parts else []:  # with no part at all, "not_found" says it
        indicators.append(
            finding(
                "inserted",
                "indicator",
                {"kind": "not_in_reference", "duration_s": _r(u.clip_end - u.clip_start)},
                unit="s",
                at=[_r(u.clip_start), _r(u.clip_end)],
                score=_score(u.evidence),
                note=f"clip {u.clip_start:.2f}-{u.clip_end:.2f} s was not found in the reference",
            )
        )
        plot_inserted.append({"at": (u.clip_start, u.clip_end)})
    indicators.sort(key=lambda x: (x["at"][0], x["at"][1], x["name"]))
    findings += indicators

    found = sum(p.clip_end - p.clip_start for p in parts)
    counts = {k: sum(1 for x in indicators if x["name"] == k) for k in ("removed", "reordered", "inserted")}
    summary = {
        "parts": len(parts),
        **counts,
        "clip_duration_s": _r(clip.duration),
        "clip_found_s": _r(found),
        "reference_duration_s": _r(reference.duration),
        "reference_span": [_r(min(s for s, _ in spans)), _r(max(e for _, e in spans))] if spans else None,
        "reference": {"evidence": ref_id, "sha256": ref_sha},
        "peak_match_rate": round(al.match_rate, 3),
        "speed_ratio": round(al.speed, 4),
    }
    if parts:
        note = (
            f"{found:.1f} s of the {clip.duration:.1f} s clip found in the reference as {len(parts)} "
            f"part(s); {counts['removed']} removal(s), {counts['reordered']} reordered part(s), "
            f"{counts['inserted']} insertion(s)"
        )
    else:
        note = "no part of the clip was found in the reference"
    findings.append(finding("alignment_summary", "fact", summary, note=note))
    if not parts:
        findings.append(
            finding(
                "not_found",
                "fact",
                True,
                note=(
                    "the clip does not match the reference anywhere: it is not a recording of "
                    "this reference's material, or too damaged to be recognised"
                ),
            )
        )

    png = render(clip.duration, plot_parts, plot_removed, plot_inserted, al.points)
    ref_art = ctx.add_artifact("alignment.png", "image/png", png)
    findings.append(
        finding(
            "alignment_plot",
            "visual",
            artifact=ref_art,
            note="clip time across, reference time up: blue parts in order, orange moved, "
            "red steps removed material, red bands material not in the reference",
        )
    )
    return {"findings": findings, "libraries": _library_versions()}
