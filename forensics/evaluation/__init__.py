"""Labelled evaluation sets and the measurements the analyzers quote.

``bench/evaluate.py`` builds each set from real material that Debian or PyPI
packages ship (``sources``), degrades it the way real devices and rooms do
(``audio``), edits it at known times, encodes it through FFmpeg's encoders
(PyAV), runs the analyzers and writes, per analyzer, the table of conditioned
error rates in ``forensics/analyzers/rates/`` (format: ``forensics.analyzers._rates``).
Intervals and calibration: ``stats``.
"""

from concurrent.futures import ProcessPoolExecutor


def run_all(fn, items: list, jobs: int, chunksize: int = 1) -> list:
    """``[fn(item) for item in items]``, in ``jobs`` processes when jobs > 1; the order is kept."""
    if jobs <= 1:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items, chunksize=chunksize))
