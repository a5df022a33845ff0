"""A labelled set for the context-alignment analyzer (forensics/analyzers/audio_context.py).

Everything here is synthesised, so the truth of every clip is known to the
sample: a reference recording of an "event" (several synthetic speakers, espeak-ng,
talking in turn with pauses, in a small room, with background noise and mains
hum), and clips cut from it with known edits:

- unedited excerpts (the false-alarm measurements), one with noise added after the cut;
- excerpts with material removed between parts (0.3-20 s);
- excerpts whose parts are put in another order (parts of 3-15 s);
- excerpts with foreign material (another voice, other words) inserted (1.5-5.5 s);
- an edited clip played 1.5 % slower than the reference;
- a recording unrelated to the reference (another language, another voice).

Each clip is written as WAV and re-encoded through the codecs of the issue
(Opus 16 kbit/s in Ogg, AAC 32 kbit/s in M4A, MP3 32 kbit/s, AMR-NB 12.2 kbit/s
in 3GP at 8 kHz) with PyAV, and matched against the reference kept as WAV; the
AMR-NB clips are also matched against the reference re-encoded (AAC 48 kbit/s).
Building the set is deterministic (fixed seeds, fixed texts, bit-exact muxing:
the same bytes on every run) and takes about 15 s of CPU; the tests build it once
per session in a temporary directory.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from scipy.signal import lfilter, resample_poly

SR = 16000  # sample rate of the reference WAV and of the clips before encoding

# name -> (codec, bit rate, encoder sample rate, container format, extension, encoder options).
# The encoders run at their faster settings (as phones and messaging apps do) to keep the
# set quick to build; that costs quality, which only makes the test harder.
CODECS = {
    "wav": ("pcm_s16le", None, 16000, "wav", "wav", {}),
    "opus16k": ("libopus", 16000, 16000, "ogg", "ogg", {"compression_level": "5"}),
    "aac32k": ("aac", 32000, 16000, "mp4", "m4a", {"aac_coder": "fast"}),
    "mp3_32k": ("libmp3lame", 32000, 16000, "mp3", "mp3", {"compression_level": "7"}),
    "amrnb12k": ("libopencore_amrnb", 12200, 8000, "3gp", "3gp", {}),
}
REFERENCE_CODECS = {"aac48k": ("aac", 48000, 16000, "mp4", "m4a", {"aac_coder": "fast"})}

_SUBJECTS = [
    "the harbour master",
    "our committee",
    "the night shift",
    "a courier from the bank",
    "the second witness",
    "my neighbour",
    "the site engineer",
    "the night porter",
    "an officer on patrol",
    "the finance director",
    "a delivery driver",
    "the caretaker",
]
_VERBS = [
    "moved",
    "checked",
    "signed",
    "collected",
    "counted",
    "locked",
    "photographed",
    "described",
    "returned",
    "measured",
    "weighed",
    "copied",
    "labelled",
    "opened",
]
_OBJECTS = [
    "the blue container",
    "eleven folders",
    "the spare keys",
    "a sealed envelope",
    "the invoices from March",
    "two heavy boxes",
    "the station logbook",
    "a brown suitcase",
    "the alarm panel",
    "nineteen samples",
    "the camera tapes",
    "the loading permits",
]
_PLACES = [
    "near the north gate",
    "behind the warehouse",
    "in the back office",
    "on the third floor",
    "at the loading bay",
    "beside the canal",
    "in the basement archive",
    "at the front desk",
    "outside the pharmacy",
    "under the old bridge",
]
_TIMES = [
    "just after midnight",
    "at a quarter past seven",
    "before the storm",
    "on Tuesday morning",
    "during the lunch break",
    "around half past four",
    "late on Friday",
    "at dawn",
    "soon after the meeting",
    "early in the evening",
]
_TAILS = [
    "and nobody asked why",
    "as far as I remember",
    "without any paperwork",
    "and then called the supervisor",
    "while the radio was playing",
    "which seemed unusual",
    "and wrote the time on a card",
    "before anyone else arrived",
    "and left through the side door",
    "because the lift was broken",
]
# Speakers of the event: espeak-ng voice, variant and a pitch / speed range.
_SPEAKERS = [
    ("en-us", "m3", 38, 160),
    ("en-gb", "f2", 62, 170),
    ("en-gb-scotland", "m2", 30, 150),
    ("en-us", "f4", 70, 180),
]
# Foreign material: another voice and other words, never in the reference.
_FOREIGN_TEXTS = [
    "Please remember to water the tomatoes and feed the cat before you leave for the airport.",
    "Seven purple umbrellas were sold at the market yesterday afternoon.",
    "Quantum physics lectures begin at nine sharp in the lecture theatre.",
    "My grandmother bakes apple pies every Sunday for the whole village.",
    "The football final was postponed because of heavy snow in the mountains.",
    "Jazz musicians played until sunrise at the little club on Orchard Street.",
]
_FOREIGN_VOICE = ("en-029", "f5", 55, 175)
_UNRELATED_TEXTS = [
    "Il fait beau aujourd'hui et nous allons marcher dans le parc avec les enfants.",
    "La bibliothèque ferme à dix-huit heures, sauf le samedi.",
    "Nous avons acheté du pain, du fromage et des pommes au marché du village.",
    "Le train pour Lyon partira avec vingt minutes de retard.",
    "Mon frère répare son vélo dans le garage depuis ce matin.",
    "Les élèves ont visité le musée d'histoire naturelle jeudi dernier.",
    "Il faudra repeindre la cuisine avant l'arrivée de l'hiver.",
    "Le concert de piano commence à vingt heures trente précises.",
]
_UNRELATED_VOICE = ("fr", "m4", 45, 165)


@dataclass
class Piece:
    """A stretch of a clip: reference material (``ref`` = [s, e] in the reference) or foreign material."""

    clip_at: tuple[float, float]
    ref: tuple[float, float] | None  # None: foreign material


@dataclass
class Clip:
    name: str
    kind: str  # "excerpt" | "cuts" | "reorder" | "insert" | "mixed" | "unrelated"
    codec: str
    reference: str  # key into LabelledSet.references
    path: Path
    pieces: list[Piece]

    @property
    def parts(self) -> list[Piece]:
        return [p for p in self.pieces if p.ref is not None]

    @property
    def edited(self) -> bool:
        return self.kind != "excerpt"

    def removed(self) -> list[dict]:
        """Reference material absent from the clip between consecutive parts (a join in the clip)."""
        parts = self.parts
        out = []
        for a, b in zip(parts, parts[1:], strict=False):
            if b.ref[0] > a.ref[1] + 0.05:
                gap = _uncovered((a.ref[1], b.ref[0]), [p.ref for p in parts])
                if gap > 0.05:
                    # plain: the two parts meet (no foreign material between them in the clip)
                    plain = self.pieces.index(b) == self.pieces.index(a) + 1
                    out.append(
                        {
                            "join": b.clip_at[0],
                            "reference_at": (a.ref[1], b.ref[0]),
                            "duration": gap,
                            "plain": plain,
                        }
                    )
        return out

    def inserted(self) -> list[tuple[float, float]]:
        return [p.clip_at for p in self.pieces if p.ref is None]

    def displaced(self) -> list[Piece]:
        """Parts that are in an out-of-order pair (either may be reported as the moved one)."""
        parts = self.parts
        out = []
        for i, a in enumerate(parts):
            if any(
                (j > i and b.ref[0] < a.ref[0]) or (j < i and b.ref[0] > a.ref[0])
                for j, b in enumerate(parts)
            ):
                out.append(a)
        return out

    def joins(self) -> list[float]:
        """Clip times where the material changes (edit points)."""
        return [p.clip_at[0] for p in self.pieces[1:]]


@dataclass
class LabelledSet:
    root: Path
    references: dict[str, Path]  # "wav" and each REFERENCE_CODECS key
    reference_seconds: float
    clips: list[Clip] = field(default_factory=list)


def _uncovered(span, spans) -> float:
    """Length of ``span`` not covered by any of ``spans``."""
    s, e = span
    cuts = sorted((max(s, a), min(e, b)) for a, b in spans if b > s and a < e)
    covered, cursor = 0.0, s
    for a, b in cuts:
        if b > cursor:
            covered += b - max(a, cursor)
            cursor = b
    return (e - s) - covered


# --- synthesis --------------------------------------------------------------------------------------


def _espeak(text: str, voice: tuple, pitch: int, speed: int, workdir: Path, key: str) -> np.ndarray:
    lang, variant, _, _ = voice
    path = workdir / f"tts_{key}.wav"
    subprocess.run(
        ["espeak-ng", "-v", f"{lang}+{variant}", "-p", str(pitch), "-s", str(speed), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64) / 32768
    out = resample_poly(data, SR // 50, rate // 50) if rate != SR else data
    # trim espeak's leading / trailing silence so the pauses are ours
    active = np.flatnonzero(np.abs(out) > 0.01)
    return out[active[0] : active[-1] + 1] if active.size else out


def _sentences(rng: np.random.Generator, count: int) -> list[str]:
    seen, out = set(), []
    while len(out) < count:
        parts = (
            rng.choice(_SUBJECTS),
            rng.choice(_VERBS),
            rng.choice(_OBJECTS),
            rng.choice(_PLACES),
            rng.choice(_TIMES),
            rng.choice(_TAILS),
        )
        if parts[:3] in seen:
            continue
        seen.add(parts[:3])
        order = rng.integers(2)
        text = (
            f"{parts[0]} {parts[1]} {parts[2]} {parts[3]} {parts[4]}, {parts[5]}."
            if order
            else f"{parts[4].capitalize()}, {parts[0]} {parts[1]} {parts[2]} {parts[3]}, {parts[5]}."
        )
        out.append(text[0].upper() + text[1:])
    return out


def _room(x: np.ndarray, rng: np.random.Generator, rt60: float = 0.35) -> np.ndarray:
    """A small room: the dry signal plus a diffuse exponentially decaying tail, then a wall-ish tilt."""
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.004 * SR)] = 0
    ir *= 0.35 / np.sqrt(np.sum(ir**2))
    ir[0] = 1.0
    wet = _fftconvolve(x, ir)[: x.size]
    return lfilter([1.0, -0.3], [1.0], wet)


def _fftconvolve(a, b):
    n = a.size + b.size - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:n]


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    # Paul Kellet's economical pink filter
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    pink = lfilter(b, a, white)
    return pink / np.std(pink)


def _ambience(n: int, rng: np.random.Generator, speech_rms: float, snr_db: float = 24.0) -> np.ndarray:
    t = np.arange(n) / SR
    noise = _pink(n, rng) * speech_rms * 10 ** (-snr_db / 20)
    hum = speech_rms * 0.03 * (np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t + 0.7))
    return noise + hum


def _talk(texts, voices, rng, workdir: Path, prefix: str) -> np.ndarray:
    """Sentences in turn with pauses, each with its own pitch and speed."""
    jobs = []
    for i, text in enumerate(texts):
        voice = voices[i % len(voices)] if len(voices) > 1 else voices[0]
        pitch = int(voice[2] + rng.integers(-8, 9))
        speed = int(voice[3] + rng.integers(-15, 16))
        jobs.append((text, voice, pitch, speed, f"{prefix}{i}"))
    pauses = rng.uniform(0.3, 1.6, size=len(jobs))
    with ThreadPoolExecutor(max_workers=4) as pool:
        chunks = list(pool.map(lambda j: _espeak(j[0], j[1], j[2], j[3], workdir, j[4]), jobs))
    out = [np.zeros(int(0.5 * SR))]
    for chunk, pause in zip(chunks, pauses, strict=True):
        out.append(chunk * rng.uniform(0.6, 1.0))
        out.append(np.zeros(int(pause * SR)))
    return np.concatenate(out)


def _scene(dry: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    wet = _room(dry, rng)
    rms = np.sqrt(np.mean(wet[np.abs(wet) > 0.02] ** 2))
    mixed = wet + _ambience(wet.size, rng, rms)
    return 0.5 * mixed / np.max(np.abs(mixed))


# --- files ------------------------------------------------------------------------------------------


def encode(x: np.ndarray, path: Path, codec_key: str, table: dict | None = None) -> Path:
    """Write mono float samples at SR through one of the codecs with PyAV."""
    codec, bit_rate, rate, fmt, _, options = (table or CODECS)[codec_key]
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)[None, :]
    # bitexact: no random Ogg serial numbers or version tags, so the same samples give the same bytes
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=rate, options=dict(options))
        stream.codec_context.layout = "mono"
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SR
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        pts = 0
        for chunk in resampler.resample(frame) + resampler.resample(None):
            chunk.pts = pts
            pts += chunk.samples
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _fade(x: np.ndarray, ms: float = 5.0) -> np.ndarray:
    n = int(ms / 1000 * SR)
    ramp = np.linspace(0.0, 1.0, n)
    y = x.copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def _assemble(ref: np.ndarray, foreign: list[np.ndarray], plan) -> tuple[np.ndarray, list[Piece]]:
    """plan: ("ref", s, e) or ("foreign", index, seconds); returns samples and pieces with clip times."""
    chunks, pieces, cursor = [], [], 0
    for item in plan:
        if item[0] == "ref":
            a, b = round(item[1] * SR), round(item[2] * SR)
            chunk = ref[a:b]
            ref_span = (a / SR, b / SR)
        else:
            chunk = foreign[item[1]][: round(item[2] * SR)]
            ref_span = None
        chunks.append(_fade(chunk))
        pieces.append(Piece(clip_at=(cursor / SR, (cursor + chunk.size) / SR), ref=ref_span))
        cursor += chunk.size
    return np.concatenate(chunks), pieces


# Edits, in reference seconds. Cut points fall wherever the numbers say: inside words as
# often as in pauses, as a careless or a careful editor would leave them.
PLANS = {
    "excerpt_a": ("excerpt", [("ref", 20.0, 58.3)]),
    "excerpt_b": ("excerpt", [("ref", 150.2, 185.9)]),
    "cuts_a": ("cuts", [("ref", 10.0, 21.3), ("ref", 22.3, 33.9), ("ref", 39.4, 50.0), ("ref", 70.0, 80.2)]),
    "cuts_b": ("cuts", [("ref", 100.3, 111.1), ("ref", 113.6, 125.7), ("ref", 137.65, 149.0)]),
    "reorder_a": ("reorder", [("ref", 60.0, 72.2), ("ref", 84.1, 96.0), ("ref", 72.2, 84.1)]),
    "reorder_b": ("reorder", [("ref", 190.0, 201.0), ("ref", 165.4, 177.0), ("ref", 201.0, 212.7)]),
    "insert_a": ("insert", [("ref", 140.2, 155.0), ("foreign", 0, 5.5), ("ref", 155.0, 170.3)]),
    "insert_b": ("insert", [("ref", 40.0, 52.6), ("foreign", 1, 3.5), ("ref", 58.0, 72.0)]),
    "excerpt_c": ("excerpt", [("ref", 100.0, 122.0)]),
    "excerpt_d": ("excerpt", [("ref", 0.5, 40.0)]),  # with noise added after the cut (below)
    "excerpt_e": ("excerpt", [("ref", 205.0, 239.5)]),
    # near the stated limits: removals of 0.3 s and 0.6 s, 1.5 s of foreign speech, 3 s parts swapped
    "hard_a": (
        "mixed",
        [
            ("ref", 30.0, 41.0),
            ("ref", 41.3, 52.0),
            ("ref", 52.6, 60.0),
            ("foreign", 2, 1.5),
            ("ref", 60.0, 68.0),
        ],
    ),
    # played 1.5 % slower than the reference (resampled: time and pitch together)
    "speed_a": ("cuts", [("ref", 15.0, 30.0), ("ref", 33.0, 50.0), ("ref", 60.0, 75.0)]),
    "hard_b": (
        "reorder",
        [("ref", 200.0, 210.0), ("ref", 213.0, 216.0), ("ref", 210.0, 213.0), ("ref", 216.0, 226.0)],
    ),
}
# clips passed through a noisier channel after editing: SNR (dB) of the pink noise added
NOISIER = {"excerpt_d": 12.0, "cuts_b": 15.0}
# clips resampled after editing: (up, down) of the resampling, so the clip lasts up/down as long
STRETCHED = {"speed_a": (1000, 985)}
# clip codec -> the references it is matched against
PAIRS = {
    "wav": ["wav"],
    "opus16k": ["wav"],
    "aac32k": ["wav"],
    "mp3_32k": ["wav"],
    "amrnb12k": ["wav", "aac48k"],
}


def build(root: Path | None = None) -> LabelledSet:
    root = Path(root or tempfile.mkdtemp(prefix="context-set-"))
    root.mkdir(parents=True, exist_ok=True)
    work = root / "tts"
    work.mkdir(exist_ok=True)
    rng = np.random.default_rng(20240611)

    texts = _sentences(rng, 34)
    reference = _scene(_talk(texts, _SPEAKERS, rng, work, "ref"), rng)
    foreign_dry = _talk(_FOREIGN_TEXTS, [_FOREIGN_VOICE], rng, work, "foreign")
    foreign_all = _scene(foreign_dry, rng)
    # the pieces of foreign material start on speech
    starts = [int(2.0 * SR), int(9.0 * SR), int(15.0 * SR)]
    foreign = [foreign_all[s:] * 0.8 for s in starts]
    unrelated = _scene(_talk(_UNRELATED_TEXTS, [_UNRELATED_VOICE], rng, work, "unrelated"), rng)

    refs = {"wav": encode(reference, root / "reference.wav", "wav")}
    for key in REFERENCE_CODECS:
        ext = REFERENCE_CODECS[key][4]
        refs[key] = encode(reference, root / f"reference_{key}.{ext}", key, REFERENCE_CODECS)
    out = LabelledSet(root=root, references=refs, reference_seconds=reference.size / SR)

    gains = rng.uniform(0.5, 1.2, size=len(PLANS))
    for (name, (kind, plan)), gain in zip(PLANS.items(), gains, strict=True):
        samples, pieces = _assemble(reference, foreign, plan)
        if name in NOISIER:
            rms = np.sqrt(np.mean(samples[np.abs(samples) > 0.02] ** 2))
            samples = samples + _pink(samples.size, rng) * rms * 10 ** (-NOISIER[name] / 20)
            samples *= 0.6 / np.max(np.abs(samples))
        if name in STRETCHED:
            up, down = STRETCHED[name]
            samples = resample_poly(samples, up, down)
            k = up / down
            pieces = [Piece((p.clip_at[0] * k, p.clip_at[1] * k), p.ref) for p in pieces]
        for codec_key, refs_for in PAIRS.items():
            path = encode(samples * gain, root / f"{name}_{codec_key}.{CODECS[codec_key][4]}", codec_key)
            for ref_key in refs_for:
                out.clips.append(Clip(name, kind, codec_key, ref_key, path, pieces))
    un = unrelated[: int(30 * SR)]
    for codec_key in ("wav", "amrnb12k"):
        path = encode(un, root / f"unrelated_{codec_key}.{CODECS[codec_key][4]}", codec_key)
        out.clips.append(
            Clip("unrelated", "unrelated", codec_key, "wav", path, [Piece((0.0, un.size / SR), None)])
        )
    return out
