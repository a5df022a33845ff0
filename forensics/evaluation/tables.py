"""Writing the rate tables the analyzers quote (format: forensics.analyzers._rates)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from forensics.analyzers import _rates

from . import stats


def rate_row(
    condition: dict, positives: int, detected: int, negatives: float, false_alarms: int, **extra
) -> dict:
    """One condition's figures with their 95% intervals (Wilson; exact Poisson per unit of negatives)."""
    row = {"condition": condition, "positives": positives, "detected": detected}
    if positives:
        lo, hi = stats.wilson(detected, positives)
        row["detection_rate"] = round(detected / positives, 3)
        row["detection_ci95"] = [round(lo, 3), round(hi, 3)]
    row["negatives"] = (
        negatives if isinstance(negatives, int) or not negatives else round(float(negatives), 3)
    )
    if not negatives:
        row["negatives"] = 0
    row["false_alarms"] = false_alarms
    if negatives:
        if isinstance(negatives, int):
            lo, hi = stats.wilson(false_alarms, negatives)
        else:
            lo, hi = stats.poisson_interval(false_alarms, negatives)
        row["false_alarm_rate"] = round(false_alarms / negatives, 3)
        row["false_alarm_ci95"] = [round(lo, 3), round(hi, 3)]
    row.update(extra)
    return row


def write(analyzer: str, data: dict, directory: Path | None = None) -> Path:
    """Write ``data`` as the analyzer's table: sorted keys, stable layout, today's date."""
    data = dict(data)
    data["analyzer"] = analyzer
    data.setdefault("evaluated", datetime.date.today().isoformat())
    path = (directory or _rates.RATES_DIR) / f"{analyzer}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    _rates.reload()
    return path


# How far a rerun's measured quantities may drift from the stored table.
# Counts (positives, detected, false alarms, n) and everything computed from
# counts alone (rates, Wilson and Poisson intervals) must come out exactly
# the same. Quantities measured inside the signal may not: numpy's and
# scipy's FFTs and BLAS take other SIMD paths on another CPU (the tables were
# made on an Intel Xeon, CI has also run on AMD EPYC), which moves sub-sample
# estimates in the last bits and, through a median or a 90th percentile of a
# few dozen values, by up to some hundredths of a second; the isotonic fit's
# score thresholds (raw statistics, not probabilities) move with them.
TOLERANCES = {
    "_s": ("abs", 0.06),  # times and time errors, seconds
    "speed_error_p90": ("abs", 0.005),  # speed ratio error
    "mean_score": ("abs", 0.05),  # a reliability band's mean calibrated score
    "calibration": ("rel", 0.25),  # the raw statistic at each calibration step
}


def _tolerance(path: list[str]):
    if len(path) >= 3 and path[-3] == "calibration":  # a step [raw statistic, probability]
        return TOLERANCES["calibration"] if path[-1] == "0" else None
    return next((rule for suffix, rule in TOLERANCES.items() if path and path[-1].endswith(suffix)), None)


def differences(computed, stored, path: list[str] | None = None) -> list[str]:
    """Where a rerun differs from a stored table beyond ``TOLERANCES`` (empty: the same)."""
    path = path or []
    where = "/".join(path) or "/"
    if isinstance(computed, dict) and isinstance(stored, dict):
        out = (
            [f"{where}: keys {sorted(set(computed) ^ set(stored))} in one only"]
            if set(computed) != set(stored)
            else []
        )
        for key in sorted(set(computed) & set(stored)):
            out += differences(computed[key], stored[key], [*path, str(key)])
        return out
    if isinstance(computed, list) and isinstance(stored, list):
        if len(computed) != len(stored):
            return [f"{where}: {len(computed)} items, stored {len(stored)}"]
        out = []
        for i, (a, b) in enumerate(zip(computed, stored, strict=True)):
            out += differences(a, b, [*path, str(i)])
        return out
    rule = _tolerance(path)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (computed, stored))
    if rule and numbers and (isinstance(computed, float) or isinstance(stored, float)):
        kind, bound = rule
        allowed = bound if kind == "abs" else bound * max(abs(computed), abs(stored))
        if abs(computed - stored) <= allowed:
            return []
    return (
        []
        if computed == stored and type(computed) is type(stored)
        else [f"{where}: {computed!r}, stored {stored!r}"]
    )
