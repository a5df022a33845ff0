"""What the evidence page's player and image viewer draw over the evidence, read from signed results.

Everything comes from the predicates of the item's succeeded analyses (the
signed statements, not the table rows): time spans (``at``) become player
markers, visual findings become image overlays, ``region`` boxes are drawn on
the photo, and an ``audio.context`` result gives the clip-to-reference
alignment the side-by-side players follow. The pure functions take
``(analysis id, analyzer, predicate)`` triples so they can be tested without a
database; the ``*_for`` functions fetch them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

CONTEXT_ANALYZER = "audio.context"


class Result(NamedTuple):
    analysis: str  # the analysis id
    analyzer: str
    predicate: dict


def predicate_of(analysis) -> dict | None:
    """The signed statement's predicate of a finished analysis (None before it has one)."""
    from custody import signing

    if not analysis.envelope:
        return None
    return json.loads(signing.b64decode(analysis.envelope["payload"]))["predicate"]


def completed_results(evidence) -> list[Result]:
    """The succeeded analyses of ``evidence``, oldest first, with their predicates."""
    from .models import Analysis

    rows = evidence.analyses.filter(status=Analysis.Status.SUCCEEDED).order_by("requested_at")
    results = []
    for analysis in rows:
        predicate = predicate_of(analysis)
        if predicate is not None:
            results.append(Result(str(analysis.pk), analysis.analyzer, predicate))
    return results


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _span(value) -> tuple[float, float] | None:
    """A valid [start, end] in seconds (0 <= start <= end), or None."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    start, end = _number(value[0]), _number(value[1])
    if start is None or end is None or start < 0 or end < start:
        return None
    return start, end


def _box(value) -> tuple[float, float, float, float] | None:
    """A valid [x, y, w, h] in pixels (x, y >= 0; w, h > 0), or None."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    numbers = [_number(v) for v in value]
    if any(n is None for n in numbers):
        return None
    x, y, w, h = numbers
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        return None
    return x, y, w, h


def _findings(predicate: dict) -> list[dict]:
    findings = predicate.get("findings") if isinstance(predicate, dict) else None
    return [f for f in findings if isinstance(f, dict)] if isinstance(findings, list) else []


def audio_markers(results: Iterable[Result]) -> list[dict]:
    """One marker per finding located in time (``at``), from every result, in time order.

    Visual findings are left out: their ``at`` says what span a picture covers.
    """
    markers = []
    for result in results:
        for finding in _findings(result.predicate):
            span = _span(finding.get("at"))
            # A picture's span (a whole-file waveform) is not a place to jump to.
            if span is None or finding.get("class") == "visual":
                continue
            name = str(finding.get("name", "finding"))
            score = _number(finding.get("score"))
            markers.append(
                {
                    "start": span[0],
                    "end": span[1],
                    "name": name,
                    "class": str(finding.get("class", "")),
                    "analyzer": result.analyzer,
                    "analysis": result.analysis,
                    "label": f"{name} ({result.analyzer})",
                    "score": score,
                    "note": str(finding.get("note", "")),
                }
            )
    markers.sort(key=lambda m: (m["start"], m["end"], m["label"]))
    return markers


def _artifact_sha256(value) -> str | None:
    if not isinstance(value, str) or not value.startswith("sha256:"):
        return None
    digest = value[7:].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest


