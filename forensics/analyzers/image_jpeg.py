"""JPEG structure, quantization tables, estimated quality and a double-compression indicator.

Three methods, each documented here and in LIMITS:

1. Structure (fact): the marker segments are walked from SOI to the first EOI
   (fill bytes, stand-alone markers, entropy-coded data with byte stuffing and
   restart markers), recording every segment, the frame header (SOF), and the
   DQT tables (8- or 16-bit, zig-zag order converted to row-major 8x8). Bytes
   after the first EOI are reported (appended data, MPF previews...).

2. Quality (measurement): libjpeg's jpeg_set_quality scales the IJG standard
   tables (ITU-T T.81 Annex K) by S = 5000/Q for Q < 50 and S = 200 - 2Q
   otherwise, entry = floor((base * S + 50) / 100) clamped to 1..255 (baseline)
   or 1..32767. Every Q from 1 to 100 is tried; the estimated quality is the Q
   whose tables (luma, and chroma when present) have the smallest sum of
   absolute differences from the file's, and "standard_table" says whether
   the match is exact (the file was written by libjpeg-style software with a
   plain quality setting) or not (camera- or software-specific tables).

3. Double compression (indicator): the luma plane is read exactly as decoded
   (no colour conversion), cut into the 8x8 blocks of the JPEG grid, and its
   DCT recomputed; dividing by the file's luma steps q2 and rounding recovers
   the quantized coefficients of the last compression. For each of the first
   20 AC frequencies (zig-zag order) the histogram of those integers is
   compared with two models built from an estimate of the never-quantized
   coefficients (the DCT of the same picture on a grid shifted by 4 pixels,
   which the earlier compressions did not see, after Fridrich's calibration):
   single compression (round(x/q2)) and double compression with every
   candidate first step q1 (round(round(x/q1)*q1/q2)). The statistic is the
   log-likelihood gained by the best q1 over the single model, summed over the
   frequencies, divided by the number of coefficients, times 1000 and divided
   by the mean q2 of those frequencies (which removes most of its dependence
   on the last quality). Its spread on single compressions differs between
   quality bands, so the indicator is raised when the statistic reaches the
   threshold of the band of the file's estimated quality, fitted on real
   photographs (forensics/evaluation/jpeg.py; bench/evaluate.py image.jpeg)
   and read from the rate table. "raw_score" is the statistic, "score" the
   probability of double compression measured for pictures with the same
   statistic/threshold ratio (isotonic calibration), "rates" the detection
   and false-alarm rates measured on held-out pictures of the same band.
"""

from __future__ import annotations

import hashlib

import numpy as np

from . import _imageio, _rates
from .base import AnalysisError, finding

NAME = "image.jpeg"
# 1.1.0: a threshold per quality band fitted on real photographs (1.0.0's single threshold gave 11% false
# alarms at qualities 85-92 and missed low-quality recompressions); the indicator's rates are those
# measured on held-out real photographs for this file's quality band (forensics/evaluation/jpeg.py), its
# score the calibrated probability (the statistic is raw_score); the synthetic-set figures are gone.
VERSION = "1.1.0"
TIME_LIMIT = 600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["image/jpeg"]
DESCRIPTION = (
    "JPEG marker structure, quantization tables, estimated libjpeg quality with a standard-table check, "
    "and a double-compression indicator."
)
PARAMETERS: dict = {}

# ---------------------------------------------------------------- constants

ZIGZAG = (
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
)  # fmt: skip

# ITU-T T.81 Annex K tables (row-major), as in libjpeg's jcparam.c.
STD_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
STD_CHROMINANCE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip

SOF_TYPES = {
    0xC0: "baseline DCT",
    0xC1: "extended sequential DCT",
    0xC2: "progressive DCT",
    0xC3: "lossless",
    0xC5: "differential sequential DCT",
    0xC6: "differential progressive DCT",
    0xC7: "differential lossless",
    0xC9: "extended sequential DCT, arithmetic coding",
    0xCA: "progressive DCT, arithmetic coding",
    0xCB: "lossless, arithmetic coding",
    0xCD: "differential sequential DCT, arithmetic coding",
    0xCE: "differential progressive DCT, arithmetic coding",
    0xCF: "differential lossless, arithmetic coding",
}
MARKER_NAMES = {
    0xC4: "DHT",
    0xCC: "DAC",
    0xD8: "SOI",
    0xD9: "EOI",
    0xDA: "SOS",
    0xDB: "DQT",
    0xDD: "DRI",
    0xFE: "COM",
}
MARKER_NAMES.update({m: "SOF" + str(m - 0xC0) for m in SOF_TYPES})
MARKER_NAMES.update({0xE0 + i: f"APP{i}" for i in range(16)})
MARKER_NAMES.update({0xD0 + i: f"RST{i}" for i in range(8)})

