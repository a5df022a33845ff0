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
