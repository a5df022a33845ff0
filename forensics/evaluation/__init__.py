"""Labelled evaluation sets and the measurements the analyzers quote.

``bench/evaluate.py`` builds each set from real material that Debian or PyPI
packages ship (``sources``), degrades it the way real devices and rooms do
(``audio``), edits it at known times, encodes it through FFmpeg's encoders
(PyAV), runs the analyzers and writes, per analyzer, the table of conditioned
error rates in ``forensics/analyzers/rates/`` (format: ``forensics.analyzers._rates``).
Intervals and calibration: ``stats``.
"""