MAX_SEGMENTS_LISTED = 256

# Double-compression indicator.
DQ_MODES = 20  # AC frequencies 1..20 in zig-zag order
DQ_MIN_BLOCKS = 1024  # 8x8 blocks needed (256 x 256 pixels)
DQ_MAX_BLOCKS = 65536  # larger images are sampled on a regular block lattice
DQ_MAX_Q1 = 120  # largest first-compression step tried
DQ_THRESHOLD = (
    0.35  # statistic at or over which the indicator is raised (chosen on synthetic images in 1.0.0)
)
# Condition of the indicator's rates: band of the file's own estimated quality (the last compression's),
# and whether its tables are libjpeg's standard ones (forensics/evaluation/jpeg.py measures each band).
DQ_Q2_BANDS = ((60, 74), (75, 84), (85, 92), (93, 100))


def q2_band(quality: int) -> str:
    """The rate-table band of an estimated (last) quality."""
    for lo, hi in DQ_Q2_BANDS:
        if lo <= quality <= hi:
            return f"{lo}-{hi}"
    return f"below {DQ_Q2_BANDS[0][0]}"


LIMITS = [
    "Structure and tables are parsed from the bytes; the quality is the closest libjpeg (IJG) quality and "
    "is exact only when standard_table is true; camera and editor tables (Photoshop, phones) are reported "
    "as non-standard with the nearest IJG quality, which only approximates their 'quality'.",
    "Double-compression indicator: it tests the last compression's 8x8 grid only, so it is close to blind "
    "when the picture was cropped between the two compressions (grid shifted), and after resizing or "
    "rotation by other than 90-degree steps; blind when the two qualities are equal or their steps are "
    "multiples of each other; weak when the last quality is below the first. Only the luma plane is used; "
    f"not applied below {DQ_MIN_BLOCKS} blocks (256x256 pixels); larger images use at most {DQ_MAX_BLOCKS:,} "
    "blocks; CMYK, lossless and arithmetic-coded JPEGs are not tested. The rates apply to the band of "
    "the file's own estimated quality; files with non-standard (camera or editor) tables are outside the "
    "measured set. A raised indicator is a statistical indication for an expert, not proof of editing: "
    f"re-saving an unedited photo is double compression too. Images over {_imageio.MAX_PIXELS:,} pixels are "
    "refused.",
] + _rates.limits(NAME)


# ---------------------------------------------------------------- marker walk


