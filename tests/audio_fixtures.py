"""A labelled audio test set, built by the tests themselves (no files shipped).

Pure Python (numpy, scipy, PyAV, the standard library, and the ``espeak-ng``
program for speech); no Django, no database. Other tests import it, so the
functions below keep their names, arguments and meaning:

- signals (float32 numpy arrays in [-1, 1], shape ``(n,)`` mono or
  ``(channels, n)``): :func:`tone`, :func:`noise`, :func:`lowpass`,
  :func:`silence`, :func:`concat`, :func:`read_wav`;
- speech: :func:`speech` writes what espeak-ng says to a WAV file;
- files: :func:`write_wav` (exact integer PCM, so exact zeros and full-scale
  samples survive), :func:`encode` (any codec/container PyAV can write, chosen
  from the file extension), :func:`remux` (copy the audio packets into another
  container without re-encoding, like ``ffmpeg -c copy``),
  :func:`video_with_soundtrack` (a tiny MPEG-4 video with an AAC soundtrack);
- :class:`AudioSet`: named, labelled files built on first use and cached in a
  directory, each with its ground truth (:class:`Sample`).

Lossy encoders are deterministic for a given PyAV/FFmpeg build; Ogg serial
numbers are random, so two builds of the same Ogg file differ in a few bytes
(but not in their audio packets).
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# extension -> (codec, container format, forced sample rate or None)
FORMATS = {
    ".wav": ("pcm_s16le", "wav", None),
    ".flac": ("flac", "flac", None),
    ".ogg": ("libopus", "ogg", 48000),
    ".opus": ("libopus", "ogg", 48000),
    ".webm": ("libopus", "webm", 48000),
    ".mka": ("libopus", "matroska", 48000),
    ".m4a": ("aac", "ipod", None),
    ".mp4": ("aac", "mp4", None),
    ".aac": ("aac", "adts", None),
    ".mp3": ("libmp3lame", "mp3", None),
    ".amr": ("libopencore_amrnb", "amr", 8000),
    ".3gp": ("libopencore_amrnb", "3gp", 8000),
}

# containers for remux(), by extension
REMUX_FORMATS = {
    ".ogg": "ogg",
    ".opus": "ogg",
    ".webm": "webm",
    ".mka": "matroska",
    ".mkv": "matroska",
    ".m4a": "ipod",
    ".mp4": "mp4",
    ".mov": "mov",
    ".aac": "adts",
    ".mp3": "mp3",
    ".flac": "flac",
    ".wav": "wav",
    ".amr": "amr",
    ".3gp": "3gp",
}


# ---------------------------------------------------------------- signals


def tone(
    freq: float, seconds: float, sample_rate: int = 48000, amplitude: float = 0.5, phase: float = 0.0
) -> np.ndarray:
    """A sine wave: ``amplitude * sin(2 pi freq t + phase)``, mono float32."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def noise(seconds: float, sample_rate: int = 48000, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """Gaussian white noise with RMS ``amplitude``, clipped to [-1, 1], mono float32; seeded."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(round(seconds * sample_rate))) * amplitude
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def silence(seconds: float, sample_rate: int = 48000) -> np.ndarray:
    """Exact digital silence (zeros), mono float32."""
    return np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)


def lowpass(samples: np.ndarray, sample_rate: int, cutoff: float) -> np.ndarray:
    """Brick-wall low-pass in the frequency domain: every component above ``cutoff`` Hz is removed.

    The ground truth for bandwidth tests: nothing above ``cutoff`` remains
    (except what quantisation adds when the result is written as integers).
    """
    x = np.asarray(samples, dtype=np.float64)
    spectrum = np.fft.rfft(x, axis=-1)
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sample_rate)
    spectrum[..., freqs > cutoff] = 0
    return np.fft.irfft(spectrum, n=x.shape[-1], axis=-1).astype(np.float32)


def concat(*parts: np.ndarray) -> np.ndarray:
    """Join signals in time (all mono, or all with the same number of channels)."""
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=-1)


def read_wav(path) -> tuple[np.ndarray, int]:
    """Read an integer PCM WAV (8/16/24/32-bit) -> (float32 samples, sample rate); mono as ``(n,)``."""
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        x = (np.frombuffer(raw, dtype).astype(np.float64) / float(1 << (8 * width - 1))).astype(np.float32)
    x = x.reshape(-1, channels).T
    return (x[0] if channels == 1 else x), rate


