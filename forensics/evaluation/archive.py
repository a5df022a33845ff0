"""Evaluation of file.archive's possible_decompression_bomb rule on real and crafted archives.

Negatives: archives an investigator meets every day, made of files every
Debian machine with Python has: source code (the interpreter's standard
library), documents (Debian's licence and copyright texts), server logs
(syslog-style lines, generated: highly repetitive, as real logs are) and
sparse disk images (a few MiB of real files scattered over mostly-zero
space). Each is packed as ZIP (deflate), tar+gzip, tar+xz, tar+bzip2 and 7z.

Positives (bombs): one entry of zeros (8-64 MiB), 20-200 entries of 1 MiB
entries of zeros, a 42.zip-style nest (archives of archives; ZIP only),
overlapping entries (several central-directory entries pointing at one
entry's data; ZIP only), and an entry whose declared size is a lie (a small
declared size over a large deflate stream; ZIP only). The last one is built
to show what the rule cannot see: the analyzer reads declared sizes only.

Condition: the archive format as the analyzer reports it. An archive is
"detected" when the indicator's value is true; a false alarm is a true value
on a negative.
"""

from __future__ import annotations

import io
import os
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import run_all, tables

ANALYZER = "file.archive"
INDICATOR = "possible_decompression_bomb"
FORMATS = ["zip", "tar+gzip", "tar+xz", "tar+bzip2", "7z"]
NEGATIVE_KINDS = ["source", "documents", "logs", "disk_image"]
POSITIVE_KINDS = {
    "zip": ["zeros", "many_zeros", "nested", "overlapping", "lying_sizes"],
    "tar+gzip": ["zeros", "many_zeros"],
    "tar+xz": ["zeros", "many_zeros"],
    "tar+bzip2": ["zeros", "many_zeros"],
    "7z": ["zeros", "many_zeros"],
}
ALL_KINDS = NEGATIVE_KINDS + ["zeros", "many_zeros", "nested", "overlapping", "lying_sizes"]