def image_layers(
    results: Iterable[Result],
    photo_size: tuple[int, int] | None,
    picture_size: Callable[[str], tuple[int, int] | None],
) -> dict:
    """Overlays (pictures laid over the photo) and boxes (``region``) from every result.

    An analysis that marks some of its visual findings ``"overlay": true``
    (transparent pictures made to be laid over the photo) gives those only;
    otherwise each of its visual pictures whose size is the photo's own is an
    overlay (an ELA or ghost map, a drawing over the image). Pictures of
    another size (plots, the EXIF thumbnail) are not laid over anything.
    ``picture_size`` maps an artifact's SHA-256 to its (width, height).
    """
    overlays, boxes = [], []
    for result in results:
        findings = _findings(result.predicate)
        visual = [
            (f, sha)
            for f in findings
            if f.get("class") == "visual" and (sha := _artifact_sha256(f.get("artifact"))) is not None
        ]
        marked = [(f, sha) for f, sha in visual if f.get("overlay") is True]
        if marked:
            chosen = marked
        elif photo_size is None:
            chosen = []
        else:
            chosen = [(f, sha) for f, sha in visual if picture_size(sha) == tuple(photo_size)]
        seen = set()
        for finding, sha in chosen:
            if sha in seen:
                continue
            seen.add(sha)
            name = str(finding.get("name", "picture"))
            overlays.append(
                {
                    "id": f"{result.analysis}-{sha[:12]}",
                    "sha256": sha,
                    "analysis": result.analysis,
                    "analyzer": result.analyzer,
                    "name": name,
                    "label": f"{name} ({result.analyzer})",
                    "note": str(finding.get("note", "")),
                }
            )
        for finding in findings:
            name = str(finding.get("name", "region"))
            for key, suffix in (("region", ""), ("source_region", " source")):
                box = _box(finding.get(key))
                if box is None:
                    continue
                boxes.append(
                    {
                        "x": box[0],
                        "y": box[1],
                        "w": box[2],
                        "h": box[3],
                        "name": name,
                        "analyzer": result.analyzer,
                        "analysis": result.analysis,
                        "label": f"{name}{suffix} ({result.analyzer})",
                    }
                )
    return {"overlays": overlays, "boxes": boxes}


def alignment(predicate: dict) -> list[dict]:
    """The clip-to-reference mapping of an ``audio.context`` result: its matched segments, in clip order.

    Each ``segment`` finding says that the clip's ``at`` [s, e] is the
    reference's ``value.reference_at`` [s', e'] (played at the speed the two
    lengths imply). Clip times outside every segment have no reference time.
    """
    segments = []
    for finding in _findings(predicate):
        if finding.get("name") != "segment":
            continue
        clip = _span(finding.get("at"))
        value = finding.get("value")
        reference = _span(value.get("reference_at")) if isinstance(value, dict) else None
        if clip is None or reference is None or clip[1] <= clip[0] or reference[1] <= reference[0]:
            continue
        segments.append({"clip": list(clip), "reference": list(reference)})
    segments.sort(key=lambda s: s["clip"])
    return segments


def to_reference(segments: list[dict], t: float) -> float | None:
    """Map a clip time to the reference (the same rule the side-by-side page's script uses)."""
    for s in segments:
        (c0, c1), (r0, r1) = s["clip"], s["reference"]
        if c0 <= t <= c1:
            return r0 + (t - c0) * (r1 - r0) / (c1 - c0)
    return None


def reference_id(predicate: dict) -> str | None:
    """The evidence id of the reference recording an ``audio.context`` result read."""
    refs = predicate.get("references") if isinstance(predicate, dict) else None
    ref = refs.get("reference") if isinstance(refs, dict) else None
    if isinstance(ref, dict) and isinstance(ref.get("id"), str):
        return ref["id"]
    for finding in _findings(predicate):
        value = finding.get("value")
        if (
            finding.get("name") == "segment"
            and isinstance(value, dict)
            and isinstance(value.get("evidence"), str)
        ):
            return value["evidence"]
    return None


def image_size(path) -> tuple[int, int] | None:
    """(width, height) of a stored picture from its header (Pillow reads no pixels), None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            return picture.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def image_layers_for(evidence, results: list[Result] | None = None) -> dict:
    """``image_layers`` for a stored photo, sizing its pictures from the blob store."""
    from custody.storage import blob_store

    from .models import Artifact

    results = completed_results(evidence) if results is None else results
    store = blob_store()
    photo = image_size(store.path(evidence.blob_id))
    images = {
        a.blob_id
        for a in Artifact.objects.filter(
            analysis_id__in=[r.analysis for r in results], media_type__startswith="image/"
        )
    }
    sizes: dict[str, tuple[int, int] | None] = {}

    def picture_size(sha: str):
        if sha not in images:
            return None
        if sha not in sizes:
            sizes[sha] = image_size(store.path(sha))
        return sizes[sha]

    return image_layers(results, photo, picture_size)
