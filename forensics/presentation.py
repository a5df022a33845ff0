"""Findings in plain words: how the pages and the examination report show a result.

Pure functions of a result's predicate (the decoded, signed statement): no
database, no request. The HTML is built with ``format_html`` and
``format_html_join`` only, so every value an analyzer wrote (names, notes,
tags read from the file, which an adversary controls) is escaped; nothing here
calls ``mark_safe`` on analyzer or user text.

What a finding looks like is in forensics/analyzers/base.py; the ``rates``
block of an indicator in forensics/analyzers/_rates.py.

**When an indicator has fired** (the rule the summaries use, stated on the
pages and in README, "Findings in plain words"): a finding of class
``indicator`` whose ``value`` says the detector flagged something: ``true``,
or any value other than ``false``, ``null`` and an empty list or object. Yes/no
detectors (``double_compression``, ``possible_decompression_bomb``) report
``true``/``false``; candidate detectors (``edit_candidate``, ``copy_move``,
``ghost_inconsistency``, ``removed``, ``inserted``...) report one finding per
candidate, whose value describes it, and nothing when they found none;
``null`` means the test did not apply to the file. The ``score`` is not part
of the rule: it is the measured probability that an indicator of this
strength is real, shown next to it, and a weak candidate still fired.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from custody import signing

from .analyzers._rates import describe as describe_condition

FIRED_RULE = (
    "An indicator has fired when the analyzer reported it with a value that says it found "
    "something: true, or a described candidate (a time, a region, a span); false means it "
    "looked and found nothing, and no value means the test did not apply to this file. "
    "The probability shown with it (its calibrated score) is not part of the rule: it is the "
    "share of indicators of that strength that were real in the evaluation set."
)

# The keys of a finding shown in their own places; the others go to "Details".
CORE_KEYS = {
    "name",
    "class",
    "value",
    "note",
    "unit",
    "at",
    "region",
    "score",
    "raw_score",
    "rates",
    "uncertainty",
    "artifact",
}
# Positions in this item's own time line (seconds): they seek the player. "time",
# "start" and "end" only in a finding about time (unit "s" or an "at" span):
# elsewhere they are byte offsets (file.structure's zip ranges).
TIME_KEYS = {"at", "estimate_s", "from_s", "to_s", "start_within", "end_within"}
TIMELINE_KEYS = {"time", "start", "end"}
# [x, y, w, h] in pixels of this item's picture.
REGION_KEYS = {"region", "source_region"}
# Units a nested key states by its suffix ("duration_s", "peak_hz"...).
SUFFIX_UNITS = (
    ("_s", "s"),
    ("_hz", "Hz"),
    ("_db", "dB"),
    ("_deg", "°"),
    ("_px", "px"),
    ("_bytes", "bytes"),
)
MAX_ROWS = 60  # rows of a nested table before "... more in the raw JSON"
MAX_DEPTH = 4  # nesting shown as tables; deeper values as compact JSON
_SHA256_REF = re.compile(r"^sha256:[0-9a-f]{64}$")


# ---------------------------------------------------------------- plain text


def clock(seconds: float) -> str:
    """A time position as mm:ss.sss (h:mm:ss.sss from an hour on)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
        raise ValueError(f"not a time in seconds: {seconds!r}")
    sign = "-" if seconds < 0 else ""
    millis = round(abs(seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{secs:02d}.{ms:03d}"
    return f"{sign}{minutes:02d}:{secs:02d}.{ms:03d}"


def number(x) -> str:
    """A number as the analyzer rounded it, without a float's scientific notation for ordinary sizes."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-4 or abs(x) >= 1e15):
        return f"{x:.6g}"
    text = f"{x:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def quantity(value, unit: str | None) -> str:
    return f"{number(value)} {unit}".strip() if unit else number(value)


def _pct_number(x: float) -> str:
    # Small rates keep a decimal (1.8%, not 2%): false-alarm rates live there.
    return f"{100 * x:.1f}".rstrip("0").rstrip(".") if 0 < x < 0.1 else f"{100 * x:.0f}"


def percent(x: float) -> str:
    return f"{_pct_number(x)}%"


def percent_range(lo: float, hi: float) -> str:
    return f"{_pct_number(lo)}-{_pct_number(hi)}%"


def probability(score) -> str:
    return "no measured probability" if score is None else percent(score)


def uncertainty_text(u) -> str:
    """ "± 0.011 Hz" from an uncertainty block ({"value", "unit", "meaning"}) or a bare number."""
    if isinstance(u, dict):
        if u.get("value") is None:
            return ""
        return f"± {quantity(u['value'], u.get('unit'))}"
    if isinstance(u, int | float) and not isinstance(u, bool):
        return f"± {number(u)}"
    return ""


def _per_hour(x: float) -> str:
    return f"{x:.2g}" if x < 10 else f"{x:.0f}"


def _plural(unit: str, n: float) -> str:
    return unit if n == 1 else f"{unit}s"


def rates_sentence(rates: dict | None) -> str:
    """The indicator's measured error rates for this file's condition, as one sentence.

    E.g. "detected 41 of 60 (68%, 95% CI 56-79%) in codec aac, hum snr band 12-20 dB;
    1.2 false alarms per hour (95% CI 0.4-2.8) in 6 hours of unedited material".
    """
    if not rates:
        return "no error rates were given with this finding"
    condition = describe_condition(rates.get("condition") or {}) or "any file"
    if not rates.get("measured"):
        # The analyzer's note names the condition and why; without one, name it here.
        if rates.get("note"):
            return f"not measured for this condition: {rates['note']}"
        return f"not measured for this condition ({condition})"
    parts = []
    positives = rates.get("positives") or 0
    if positives:
        text = f"detected {rates.get('detected', 0)} of {positives}"
        if rates.get("detection_rate") is not None:
            text += f" ({percent(rates['detection_rate'])}"
            if rates.get("detection_ci95"):
                lo, hi = rates["detection_ci95"]
                text += f", 95% CI {percent_range(lo, hi)}"
            text += ")"
        parts.append(f"{text} in {condition}")
    else:
        parts.append(f"no true case in the evaluation set for {condition}: detection rate unknown")
    negatives = rates.get("negatives") or 0
    unit = rates.get("false_alarm_unit") or "file"
    if negatives and rates.get("false_alarm_rate") is not None:
        ci = rates.get("false_alarm_ci95")
        if unit == "hour":
            text = f"{_per_hour(rates['false_alarm_rate'])} false alarms per hour"
            if ci:
                text += f" (95% CI {_per_hour(ci[0])}-{_per_hour(ci[1])})"
            text += f" in {number(negatives)} {_plural('hour', negatives)} of unedited material"
        else:
            text = (
                f"false alarms on {rates.get('false_alarms', 0)} of {number(negatives)} unedited "
                f"{_plural(unit, negatives)} ({percent(rates['false_alarm_rate'])}"
            )
            if ci:
                text += f", 95% CI {percent_range(ci[0], ci[1])}"
            text += ")"
        parts.append(text)
    else:
        parts.append("false alarms not measured in this condition")
    return "; ".join(parts)


def rates_source(rates: dict | None) -> str:
    """Where the figures come from: what counted as found, the date and the table's digest."""
    if not rates or not rates.get("measured"):
        return ""
    bits = []
    if rates.get("found_when"):
        bits.append(f"found when {rates['found_when']}")
    if rates.get("evaluated"):
        bits.append(f"evaluated {rates['evaluated']}")
    if rates.get("table_sha256"):
        bits.append(f"table sha256 {rates['table_sha256'][:16]}…")
    return "; ".join(bits)


def _heading(name: str) -> str:
    text = label(name)
    # "Double compression", but "md5" and "sha256" as written.
    return text if any(c.isdigit() for c in text) else text[:1].upper() + text[1:]


def label(name: str) -> str:
    """A finding's or key's name in words: "edit_candidate" -> "edit candidate"."""
    return str(name).replace("_", " ").strip()


def is_fired(finding: dict) -> bool:
    """Did this indicator flag something? (The rule in this module's docstring, FIRED_RULE.)"""
    if not isinstance(finding, dict) or finding.get("class") != "indicator":
        return False
    value = finding.get("value")
    if value is None or value is False:
        return False
    return not (isinstance(value, list | dict | str) and not value)


def where_html(finding: dict, href: str | None = None) -> SafeString:
    """Where the finding is, as HTML: times that seek the player, a region with its data-region."""
    parts = []
    if _is_span(finding.get("at")):
        parts.append(value_html(finding["at"], "at", None, {"seek_href": href}))
    if _is_region(finding.get("region")):
        parts.append(region_html(finding["region"]))
    return format_html_join(", ", "{}", ((p,) for p in parts))


def where_text(finding: dict) -> str:
    """Where the finding is, in words (times as mm:ss.sss, a region as x,y wxh px)."""
    parts = []
    at = finding.get("at")
    if _is_span(at):
        parts.append(f"{clock(at[0])}–{clock(at[1])}")
    region = finding.get("region")
    if _is_region(region):
        parts.append(region_text(region))
    return ", ".join(parts)


def region_text(region) -> str:
    x, y, w, h = region
    return f"{number(x)},{number(y)} {number(w)}×{number(h)} px"


def _is_num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _is_span(x) -> bool:
    return isinstance(x, list | tuple) and len(x) == 2 and all(_is_num(v) for v in x)


def _is_region(x) -> bool:
    return isinstance(x, list | tuple) and len(x) == 4 and all(_is_num(v) for v in x)


# ---------------------------------------------------------------- HTML


def seek_html(seconds: float, href: str | None = None) -> SafeString:
    """A time in the item's recording: a link the player (static/custody/player.js) seeks on.

    Without JavaScript it is plain text, or a link to ``href`` (the figure the
    time belongs to) when there is one.
    """
    text = clock(seconds)
    if href:
        return format_html(
            '<a class="seek" href="{}" data-seek="{}" title="play from {}">{}</a>',
            href,
            number(seconds),
            text,
            text,
        )
    return format_html(
        '<a class="seek" data-seek="{}" title="play from {}">{}</a>', number(seconds), text, text
    )


def region_html(region) -> SafeString:
    return format_html(
        '<span class="region" data-region="{}">{}</span>',
        ",".join(number(v) for v in region),
        region_text(region),
    )


def _unit_for_key(key: str | None) -> str | None:
    if not key:
        return None
    for suffix, unit in SUFFIX_UNITS:
        if key.endswith(suffix):
            return unit
    return None


def _is_time_key(key: str | None, ctx: dict) -> bool:
    return key in TIME_KEYS or (key in TIMELINE_KEYS and ctx.get("timeline", False))


def _scalar_html(value, key: str | None, unit: str | None, ctx: dict) -> SafeString:
    if value is None:
        return format_html('<span class="none">{}</span>', "—")
    if isinstance(value, bool):
        return format_html("{}", "yes" if value else "no")
    if _is_num(value):
        if _is_time_key(key, ctx):
            return seek_html(value, ctx.get("seek_href"))
        return format_html("{}", quantity(value, unit or _unit_for_key(key)))
    if isinstance(value, int | float):  # inf, nan
        return format_html("{}", str(value))
    text = str(value)
    if _SHA256_REF.match(text) or re.fullmatch(r"[0-9a-f]{32,128}", text):
        return format_html('<span class="hash">{}</span>', text)
    return format_html("{}", text)


def value_html(
    value, key: str | None = None, unit: str | None = None, ctx: dict | None = None, depth: int = 0
):
    """Any JSON value as HTML: scalars in words, objects and lists as small (nested) tables."""
    ctx = ctx or {}
    if _is_time_key(key, ctx) and _is_span(value):
        return format_html(
            "{}–{}", seek_html(value[0], ctx.get("seek_href")), seek_html(value[1], ctx.get("seek_href"))
        )
    if key == "reference_at" and _is_span(value):
        return format_html("{}–{} in the reference recording", clock(value[0]), clock(value[1]))
    if key in REGION_KEYS and _is_region(value):
        return region_html(value)
    if not isinstance(value, dict | list):
        return _scalar_html(value, key, unit, ctx)
    if depth >= MAX_DEPTH:
        return format_html("<code>{}</code>", json.dumps(value, ensure_ascii=False, sort_keys=True))
    if not value:
        return format_html('<span class="none">{}</span>', "none")
    if isinstance(value, dict):
        items = list(value.items())
        if len(items) > 6 and all(str(k).isdigit() and not isinstance(v, dict | list) for k, v in items):
            # A histogram or per-index table ({"1": 9, "2": 10...}): one row of keys, one of values,
            # in numeric order (the signed JSON sorts keys as text: 1, 10, 11, ..., 2).
            items = sorted(items, key=lambda kv: int(kv[0]))[:MAX_ROWS]
            return format_html(
                '<table class="grid across"><tr>{}</tr><tr>{}</tr></table>{}',
                format_html_join("", "<th>{}</th>", ((k,) for k, _ in items)),
                format_html_join("", "<td>{}</td>", ((_scalar_html(v, None, None, ctx),) for _, v in items)),
                format_html("… {} more in the raw JSON", len(value) - MAX_ROWS)
                if len(value) > MAX_ROWS
                else "",
            )
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td></tr>",
            ((label(k), value_html(v, str(k), None, ctx, depth + 1)) for k, v in items[:MAX_ROWS]),
        )
        return format_html('<table class="kv">{}{}</table>', rows, _more(len(items), 2))
    if all(not isinstance(v, dict | list) for v in value):
        shown = value[:MAX_ROWS]
        text = format_html_join(", ", "{}", ((_scalar_html(v, key, unit, ctx),) for v in shown))
        if len(value) > MAX_ROWS:
            text = format_html("{}, … {} more in the raw JSON", text, len(value) - MAX_ROWS)
        return text
    if all(isinstance(v, list) and all(not isinstance(x, dict | list) for x in v) for v in value):
        rows = format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (format_html_join("", "<td>{}</td>", ((_scalar_html(x, None, None, ctx),) for x in row)),)
                for row in value[:MAX_ROWS]
            ),
        )
        return format_html('<table class="grid">{}{}</table>', rows, _more(len(value), 1))
    if all(isinstance(v, dict) for v in value):
        columns = []
        for v in value:
            columns += [k for k in v if k not in columns]
        if len(columns) <= 12:
            head = format_html_join("", "<th>{}</th>", ((label(c),) for c in columns))
            rows = format_html_join(
                "",
                "<tr>{}</tr>",
                (
                    (
                        format_html_join(
                            "",
                            "<td>{}</td>",
                            ((value_html(v.get(c), str(c), None, ctx, depth + 1),) for c in columns),
                        ),
                    )
                    for v in value[:MAX_ROWS]
                ),
            )
            return format_html(
                '<table class="rows"><thead><tr>{}</tr></thead><tbody>{}{}</tbody></table>',
                head,
                rows,
                _more(len(value), len(columns)),
            )
    rows = format_html_join(
        "",
        "<tr><th>{}</th><td>{}</td></tr>",
        ((i + 1, value_html(v, key, None, ctx, depth + 1)) for i, v in enumerate(value[:MAX_ROWS])),
    )
    return format_html('<table class="kv">{}{}</table>', rows, _more(len(value), 2))


