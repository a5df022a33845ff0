"""Evaluation of audio.frames: real speech, AAC- or MP3-encoded and decoded, cut, saved or re-encoded.

Each item (seeded by its number, so the set is rebuilt bit for bit):

- 20 s of one of the five Asterisk speakers (4 female, 1 male), resampled to
  16 kHz, in a room (RT60 0-0.8 s), through a device chain (none, high-pass,
  AGC, phone = HPF+AGC+noise suppression), with pink, brown or babble noise
  at -60 to -40 dBFS;
- a first lossy encoding as a leak would have had it: AAC (FFmpeg) at 32, 48
  or 64 kbit/s, or none of AAC's business: MP3 at 64 kbit/s or no encoding
  at all (these are the negatives of ``earlier_aac_encoding``); decoded;
- an edit after decoding, at a known time: none, a deleted span (0.3-3 s), an
  insertion of 1-4 s of the same speaker's other speech (decoded from its own
  encoding with a random alignment, or never encoded), or a splice onto
  another recording of the speaker through the same chain;
- the evidence: the edited samples saved as 16-bit WAV, and the same samples
  re-encoded to AAC (48 or 96 kbit/s) or MP3 (64 or 128 kbit/s), one of the
  four per item in turn.

The AAC indicators (``earlier_aac_encoding``, ``frame_grid_change``) count
the items first encoded with AAC as positives, the MP3 ones
(``earlier_mp3_encoding``, ``mp3_grid_change``) those first encoded with MP3;
every other item is a negative of each. The condition a row is for is what
the analyzer computes from the evidence file itself (codec family, bit-rate
band, sample rate).
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from forensics.analyzers import audio_frames
from forensics.analyzers.base import AnalysisContext, validate_parameters

from . import audio, sources, stats, tables

ANALYZER = audio_frames.NAME
SR = 16000
SECONDS = 20.0
FIRSTS = [("aac", 32000), ("aac", 48000), ("aac", 64000), ("mp3", 64000), (None, None)]
EDITS = ["none", "delete", "insert", "splice"]
REENCODES = [("aac", 48000), ("aac", 96000), ("mp3", 64000), ("mp3", 128000)]
SPEAKERS = list(sources.SPEAKERS)
FULL_ITEMS = 200
QUICK_ITEMS = 12
TOLERANCE_S = 0.1  # an indicator's interval, widened by this, must contain the edit time


def _chain(x: np.ndarray, rng: np.random.Generator, babble: np.ndarray, setting: dict) -> np.ndarray:
    x = audio.resample(x, sources.SAMPLE_RATE, SR)
    x = audio.room(x, SR, rng, setting["rt60"])
    x = audio.device(x, SR, setting["device"])
    x = x + audio.noise(len(x), SR, rng, setting["noise"], setting["noise_db"], babble=babble)
    peak = np.max(np.abs(x)) or 1.0
    return x * min(1.0, 0.9 / peak)


def _lossy(x: np.ndarray, codec: str | None, bit_rate: int | None, workdir: str) -> np.ndarray:
    """Encode and decode (AAC or MP3), or return the samples as they are."""
    if codec is None:
        return x
    name = {"aac": "aac", "mp3": "mp3"}[codec]
    data = audio.encode(x, name, SR, bit_rate=bit_rate)
    path = os.path.join(workdir, "first" + audio.suffix(name))
    with open(path, "wb") as f:
        f.write(data)
    from forensics.analyzers import _audio

    return _audio.decode(path).samples.astype(np.float64)


def build(i: int, workdir: str) -> dict:
    """Item ``i``: the edited samples, the edit events (seconds) and what was done."""
    rng = np.random.default_rng(7100 + i)
    speaker = SPEAKERS[i % len(SPEAKERS)]
    first = FIRSTS[(i + i // len(SPEAKERS)) % len(FIRSTS)]
    edit = EDITS[int(rng.integers(len(EDITS)))]
    reencode = REENCODES[int(rng.integers(len(REENCODES)))]
    setting = {
        "rt60": float(rng.choice([0.0, 0.25, 0.5, 0.8])),
        "device": str(rng.choice(["none", "highpass", "agc", "phone"])),
        "noise": str(rng.choice(["pink", "brown", "babble"])),
        "noise_db": float(rng.uniform(-60, -40)),
    }
    other = SPEAKERS[(i + 1) % len(SPEAKERS)]
    babble = audio.resample(sources.speech(other, SECONDS + 6, rng), sources.SAMPLE_RATE, SR)
    x = _chain(sources.speech(speaker, SECONDS + 4, rng), rng, babble, setting)
    y = _lossy(x, *first, workdir)
    events: list[float] = []
    cut = float(rng.uniform(5.0, 14.0))
    c = int(cut * SR)
    if edit == "delete":
        gap = int(rng.uniform(0.3, 3.0) * SR)
        y = np.concatenate([y[:c], y[c + gap :]])
        events = [c / SR]
    elif edit in ("insert", "splice"):
        z = _chain(sources.speech(speaker, SECONDS + 4, rng), rng, babble, setting)
        encoded_insert = edit == "splice" or bool(rng.integers(2))
        z = _lossy(z, *first, workdir) if encoded_insert else z
        start = int(rng.integers(0, 2 * SR))
        if edit == "insert":
            n = int(rng.uniform(1.0, 4.0) * SR)
            y = np.concatenate([y[:c], z[start : start + n], y[c:]])
            events = [c / SR, (c + n) / SR]
        else:
            y = np.concatenate([y[:c], z[c + start :]])
            events = [c / SR]
    y = y[: int(SECONDS * SR)]
    return {
        "item": i,
        "speaker": speaker,
        "first": f"{first[0]} {first[1] // 1000} kbit/s" if first[0] else "none",
        "aac_before": first[0] == "aac",
        "mp3_before": first[0] == "mp3",
        "edit": edit,
        "events": [round(t, 4) for t in events if t < SECONDS - 0.5],
        "samples": y,
        "reencode": reencode,
        **setting,
    }


def _analyse(path: str) -> dict:
    params = validate_parameters(audio_frames.PARAMETERS, {})
    return audio_frames.analyze(path, params, AnalysisContext())


def run_item(i: int) -> list[dict]:
    """Build item ``i``, analyse its WAV and its re-encoded evidence; one record per evidence file."""
    with tempfile.TemporaryDirectory(prefix="frames-eval-") as workdir:
        item = build(i, workdir)
        y = item.pop("samples")
        out = []
        for codec, bit_rate in [("wav", None), item["reencode"]]:
            path = os.path.join(workdir, "evidence" + audio.suffix(codec))
            with open(path, "wb") as f:
                f.write(audio.encode(y, codec, SR, bit_rate=bit_rate))
            result = _analyse(path)
            found = result["findings"]
            out.append(
                {
                    **{k: v for k, v in item.items() if k != "reencode"},
                    "evidence_file": f"{codec} {bit_rate // 1000} kbit/s" if bit_rate else codec,
                    "condition": result["condition"],
                    "seconds": next(f["value"]["analysed_s"] for f in found if f["name"] == "stream"),
                    "earlier": [f["raw_score"] for f in found if f["name"] == "earlier_aac_encoding"],
                    "changes": [
                        (f["at"][0], f["at"][1], f["value"]["estimate_s"], f["raw_score"])
                        for f in found
                        if f["name"] == "frame_grid_change"
                    ],
                    "earlier_mp3": [f["raw_score"] for f in found if f["name"] == "earlier_mp3_encoding"],
                    "mp3_changes": [
                        (f["at"][0], f["at"][1], f["value"]["estimate_s"], f["raw_score"])
                        for f in found
                        if f["name"] == "mp3_grid_change"
                    ],
                }
            )
        return out


def _match(record: dict, changes: str = "changes") -> tuple[list[bool], list[tuple[float, int]], list[float]]:
    """(per event: found?, per change: (raw score, true?), localisation errors of found events).

    ``changes`` names the record's list of grid changes (AAC or MP3).
    """
    found = []
    errors = []
    for t in record["events"]:
        hits = [c for c in record[changes] if c[0] - TOLERANCE_S <= t <= c[1] + TOLERANCE_S]
        found.append(bool(hits))
        if hits:
            errors.append(min(abs(c[2] - t) for c in hits))
    scored = []
    for c in record[changes]:
        ok = any(c[0] - TOLERANCE_S <= t <= c[1] + TOLERANCE_S for t in record["events"])
        scored.append((c[3], int(ok)))
    return found, scored, errors


def _describe(condition: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in condition.items())


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _calibration(pairs: list[tuple[int, float, int]]) -> tuple[list, list]:
    """Fit on even items, reliability on odd items: (map, reliability table)."""
    fit = [(s, y) for i, s, y in pairs if i % 2 == 0]
    held = [(s, y) for i, s, y in pairs if i % 2 == 1]
    if not fit:
        return [], []
    points = stats.isotonic([s for s, _ in fit], [y for _, y in fit])
    mapping = [[round(float(s), 4), round(float(p), 3)] for s, p in points]
    rel = (
        stats.reliability([stats.apply_map(mapping, s) for s, _ in held], [y for _, y in held])
        if held
        else []
    )
    return mapping, rel


# per codec family: (record key: encoded before?, earlier-encoding scores, grid changes, indicator names)
FAMILIES = [
    ("aac_before", "earlier", "changes", "earlier_aac_encoding", "frame_grid_change"),
    ("mp3_before", "earlier_mp3", "mp3_changes", "earlier_mp3_encoding", "mp3_grid_change"),
]


def _family(records: list[dict], conditions: list, before: str, earlier: str, changes: str, name: str):
    """Rate rows, calibration pairs and report lines of one codec family's two indicators."""
    earlier_rows, change_rows = [], []
    earlier_pairs, change_pairs = [], []
    report = []
    for cond in conditions:
        cd = dict(cond)
        rs = [r for r in records if r["condition"] == cd]
        pos = [r for r in rs if r[before]]
        neg = [r for r in rs if not r[before]]
        earlier_rows.append(
            tables.rate_row(
                cd,
                positives=len(pos),
                detected=sum(1 for r in pos if r[earlier]),
                negatives=len(neg),
                false_alarms=sum(1 for r in neg if r[earlier]),
            )
        )
        events = found = false_alarms = 0
        errors: list[float] = []
        for r in rs:
            f, scored, err = _match(r, changes)
            if r[before]:
                events += len(f)
                found += sum(f)
                errors += err
            false_alarms += sum(1 for _, ok in scored if not ok)
        hours = sum(r["seconds"] for r in rs) / 3600
        change_rows.append(
            tables.rate_row(
                cd,
                positives=events,
                detected=found,
                negatives=hours,
                false_alarms=false_alarms,
                localisation_p50_s=_pct(errors, 50),
                localisation_p90_s=_pct(errors, 90),
            )
        )
    for r in records:
        earlier_pairs += [(r["item"], s, int(r[before])) for s in r[earlier]]
        change_pairs += [(r["item"], s, ok) for s, ok in _match(r, changes)[1]]
    # per first encoding and edit (context for the README; not quoted by findings)
    for ev in sorted({r["evidence_file"] for r in records}):
        for first in sorted({r["first"] for r in records}):
            rs = [r for r in records if r["evidence_file"] == ev and r["first"] == first]
            if not rs:
                continue
            det = sum(1 for r in rs if r[earlier])
            ev_found = [x for r in rs for x in _match(r, changes)[0]]
            ci = stats.wilson(sum(ev_found), len(ev_found)) if ev_found else None
            report.append(
                f"evidence {ev}, first encoding {first}: {name} in {det}/{len(rs)} files; "
                f"edits found {sum(ev_found)}/{len(ev_found)}"
                + (f" (95% CI {100 * ci[0]:.0f}-{100 * ci[1]:.0f}%)" if ci else "")
            )
    return earlier_rows, change_rows, earlier_pairs, change_pairs, report


