"""No silent partial analysis: damaged files say what was decoded; hostile headers fail cleanly.

The files are made here: PyAV encodes 20 s of noise, then bytes are
overwritten or cut in the middle; WAV headers are written by hand.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from forensics.analyzers import audio_container, audio_context, audio_enf, audio_signal
from forensics.analyzers.base import AnalysisContext, AnalysisError, validate_parameters
from tests import audio_fixtures as fx

SECONDS = 20.0
# The analyzers that decode; each must report its coverage.
DECODING = [audio_signal, audio_enf, audio_context]


def _run(module, path, tmp_path, reference=None):
    params = {"images": False} if module is audio_signal else {}
    if module is audio_context:
        params["reference"] = str(reference or path)
    ctx = AnalysisContext(workdir=str(tmp_path), media_type="audio/mpeg", size=0)
    return module.analyze(str(path), validate_parameters(module.PARAMETERS, params), ctx)


def _coverage(output, subject=None) -> dict:
    found = [
        f
        for f in output["findings"]
        if f["name"] == "decoded_coverage" and f["value"].get("subject") in (subject, None)
    ]
    assert len(found) == 1, [f["name"] for f in output["findings"]]
    assert found[0]["class"] == "fact" and found[0]["unit"] == "s"
    return found[0]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """{ext: (intact, overwritten mid-file, cut in half)}, each 20 s long when intact."""
    root = tmp_path_factory.mktemp("damaged")
    files = {}
    for ext in (".mp3", ".m4a", ".3gp"):
        rate = 8000 if ext == ".3gp" else 44100
        intact = fx.encode(fx.noise(SECONDS, rate, seed=3), rate, root / f"intact{ext}")
        data = bytearray(intact.read_bytes())
        middle = len(data) // 2
        junk = np.random.default_rng(7).bytes(4096) if ext != ".m4a" else bytes(4096)
        data[middle : middle + 4096] = junk
        broken = root / f"broken{ext}"
        broken.write_bytes(bytes(data))
        cut = root / f"cut{ext}"
        cut.write_bytes(intact.read_bytes()[:middle])
        files[ext] = (intact, broken, cut)
    return files


@pytest.mark.parametrize("ext", [".mp3", ".m4a", ".3gp"])
@pytest.mark.parametrize("module", DECODING, ids=lambda m: m.NAME)
def test_an_intact_file_is_covered_completely(damaged, ext, module, tmp_path):
    intact = damaged[ext][0]
    cov = _coverage(_run(module, intact, tmp_path), "clip" if module is audio_context else None)
    value = cov["value"]
    assert value["complete"] is True and value["error_count"] == 0 and value["errors"] == []
    assert value["declared_s"] == pytest.approx(SECONDS, abs=0.1)
    assert value["decoded_s"] == pytest.approx(SECONDS, abs=0.1)
    assert value["to_s"] - value["from_s"] == pytest.approx(value["decoded_s"], abs=0.05)
    assert "PARTIAL" not in cov["note"]


@pytest.mark.parametrize("ext", [".mp3", ".m4a", ".3gp"])
@pytest.mark.parametrize("module", [audio_enf, audio_context], ids=lambda m: m.NAME)
def test_damage_mid_file_stops_the_decoding_and_the_result_says_where(damaged, ext, module, tmp_path):
    intact, broken, _ = damaged[ext]
    output = _run(module, broken, tmp_path, reference=intact)
    cov = _coverage(output, "clip" if module is audio_context else None)
    value = cov["value"]
    assert value["complete"] is False
    assert value["declared_s"] == pytest.approx(SECONDS, abs=0.1)
    # The damage is half-way through the bytes, so about half-way through the time.
    assert 0.3 * SECONDS < value["decoded_s"] < 0.7 * SECONDS
    assert value["from_s"] < 0.1 and value["to_s"] == pytest.approx(
        value["from_s"] + value["decoded_s"], abs=0.05
    )
    assert value["error_count"] == 1 and value["errors"][0]["at_s"] == pytest.approx(value["to_s"], abs=0.05)
    assert value["errors"][0]["message"]
    assert cov["at"] == [pytest.approx(value["from_s"], abs=0.01), pytest.approx(value["to_s"], abs=0.01)]
    assert "PARTIAL" in cov["note"] and "stopped at" in cov["note"] and "not analysed" in cov["note"]
    # The rate and count of what was analysed are those of the decoded part.
    decoder = next(f for f in output["findings"] if f["name"] in ("decoder", "decoding"))["value"]
    decoder = decoder.get("clip", decoder)
    assert decoder["sample_count"] / decoder["output_sample_rate"] == pytest.approx(
        value["decoded_s"], abs=0.002
    )
    if module is audio_context:  # the intact reference is covered completely
        assert _coverage(output, "reference")["value"]["complete"] is True


@pytest.mark.parametrize("ext", [".mp3", ".m4a", ".3gp"])
def test_damaged_packets_skipped_by_the_signal_measurements_are_counted(damaged, ext, tmp_path):
    output = _run(audio_signal, damaged[ext][1], tmp_path)
    value = _coverage(output)["value"]
    assert value["complete"] is False and value["error_count"] >= 1
    assert value["declared_s"] == pytest.approx(SECONDS, abs=0.1)
    assert value["decoded_s"] < SECONDS - 0.2
    assert 0.3 * SECONDS < value["errors"][0]["at_s"] < 0.7 * SECONDS
    duration = next(f for f in output["findings"] if f["name"] == "decoded_duration")
    assert duration["value"] == pytest.approx(value["decoded_s"], abs=0.002)


@pytest.mark.parametrize("module", DECODING, ids=lambda m: m.NAME)
def test_a_truncated_mp3_reports_the_part_before_the_cut(damaged, module, tmp_path):
    intact, _, cut = damaged[".mp3"]
    value = _coverage(
        _run(module, cut, tmp_path, reference=intact), "clip" if module is audio_context else None
    )["value"]
    # LAME's Info header declares the whole 20 s; half of the bytes hold about half of it.
    assert value["complete"] is False and value["declared_s"] == pytest.approx(SECONDS, abs=0.1)
    assert value["decoded_s"] == pytest.approx(SECONDS / 2, abs=1.0)


@pytest.mark.parametrize("ext", [".m4a", ".3gp"])
@pytest.mark.parametrize("module", [*DECODING, audio_container], ids=lambda m: m.NAME)
def test_a_truncated_mp4_without_its_index_is_refused_with_a_reason(damaged, ext, module, tmp_path):
    intact, _, cut = damaged[ext]
    with pytest.raises(AnalysisError, match="not a readable audio or video file"):
        _run(module, cut, tmp_path, reference=intact)


# --- hostile WAV headers --------------------------------------------------------


def wav(*, channels=1, rate=8000, bits=16, tag=1, block_align=None, byte_rate=None, data=None) -> bytes:
    """A RIFF/WAVE file with a hand-written fmt chunk (values as given, however absurd)."""
    if data is None:
        data = (np.sin(np.arange(3 * 8000) / 5) * 10000).astype("<i2").tobytes()
    align = (channels * bits // 8) & 0xFFFF if block_align is None else block_align
    per_second = (rate * align) & 0xFFFFFFFF if byte_rate is None else byte_rate
    fmt = struct.pack("<HHIIHH", tag, channels, rate, per_second, align, bits)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


HOSTILE = {
    "zero_bits": (wav(bits=0), "0 bits per sample"),
    "zero_bits_float": (wav(tag=3, bits=0), "0 bits per sample"),
    "zero_channels": (wav(channels=0), "no sample rate or no channels"),
    "many_channels": (wav(channels=65535), ""),
    "zero_rate": (wav(rate=0), "not a readable"),
    "absurd_rate": (wav(rate=4_000_000_000), "not a readable"),
    "one_hertz": (wav(rate=1), "refused"),
    "header_cut_at_12": (wav()[:12], "not a readable"),
    "header_cut_at_30": (wav()[:30], "not a readable"),
    "header_cut_at_40": (wav()[:40], "not a readable"),
    "no_data": (wav(data=b""), ""),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("module", [*DECODING, audio_container], ids=lambda m: m.NAME)
def test_hostile_wav_headers_fail_with_a_reason_or_state_their_coverage(name, module, tmp_path):
    content, reason = HOSTILE[name]
    path = tmp_path / f"{name}.wav"
    path.write_bytes(content)
    try:
        output = _run(module, path, tmp_path, reference=path)
    except AnalysisError as exc:  # the only exception an analyzer may raise for bad input
        assert str(exc)
        if reason:
            assert reason in str(exc)
        return
    assert module is audio_container or _coverage(output, "clip" if module is audio_context else None)


def test_zero_bit_wav_is_refused_by_every_audio_analyzer(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(wav(bits=0))
    for module in [*DECODING, audio_container]:
        with pytest.raises(AnalysisError, match="0 bits per sample"):
            _run(module, path, tmp_path)