def _more(count: int, colspan: int) -> SafeString:
    if count <= MAX_ROWS:
        return SafeString("")
    return format_html(
        '<tr class="more"><td colspan="{}">… {} more in the raw JSON</td></tr>', colspan, count - MAX_ROWS
    )


def raw_json(finding: dict) -> str:
    return json.dumps(finding, indent=2, ensure_ascii=False)


def finding_html(
    finding: dict,
    *,
    artifact_url: Callable[[str], str] | None = None,
    artifacts: dict[str, dict] | None = None,
    anchor: str = "",
) -> SafeString:
    """One finding as readable HTML, with its raw JSON one click away."""
    if not isinstance(finding, dict):
        return format_html('<div class="finding"><pre>{}</pre></div>', json.dumps(finding))
    cls = str(finding.get("class", ""))
    fired = is_fired(finding)
    artifact = finding.get("artifact")
    digest = artifact[7:] if isinstance(artifact, str) and _SHA256_REF.match(artifact) else None
    href = artifact_url(digest) if digest and artifact_url else None
    ctx = {"seek_href": href, "timeline": finding.get("unit") == "s" or _is_span(finding.get("at"))}
    parts: list[tuple[str, SafeString]] = []
    if "value" in finding and not (finding.get("value") is None and digest):
        parts.append(("Value", _top_value_html(finding, ctx)))
    if _is_span(finding.get("at")) or _is_region(finding.get("region")):
        parts.append(("Where", where_html(finding, href)))
    if cls == "indicator" or "score" in finding:
        text = probability(finding.get("score"))
        if finding.get("raw_score") is not None:
            text += f" (raw score {number(finding['raw_score'])})"
        parts.append(("Probability", format_html("{}", text)))
    if "rates" in finding:
        source = rates_source(finding["rates"])
        parts.append(
            (
                "Error rates",
                format_html(
                    '<span class="rates">{}</span>{}',
                    rates_sentence(finding["rates"]),
                    format_html(' <small class="rates-source">({})</small>', source) if source else "",
                ),
            )
        )
    if digest:
        meta = (artifacts or {}).get(digest, {})
        what = meta.get("name") or "artifact"
        kind = meta.get("media_type", "")
        text = f"{what} ({kind})" if kind else what
        link = format_html('<a href="{}">{}</a>', href, text) if href else format_html("{}", text)
        parts.append(("Figure" if kind.startswith("image/") else "File", link))
    extras = {k: v for k, v in finding.items() if k not in CORE_KEYS}
    if extras:
        parts.append(("Details", value_html(extras, None, None, ctx)))
    body = format_html_join("", "<dt>{}</dt><dd>{}</dd>", parts)
    return format_html(
        '<article class="finding finding-{cls}{fired}"{anchor}>'
        '<h3><span class="finding-label">{label}</span> <code class="finding-name">{name}</code> '
        '<span class="finding-class">{cls}</span>{badge}</h3>'
        "{note}<dl>{body}</dl>"
        '<details class="raw"><summary>Raw JSON</summary><pre>{raw}</pre></details></article>',
        cls=cls,
        fired=" fired" if fired else "",
        anchor=format_html(' id="{}"', anchor) if anchor else "",
        label=_heading(finding.get("name", "")),
        name=finding.get("name", ""),
        badge=format_html(' <strong class="badge">{}</strong>', "fired") if fired else "",
        note=format_html('<p class="note">{}</p>', finding["note"]) if finding.get("note") else "",
        body=body,
        raw=raw_json(finding),
    )