def _localisation(records: list[dict], conditions: list, before: str, changes: str, label: str) -> list[str]:
    """Localisation per kind of edit (an insertion of material without a grid
    gives one change spanning it: its estimate is the middle, its interval
    holds both ends)."""
    report = []
    for cd in [dict(c) for c in conditions]:
        for kind in EDITS[1:]:
            rs = [r for r in records if r["condition"] == cd and r[before] and r["edit"] == kind]
            found, errors, widths = 0, [], []
            total = 0
            for r in rs:
                f, _, err = _match(r, changes)
                total += len(f)
                found += sum(f)
                errors += err
                widths += [c[1] - c[0] for c in r[changes]]
            if total:
                report.append(
                    f"{label}{_describe(cd)}, {kind}: found {found}/{total}; |estimate - edit| p50 "
                    f"{_pct(errors, 50)} s, p90 {_pct(errors, 90)} s; reported interval width median "
                    f"{_pct(widths, 50)} s"
                )
    return report


def summarise(records: list[dict]) -> dict:
    conditions = sorted({tuple(sorted(r["condition"].items())) for r in records})
    aac = _family(records, conditions, *FAMILIES[0][:3], FAMILIES[0][3])
    mp3 = _family(records, conditions, *FAMILIES[1][:3], FAMILIES[1][3])
    report = aac[4] + _localisation(records, conditions, "aac_before", "changes", "")
    report += mp3[4] + _localisation(records, conditions, "mp3_before", "mp3_changes", "MP3 grid: ")
    indicators = {}
    for (earlier_rows, change_rows, earlier_pairs, change_pairs, _), (_, _, _, e_name, c_name), codec in [
        (aac, FAMILIES[0], "AAC"),
        (mp3, FAMILIES[1], "MP3"),
    ]:
        e_map, e_rel = _calibration(earlier_pairs)
        c_map, c_rel = _calibration(change_pairs)
        first = "32-64 kbit/s" if codec == "AAC" else "libmp3lame 64 kbit/s"
        indicators[e_name] = {
            "condition": ["evidence", "sample_rate"],
            "found_when": f"the file's audio was {codec}-encoded ({first}) before it became this file "
            f"(per file; false alarms per file never {codec}-encoded)",
            "false_alarm_unit": "file",
            "rows": earlier_rows,
            "calibration": e_map,
            "reliability": e_rel,
        }
        indicators[c_name] = {
            "condition": ["evidence", "sample_rate"],
            "found_when": f"an edit made after an {codec} encoding lies in a reported interval widened by "
            f"{TOLERANCE_S} s (edits in audio never {codec}-encoded are not counted as positives)",
            "false_alarm_unit": "hour",
            "rows": change_rows,
            "calibration": c_map,
            "reliability": c_rel,
        }
    # the AAC indicators first, then the MP3 ones (the order of the stored table)
    order = ["earlier_aac_encoding", "frame_grid_change", "earlier_mp3_encoding", "mp3_grid_change"]
    return {"indicators": {k: indicators[k] for k in order}, "report": report}


SET = (
    "{n} items of 20 s of real speech (Debian's Asterisk prompts: 4 female, 1 male speaker), "
    "16 kHz, rooms RT60 0-0.8 s, device chains none/high-pass/AGC/phone, pink/brown/babble noise "
    "at -60 to -40 dBFS; first encoding AAC 32/48/64 kbit/s (FFmpeg aac), MP3 64 kbit/s or none, "
    "decoded; edits after decoding: none, deleted span 0.3-3 s, insertion of 1-4 s (own encoding "
    "at a random alignment, or never encoded), splice onto another recording; each item saved as "
    "16-bit WAV and re-encoded to one of AAC 48/96 kbit/s or MP3 64/128 kbit/s (16 kHz)"
)


def evaluate(quick: bool, jobs: int) -> dict:
    n = QUICK_ITEMS if quick else FULL_ITEMS
    items = list(range(n))
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            batches = list(pool.map(run_item, items))
    else:
        batches = [run_item(i) for i in items]
    records = [r for batch in batches for r in batch]
    out = summarise(records)
    out["set"] = SET.format(n=n)
    return out
