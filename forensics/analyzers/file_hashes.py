"""file.hashes: cryptographic and fuzzy hashes of the whole file.

One streaming pass feeds MD5, SHA-1, SHA-256, BLAKE3 and TLSH; the
ssdeep-compatible hash (libfuzzy, through pydeep2) reads the file a second
time, in C, with a fixed-size buffer. Memory stays flat whatever the size.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata

import blake3
import pydeep
import tlsh

from .base import AnalysisError, finding

NAME = "file.hashes"
VERSION = "1.0.0"
TIME_LIMIT = 3600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 1 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["*/*"]
DESCRIPTION = (
    "MD5, SHA-1, SHA-256 and BLAKE3 of the whole file, plus two fuzzy hashes for finding "
    "similar files: an ssdeep-compatible context-triggered piecewise hash (CTPH) and TLSH."
)
LIMITS = [
    "MD5 and SHA-1 are broken for collisions: two different files can be made to share them. "
    "Identify a file by SHA-256 or BLAKE3; MD5 and SHA-1 are given for matching older records.",
    "A fuzzy hash means something only when compared with another hash of the same kind "
    "(ssdeep score 0-100, higher is more similar; TLSH distance, lower is more similar). "
    "A low score does not prove two files unrelated: reordered or re-encoded content defeats both.",
    "ssdeep scores 0 for files whose sizes differ by more than about a factor of two, and is "
    "unreliable for files under about 4 KiB.",
    "TLSH needs at least 50 bytes with enough variety of byte values; otherwise it is reported "
    "as not computable.",
    "Fuzzy hashes are computed only up to the size set by fuzzy_max_mib (they are much slower than "
    "the cryptographic ones: bench/analyses.py measures them); larger files get cryptographic hashes only.",
]
PARAMETERS = {
    "fuzzy_max_mib": {
        "type": "int",
        "default": 2048,
        "min": 0,
        "max": 1048576,
        "help": "compute the fuzzy hashes (ssdeep, TLSH) only for files up to this many MiB",
    }
}

CHUNK = 4 << 20
TLSH_MIN_BYTES = 50


def _libraries() -> dict:
    return {
        "blake3": blake3.__version__,
        "py-tlsh": metadata.version("py-tlsh"),
        "pydeep2": metadata.version("pydeep2"),
    }


def analyze(path: str, params: dict, ctx) -> dict:
    fuzzy_max = int(params.get("fuzzy_max_mib", PARAMETERS["fuzzy_max_mib"]["default"])) << 20
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise AnalysisError(f"the file cannot be read: {exc.strerror}") from None
    fuzzy = size <= fuzzy_max

    crypto = {
        "md5": hashlib.md5(usedforsecurity=False),
        "sha1": hashlib.sha1(usedforsecurity=False),
        "sha256": hashlib.sha256(),
        "blake3": blake3.blake3(),
    }
    t = tlsh.Tlsh() if fuzzy else None
    read = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            read += len(chunk)
            for h in crypto.values():
                h.update(chunk)
            if t is not None:
                t.update(chunk)
    if read != size:
        raise AnalysisError(f"the file changed size while it was read ({size} then {read} bytes)")

    findings = [
        finding("size", "fact", size, unit="bytes", note="number of bytes hashed"),
        finding("md5", "fact", crypto["md5"].hexdigest(), note="MD5 (RFC 1321) of the whole file"),
        finding("sha1", "fact", crypto["sha1"].hexdigest(), note="SHA-1 (FIPS 180-4) of the whole file"),
        finding(
            "sha256", "fact", crypto["sha256"].hexdigest(), note="SHA-256 (FIPS 180-4) of the whole file"
        ),
        finding(
            "blake3",
            "fact",
            crypto["blake3"].hexdigest(),
            note="BLAKE3 (256-bit output, default mode) of the whole file",
        ),
    ]

    if not fuzzy:
        reason = f"not computed: the file is larger than fuzzy_max_mib ({fuzzy_max >> 20} MiB)"
        findings.append(finding("ssdeep", "fact", None, note=reason))
        findings.append(finding("tlsh", "fact", None, note=reason))
        return {"findings": findings, "libraries": _libraries()}

    ssdeep_value = pydeep.hash_file(path).decode("ascii")
    findings.append(
        finding(
            "ssdeep",
            "fact",
            ssdeep_value,
            note="ssdeep-compatible context-triggered piecewise hash (libfuzzy), 'blocksize:hash:hash'",
        )
    )

    tlsh_value = None
    if size >= TLSH_MIN_BYTES:
        t.final()
        if t.is_valid:
            tlsh_value = t.hexdigest()
    if tlsh_value is None:
        why = (
            f"the file has fewer than {TLSH_MIN_BYTES} bytes"
            if size < TLSH_MIN_BYTES
            else "the file has too little variety of byte values"
        )
        findings.append(finding("tlsh", "fact", None, note=f"TLSH not computable: {why}"))
    else:
        findings.append(
            finding("tlsh", "fact", tlsh_value, note="TLSH (version 4 digest, 'T1' prefix, 128 buckets)")
        )
    return {"findings": findings, "libraries": _libraries()}