def _top_value_html(finding: dict, ctx: dict) -> SafeString:
    value = finding.get("value")
    unit = finding.get("unit")
    if _is_num(value):
        text = format_html("{}", quantity(value, unit))
        if unit == "s" and abs(value) >= 60:
            text = format_html("{} ({})", text, clock(value))
    elif isinstance(value, dict | list):
        text = value_html(value, None, None, ctx)
        if unit:
            text = format_html('{}<small class="unit">unit: {}</small>', text, unit)
    else:
        text = value_html(value, None, unit, ctx)
    u = finding.get("uncertainty")
    if uncertainty_text(u):
        meaning = u.get("meaning") if isinstance(u, dict) else None
        text = format_html(
            '{} <span class="uncertainty">{}</span>{}',
            text,
            uncertainty_text(u),
            format_html(' <small class="uncertainty-meaning">({})</small>', meaning) if meaning else "",
        )
    return text


# ---------------------------------------------------------------- summaries


def result_of(analysis) -> dict | None:
    """The signed statement's predicate of a completed analysis (the envelope is the record)."""
    if not analysis.envelope:
        return None
    return json.loads(signing.b64decode(analysis.envelope["payload"]))["predicate"]


def fired_indicators(results: Iterable[tuple[object, dict]]) -> list[dict]:
    """Every indicator that fired, with where, its probability and its conditioned rates.

    ``results`` are (analysis, predicate) pairs; the analysis is passed through
    for links.
    """
    out = []
    for analysis, predicate in results:
        analyzer = predicate.get("analyzer", {})
        for i, f in enumerate(predicate.get("findings") or []):
            if not is_fired(f):
                continue
            out.append(
                {
                    "analysis": analysis,
                    "analyzer": f"{analyzer.get('name', '')} {analyzer.get('version', '')}".strip(),
                    "index": i,
                    "name": f.get("name", ""),
                    "label": label(f.get("name", "")),
                    "where": where_text(f),
                    "where_html": where_html(f),
                    "at": f.get("at") if _is_span(f.get("at")) else None,
                    "probability": probability(f.get("score")),
                    "rates": rates_sentence(f.get("rates")) if "rates" in f else "",
                    "measured": bool((f.get("rates") or {}).get("measured")),
                    "note": f.get("note", ""),
                }
            )
    return out


