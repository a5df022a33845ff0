"""What every analyzer is: a module with NAME, VERSION, ACCEPTS, DESCRIPTION,
LIMITS, PARAMETERS, TIME_LIMIT, MEMORY_LIMIT and a pure function
``analyze(path, params, ctx) -> dict``.

The task around it (forensics/tasks.py) claims the run, copies the file into
a private copy that no path names (checking its SHA-256 as it copies), calls
``analyze`` with that copy's path (/proc/self/fd/N: no file name, so no
extension; ``ctx.original_name`` has the one the file came with), stores the
artifacts as blobs and signs the result.
An analyzer never touches the database, the network or the clock: running
the same version on the same bytes with the same parameters gives the same
findings (times of the run are recorded by the pipeline, not the analyzer).

Findings share one shape (DESIGN.md, "Analyses and published results"):
    {"name": "snake_case_id", "class": "fact" | "measurement" | "indicator" | "visual",
     "value": ..., "unit": "...", "at": [s, e], "region": [x, y, w, h],
     "score": 0.0-1.0, "artifact": "sha256:<hex>", "note": "plain words"}
- fact: parsed from the bytes; measurement: a number from a documented method;
- indicator: a statistical detector, with its measured error rates in LIMITS;
- visual: a picture for a human (an artifact), no verdict.
Numbers in findings may be floats; they are rounded by the analyzer to a
stated precision so results are reproducible across machines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

FINDING_CLASSES = ("fact", "measurement", "indicator", "visual")

# Each run is a child process bounded by the analyzer's TIME_LIMIT (seconds of
# wall-clock time) and MEMORY_LIMIT (bytes of address space: interpreter,
# libraries and data); these apply to a module that declares none.
DEFAULT_TIME_LIMIT = 3600
DEFAULT_MEMORY_LIMIT = 4 << 30


class AnalysisError(Exception):
    """The input cannot be analysed (corrupt, truncated, a decompression bomb...).

    The message is recorded as the reason the analysis failed; keep it plain.
    """


@dataclass
class Artifact:
    name: str
    media_type: str
    data: bytes
    sha256: str


@dataclass
class AnalysisContext:
    """What an analyzer may know besides the bytes, and where it puts derived pictures."""

    original_name: str = ""
    media_type: str = "application/octet-stream"  # detected from content at intake
    size: int = 0
    workdir: str = ""  # a private scratch directory, removed after the run
    # For "evidence" parameters: {param name: {"id": ..., "sha256": ...}} of
    # the other item (analyze() receives its file path in params).
    references: dict = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)

    def add_artifact(self, name: str, media_type: str, data: bytes) -> str:
        """Keep a derived file (e.g. a PNG plot); returns its reference "sha256:<hex>"."""
        digest = hashlib.sha256(data).hexdigest()
        if not any(a.sha256 == digest for a in self.artifacts):
            self.artifacts.append(Artifact(name=name, media_type=media_type, data=data, sha256=digest))
        return f"sha256:{digest}"


def finding(name: str, cls: str, value=None, *, note: str = "", **extra) -> dict:
    """Build a finding in the shared shape, dropping keys that are None."""
    if cls not in FINDING_CLASSES:
        raise ValueError(f"unknown finding class {cls!r}")
    out = {"name": name, "class": cls, "value": value, "note": note}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


# PARAMETERS maps a name to {"type": "int" | "float" | "str" | "bool" | "evidence",
# "default": ..., "min": ..., "max": ..., "choices": [...], "help": "..."}.
# "evidence" parameters name another evidence item of the same case (its id);
# the pipeline resolves them to a file path before calling analyze().
_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "evidence": str}


def validate_parameters(spec: dict, params: dict | None) -> dict:
    """Check ``params`` against an analyzer's PARAMETERS; return them with defaults filled.

    Raises ValueError with a message naming the parameter.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(spec)) or 'none'}"
        )
    out = {}
    for name, rule in spec.items():
        if name not in params:
            if "default" not in rule:
                raise ValueError(f"parameter {name!r} is required")
            out[name] = rule["default"]
            continue
        value = params[name]
        expected = _TYPES[rule["type"]]
        if isinstance(value, bool) and rule["type"] != "bool" or not isinstance(value, expected):
            raise ValueError(f"parameter {name!r} must be of type {rule['type']}")
        if "min" in rule and value < rule["min"] or "max" in rule and value > rule["max"]:
            raise ValueError(f"parameter {name!r} must be between {rule.get('min')} and {rule.get('max')}")
        if "choices" in rule and value not in rule["choices"]:
            raise ValueError(f"parameter {name!r} must be one of {rule['choices']}")
        out[name] = value
    return out
