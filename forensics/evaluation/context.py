"""Evaluation of audio.context: real conversations, clips edited at known times, leak codecs.

The set (rebuilt bit for bit from its seeds):

- scenes: conversations of two or three speakers of the Asterisk prompt sets
  (``sources``: four female speakers in English, Spanish, French and Russian and
  a male speaker in Italian; every other scene has the male speaker), taking
  turns of 2-9 s with pauses of 0.15-0.7 s inside a turn and 0.3-1.6 s between
  turns, each speaker at their own level (+-4 dB); a room (RT60 0.25-0.7 s),
  background noise (pink, brown or babble of the speakers not in the scene) at
  15-30 dB SNR and a device chain (none, high-pass, AGC, or a phone's
  high-pass + AGC + noise suppression); the reference recording is this scene,
  kept as WAV or AAC (alternately);
- clips cut from the scene before its encoding, each with its edits at known
  times: unedited excerpts (20-40 s: the false alarms), removals (two or three
  joins, 0.3-15 s removed, about half of the cuts made inside pauses on both
  sides, the others in speech), reorderings (a part of 3-10 s moved after the
  next one), insertions of foreign speech (0.7-4 s of a speaker not in the
  scene, through another room and the same device) and of silence (0.5-3 s of
  the scene's background, as room tone); joins crossfaded over 5 ms; a third of
  the clips then resampled 1-5 % faster or slower (time and pitch together);
- every clip encoded through WAV, Opus 24 kbit/s, AAC 48 kbit/s, MP3 64 kbit/s
  and AMR-NB 12.2 kbit/s (``audio.CODECS``) and aligned against its scene's
  reference.

Conditions: the clip's codec (read by the analyzer from the file), whether the
analyzer measured a speed change, and for joins and removals whether the join
lies in a pause (the analyzer's join span is wider than ``JOIN_PAUSE_S``; the
rows of positives use the truth: both cut points in pauses of the dry speech).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio, sources, stats, tables

ANALYZER = "audio.context"
SR = 16000
CODECS = ("wav", "opus", "aac", "mp3", "amr_nb")
QUICK_CODECS = ("wav", "opus", "amr_nb")
TOL_S = 0.25  # a join within this distance of the truth; a duration within this of the truth
FULL_SCENES, QUICK_SCENES = 10, 2
FULL_SECONDS, QUICK_SECONDS = 180.0, 120.0
# clip plan per scene: edit type -> count
PLAN = {"none": 3, "removal": 3, "reorder": 1, "foreign": 2, "silence": 1}
QUICK_PLAN = {"none": 2, "removal": 2, "reorder": 1, "foreign": 1, "silence": 1}
INDICATORS = ("removed", "reordered", "inserted")


@dataclass
class Piece:
    clip_at: tuple[float, float]
    ref: tuple[float, float] | None  # None: material not in the reference
    kind: str = "reference"  # "reference" | "foreign" | "silence"


@dataclass
class Clip:
    scene: int
    index: int
    edit: str
    pieces: list[Piece]
    pause: list[bool]  # per join (pieces[1:]): both cut points in pauses
    speed: float = 1.0  # reference seconds per clip second
    samples: np.ndarray = field(default=None, repr=False)

    @property
    def parts(self) -> list[Piece]:
        return [p for p in self.pieces if p.ref is not None]

    def joins(self) -> list[tuple[float, bool]]:
        return [(p.clip_at[0], pz) for p, pz in zip(self.pieces[1:], self.pause, strict=True)]

    def removed(self) -> list[dict]:
        parts, out = self.parts, []
        for a, b in zip(parts, parts[1:], strict=False):
            if b.ref[0] > a.ref[1] + 0.05:
                gap = _uncovered((a.ref[1], b.ref[0]), [p.ref for p in parts])
                if gap > 0.05:
                    i = self.pieces.index(b)
                    out.append({"join": b.clip_at[0], "duration": gap, "pause": self.pause[i - 1]})
        return out

    def displaced(self) -> list[Piece]:
        parts = self.parts
        return [
            a
            for i, a in enumerate(parts)
            if any(
                (j > i and b.ref[0] < a.ref[0]) or (j < i and b.ref[0] > a.ref[0])
                for j, b in enumerate(parts)
            )
        ]

    def inserted(self) -> list[Piece]:
        return [p for p in self.pieces if p.ref is None]


def _uncovered(span, spans) -> float:
    s, e = span
    cursor, total = s, 0.0
    for a, b in sorted(spans):
        if b <= cursor or a >= e:
            continue
        if a > cursor:
            total += min(a, e) - cursor
        cursor = max(cursor, b)
    return total + max(0.0, e - cursor)


# --- scenes -----------------------------------------------------------------------------------------


@dataclass
class Scene:
    seed: int
    samples: np.ndarray  # the recording at SR (before encoding)
    silent: np.ndarray  # per 10 ms of the dry speech: no one speaks
    speakers: list[str]
    others: list[str]
    rt60: float
    noise_kind: str
    noise_db: float
    device: str
    reference_codec: str
    gain: float  # applied to the scene after its device: foreign material gets the same
    used: set  # (speaker, prompt index) already in the scene, its babble or its foreign material

    def pause_at(self, t: float, margin: float = 0.1) -> bool:
        a, b = int((t - margin) * 100), int((t + margin) * 100) + 1
        return bool(a >= 0 and b <= self.silent.size and self.silent[a:b].all())

    def pauses(self, lo: float, hi: float, min_s: float = 0.3) -> list[tuple[float, float]]:
        """Runs of silence of the dry speech of at least ``min_s``, between lo and hi (s)."""
        s = self.silent.astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], s, [0]])))
        out = []
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            a_s, b_s = a / 100, b / 100
            if b_s - a_s >= min_s and a_s >= lo and b_s <= hi:
                out.append((a_s, b_s))
        return out


def _speakers(seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(10_000 + seed)
    female = [s for s in sources.SPEAKERS if sources.SPEAKERS[s][1] == "female"]
    male = [s for s in sources.SPEAKERS if sources.SPEAKERS[s][1] == "male"]
    count = 2 + seed % 2
    chosen = list(rng.choice(female, size=count - 1 if seed % 2 == 0 else count, replace=False))
    if seed % 2 == 0:
        chosen.insert(int(rng.integers(len(chosen) + 1)), male[0])
    others = [s for s in sources.SPEAKERS if s not in chosen]
    return chosen, others


def _speech(speaker: str, seconds: float, rng, used: set, pause=(0.2, 0.9)) -> np.ndarray:
    """Like ``sources.speech``, but never the same prompt twice within a scene (``used``).

    A real conversation never repeats a stretch of speech sample for sample; a prompt drawn
    twice would be material the reference holds twice (and the clip could match either).
    """
    pool = sources.prompts(speaker)
    parts, total, target = [], 0, int(seconds * 8000)
    while total < target:
        free = [i for i in range(len(pool)) if (speaker, i) not in used]
        if not free:
            raise sources.MissingSource(f"{speaker}: not enough prompts for the scene")
        i = free[int(rng.integers(len(free)))]
        used.add((speaker, i))
        x = sources._trim(sources._read(pool[i].path))
        if len(x) < 4000:
            continue
        x = x * (audio.db(-20) / (np.sqrt(np.mean(x**2)) or 1.0))
        gap = np.zeros(int(rng.uniform(*pause) * 8000))
        parts += [x, gap]
        total += x.size + gap.size
    return np.concatenate(parts)[:target]


def _noise(n: int, rng, kind: str, level_db: float, others: list[str], used: set) -> np.ndarray:
    if kind == "babble":
        seconds = n / SR + 1
        bab = sum(audio.resample(_speech(s, seconds, rng, used), 8000, SR) for s in others)
        return audio.noise(n, SR, rng, "babble", level_db, babble=bab)
    return audio.noise(n, SR, rng, kind, level_db)


def scene(seed: int, seconds: float) -> Scene:
    rng = np.random.default_rng(seed)
    speakers, others = _speakers(seed)
    gains = {s: audio.db(rng.uniform(-4, 4)) for s in speakers}
    used: set = set()
    parts, total, turn = [], 0, 0
    target = int(seconds * 8000)
    while total < target:
        who = (
            speakers[turn % len(speakers)]
            if rng.random() < 0.8
            else speakers[int(rng.integers(len(speakers)))]
        )
        x = _speech(who, rng.uniform(2.0, 9.0), rng, used, pause=(0.15, 0.7)) * gains[who]
        gap = np.zeros(int(rng.uniform(0.3, 1.6) * 8000))
        parts += [x, gap]
        total += x.size + gap.size
        turn += 1
    dry8 = np.concatenate([np.zeros(4000)] + parts)[:target]
    n10 = dry8.size // 80
    energy = np.mean(dry8[: n10 * 80].reshape(n10, 80) ** 2, axis=1)
    silent = energy < audio.db(-50) ** 2
    dry = audio.resample(dry8, 8000, SR)
    rt60 = float(rng.choice([0.25, 0.45, 0.7]))
    kind = str(rng.choice(["pink", "brown", "babble"]))
    snr = float(rng.uniform(15, 30) if kind != "babble" else rng.uniform(20, 30))
    device = ("none", "highpass", "agc", "phone")[seed % 4]
    wet = audio.room(dry, SR, rng, rt60)
    level = 10 * np.log10(np.mean(wet[wet != 0] ** 2) + 1e-12)
    x = wet + _noise(wet.size, rng, kind, level - snr, others, used)
    x = audio.device(x, SR, device)
    gain = audio.db(-3) / (np.max(np.abs(x)) or 1.0)
    x = x * gain
    return Scene(
        seed=seed,
        samples=x,
        silent=silent,
        speakers=speakers,
        others=others,
        rt60=rt60,
        noise_kind=kind,
        noise_db=level - snr,
        device=device,
        reference_codec="wav" if seed % 2 == 0 else "aac",
        gain=gain,
        used=used,
    )


def _foreign(sc: Scene, rng, seconds: float) -> np.ndarray:
    who = sc.others[int(rng.integers(len(sc.others)))]
    x8 = _speech(who, seconds + 1.0, rng, sc.used, pause=(0.15, 0.4))
    x8 = sources._trim(x8[: int(seconds * 8000)])
    x = audio.resample(x8, 8000, SR) * audio.db(rng.uniform(-4, 4))
    x = audio.room(x, SR, rng, float(rng.choice([0.2, 0.5])))
    x = x + _noise(
        x.size, rng, sc.noise_kind if sc.noise_kind != "babble" else "pink", sc.noise_db, sc.others, sc.used
    )
    return audio.device(x, SR, sc.device) * sc.gain


def _room_tone(sc: Scene, rng, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    kind = sc.noise_kind if sc.noise_kind != "babble" else "pink"
    return audio.device(_noise(n, rng, kind, sc.noise_db, sc.others, sc.used), SR, sc.device) * sc.gain


# --- clips ------------------------------------------------------------------------------------------


def _cut_point(sc: Scene, rng, lo: float, hi: float, in_pause: bool) -> float:
    """A cut time in [lo, hi]: inside a pause of the dry speech (anywhere in it), or in speech."""
    if in_pause:
        ps = [(a + 0.1, b - 0.1) for a, b in sc.pauses(lo, hi)]
        if ps:
            a, b = ps[int(rng.integers(len(ps)))]
            return float(rng.uniform(a, b))
    for _ in range(50):
        t = float(rng.uniform(lo, hi))
        if not sc.pause_at(t, 0.0):
            return t
    return float(rng.uniform(lo, hi))


def _fade(x: np.ndarray, ms: float = 5.0) -> np.ndarray:
    n = min(int(ms / 1000 * SR), x.size // 2)
    if n:
        ramp = np.linspace(0, 1, n)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def make_clip(sc: Scene, index: int, edit: str) -> Clip:
    rng = np.random.default_rng([sc.seed, index, 7])
    dur = sc.samples.size / SR
    plan: list = []  # (kind, start, end) in reference seconds, or (kind, samples)
    pause_flags: list[bool] = []
    if edit == "none":
        length = rng.uniform(20, 40)
        s = rng.uniform(1, dur - length - 1)
        plan = [("reference", s, s + length)]
    elif edit == "removal":
        joins = int(rng.integers(2, 4))
        t = rng.uniform(1, 20)
        for k in range(joins + 1):
            length = rng.uniform(4, 12)
            in_pause = bool(rng.random() < 0.5)
            end = _cut_point(sc, rng, t + length, t + length + 3, in_pause) if k < joins else t + length
            plan.append(("reference", t, end))
            if k < joins:
                gap = float(rng.choice([rng.uniform(0.3, 1.5), rng.uniform(1.5, 5), rng.uniform(5, 15)]))
                t = _cut_point(sc, rng, end + gap, end + gap + 3, in_pause)
                pause_flags.append(sc.pause_at(end) and sc.pause_at(t))
        if plan[-1][2] > dur - 0.5:
            return make_clip(sc, index + 1000, edit)
    elif edit == "reorder":
        s = rng.uniform(1, dur - 45)
        in_pause = [bool(rng.random() < 0.5) for _ in range(3)]
        b = _cut_point(sc, rng, s + 6, s + 12, in_pause[0])
        c = _cut_point(sc, rng, b + 3, b + 10, in_pause[1])
        d = _cut_point(sc, rng, c + 5, c + 12, in_pause[2])
        plan = [("reference", s, b), ("reference", c, d), ("reference", b, c)]
        pause_flags = [sc.pause_at(b) and sc.pause_at(c), sc.pause_at(d) and sc.pause_at(b)]
    elif edit in ("foreign", "silence"):
        s = rng.uniform(1, dur - 40)
        in_pause = bool(rng.random() < 0.5)
        m = _cut_point(sc, rng, s + 8, s + 18, in_pause)
        e = m + rng.uniform(8, 18)
        seconds = rng.uniform(0.7, 4.0) if edit == "foreign" else rng.uniform(0.5, 3.0)
        x = _foreign(sc, rng, seconds) if edit == "foreign" else _room_tone(sc, rng, seconds)
        plan = [("reference", s, m), (edit, x), ("reference", m, e)]
        pause_flags = [sc.pause_at(m), sc.pause_at(m)]
    else:
        raise ValueError(f"unknown edit {edit!r}")

    chunks, pieces, cursor = [], [], 0
    for item in plan:
        if item[0] == "reference":
            a, b = round(item[1] * SR), round(item[2] * SR)
            x, ref = sc.samples[a:b], (a / SR, b / SR)
        else:
            x, ref = item[1], None
        chunks.append(_fade(x) if len(plan) > 1 else x)
        pieces.append(Piece(((cursor) / SR, (cursor + x.size) / SR), ref, item[0]))
        cursor += x.size
    y = np.concatenate(chunks)
    speed = 1.0
    if rng.random() < 1 / 3:
        pct = float(rng.choice([1, 2, 3, 4, 5])) * float(rng.choice([-1, 1]))
        speed = 1 + pct / 100  # > 1: the clip plays faster, each clip second holds `speed` reference seconds
        y = audio.resample(y, int(round(SR * speed)), SR)
        for p in pieces:
            p.clip_at = (p.clip_at[0] / speed, p.clip_at[1] / speed)
    y *= audio.db(-3) / (np.max(np.abs(y)) or 1.0)
    return Clip(sc.seed, index, edit, pieces, pause_flags, speed, y)


# --- scoring ----------------------------------------------------------------------------------------


def _dist(t: float, span) -> float:
    lo, hi = span
    return max(0.0, lo - t, t - hi)


def _overlap(a, b) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def score(clip: Clip, findings: list[dict]) -> dict:
    """What the analyzer found in one clip, against the truth."""
    segs = [f for f in findings if f["name"] == "segment"]
    ind = [f for f in findings if f["name"] in INDICATORS]
    speed = next((f["value"] for f in findings if f["name"] == "speed_ratio"), 1.0)
    used: set[int] = set()
    out = {"joins": [], "removed": [], "reordered": [], "inserted": [], "absorbed": []}

    # every edit point against the nearest join the analyzer reports (its span)
    spans = []
    for s in segs:
        spans.append(tuple(s["value"]["start_within"]))
        spans.append(tuple(s["value"]["end_within"]))
    for f in ind:
        if f["name"] == "inserted" and f["value"]["kind"] == "not_in_reference":
            spans += [(f["at"][0], f["at"][0]), (f["at"][1], f["at"][1])]
    for t, pause in clip.joins():
        best = min(spans, key=lambda sp: _dist(t, sp), default=None)
        err = _dist(t, best) if best else 99.0
        centre = abs(t - (best[0] + best[1]) / 2) if best else 99.0
        width = (best[1] - best[0]) if best else 0.0
        out["joins"].append({"pause": pause, "error": err, "centre_error": centre, "width": width})

    for truth in clip.removed():
        hit = None
        for f in ind:
            if (
                f["name"] == "removed"
                and id(f) not in used
                and _dist(truth["join"], f["at"]) <= TOL_S
                and abs(f["value"]["duration_s"] - truth["duration"]) <= TOL_S
            ):
                hit = f
                break
        if hit is not None:
            used.add(id(hit))
        out["removed"].append({"pause": truth["pause"], "found": hit is not None})

    displaced = [p.clip_at for p in clip.displaced()]
    if displaced:
        hit = None
        for f in ind:
            if f["name"] == "reordered" and any(
                _overlap(f["at"], d) >= 0.5 * (d[1] - d[0]) for d in displaced
            ):
                hit = hit or f
                used.add(id(f))
        out["reordered"].append({"found": hit is not None})

    for piece in clip.inserted():
        span = piece.clip_at
        length = span[1] - span[0]
        hit = None
        for f in ind:
            if f["name"] != "inserted" or id(f) in used:
                continue
            if f["value"]["kind"] == "not_in_reference":
                ok = _overlap(f["at"], span) >= 0.5 * length and abs(
                    f["value"]["duration_s"] - length
                ) <= max(TOL_S, 0.25 * length)
            else:
                gap = max(0.0, f["at"][0] - span[1], span[0] - f["at"][1])
                ok = gap <= TOL_S and (
                    abs(f["value"]["duration_s"] - length * clip.speed) <= max(TOL_S, 0.25 * length)
                )
            if ok:
                hit = f
                break
        if hit is not None:
            used.add(id(hit))
        out["inserted"].append(
            {"material": "speech" if piece.kind == "foreign" else "silence", "found": hit is not None}
        )
        if piece.kind == "foreign":
            out["absorbed"].append(sum(_overlap(s["at"], span) for s in segs))

    out["spurious"] = [
        {"name": f["name"], "condition": f["rates"]["condition"], "raw": f["raw_score"]}
        for f in ind
        if id(f) not in used
    ]
    out["true"] = [
        {"name": f["name"], "condition": f["rates"]["condition"], "raw": f["raw_score"]}
        for f in ind
        if id(f) in used
    ]
    out["speed_measured"] = float(speed)
    out["duration"] = clip.pieces[-1].clip_at[1]
    return out


# --- running ----------------------------------------------------------------------------------------


def _analyse_scene(args) -> list[dict]:
    seed, seconds, plan, codecs = args
    import django

    django.setup()
    from forensics.analyzers import audio_context
    from forensics.analyzers.base import AnalysisContext

    sc = scene(seed, seconds)
    clips, index = [], 0
    for edit, count in plan.items():
        for _ in range(count):
            clips.append(make_clip(sc, index, edit))
            index += 1
    records = []
    with tempfile.TemporaryDirectory(prefix="context-eval-") as tmp:
        ref_path = Path(tmp) / f"reference{audio.suffix(sc.reference_codec)}"
        ref_path.write_bytes(audio.encode(sc.samples, sc.reference_codec, SR))
        for clip in clips:
            for codec in codecs:
                path = Path(tmp) / f"clip{clip.index}{audio.suffix(codec)}"
                path.write_bytes(audio.encode(clip.samples, codec, SR))
                out = audio_context.analyze(str(path), {"reference": str(ref_path)}, AnalysisContext())
                rec = score(clip, out["findings"])
                rec.update(
                    scene=seed,
                    clip=clip.index,
                    edit=clip.edit,
                    codec=codec,
                    speed_true=clip.speed,
                    speed="changed" if clip.speed != 1.0 else "same",
                )
                records.append(rec)
    return records


def _pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def evaluate(quick: bool, jobs: int) -> dict:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    seeds = range(QUICK_SCENES if quick else FULL_SCENES)
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    plan = QUICK_PLAN if quick else PLAN
    codecs = QUICK_CODECS if quick else CODECS
    tasks = [(s, seconds, plan, codecs) for s in seeds]
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_analyse_scene, tasks))
    else:
        results = [_analyse_scene(t) for t in tasks]
    records = [r for rs in results for r in rs]
    return summarise(records, codecs, quick)


def _cond(codec, speed, **more) -> dict:
    return {"codec": codec, "speed": speed, **more}


def summarise(records: list[dict], codecs, quick: bool) -> dict:
    hours: dict = {}
    for r in records:
        hours[(r["codec"], r["speed"])] = hours.get((r["codec"], r["speed"]), 0.0) + r["duration"] / 3600

    def false_alarms(name, cond):
        return sum(
            1
            for r in records
            for f in r["spurious"]
            if f["name"] == name and all(str(f["condition"].get(k)) == str(v) for k, v in cond.items())
        )

    def calibration(name):
        fit_s, fit_y, rel_s, rel_y = [], [], [], []
        for r in records:
            for f, y in [(f, 1) for f in r["true"]] + [(f, 0) for f in r["spurious"]]:
                if f["name"] != name:
                    continue
                (fit_s if r["scene"] % 2 == 0 else rel_s).append(f["raw"])
                (fit_y if r["scene"] % 2 == 0 else rel_y).append(y)
        points = [[round(s, 3), round(p, 3)] for s, p in stats.isotonic(fit_s, fit_y)] if fit_s else []
        cal = [stats.apply_map(points, s) for s in rel_s] if points else []
        return points, stats.reliability(cal, rel_y) if cal else []

    indicators, report = {}, []
    speeds = ("same", "changed")

    # joins: every edit point against the analyzer's nearest join span
    rows = []
    for codec in codecs:
        for speed in speeds:
            for pause in ("pause", "speech"):
                items = [
                    j
                    for r in records
                    if r["codec"] == codec and r["speed"] == speed
                    for j in r["joins"]
                    if ("pause" if j["pause"] else "speech") == pause
                ]
                if not items:
                    continue
                errors = [j["error"] for j in items]
                rows.append(
                    tables.rate_row(
                        _cond(codec, speed, join=pause),
                        len(items),
                        sum(1 for e in errors if e <= TOL_S),
                        0,
                        0,
                        join_error_p50_s=_pct(errors, 50),
                        join_error_p90_s=_pct(errors, 90),
                        join_centre_error_p90_s=_pct([j["centre_error"] for j in items], 90),
                        join_span_p90_s=_pct([j["width"] for j in items], 90),
                    )
                )
    indicators["join"] = {
        "condition": ["codec", "speed", "join"],
        "found_when": (
            f"an edit point lies within {TOL_S:g} s of the join span the analyzer reports (a point in speech, "
            "the span of equally consistent positions in a pause); error = distance from the true edit point "
            "to that span"
        ),
        "false_alarm_unit": "hour",
        "rows": rows,
        "calibration": [],
        "reliability": [],
    }

    # removed
    rows = []
    for codec in codecs:
        for speed in speeds:
            for pause in ("pause", "speech"):
                items = [
                    x
                    for r in records
                    if r["codec"] == codec and r["speed"] == speed
                    for x in r["removed"]
                    if ("pause" if x["pause"] else "speech") == pause
                ]
                cond = _cond(codec, speed, join=pause)
                rows.append(
                    tables.rate_row(
                        cond,
                        len(items),
                        sum(x["found"] for x in items),
                        round(hours.get((codec, speed), 0.0), 4),
                        false_alarms("removed", cond),
                    )
                )
    points, rel = calibration("removed")
    indicators["removed"] = {
        "condition": ["codec", "speed", "join"],
        "found_when": (
            f"its join span lies within {TOL_S:g} s of the true join and its duration within {TOL_S:g} s of the "
            "removed duration; a false alarm (on any clip, edited or not) matches no true removal"
        ),
        "false_alarm_unit": "hour",
        "rows": rows,
        "calibration": points,
        "reliability": rel,
    }

    # reordered
    rows = []
    for codec in codecs:
        for speed in speeds:
            items = [
                x for r in records if r["codec"] == codec and r["speed"] == speed for x in r["reordered"]
            ]
            cond = _cond(codec, speed)
            rows.append(
                tables.rate_row(
                    cond,
                    len(items),
                    sum(x["found"] for x in items),
                    round(hours.get((codec, speed), 0.0), 4),
                    false_alarms("reordered", cond),
                )
            )
    points, rel = calibration("reordered")
    indicators["reordered"] = {
        "condition": ["codec", "speed"],
        "found_when": "a reordered finding covers at least half of a part that is out of the reference's order",
        "false_alarm_unit": "hour",
        "rows": rows,
        "calibration": points,
        "reliability": rel,
    }

    # inserted
    rows = []
    for codec in codecs:
        for speed in speeds:
            for material in ("speech", "silence"):
                items = [
                    x
                    for r in records
                    if r["codec"] == codec and r["speed"] == speed
                    for x in r["inserted"]
                    if x["material"] == material
                ]
                cond = _cond(codec, speed, material=material)
                rows.append(
                    tables.rate_row(
                        cond,
                        len(items),
                        sum(x["found"] for x in items),
                        round(hours.get((codec, speed), 0.0), 4),
                        false_alarms("inserted", cond),
                    )
                )
    points, rel = calibration("inserted")
    indicators["inserted"] = {
        "condition": ["codec", "speed", "material"],
        "found_when": (
            "an inserted finding matches the inserted material: foreign speech covered at least half "
            f"by a not_in_reference span, or silence by an overlap at a join within {TOL_S:g} s of it; "
            f"duration within max({TOL_S:g} s, 25 %)"
        ),
        "false_alarm_unit": "hour",
        "rows": rows,
        "calibration": points,
        "reliability": rel,
    }

    # speed
    rows = []
    for codec in codecs:
        changed = [r for r in records if r["codec"] == codec and r["speed"] == "changed"]
        same = [r for r in records if r["codec"] == codec and r["speed"] == "same"]
        errors = [abs(r["speed_measured"] - r["speed_true"]) for r in changed]
        rows.append(
            tables.rate_row(
                {"codec": codec},
                len(changed),
                sum(1 for e in errors if e <= 0.002),
                len(same),
                sum(1 for r in same if r["speed_measured"] != 1.0),
                speed_error_p90=_pct(errors, 90),
            )
        )
    indicators["speed_ratio"] = {
        "condition": ["codec"],
        "found_when": (
            "the speed ratio measured is within 0.002 of the true one (clips resampled 1-5 % faster or "
            "slower); a false alarm is a speed change reported on a clip at the reference's speed"
        ),
        "false_alarm_unit": "file",
        "rows": rows,
        "calibration": [],
        "reliability": [],
    }

    # report lines
    for codec in codecs:
        sel = [r for r in records if r["codec"] == codec]
        for pause in (True, False):
            errs = [j["error"] for r in sel for j in r["joins"] if j["pause"] == pause]
            cerr = [j["centre_error"] for r in sel for j in r["joins"] if j["pause"] == pause]
            width = [j["width"] for r in sel for j in r["joins"] if j["pause"] == pause]
            report.append(
                f"{codec} joins in {'pauses' if pause else 'speech'}: n={len(errs)}, distance to span p50 "
                f"{_pct(errs, 50)} s p90 {_pct(errs, 90)} s; span centre error p90 {_pct(cerr, 90)} s; "
                f"span width p50 {_pct(width, 50)} s p90 {_pct(width, 90)} s"
            )
        absorbed = [a for r in sel for a in r["absorbed"]]
        edited = [r for r in sel if r["edit"] != "none"]
        unedited = [r for r in sel if r["edit"] == "none"]
        report.append(
            f"{codec}: foreign speech absorbed into segments: mean {np.mean(absorbed) if absorbed else 0:.2f} s, "
            f"max {max(absorbed, default=0):.2f} s over {len(absorbed)} insertions; spurious indicators "
            f"{sum(len(r['spurious']) for r in edited)} in {len(edited)} edited clips, "
            f"{sum(len(r['spurious']) for r in unedited)} in {len(unedited)} unedited excerpts"
        )
    n_clips = len({(r["scene"], r["clip"]) for r in records})
    desc = (
        f"{len({r['scene'] for r in records})} conversations of {FULL_SECONDS if not quick else QUICK_SECONDS:g} s "
        "of real speech (Debian's Asterisk prompts: 4 female speakers, en/es/fr/ru, and 1 male, it; 2-3 "
        "speakers taking turns with natural pauses), rooms RT60 0.25-0.7 s, pink/brown/babble noise at 15-30 dB "
        "SNR, devices none/high-pass/AGC/phone (HPF+AGC+noise suppression), references WAV or AAC; "
        f"{n_clips} clips of 20-60 s cut from them: unedited excerpts, removals 0.3-15 s (half cut inside "
        "pauses), reorderings, 0.7-4 s of foreign speech and 0.5-3 s of room tone inserted, a third resampled "
        f"+-1-5 %; each through {', '.join(codecs)} (forensics/evaluation/context.py)"
    )
    return {"indicators": indicators, "set": desc, "report": report}