def indicator_count(results: Iterable[tuple[object, dict]]) -> int:
    return sum(1 for _, p in results for f in p.get("findings") or [] if f.get("class") == "indicator")


def _find(predicate: dict, name: str) -> dict | None:
    return next((f for f in predicate.get("findings") or [] if f.get("name") == name), None)


def _codec(f: dict) -> str:
    text = f"{f.get('long_name')} ({f['value']})" if f.get("long_name") else str(f["value"])
    return f"{text}, profile {f['profile']}" if f.get("profile") else text


def _duration(f: dict) -> str:
    value = f["value"]
    return f"{quantity(value, 's')} ({clock(value)})" if _is_num(value) else str(value)


def _bit_rate(f: dict) -> str:
    value = f["value"]
    return f"{value / 1000:.1f} kbit/s" if _is_num(value) else str(value)


def _channels(f: dict) -> str:
    layout = f.get("layout")
    # FFmpeg names a layout it does not know "N channels": nothing to add then.
    return f"{f['value']} ({layout})" if layout and "channels" not in str(layout) else str(f["value"])


def _encoders(f: dict) -> str:
    seen = []
    for e in f["value"] if isinstance(f["value"], list) else []:
        if isinstance(e, dict) and e.get("value") and e["value"] not in seen:
            seen.append(str(e["value"]))
    return ", ".join(seen)