# ---------------------------------------------------------------- files


def speech(text: str, path, voice: str = "en", words_per_minute: int = 160) -> Path:
    """Synthesise ``text`` with espeak-ng into a mono 16-bit WAV at 22050 Hz; returns the path."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    path = Path(path)
    subprocess.run(
        [exe, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def write_wav(samples: np.ndarray, sample_rate: int, path, bits: int = 16) -> Path:
    """Write integer PCM exactly: values are scaled by 2**(bits-1), rounded and saturated.

    So 0.0 stays an exact zero and +/-1.0 becomes the extreme code (a clipped
    sample). ``bits`` is 16 or 24.
    """
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    scale = float(1 << (bits - 1))
    ints = np.clip(np.round(x * scale), -scale, scale - 1).astype(np.int32).T  # (n, channels)
    if bits == 16:
        raw = ints.astype("<i2").tobytes()
    elif bits == 24:
        b = ints.astype("<i4").view(np.uint8).reshape(ints.shape + (4,))[..., :3]
        raw = np.ascontiguousarray(b).tobytes()
    else:
        raise ValueError("bits must be 16 or 24")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(bits // 8)
        w.setframerate(sample_rate)
        w.writeframes(raw)
    return path


def _frame(samples: np.ndarray, sample_rate: int) -> av.AudioFrame:
    x = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    layout = {1: "mono", 2: "stereo"}[x.shape[0]]
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, sample_rate)
    return frame


def encode(
    samples: np.ndarray,
    sample_rate: int,
    path,
    codec: str | None = None,
    bitrate: int | None = None,
    container: str | None = None,
    metadata: dict | None = None,
) -> Path:
    """Encode float samples with PyAV into ``path``; codec and container follow the extension.

    Extensions: .wav .flac .ogg/.opus (Opus) .webm .mka (Opus) .m4a/.mp4/.aac
    (AAC) .mp3 (LAME) .amr/.3gp (AMR-NB, resampled to 8 kHz mono). ``codec``
    and ``container`` override the choice; ``bitrate`` is in bit/s;
    ``metadata`` becomes container tags (e.g. ``{"creation_time": ...}``).
    """
    path = Path(path)
    default_codec, default_format, forced_rate = FORMATS[path.suffix.lower()]
    codec = codec or default_codec
    x = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    out_rate = forced_rate or sample_rate
    channels = 1 if codec.startswith("libopencore_amr") else x.shape[0]
    if channels == 1 and x.shape[0] > 1:
        x = x.mean(axis=0, keepdims=True)
    with av.open(str(path), "w", format=container or default_format) as oc:
        for key, value in (metadata or {}).items():
            oc.metadata[key] = value
        stream = oc.add_stream(codec, rate=out_rate, layout="mono" if channels == 1 else "stereo")
        if bitrate:
            stream.bit_rate = bitrate
        frames = [_frame(x, sample_rate)]
        if out_rate != sample_rate or codec not in ("flac", "pcm_s16le"):
            # resample (and convert to the encoder's sample format) up front
            fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
            resampler = av.AudioResampler(format=fmt, layout=stream.layout.name, rate=out_rate)
            frames = list(resampler.resample(frames[0])) + list(resampler.resample(None))
            pts = 0
            for f in frames:
                f.pts = pts
                pts += f.samples
        for f in frames:
            for packet in stream.encode(f):
                oc.mux(packet)
        for packet in stream.encode(None):
            oc.mux(packet)
    return path


def remux(src, dst, container: str | None = None) -> Path:
    """Copy the first audio stream's packets into another container, without re-encoding.

    The container follows ``dst``'s extension unless given. Packet payloads are
    kept; container framing (Ogg pages, MP4 boxes, ADTS headers...) is the
    muxer's. Bitstream filters FFmpeg inserts by itself (e.g. ADTS -> MP4)
    apply as they would with ``ffmpeg -c copy``.
    """
    dst = Path(dst)
    fmt = container or REMUX_FORMATS[dst.suffix.lower()]
    with av.open(str(src)) as ic, av.open(str(dst), "w", format=fmt) as oc:
        istream = ic.streams.audio[0]
        ostream = oc.add_stream_from_template(istream)
        for packet in ic.demux(istream):
            if packet.dts is None and packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            packet.stream = ostream
            oc.mux(packet)
    return dst


def video_with_soundtrack(
    samples: np.ndarray,
    sample_rate: int,
    path,
    fps: int = 5,
    size: tuple[int, int] = (64, 48),
    audio_codec: str = "aac",
) -> Path:
    """A small MP4 (or .mkv/.mov by extension): MPEG-4 Part 2 video of moving grey frames + a soundtrack."""
    path = Path(path)
    x = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    seconds = x.shape[-1] / sample_rate
    fmt = REMUX_FORMATS.get(path.suffix.lower(), "mp4")
    with av.open(str(path), "w", format=fmt) as oc:
        video = oc.add_stream("mpeg4", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio = oc.add_stream(audio_codec, rate=sample_rate, layout="mono" if x.shape[0] == 1 else "stereo")
        for i in range(max(1, int(seconds * fps))):
            img = np.full((size[1], size[0], 3), (i * 17) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                oc.mux(packet)
        for packet in video.encode(None):
            oc.mux(packet)
        fmt_name = audio.codec_context.format.name
        resampler = av.AudioResampler(format=fmt_name, layout=audio.layout.name, rate=sample_rate)
        pts = 0
        for f in list(resampler.resample(_frame(x, sample_rate))) + list(resampler.resample(None)):
            f.pts = pts
            pts += f.samples
            for packet in audio.encode(f):
                oc.mux(packet)
        for packet in audio.encode(None):
            oc.mux(packet)
    return path


# ---------------------------------------------------------------- the labelled set

SPEECH_TEXT = (
    "This is a recording of a conversation. Meet me at the station at nine, "
    "and bring the documents we talked about on Tuesday."
)


@dataclass
class Sample:
    """One labelled file: where it is and what is true about it (``truth`` keys vary by sample)."""

    name: str
    path: Path
    truth: dict = field(default_factory=dict)


class AudioSet:
    """Named test files with ground truth, built on first request and cached in ``directory``.

    ``AudioSet(dir).get("speech_opus_ogg")`` -> :class:`Sample`. :attr:`NAMES`
    lists what can be asked for. Truth keys (each sample has the ones that
    apply): ``codec`` (FFmpeg codec name, e.g. "opus", "amrnb"; decoders may add a suffix: mp3float),
    ``container`` (FFmpeg format name, None for remuxed copies),
    ``sample_rate``, ``channels``, ``duration`` (s, of the source signal:
    lossy codecs add up to a few tens of ms of delay/padding), ``bandwidth``
    (Hz, the low-pass applied), ``bandwidth_below`` (Hz, an upper bound when
    an encoder chose the low-pass), ``silence`` ([[start_s, end_s], ...] of
    exact zeros), ``clipped_runs`` (flat tops in channel 0), ``dc`` (offset per
    channel, fraction of full scale), ``source`` (the sample this one was
    made from), ``remuxed`` / ``reencoded`` (bool), ``logical_streams``
    (chained Ogg), ``vbr_headers`` (joined MP3s).

    Files are built on the first ``get`` of a name and reused after; a pytest
    session fixture holding one AudioSet per session keeps the tests fast.
    """

    NAMES = (
        "speech_wav",
        "speech_opus_ogg",
        "speech_opus_webm",
        "speech_aac_m4a",
        "speech_mp3",
        "speech_amr",
        "speech_amr_3gp",
        "speech_flac",
        "speech_video_mp4",
        "opus_ogg_remux_webm",
        "opus_ogg_remux_mka",
        "opus_ogg_reencoded",
        "aac_m4a_remux_mka",
        "aac_m4a_remux_adts",
        "aac_adts_remux_m4a",
        "mp3_remux_mka",
        "noise_lp4k_wav",
        "noise_lp7k_wav",
        "noise_full_wav",
        "noise_mp3_32k_as_wav",
        "silence_gaps_wav",
        "clipped_dc_stereo_wav",
        "opus_ogg_chained",
        "mp3_concatenated",
    )

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, Sample] = {}

    def get(self, name: str) -> Sample:
        if name not in self._cache:
            if name not in self.NAMES:
                raise KeyError(f"no such sample: {name}")
            self._cache[name] = getattr(self, "_make_" + name)()
        return self._cache[name]

    def path(self, filename: str) -> Path:
        return self.directory / filename

    # -- building blocks
    def speech_samples(self) -> tuple[np.ndarray, int]:
        """The espeak-ng sentence (SPEECH_TEXT) as float32 mono at 22050 Hz."""
        wav = self.path("speech_src.wav")
        if not wav.exists():
            speech(SPEECH_TEXT, wav)
        return read_wav(wav)

    def _speech_encoded(self, name, filename, codec, container, rate, bitrate=None):
        x, sr = self.speech_samples()
        p = encode(x, sr, self.path(filename), bitrate=bitrate)
        return Sample(
            name,
            p,
            {
                "codec": codec,
                "container": container,
                "sample_rate": rate or sr,
                "channels": 1,
                "duration": len(x) / sr,
            },
        )

    # -- speech in each format
    def _make_speech_wav(self):
        x, sr = self.speech_samples()
        return Sample(
            "speech_wav",
            self.path("speech_src.wav"),
            {
                "codec": "pcm_s16le",
                "container": "wav",
                "sample_rate": sr,
                "channels": 1,
                "duration": len(x) / sr,
            },
        )

    def _make_speech_opus_ogg(self):
        return self._speech_encoded("speech_opus_ogg", "speech.ogg", "opus", "ogg", 48000, 24000)

    def _make_speech_opus_webm(self):
        return self._speech_encoded("speech_opus_webm", "speech.webm", "opus", "matroska,webm", 48000, 24000)

    def _make_speech_aac_m4a(self):
        return self._speech_encoded(
            "speech_aac_m4a", "speech.m4a", "aac", "mov,mp4,m4a,3gp,3g2,mj2", None, 64000
        )

    def _make_speech_mp3(self):
        return self._speech_encoded("speech_mp3", "speech.mp3", "mp3", "mp3", None, 64000)

    def _make_speech_amr(self):
        return self._speech_encoded("speech_amr", "speech.amr", "amrnb", "amr", 8000, 12200)

    def _make_speech_amr_3gp(self):
        return self._speech_encoded(
            "speech_amr_3gp", "speech.3gp", "amrnb", "mov,mp4,m4a,3gp,3g2,mj2", 8000, 12200
        )

    def _make_speech_flac(self):
        return self._speech_encoded("speech_flac", "speech.flac", "flac", "flac", None)

    def _make_speech_video_mp4(self):
        x, sr = self.speech_samples()
        p = video_with_soundtrack(x, sr, self.path("speech_video.mp4"))
        return Sample(
            "speech_video_mp4",
            p,
            {
                "codec": "aac",
                "container": "mov,mp4,m4a,3gp,3g2,mj2",
                "sample_rate": sr,
                "channels": 1,
                "duration": len(x) / sr,
            },
        )

    # -- remuxed and re-encoded copies
    def _remuxed(self, name, source, filename):
        src = self.get(source)
        p = remux(src.path, self.path(filename))
        return Sample(name, p, {**src.truth, "source": source, "remuxed": True, "container": None})

    def _make_opus_ogg_remux_webm(self):
        return self._remuxed("opus_ogg_remux_webm", "speech_opus_ogg", "remux_opus.webm")

    def _make_opus_ogg_remux_mka(self):
        return self._remuxed("opus_ogg_remux_mka", "speech_opus_ogg", "remux_opus.mka")

    def _make_aac_m4a_remux_mka(self):
        return self._remuxed("aac_m4a_remux_mka", "speech_aac_m4a", "remux_aac.mka")

    def _make_aac_m4a_remux_adts(self):
        return self._remuxed("aac_m4a_remux_adts", "speech_aac_m4a", "remux_aac.aac")

    def _make_aac_adts_remux_m4a(self):
        return self._remuxed("aac_adts_remux_m4a", "aac_m4a_remux_adts", "remux_aac_back.m4a")

    def _make_mp3_remux_mka(self):
        return self._remuxed("mp3_remux_mka", "speech_mp3", "remux_mp3.mka")

    def _make_opus_ogg_reencoded(self):
        src = self.get("speech_opus_ogg")
        with av.open(str(src.path)) as c:
            frames = [f.to_ndarray() for f in c.decode(audio=0)]
        x = np.concatenate(frames, axis=-1)
        p = encode(x, 48000, self.path("reencoded.ogg"), bitrate=24000)
        return Sample("opus_ogg_reencoded", p, {**src.truth, "source": "speech_opus_ogg", "reencoded": True})

    # -- bandwidth
    def _noise_wav(self, name, cutoff):
        sr = 48000
        x = noise(4.0, sr, amplitude=0.2, seed=1)
        if cutoff:
            x = lowpass(x, sr, cutoff)
        p = write_wav(x, sr, self.path(f"{name}.wav"))
        return Sample(name, p, {"bandwidth": cutoff or sr / 2, "sample_rate": sr, "channels": 1})

    def _make_noise_lp4k_wav(self):
        return self._noise_wav("noise_lp4k_wav", 4000)

    def _make_noise_lp7k_wav(self):
        return self._noise_wav("noise_lp7k_wav", 7000)

    def _make_noise_full_wav(self):
        return self._noise_wav("noise_full_wav", None)

    def _make_noise_mp3_32k_as_wav(self):
        sr = 48000
        x = noise(4.0, sr, amplitude=0.2, seed=2)
        mp3 = encode(x, sr, self.path("noise_32k.mp3"), bitrate=32000)
        with av.open(str(mp3)) as c:
            y = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=-1)
        p = write_wav(y, sr, self.path("noise_mp3_32k_as.wav"))
        # LAME low-passes 32 kbit/s mono far below 24 kHz; the exact value depends on LAME
        return Sample("noise_mp3_32k_as_wav", p, {"bandwidth_below": 12000, "sample_rate": sr, "channels": 1})

    # -- silence, clipping, DC
    def _make_silence_gaps_wav(self):
        """Noise with exact-zero gaps at 1.000-1.250 s and 2.500-3.000 s (16 kHz, 16-bit)."""
        sr = 16000
        x = noise(4.0, sr, amplitude=0.1, seed=3)
        # samples that would round to the integer 0 are pushed to +/-2 LSB: no accidental zeros
        small = np.abs(x) < 2 / 32768
        x[small] = np.where(x[small] < 0, -2 / 32768, 2 / 32768)
        x[round(1.0 * sr) : round(1.25 * sr)] = 0.0
        x[round(2.5 * sr) : round(3.0 * sr)] = 0.0
        p = write_wav(x, sr, self.path("silence_gaps.wav"))
        return Sample(
            "silence_gaps_wav", p, {"silence": [[1.0, 1.25], [2.5, 3.0]], "sample_rate": sr, "duration": 4.0}
        )

    def _make_clipped_dc_stereo_wav(self):
        """Stereo 44.1 kHz: left = loud tone clipped at full scale, right = quiet tone + DC 0.05."""
        sr = 44100
        left = np.clip(tone(100, 2.0, sr, amplitude=1.5), -1.0, 1.0)
        right = tone(300, 2.0, sr, amplitude=0.2) + 0.05
        p = write_wav(np.stack([left, right]), sr, self.path("clipped_dc.wav"))
        # 100 Hz for 2 s: 200 positive and 200 negative flat tops on the left channel
        return Sample(
            "clipped_dc_stereo_wav",
            p,
            {"clipped_runs": 400, "dc": [0.0, 0.05], "channels": 2, "sample_rate": sr},
        )

    # -- concatenations
    def _make_opus_ogg_chained(self):
        """Two Ogg Opus files byte-concatenated (a chained Ogg stream, 2 logical streams)."""
        a = encode(tone(440, 1.0), 48000, self.path("chain_a.ogg"), bitrate=32000)
        b = encode(tone(660, 1.0), 48000, self.path("chain_b.ogg"), bitrate=32000)
        p = self.path("chained.ogg")
        p.write_bytes(a.read_bytes() + b.read_bytes())
        return Sample("opus_ogg_chained", p, {"logical_streams": 2})

    def _make_mp3_concatenated(self):
        """Two MP3 files byte-concatenated: a second Info/Xing frame in the middle."""
        a = encode(tone(440, 1.0, 44100), 44100, self.path("cat_a.mp3"), bitrate=64000)
        b = encode(tone(660, 1.0, 44100), 44100, self.path("cat_b.mp3"), bitrate=64000)
        p = self.path("concatenated.mp3")
        p.write_bytes(a.read_bytes() + b.read_bytes())
        return Sample("mp3_concatenated", p, {"vbr_headers": 2})
