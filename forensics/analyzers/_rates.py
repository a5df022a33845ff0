"""Measured error rates, conditioned on the file, as the analyzers quote them.

An indicator's rates come from the tables in ``forensics/analyzers/rates/``
(one JSON file per analyzer), written by ``bench/evaluate.py`` from labelled
evaluation sets (``forensics/evaluation``). A table row holds, for one
condition (e.g. codec and hum SNR band), how many true edits the set had and
how many the indicator found, the false alarms over the unedited material,
and the 95% intervals of both (Wilson for proportions, exact Poisson for
counts per hour). An indicator in a condition the evaluation never measured
says so: it never borrows another condition's figure.

Format (``rates/<analyzer>.json``)::

    {"analyzer": "audio.enf", "evaluated": "2026-12-07", "command": "...",
     "set": "what the set is made of",
     "indicators": {
       "<finding name>": {
         "condition": ["codec", "hum_snr_band"],
         "found_when": "a candidate lies within 0.5 s of the edit",
         "false_alarm_unit": "hour" | "file" | "image" | ...,
         "rows": [{"condition": {...}, "positives": 60, "detected": 45,
                   "detection_rate": 0.75, "detection_ci95": [0.63, 0.84],
                   "negatives": 2.5, "false_alarms": 1,
                   "false_alarm_rate": 0.4, "false_alarm_ci95": [0.01, 2.2]}],
         "calibration": [[raw score, probability], ...],
         "reliability": [{"band": [0, 0.2], "n": ..., "mean_score": ...,
                          "observed": ..., "observed_ci95": [...]}]}},
     "quick": {...the same "indicators" for the subset the test suite reruns...}}

The whole table's SHA-256 goes with every quoted figure, so a result names
the exact measurements it relied on.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

RATES_DIR = Path(__file__).resolve().parent / "rates"


def table_path(analyzer: str) -> Path:
    return RATES_DIR / f"{analyzer}.json"


@functools.cache
def _load(analyzer: str) -> tuple[dict | None, str]:
    path = table_path(analyzer)
    if not path.exists():
        return None, ""
    raw = path.read_bytes()
    return json.loads(raw), hashlib.sha256(raw).hexdigest()


def table(analyzer: str) -> dict | None:
    return _load(analyzer)[0]


def reload() -> None:
    """Forget loaded tables (after bench/evaluate.py rewrote one)."""
    _load.cache_clear()


def _matches(row_condition: dict, condition: dict) -> bool:
    return all(str(condition.get(k)) == str(v) for k, v in row_condition.items())


def for_condition(analyzer: str, indicator: str, condition: dict) -> dict:
    """The ``rates`` block of an indicator finding for this file's condition.

    ``condition`` maps the indicator's condition keys to this file's values
    (e.g. {"codec": "mp3", "hum_snr_band": "12-20 dB"}).
    """
    data, digest = _load(analyzer)
    spec = (data or {}).get("indicators", {}).get(indicator)
    if spec is None:
        return {
            "condition": condition,
            "measured": False,
            "note": f"no evaluation of {analyzer} {indicator} is on record: its error rates are unknown",
        }
    keys = spec["condition"]
    wanted = {k: condition.get(k) for k in keys}
    for row in spec["rows"]:
        if _matches(row["condition"], wanted):
            out = {"condition": wanted, "measured": True}
            out.update({k: v for k, v in row.items() if k != "condition"})
            out["found_when"] = spec.get("found_when", "")
            out["false_alarm_unit"] = spec.get("false_alarm_unit", "")
            out["set"] = data.get("set", "")
            out["evaluated"] = data.get("evaluated", "")
            out["table_sha256"] = digest
            return out
    return {
        "condition": wanted,
        "measured": False,
        "note": (
            f"this condition ({describe(wanted)}) was never measured for {analyzer} {indicator}; "
            "rates measured in other conditions do not apply to this file"
        ),
        "table_sha256": digest,
    }


def calibrated(analyzer: str, indicator: str, raw: float) -> float | None:
    """The measured probability that an indicator of raw score ``raw`` marks a real edit, or None."""
    data, _ = _load(analyzer)
    spec = (data or {}).get("indicators", {}).get(indicator) or {}
    points = spec.get("calibration")
    if not points:
        return None
    return round(apply_map(points, raw), 3)


def apply_map(points, raw: float) -> float:
    """The probability a calibration map (sorted [raw score, probability] steps) gives a raw score.

    Below the first step, the first step's probability.
    """
    if not points:
        raise ValueError("empty calibration map")
    value = points[0][1]
    for s, p in points:
        if raw >= s:
            value = p
        else:
            break
    return float(value)


def describe(condition: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in condition.items())


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def limits(analyzer: str) -> list[str]:
    """LIMITS paragraphs quoting the table, one per indicator and condition (nothing else)."""
    data, digest = _load(analyzer)
    if data is None:
        return [f"No evaluation of {analyzer} is on record: its indicators' error rates are unknown."]
    head = (
        f"Error rates from {data.get('command', 'bench/evaluate.py')} on {data.get('evaluated', '?')} "
        f"(table sha256 {digest[:16]}...): {data.get('set', '')}"
    )
    return [head] + limits_for_block(data)


def limits_for_block(data: dict) -> list[str]:
    out = []
    for name, spec in data.get("indicators", {}).items():
        unit = spec.get("false_alarm_unit", "file")
        for row in spec["rows"]:
            text = f"{name} [{describe(row['condition'])}]: "
            if row.get("positives"):
                lo, hi = row["detection_ci95"]
                text += (
                    f"found {row['detected']}/{row['positives']} ({_pct(row['detection_rate'])}, "
                    f"95% CI {_pct(lo)}-{_pct(hi)}) when {spec.get('found_when', 'found')}; "
                )
            if row.get("negatives"):
                lo, hi = row["false_alarm_ci95"]
                text += (
                    f"{row['false_alarms']} false alarms in {row['negatives']:g} {unit}(s) "
                    f"({row['false_alarm_rate']:.3g} per {unit}, 95% CI {lo:.3g}-{hi:.3g})"
                )
            out.append(text.rstrip("; "))
    return out