def _exif_date(f: dict) -> str:
    value = f["value"]
    if isinstance(value, dict):
        return f"{value.get('datetime', '')} {value.get('offset', '')}".strip()
    return str(value)


def _distinct_values(f: dict) -> str:
    value = f["value"]
    if isinstance(value, dict):
        return ", ".join(dict.fromkeys(str(v) for v in value.values()))
    return str(value)


def _image_size(f: dict) -> str:
    value = f["value"]
    if isinstance(value, dict) and value.get("width") and value.get("height"):
        return f"{value['width']} × {value['height']} px"
    return ""


def _video_size(f: dict) -> str:
    streams = f["value"] if isinstance(f["value"], list) else []
    return ", ".join(
        f"{s['width']} × {s['height']} px (video stream {s.get('index')})"
        for s in streams
        if isinstance(s, dict) and s.get("type") == "video" and s.get("width") and s.get("height")
    )


def _gps(f: dict) -> str:
    value = f["value"]
    if isinstance(value, dict) and value.get("latitude") is not None and value.get("longitude") is not None:
        text = f"{number(value['latitude'])}, {number(value['longitude'])}"
        return (
            f"{text}, altitude {number(value['altitude'])} m" if value.get("altitude") is not None else text
        )
    return ""


def _jpeg_quality(f: dict) -> str:
    text = str(f["value"])
    return f"{text} (standard libjpeg tables)" if f.get("standard_table") else text