def _u16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def parse_jpeg(data: bytes) -> dict:
    """Walk the JPEG markers from SOI to the first EOI. AnalysisError if the structure is broken."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise AnalysisError("not a JPEG file: it does not start with the SOI marker (FF D8)")
    segments: list[dict] = []
    tables: dict[int, dict] = {}
    dqt_count = 0
    frame = None
    restart_interval = None
    scans = 0
    pos = 2
    end = len(data)
    eoi = None
    while pos < end:
        if data[pos] != 0xFF:
            raise AnalysisError(f"corrupt JPEG structure: expected a marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        start = pos - 1
        pos += 1
        if marker == 0xD9:
            eoi = start
            segments.append({"marker": "EOI", "offset": start})
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7 or marker == 0xD8:
            segments.append({"marker": MARKER_NAMES.get(marker, f"FF{marker:02X}"), "offset": start})
            continue
        if pos + 2 > end:
            raise AnalysisError("the JPEG file is truncated inside a marker segment")
        length = _u16(data, pos)
        if length < 2 or pos + length > end:
            raise AnalysisError(
                f"the JPEG file is truncated or corrupt: segment at byte {start} runs past the end"
            )
        body = data[pos + 2 : pos + length]
        entry = {"marker": MARKER_NAMES.get(marker, f"FF{marker:02X}"), "offset": start, "length": length + 2}
        if 0xE0 <= marker <= 0xEF:
            ident = body[:32].split(b"\x00", 1)[0]
            entry["id"] = ident.decode("ascii", "replace") if ident else ""
        if marker == 0xDB:
            dqt_count += 1
            _parse_dqt(body, tables, start)
        elif marker in SOF_TYPES:
            frame = _parse_sof(marker, body, start)
        elif marker == 0xDD and len(body) >= 2:
            restart_interval = _u16(body, 0)
        segments.append(entry)
        pos += length
        if marker == 0xDA:
            scans += 1
            pos = _skip_entropy(data, pos)
    if eoi is None:
        raise AnalysisError("the JPEG file is truncated: no end-of-image marker (FF D9)")
    if frame is None:
        raise AnalysisError("corrupt JPEG structure: no frame header (SOF)")
    return {
        "segments": segments,
        "tables": tables,
        "dqt_segments": dqt_count,
        "frame": frame,
        "restart_interval": restart_interval,
        "scans": scans,
        "eoi_offset": eoi,
        "trailing": data[eoi + 2 :],
    }


def _skip_entropy(data: bytes, pos: int) -> int:
    """Position of the first marker after entropy-coded data (skipping FF00 and RSTn)."""
    end = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= end:
            raise AnalysisError(
                "the JPEG file is truncated: the scan data ends before the end-of-image marker"
            )
        nxt = data[pos + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
            pos += 1 if nxt == 0xFF else 2
            continue
        return pos


def _parse_dqt(body: bytes, tables: dict, offset: int) -> None:
    i = 0
    while i < len(body):
        pq, tq = body[i] >> 4, body[i] & 0x0F
        size = 128 if pq else 64
        if pq > 1 or tq > 3 or i + 1 + size > len(body):
            raise AnalysisError(
                f"corrupt JPEG structure: invalid quantization table segment at byte {offset}"
            )
        raw = body[i + 1 : i + 1 + size]
        zz = [(raw[2 * k] << 8) | raw[2 * k + 1] for k in range(64)] if pq else list(raw)
        natural = [0] * 64
        for k, value in enumerate(zz):
            natural[ZIGZAG[k]] = value
        if 0 in natural:
            raise AnalysisError(f"corrupt JPEG structure: quantization table {tq} contains a zero step")
        tables[tq] = {"precision": 16 if pq else 8, "values": natural}
        i += 1 + size


def _parse_sof(marker: int, body: bytes, offset: int) -> dict:
    if len(body) < 6:
        raise AnalysisError(f"corrupt JPEG structure: short frame header at byte {offset}")
    count = body[5]
    if len(body) < 6 + 3 * count:
        raise AnalysisError(f"corrupt JPEG structure: short frame header at byte {offset}")
    components = []
    for k in range(count):
        cid, hv, tq = body[6 + 3 * k : 9 + 3 * k]
        components.append({"id": cid, "h": hv >> 4, "v": hv & 0x0F, "table": tq})
    return {
        "process": SOF_TYPES[marker],
        "marker": f"SOF{marker - 0xC0}",
        "precision": body[0],
        "height": _u16(body, 1),
        "width": _u16(body, 3),
        "components": components,
    }


# ---------------------------------------------------------------- quality


def scale_table(base, quality: int, baseline: bool = True) -> list[int]:
    """libjpeg's jpeg_add_quant_table for jpeg_set_quality(quality)."""
    quality = min(max(quality, 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - quality * 2
    out = []
    for v in base:
        t = (v * scale + 50) // 100
        t = min(max(t, 1), 32767)
        if baseline:
            t = min(t, 255)
        out.append(t)
    return out


STD_TABLES = np.array(
    [
        [
            [scale_table(base, q, baseline) for base in (STD_LUMINANCE, STD_CHROMINANCE)]
            for baseline in (True, False)
        ]
        for q in range(1, 101)
    ],
    dtype=np.int64,
)  # [quality - 1, baseline?, luma/chroma, 64]


def estimate_quality(luma: list[int], chroma: list[int] | None) -> dict:
    """Closest IJG quality and whether the tables are exactly libjpeg's at that quality.

    Ties go to the lowest quality, then to the baseline (clamped at 255) variant.
    """
    diff = np.abs(STD_TABLES[:, :, 0, :] - np.asarray(luma, dtype=np.int64)).sum(axis=-1)
    n = 64
    if chroma is not None:
        diff = diff + np.abs(STD_TABLES[:, :, 1, :] - np.asarray(chroma, dtype=np.int64)).sum(axis=-1)
        n += 64
    index = int(np.argmin(diff.reshape(-1)))  # first minimum: lowest quality, baseline first
    q, variant = divmod(index, 2)
    total = int(diff[q, variant])
    return {"quality": q + 1, "standard_table": total == 0, "mean_abs_deviation": round(total / n, 3)}


# ---------------------------------------------------------------- double compression


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    m = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix()


def block_dct(plane: np.ndarray) -> np.ndarray:
    """DCT coefficients (n_blocks x 64, row-major) of the 8x8 blocks of a uint8 plane, sampled if large."""
    rows, cols = plane.shape[0] // 8, plane.shape[1] // 8
    stride_r = stride_c = 1
    while (-(-rows // stride_r)) * (-(-cols // stride_c)) > DQ_MAX_BLOCKS:
        if -(-rows // stride_r) >= -(-cols // stride_c):
            stride_r += 1
        else:
            stride_c += 1
    blocks = plane[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8)[::stride_r, :, ::stride_c, :]
    blocks = blocks.transpose(0, 2, 1, 3).reshape(-1, 8, 8).astype(np.float64) - 128.0
    return (_DCT @ blocks @ _DCT.T).reshape(-1, 64)


def double_compression_statistic(plane: np.ndarray, luma_table: list[int]) -> dict:
    """The documented statistic (see the module docstring) for a decoded luma plane."""
    observed = block_dct(plane)
    calibrated = block_dct(plane[4:, 4:])
    gains, steps, first_steps = [], [], {}
    for zz in range(1, DQ_MODES + 1):
        k = ZIGZAG[zz]
        q2 = int(luma_table[k])
        steps.append(q2)
        n_obs = np.rint(observed[:, k] / q2).astype(np.int64)
        x = calibrated[:, k]
        n_single = np.rint(x / q2).astype(np.int64)
        bound = int(min(max(np.abs(n_obs).max(), np.abs(n_single).max()) + 1, 200))

        def hist(values, bound=bound):
            return np.bincount(np.clip(values, -bound, bound) + bound, minlength=2 * bound + 1).astype(
                np.float64
            )

        h_obs = hist(n_obs)

        def loglik(counts, h_obs=h_obs):
            p = (counts + 0.5) / (counts.sum() + 0.5 * counts.size)
            return float((h_obs * np.log(p)).sum())

        single = loglik(hist(n_single))
        best, best_q1 = single, q2
        for q1 in range(1, min(2 * q2 + 8, DQ_MAX_Q1 + 1)):
            if q1 == q2:
                continue
            value = loglik(hist(np.rint(np.rint(x / q1) * q1 / q2).astype(np.int64)))
            if value > best + 1e-9:
                best, best_q1 = value, q1
        gains.append(best - single)
        if best_q1 != q2 and best - single > 2.0:
            first_steps[str(zz)] = best_q1
    n_coefficients = observed.shape[0] * DQ_MODES
    mean_step = max(float(np.mean(steps)), 3.0)
    statistic = float(sum(gains)) / n_coefficients * 1000.0 / mean_step
    return {
        "statistic": round(statistic, 4),
        "blocks": int(observed.shape[0]),
        "first_steps": first_steps,
        "last_steps": {str(zz): s for zz, s in enumerate(steps, start=1)},
    }


def luma_plane(data: bytes) -> np.ndarray:
    """The decoded luma (Y) plane, without colour conversion when the decoder allows it."""
    im = _imageio.decode(data, formats=("JPEG",), draft_mode="YCbCr")
    if im.mode in ("YCbCr", "L"):
        plane = im.getchannel(0)
    else:
        plane = im.convert("RGB").convert("YCbCr").getchannel(0)
    return np.asarray(plane, dtype=np.uint8)


# ---------------------------------------------------------------- analyze


def _table_rows(values: list[int]) -> list[list[int]]:
    return [values[r * 8 : (r + 1) * 8] for r in range(8)]


def _trailing_kind(trailing: bytes) -> str:
    head = trailing[:8]
    if head.startswith(b"\xff\xd8"):
        return "another JPEG stream (e.g. an MPF preview or an appended image)"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"Rar!"):
        return "a RAR archive"
    if head.startswith(b"7z\xbc\xaf"):
        return "a 7-Zip archive"
    if not trailing.strip(b"\x00"):
        return "zero padding"
    return "unrecognised data"


def analyze(path, params, ctx) -> dict:
    data = _imageio.read_file(path)
    structure = parse_jpeg(data)
    plane = luma_plane(data)  # decodes fully: truncated or corrupt scans fail here
    frame = structure["frame"]
    tables = structure["tables"]
    findings = []

    segments = structure["segments"]
    listed = segments[:MAX_SEGMENTS_LISTED]
    findings.append(
        finding(
            "jpeg_structure",
            "fact",
            {
                "frame": frame,
                "scans": structure["scans"],
                "restart_interval": structure["restart_interval"],
                "dqt_segments": structure["dqt_segments"],
                "segments": listed,
                "segment_count": len(segments),
                "end_of_image_offset": structure["eoi_offset"],
            },
            note=f"{frame['process']}, {frame['width']}x{frame['height']}, {len(frame['components'])} component(s), "
            f"{len(segments)} marker segments",
        )
    )
    findings.append(
        finding(
            "quantization_tables",
            "fact",
            {
                str(tid): {"precision": t["precision"], "rows": _table_rows(t["values"])}
                for tid, t in sorted(tables.items())
            },
            note="DQT tables by table id, 8x8 in row-major (natural) order",
        )
    )

    trailing = structure["trailing"]
    if trailing:
        findings.append(
            finding(
                "data_after_end",
                "fact",
                {
                    "offset": structure["eoi_offset"] + 2,
                    "length": len(trailing),
                    "sha256": hashlib.sha256(trailing).hexdigest(),
                    "first_bytes": trailing[:16].hex(),
                    "kind": _trailing_kind(trailing),
                },
                unit="bytes",
                note=f"{len(trailing)} bytes follow the end-of-image marker: {_trailing_kind(trailing)}",
            )
        )

    components = frame["components"]
    luma_id = components[0]["table"] if components else 0
    if luma_id not in tables:
        raise AnalysisError(
            f"corrupt JPEG: the luma component uses quantization table {luma_id}, which is not defined"
        )
    luma = tables[luma_id]["values"]
    chroma = None
    if len(components) >= 3 and components[1]["table"] in tables:
        chroma = tables[components[1]["table"]]["values"]
    quality = estimate_quality(luma, chroma)
    if quality["standard_table"]:
        note = f"standard libjpeg (IJG) table{'s' if chroma else ''} at quality {quality['quality']}"
    else:
        note = (
            f"non-standard table{'s' if chroma else ''} (camera- or software-specific); closest IJG quality "
            f"{quality['quality']}, mean deviation {quality['mean_abs_deviation']} steps"
        )
    findings.append(
        finding(
            "jpeg_quality",
            "measurement",
            quality["quality"],
            unit="IJG quality (1-100)",
            standard_table=quality["standard_table"],
            mean_abs_deviation=quality["mean_abs_deviation"],
            method="closest libjpeg jpeg_set_quality tables by sum of absolute differences",
            uncertainty=(
                {
                    "value": 0,
                    "unit": "IJG quality",
                    "meaning": "exact: the file's tables are libjpeg's at this quality, and libjpeg's tables "
                    "differ for every quality 1-100 (tested; the evaluation on real photographs recovers every "
                    "quality it wrote)",
                }
                if quality["standard_table"]
                else {
                    "value": None,
                    "unit": "IJG quality",
                    "meaning": "not measured: non-standard tables have no IJG quality, this is only the nearest",
                }
            ),
            note=note,
        )
    )

    condition = {
        "q2_band": q2_band(quality["quality"]),
        "tables": "standard IJG" if quality["standard_table"] else "non-standard",
    }
    blocks = (plane.shape[0] // 8) * (plane.shape[1] // 8)
    if (
        frame["process"] not in ("baseline DCT", "extended sequential DCT", "progressive DCT")
        or len(components) == 4
    ):
        findings.append(
            finding(
                "double_compression",
                "indicator",
                None,
                note=f"not applicable to {frame['process']} JPEGs with {len(components)} components",
            )
        )
    elif blocks < DQ_MIN_BLOCKS:
        findings.append(
            finding(
                "double_compression",
                "indicator",
                None,
                note=f"not applicable: {blocks} 8x8 blocks, fewer than the {DQ_MIN_BLOCKS} the method needs",
            )
        )
    else:
        result = double_compression_statistic(plane, luma)
        rates = _rates.for_condition(NAME, "double_compression", condition)
        if rates.get("measured") and "threshold" in rates:
            threshold = rates["threshold"]  # this quality band's, fitted on the evaluation's fit half
            score = _rates.calibrated(NAME, "double_compression", result["statistic"] / threshold)
        else:
            threshold, score = DQ_THRESHOLD, None  # no measured band: no calibrated probability either
        detected = result["statistic"] >= threshold
        findings.append(
            finding(
                "double_compression",
                "indicator",
                detected,
                score=score,
                raw_score=result["statistic"],
                threshold=threshold,
                blocks=result["blocks"],
                first_steps=result["first_steps"],
                rates=rates,
                note=(
                    "coefficient histograms fit an earlier compression with different steps better than a single "
                    "compression"
                    if detected
                    else "no sign of an earlier compression with different steps (the method is blind to some cases; "
                    "see limits)"
                ),
            )
        )
    return {"findings": findings, "libraries": _imageio.libraries()}
