"""Context alignment: where each part of a clip occurs in a longer reference recording.

Given a clip and a second evidence item of the same case (a longer recording
of the same event), the analyzer reports each part of the clip found in the
reference (clip times, reference times, confidence), the reference material
left out between consecutive parts, parts played in another order than in the
reference, and clip material that the reference does not contain.

The method (``_context_align``) matches spectral-peak fingerprints at 8 kHz,
which survive re-encoding at low bit rates (Opus, AMR-NB 12.2 kbit/s...),
measures the clip's speed first (up to +/- 6 %) and stretches it back,
segments the clip where the clip-to-reference offset changes and refines each
part's offset and boundaries peak by peak. A boundary is the span of positions
equally consistent with the evidence of both sides: a point in speech, the
pause itself when the join lies in a pause of both recordings.

Its error rates, per condition of the file (codec, speed changed or not, join
in a pause or in speech, material inserted), come from the evaluation set of
``forensics/evaluation/context.py`` (real speech of five speakers, rooms,
noise, devices, leak codecs) through ``forensics/analyzers/rates/audio.context.json``;
LIMITS quote that table and nothing else measured.

Findings (DESIGN.md, "Analyses and published results"):
- ``segment`` (measurement), one per matched part: ``at`` = [start, end] in the
  clip, ``value`` = {"reference_at": [start, end], "evidence": reference id,
  "offset_s": reference time - clip time, "start_within" / "end_within": the
  span of each boundary}, ``score`` = match strength 0-1 (1 - exp(-nats/100),
  not a probability), ``uncertainty`` = the measured p90 join error of its
  less certain boundary's condition;
- ``removed`` (indicator): reference material absent from the clip between two
  consecutive parts: ``at`` = the join's span in the clip, ``value`` =
  {"reference_at": [s, e], "duration_s": d, "join_at": [lo, hi]};
- ``reordered`` (indicator): a part that comes before or after material it
  follows or precedes in the reference;
- ``inserted`` (indicator): clip material not found in the reference (``kind``
  "not_in_reference"), or clip time that the reference does not account for at
  a join (``kind`` "overlap": material repeated, or silence added);
- every indicator carries ``rates`` (the file's condition's measured detection
  and false-alarm rates with 95 % intervals, or "measured": false), ``score``
  (the calibrated probability that an indicator of this strength marks a real
  edit) and ``raw_score`` (nats of evidence of the weaker side);
- ``speed_ratio`` (measurement, with its measured uncertainty), when the clip
  plays at another speed than the reference (reference seconds per clip
  second); clip times stay the clip's own;
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
from . import _rates
from ._audio import decode
from ._context_plot import render
from .base import AnalysisError, finding

NAME = "audio.context"
# 2.0.0: joins reported as spans (a join in a pause is an interval), foreign speech trimmed
# peak by peak from the segments' ends, speed measured up to 5 % before segmenting;
# indicators carry their conditioned rates and a calibrated score, joins an uncertainty,
# and LIMITS quote the evaluation table (forensics/evaluation/context.py) instead of a
# synthetic set's figures. 2.1.0: the alignment picture is a labelled matplotlib figure.
VERSION = "2.1.0"
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

# Conditions the rate tables (forensics/analyzers/rates/audio.context.json) are kept by: the
# clip's codec as its decoder names it, whether a speed change was measured, and for joins
# whether the join lies in a pause (its span of equally consistent positions is wider than this).
JOIN_PAUSE_S = 0.1
_CODECS = {
    "opus": "opus",
    "aac": "aac",
    "mp3": "mp3",
    "mp3float": "mp3",
    "amrnb": "amr_nb",
    "amr_nb": "amr_nb",
}


def _codec(decoder: str) -> str:
    return "wav" if decoder.startswith("pcm_") else _CODECS.get(decoder, decoder)


def _speed_uncertainty(codec: str) -> dict | None:
    rates = _rates.for_condition(NAME, "speed_ratio", {"codec": codec})
    if not rates.get("measured") or rates.get("speed_error_p90") is None:
        return None
    return {
        "value": rates["speed_error_p90"],
        "unit": "ratio",
        "meaning": (
            "90th percentile of the absolute error of the speed ratio on the evaluation set "
            f"({rates['positives']} clips resampled 1-5 % faster or slower), codec {codec}"
        ),
    }


def _limits() -> list[str]:
    general = [
        "Finds material that the reference contains; says nothing of how the reference itself "
        "was made: a reference edited in the same way as the clip hides those edits.",
        f"A clip playing at another speed than the reference (resampled: time and pitch together), within "
        f"+/- {method.SPEED_MAX * 100:g} %, is measured ('speed_ratio') and stretched back before matching; "
        "a speed that varies along the clip (tape wow) or a time-stretch keeping the pitch was not "
        "evaluated; many small evenly spaced cuts could pass for a speed change.",
        f"Not reported: parts shorter than {method.MIN_PART_S:g} s, removals shorter than "
        f"{MIN_REMOVED_S:g} s, foreign material shorter than {method.MIN_INSERT_S:g} s.",
        "A join inside a pause of both recordings cannot be placed more precisely than the pause: "
        "any point of it is equally consistent with both sides. Such a join is reported as a span "
        "('start_within' / 'end_within' of the segments, 'at' of a removal), not as a point.",
        "Only 250-3500 Hz at 8 kHz is compared: material differing only outside that band "
        "(e.g. a music bed mixed at a low level) is not told apart.",
        "Repeated identical material in the reference (a jingle, a loop) matches at each "
        "repetition; the part is reported at one of them.",
        "An indicator's 'score' is the probability, measured on the evaluation set, that an "
        "indicator of its strength ('raw_score': nats of two-sided spectral-peak evidence) marks a "
        "real edit; its 'rates' are those of the file's condition (codec, speed changed or not, "
        "join in a pause or in speech), or say that the condition was never measured.",
    ]
    return general + _rates.limits(NAME)


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
    for dist in ("av", "numpy", "scipy", "Pillow", "matplotlib"):
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
                uncertainty=_speed_uncertainty(_codec(clip.codec)),
                note=(
                    f"the clip plays {abs(al.speed - 1) * 100:.2f} % {'faster' if faster else 'slower'} than "
                    "the reference (reference seconds per clip second); it was stretched back before "
                    "matching, and the times below are the clip's own"
                ),
            )
        )

    codec = _codec(clip.codec)
    speed = "changed" if al.speed != 1.0 else "same"

    def join_kind(span) -> str:
        return "pause" if span[1] - span[0] > JOIN_PAUSE_S else "speech"

    def uncertainty(span) -> dict | None:
        cond = {"codec": codec, "speed": speed, "join": join_kind(span)}
        rates = _rates.for_condition(NAME, "join", cond)
        if not rates.get("measured") or rates.get("join_error_p90_s") is None:
            return None
        return {
            "value": rates["join_error_p90_s"],
            "unit": "s",
            "meaning": (
                "90th percentile of the distance from a true edit point to the join span reported, on the "
                f"evaluation set ({rates['positives']} joins), condition {_rates.describe(cond)}"
            ),
        }

    def indicator(name, value, at, raw, cond, note, unit=None, extra=None):
        cond = {"codec": codec, "speed": speed, **cond}
        points = ((_rates.table(NAME) or {}).get("indicators", {}).get(name) or {}).get("calibration")
        if points and raw < points[0][0]:
            # weaker than any indicator the calibration saw: no measured probability
            score = None
            note += (
                f" (evidence {raw:.0f} nats, weaker than any {name} indicator of the evaluation set: "
                "no measured probability)"
            )
        else:
            score = _rates.calibrated(NAME, name, raw)
        out = finding(
            name,
            "indicator",
            value,
            unit=unit,
            at=at,
            score=score,
            raw_score=round(float(raw), 1),
            rates=_rates.for_condition(NAME, name, cond),
            note=note,
        )
        out.update(extra or {})
        return out

    plot_parts, plot_removed, plot_inserted = [], [], []
    for i, p in enumerate(parts):
        spans_s = [[_r(x) for x in p.start_span], [_r(x) for x in p.end_span]]
        worst = max(
            (uncertainty(sp) for sp in (p.start_span, p.end_span)), key=lambda u: u["value"] if u else -1
        )
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
                    "start_within": spans_s[0],
                    "end_within": spans_s[1],
                },
                unit="s",
                at=[_r(p.clip_start), _r(p.clip_end)],
                score=_score(p.llr),
                uncertainty=worst,
                note=(
                    f"clip {p.clip_start:.2f}-{p.clip_end:.2f} s is reference "
                    f"{p.reference_start:.2f}-{p.reference_end:.2f} s"
                    + (
                        f"; its start lies anywhere in {p.start_span[0]:.2f}-{p.start_span[1]:.2f} s (a pause)"
                        if join_kind(p.start_span) == "pause"
                        else ""
                    )
                    + (
                        f"; its end anywhere in {p.end_span[0]:.2f}-{p.end_span[1]:.2f} s (a pause)"
                        if join_kind(p.end_span) == "pause"
                        else ""
                    )
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
            indicator(
                "reordered",
                {"reference_at": [_r(p.reference_start), _r(p.reference_end)], "evidence": ref_id},
                [_r(p.clip_start), _r(p.clip_end)],
                p.llr,
                {},
                (
                    f"clip {p.clip_start:.2f}-{p.clip_end:.2f} s (reference {p.reference_start:.2f}-"
                    f"{p.reference_end:.2f} s) is out of the reference's order"
                ),
            )
        )
    spans = [(p.reference_start, p.reference_end) for p in parts]
    for i, j in zip(chain, chain[1:], strict=False):
        a, b = parts[i], parts[j]
        jump = b.reference_start - a.reference_end
        join = (min(a.end_span[0], b.start_span[0]), max(a.end_span[1], b.start_span[1]))
        if jump >= MIN_REMOVED_S:
            for s, e in _uncovered((a.reference_end, b.reference_start), spans):
                # an end set by another part's boundary (not by this join's offsets) is only
                # as precise as that boundary: such pieces must be longer to count
                # (and so are both ends when clip material lies between the two parts)
                loose = s != a.reference_end or e != b.reference_start or b.clip_start - a.clip_end > 0.05
                if e - s < (LOOSE_REMOVED_S if loose else MIN_REMOVED_S):
                    continue
                where = (
                    f"at clip {join[0]:.2f} s"
                    if join_kind(join) == "speech"
                    else f"at a join anywhere in the pause {join[0]:.2f}-{join[1]:.2f} s of the clip"
                )
                indicators.append(
                    indicator(
                        "removed",
                        {
                            "reference_at": [_r(s), _r(e)],
                            "duration_s": _r(e - s),
                            "evidence": ref_id,
                            "join_at": [_r(join[0]), _r(join[1])],
                        },
                        [_r(join[0]), _r(join[1])],
                        min(a.llr, b.llr),
                        {"join": join_kind(join)},
                        f"{e - s:.2f} s of the reference ({s:.2f}-{e:.2f} s) is missing {where}",
                        unit="s",
                        extra={"uncertainty": uncertainty(join)},
                    )
                )
                plot_removed.append({"at": (a.clip_end, b.clip_start), "reference_at": (s, e)})
        elif jump <= -MIN_OVERLAP_S and j == i + 1:
            indicators.append(
                indicator(
                    "inserted",
                    {
                        "kind": "overlap",
                        "duration_s": _r(-jump),
                        "reference_at": [_r(b.reference_start), _r(a.reference_end)],
                    },
                    [_r(join[0]), _r(join[1])],
                    min(a.llr, b.llr),
                    {"material": "silence"},
                    (
                        f"at clip {join[0]:.2f}-{join[1]:.2f} s the clip runs {-jump:.2f} s longer than the "
                        "reference: material repeated or added (silence, noise) at this join"
                    ),
                    unit="s",
                    extra={"uncertainty": uncertainty(join)},
                )
            )
    for u in al.unmatched if parts else []:  # with no part at all, "not_found" says it
        indicators.append(
            indicator(
                "inserted",
                {"kind": "not_in_reference", "duration_s": _r(u.clip_end - u.clip_start)},
                [_r(u.clip_start), _r(u.clip_end)],
                u.evidence,
                {"material": "speech"},
                f"clip {u.clip_start:.2f}-{u.clip_end:.2f} s was not found in the reference",
                unit="s",
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