# (label, analyzer, finding name, how to say it). The order is the order on the page.
FACTS = (
    ("Media type (from content)", "file.type", "content_media_type", lambda f: str(f["value"])),
    ("Container", "audio.container", "container_format", lambda f: f.get("long_name") or str(f["value"])),
    ("Codec", "audio.container", "codec", _codec),
    ("Duration", "audio.container", "duration", _duration),
    ("Decoded duration", "audio.signal", "decoded_duration", _duration),
    ("Sample rate", "audio.container", "sample_rate", lambda f: quantity(f["value"], f.get("unit"))),
    ("Channels", "audio.container", "channels", _channels),
    ("Bit rate", "audio.container", "bit_rate", _bit_rate),
    ("Encoder", "audio.container", "encoder_strings", _encoders),
    ("Encoder", "image.metadata", "software", lambda f: str(f["value"])),
    ("Camera make", "image.metadata", "camera_make", lambda f: str(f["value"])),
    ("Camera model", "image.metadata", "camera_model", lambda f: str(f["value"])),
    ("Captured (camera clock)", "image.metadata", "datetime_original", _exif_date),
    ("Modified (EXIF DateTime)", "image.metadata", "datetime_modified", _exif_date),
    ("Creation dates (file tags)", "audio.container", "creation_tags", _distinct_values),
    ("Dimensions", "image.metadata", "image_format", _image_size),
    ("Dimensions", "audio.container", "streams", _video_size),
    ("JPEG quality", "image.jpeg", "jpeg_quality", _jpeg_quality),
    ("GPS position", "image.metadata", "gps_position", _gps),
)


