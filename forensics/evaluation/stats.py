"""Error rates with their uncertainty, and score calibration.

- ``wilson``: the Wilson score interval of a proportion (detection rate,
  false-alarm rate per file, precision of a score band).
- ``poisson_interval``: an exact (Garwood) interval for a count over an
  exposure, e.g. false alarms per hour of unedited audio.
- ``isotonic``: pool-adjacent-violators fit of outcome on score, the
  calibration map an analyzer applies to its raw score, so that a score is the
  measured probability that an indicator of that strength marks a real edit.
- ``reliability``: the reliability table of calibrated scores (bands, count,
  mean score, observed frequency with its Wilson interval).
"""

from __future__ import annotations

import math

from scipy import stats as _stats

from forensics.analyzers._rates import apply_map  # noqa: F401  (the one the analyzers apply)

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval for k successes out of n; None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is not between 0 and n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def poisson_interval(count: int, exposure: float, level: float = 0.95) -> tuple[float, float] | None:
    """Exact two-sided interval of a rate ``count / exposure``; None when there was no exposure."""
    if exposure <= 0:
        return None
    alpha = 1 - level
    lo = 0.0 if count == 0 else _stats.chi2.ppf(alpha / 2, 2 * count) / 2
    hi = _stats.chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2
    return (float(lo) / exposure, float(hi) / exposure)


def isotonic(scores: list[float], outcomes: list[int]) -> list[tuple[float, float]]:
    """Non-decreasing step map from raw score to the observed frequency of outcome 1.

    Returns breakpoints [(raw score, probability), ...] sorted by score: the
    lowest score of each pooled block and the block's frequency. Apply with
    ``apply_map``.
    """
    if len(scores) != len(outcomes):
        raise ValueError("scores and outcomes differ in length")
    # Equal scores are one block from the start: a map gives one probability
    # per raw score, the frequency among all the cases that have it (sorted
    # apart, a tie's outcome-1 cases formed a block of their own, and a score
    # at the tie was given their frequency alone).
    tied: dict[float, list[float]] = {}
    for s, y in zip(scores, outcomes, strict=True):
        block = tied.setdefault(float(s), [0.0, 0.0])
        block[0] += float(y)
        block[1] += 1.0
    blocks: list[list[float]] = []  # [sum of outcomes, count, lowest score]
    for s in sorted(tied):
        blocks.append([tied[s][0], tied[s][1], s])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            y2, n2, _ = blocks.pop()
            blocks[-1][0] += y2
            blocks[-1][1] += n2
    return [(b[2], b[0] / b[1]) for b in blocks]


def reliability(scores: list[float], outcomes: list[int], bands: int = 5) -> list[dict]:
    """Reliability table: per band of (calibrated) score, how often the outcome was 1."""
    rows = []
    for i in range(bands):
        lo, hi = i / bands, (i + 1) / bands
        sel = [
            (s, y)
            for s, y in zip(scores, outcomes, strict=True)
            if lo <= s < hi or (i == bands - 1 and s == 1.0)
        ]
        n = len(sel)
        k = sum(y for _, y in sel)
        ci = wilson(k, n)
        rows.append(
            {
                "band": [round(lo, 2), round(hi, 2)],
                "n": n,
                "mean_score": round(sum(s for s, _ in sel) / n, 3) if n else None,
                "observed": round(k / n, 3) if n else None,
                "observed_ci95": [round(ci[0], 3), round(ci[1], 3)] if ci else None,
            }
        )
    return rows