def _files(kind: str, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    if kind == "source":
        root = Path(sysconfig.get_paths()["stdlib"])
        pool = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
        picks = rng.choice(len(pool), size=min(len(pool), int(rng.integers(20, 200))), replace=False)
        return [(str(pool[i].relative_to(root)), pool[i].read_bytes()) for i in sorted(picks)]
    if kind == "documents":
        pool = sorted(Path("/usr/share/doc").glob("*/copyright")) + sorted(
            Path("/usr/share/common-licenses").glob("*")
        )
        pool = [p for p in pool if p.is_file()]
        picks = rng.choice(len(pool), size=min(len(pool), int(rng.integers(10, 120))), replace=False)
        return [(f"doc{i:04d}/{pool[i].name}", pool[i].read_bytes()) for i in sorted(picks)]
    if kind == "logs":
        hosts = ["web01", "web02", "db01", "mail", "gw"]
        daemons = ["sshd", "nginx", "postfix/smtpd", "CRON", "kernel", "systemd"]
        messages = [
            "Accepted publickey for deploy from 10.0.{a}.{b} port {p} ssh2",
            "GET /api/v1/items/{p} HTTP/1.1 200 {b}",
            "connect from unknown[10.1.{a}.{b}]",
            "(root) CMD (run-parts /etc/cron.hourly)",
            "Started Session {p} of user app.",
            "TCP: request_sock_TCP: Possible SYN flooding on port {p}.",
        ]
        out = []
        for f in range(int(rng.integers(1, 4))):
            lines = []
            t = int(rng.integers(0, 86400))
            for _ in range(int(rng.integers(5_000, 40_000))):
                t += int(rng.integers(0, 3))
                k = int(rng.integers(len(messages)))
                msg = messages[k].format(
                    a=int(rng.integers(256)), b=int(rng.integers(256)), p=int(rng.integers(1, 65536))
                )
                lines.append(
                    f"Dec  {1 + t // 86400 % 28:2d} {t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d} "
                    f"{hosts[int(rng.integers(len(hosts)))]} {daemons[k]}[{int(rng.integers(100, 40000))}]: {msg}"
                )
            out.append((f"var/log/syslog.{f}", ("\n".join(lines) + "\n").encode()))
        return out
    if kind == "disk_image":
        size = int(rng.integers(4, 24)) << 20
        image = bytearray(size)
        for _name, data in _files("source", rng)[:60]:
            at = int(rng.integers(0, size - len(data))) & ~511
            image[at : at + len(data)] = data
        return [("disk.img", bytes(image))]
    raise ValueError(kind)


def _pack(files: list[tuple[str, bytes]], fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
            for name, data in files:
                z.writestr(name, data)
    elif fmt.startswith("tar+"):
        mode = {"tar+gzip": "w:gz", "tar+xz": "w:xz", "tar+bzip2": "w:bz2"}[fmt]
        with tarfile.open(fileobj=buf, mode=mode) as t:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1_700_000_000
                t.addfile(info, io.BytesIO(data))
    elif fmt == "7z":
        import py7zr

        with py7zr.SevenZipFile(buf, "w") as z:
            for name, data in files:
                z.writestr(data, name)
    else:
        raise ValueError(fmt)
    return buf.getvalue()


def _patch_cd(data: bytes, index: int, at: int, value: int) -> bytes:
    pos = -1
    for _ in range(index + 1):
        pos = data.index(b"PK\x01\x02", pos + 1)
    out = bytearray(data)
    out[pos + at : pos + at + 4] = value.to_bytes(4, "little")
    return bytes(out)


def _bomb(kind: str, fmt: str, rng: np.random.Generator) -> bytes:
    if kind == "zeros":
        return _pack([("zeros.bin", bytes(int(rng.integers(8, 65)) << 20))], fmt)
    if kind == "many_zeros":
        block = bytes(1 << 20)
        return _pack([(f"part{i:05d}.bin", block) for i in range(int(rng.integers(20, 200)))], fmt)
    if kind == "nested":
        layer = _pack([("zeros.bin", bytes(1 << 20))], "zip")
        for depth in range(int(rng.integers(2, 5))):
            layer = _pack([(f"lib{depth}_{i}.zip", layer) for i in range(16)], "zip")
        return layer
    if kind == "overlapping":
        n = int(rng.integers(3, 40))
        data = _pack([(f"f{i}.bin", os.urandom(2000)) for i in range(n)], "zip")
        for i in range(1, n):
            data = _patch_cd(data, i, 42, 0)  # every entry's local header at offset 0
        return data
    if kind == "lying_sizes":
        data = _pack([("payload.bin", bytes(int(rng.integers(8, 65)) << 20))], "zip")
        return _patch_cd(data, 0, 24, 4096)  # declares 4 KiB uncompressed
    raise ValueError(kind)


def _run_one(job: tuple[str, str, str, int]) -> dict:
    from forensics.analyzers import file_archive
    from forensics.analyzers.base import AnalysisContext, AnalysisError

    label, kind, fmt, seed = job
    rng = np.random.default_rng([seed, ALL_KINDS.index(kind), FORMATS.index(fmt)])
    data = _bomb(kind, fmt, rng) if label == "bomb" else _pack(_files(kind, rng), fmt)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "archive"
        path.write_bytes(data)
        try:
            out = file_archive.analyze(str(path), {}, AnalysisContext(workdir=tmp))
        except AnalysisError as exc:
            return {"label": label, "kind": kind, "format": fmt, "fired": None, "error": str(exc)}
    found = {f["name"]: f for f in out["findings"]}
    return {
        "label": label,
        "kind": kind,
        "format": found["archive_format"]["value"],
        "fired": bool(found[INDICATOR]["value"]),
        "size": len(data),
    }


def _jobs(quick: bool) -> list[tuple[str, str, str, int]]:
    n_neg, n_pos = (1, 1) if quick else (12, 6)
    jobs = []
    for fmt in FORMATS:
        for kind in NEGATIVE_KINDS:
            jobs += [("benign", kind, fmt, s) for s in range(n_neg)]
        for kind in POSITIVE_KINDS[fmt]:
            jobs += [("bomb", kind, fmt, s) for s in range(n_pos)]
    return jobs


def evaluate(quick: bool, jobs: int) -> dict:
    work = _jobs(quick)
    results = run_all(_run_one, work, jobs)
    rows = []
    for fmt in FORMATS:
        mine = [r for r in results if r["format"] == fmt]
        pos = [r for r in mine if r["label"] == "bomb"]
        neg = [r for r in mine if r["label"] == "benign"]
        rows.append(
            tables.rate_row(
                {"format": fmt},
                len(pos),
                sum(bool(r["fired"]) for r in pos),
                len(neg),
                sum(bool(r["fired"]) for r in neg),
            )
        )
    report = []
    for label, kinds in (
        ("bomb", sorted({k for v in POSITIVE_KINDS.values() for k in v})),
        ("benign", NEGATIVE_KINDS),
    ):
        for kind in kinds:
            mine = [r for r in results if r["label"] == label and r["kind"] == kind]
            fired = sum(bool(r["fired"]) for r in mine)
            errors = sum(r.get("error") is not None for r in mine)
            report.append(
                f"{label} {kind}: rule fired on {fired}/{len(mine)}"
                + (f", {errors} refused as invalid" if errors else "")
            )
    return {
        "indicators": {
            INDICATOR: {
                "condition": ["format"],
                "found_when": "the rule fires on a bomb (a true value)",
                "false_alarm_unit": "archive",
                "rows": rows,
            }
        },
        "set": (
            "archives of real files (the Python standard library's source, Debian's licence and copyright "
            "texts), generated syslog-style logs (5,000-40,000 lines per file) and sparse 4-24 MiB disk images holding real files, packed as ZIP, "
            "tar+gzip, tar+xz, tar+bzip2 and 7z; bombs: one entry of 8-64 MiB of zeros, 20-200 entries "
            "of 1 MiB of zeros, 42.zip-style nests of 2-4 levels of 16 archives, ZIP entries overlapping "
            "one entry's data, and a ZIP entry declaring 4 KiB over a large stream (built to be missed: "
            "only declared sizes are read)"
        ),
        "report": report,
    }