def key_facts(results: Iterable[tuple[object, dict]]) -> list[dict]:
    """The facts that matter (codec, duration, encoder, camera, dates...) from completed results.

    Each fact names the analyses it comes from; two analyses that disagree give
    two lines (both are shown, neither is picked).
    """
    results = list(results)
    out: list[dict] = []
    for fact_label, analyzer, name, say in FACTS:
        for analysis, predicate in results:
            a = predicate.get("analyzer", {})
            if a.get("name") != analyzer:
                continue
            f = _find(predicate, name)
            if f is None or f.get("value") in (None, "", [], {}):
                continue
            try:
                text = say(f)
            except (KeyError, TypeError, ValueError, AttributeError):
                text = json.dumps(f.get("value"), ensure_ascii=False, sort_keys=True)
            if not text:
                continue
            source = f"{analyzer} {a.get('version', '')}".strip()
            same = next((x for x in out if x["label"] == fact_label and x["value"] == text), None)
            if same is None:
                out.append({"label": fact_label, "value": text, "sources": [source], "analyses": [analysis]})
            elif source not in same["sources"]:
                same["sources"].append(source)
                same["analyses"].append(analysis)
    return out


def summary(results: Iterable[tuple[object, dict]]) -> dict:
    """What the top of an analysis or item page says: fired indicators and key facts."""
    results = list(results)
    return {
        "fired": fired_indicators(results),
        "indicators": indicator_count(results),
        "facts": key_facts(results),
        "analyses": len(results),
        "rule": FIRED_RULE,
    }


def overlay_digests(predicate: dict) -> set[str]:
    """Artifacts that are transparent overlays for the image viewer, not figures for a report."""
    return {
        f["artifact"][7:]
        for f in predicate.get("findings") or []
        if isinstance(f, dict) and f.get("overlay") and isinstance(f.get("artifact"), str)
    }
