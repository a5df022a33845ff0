"""The audio analyzers (audio.container, audio.signal) against test data with known ground truth.

Pure: no database. The data is synthesised (espeak-ng speech, numpy tones and
noise) and encoded with PyAV by tests/audio_fixtures.py, once per session.
"""

from __future__ import annotations

import io
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image

from forensics.analyzers import _audio_struct, _figure, audio_container, audio_signal
from forensics.analyzers.audio_signal import _Runs
from forensics.analyzers.base import AnalysisContext, AnalysisError, validate_parameters
from tests import audio_fixtures as fx

SPEECH_FORMATS = [
    "speech_wav",
    "speech_opus_ogg",
    "speech_opus_webm",
    "speech_aac_m4a",
    "speech_mp3",
    "speech_amr",
    "speech_amr_3gp",
    "speech_flac",
    "speech_video_mp4",
]


@pytest.fixture(scope="session")
def audio_set(tmp_path_factory):
    return fx.AudioSet(tmp_path_factory.mktemp("audio"))


def run(module, path, **params):
    ctx = AnalysisContext(original_name=os.path.basename(str(path)), size=os.path.getsize(path))
    result = module.analyze(str(path), validate_parameters(module.PARAMETERS, params), ctx)
    assert_plain_json(result)  # results are stored and signed as JSON
    by_name = {}
    for f in result["findings"]:
        by_name.setdefault(f["name"], f)
    return result, ctx, by_name


def assert_plain_json(value):
    """Only JSON's own types (no numpy scalars, tuples or NaN): what is signed is what is read back."""
    if isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for v in value.values():
            assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain_json(v)
    else:
        assert type(value) in (str, int, float, bool, type(None)), (type(value), value)
        assert not (type(value) is float and value != value)


def all_named(result, name):
    return [f for f in result["findings"] if f["name"] == name]


# ---------------------------------------------------------------- the analyzer contract


@pytest.mark.parametrize("module", [audio_container, audio_signal])
def test_module_declares_the_contract(module):
    assert module.NAME in ("audio.container", "audio.signal")
    assert module.VERSION and module.DESCRIPTION and module.LIMITS
    assert all(isinstance(a, str) for a in module.ACCEPTS)
    validate_parameters(module.PARAMETERS, {})


@pytest.mark.parametrize("module", [audio_container, audio_signal])
@pytest.mark.parametrize("name", ["speech_opus_ogg", "speech_mp3", "clipped_dc_stereo_wav"])
def test_same_file_twice_gives_identical_findings(audio_set, module, name):
    path = audio_set.get(name).path
    first, ctx1, _ = run(module, path)
    second, ctx2, _ = run(module, path)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert [a.sha256 for a in ctx1.artifacts] == [a.sha256 for a in ctx2.artifacts]


@pytest.mark.parametrize("module", [audio_container, audio_signal])
def test_every_result_records_the_decoder(audio_set, module):
    result, _, f = run(module, audio_set.get("speech_opus_ogg").path)
    decoder = f["decoder"]["value"]
    assert decoder["decoder"] == "PyAV/FFmpeg"
    assert decoder["libavcodec"] and decoder["pyav"]
    assert decoder["output_sample_rate"] == 48000
    assert abs(decoder["sample_count"] - 7.68 * 48000) < 0.05 * 48000
    assert {"pyav", "libavcodec", "numpy"} <= set(result["libraries"])
    for finding in result["findings"]:
        assert finding["class"] in ("fact", "measurement", "indicator", "visual")
        assert finding["name"].replace("_", "").isalnum() and finding["name"].islower()


# ---------------------------------------------------------------- audio.container: facts


@pytest.mark.parametrize("name", SPEECH_FORMATS)
def test_container_facts_match_how_the_file_was_made(audio_set, name):
    sample = audio_set.get(name)
    truth = sample.truth
    _, _, f = run(audio_container, sample.path)
    assert f["codec"]["value"].startswith(truth["codec"][:3])  # mp3float, amrnb, pcm_s16le...
    assert f["container_format"]["value"] == truth["container"]
    assert f["sample_rate"]["value"] == truth["sample_rate"]
    assert f["channels"]["value"] == truth["channels"]
    assert f["duration"]["value"] == pytest.approx(truth["duration"], abs=0.35)  # codec delay, padding
    assert f["payload_hash"]["value"].startswith("sha256:") and f["payload_hash"]["packets"] > 10
    assert f["structure"]["anomaly_count"] == 0, f["structure"]
    if name != "speech_wav":
        assert f["bit_rate"]["value"] > 0
    if name not in ("speech_wav", "speech_amr", "speech_amr_3gp"):  # FFmpeg leaves no name in these
        assert any("Lav" in e["value"] for e in f["encoder_strings"]["value"])


def test_video_soundtrack_is_found_among_the_streams(audio_set):
    _, _, f = run(audio_container, audio_set.get("speech_video_mp4").path)
    types = [s["type"] for s in f["streams"]["value"]]
    assert types.count("video") == 1 and types.count("audio") == 1
    assert f["codec"]["value"] == "aac"


def test_opus_header_facts(audio_set):
    _, _, f = run(audio_container, audio_set.get("speech_opus_ogg").path)
    structure = f["structure"]
    assert structure["parser"] == "ogg" and structure["logical_streams"] == 1
    stream = structure["value"]["logical_streams"][0]
    assert stream["codec"] == "opus" and stream["channels"] == 1 and stream["pre_skip"] == 312
    assert stream["duration_s"] == pytest.approx(7.68, abs=0.02)
    vendor = [e["value"] for e in f["encoder_strings"]["value"] if e["source"] == "OpusTags vendor"]
    assert len(vendor) == 1 and vendor[0].startswith("Lavf")


def test_creation_time_tag_is_reported(tmp_path):
    path = fx.encode(
        fx.tone(440, 1.0),
        48000,
        tmp_path / "tagged.m4a",
        metadata={"creation_time": "2024-05-01T10:20:30.000000Z"},
    )
    _, _, f = run(audio_container, path)
    values = f["creation_tags"]["value"]
    assert any("2024-05-01" in str(v) for v in values.values()), values
    assert any(k.startswith("mp4 movie creation_time") for k in values)


def test_mp3_frames_agree_with_the_info_header(audio_set):
    _, _, f = run(audio_container, audio_set.get("speech_mp3").path)
    s = f["structure"]["value"]
    assert s["vbr_header"]["type"] == "Info"
    assert s["vbr_header"]["frames"] == s["frames"] > 100
    assert "mp3_frame_count_mismatch" not in f


def test_mp4_sample_tables_cover_mdat_exactly(audio_set):
    _, _, f = run(audio_container, audio_set.get("speech_aac_m4a").path)
    s = f["structure"]["value"]
    assert s["major_brand"] == "M4A "
    assert s["referenced_sample_bytes"] == s["mdat_bytes"] > 0
    assert s["tracks"][0]["sample_entry"] == "mp4a"


# ---------------------------------------------------------------- audio.container: payload hash


@pytest.mark.parametrize(
    "copy, source",
    [
        ("opus_ogg_remux_webm", "speech_opus_ogg"),
        ("opus_ogg_remux_mka", "speech_opus_ogg"),
        ("aac_m4a_remux_mka", "speech_aac_m4a"),
        ("aac_m4a_remux_adts", "speech_aac_m4a"),
        ("aac_adts_remux_m4a", "speech_aac_m4a"),
        ("mp3_remux_mka", "speech_mp3"),
        ("speech_amr_3gp", "speech_amr"),
    ],
)
def test_payload_hash_survives_remuxing(audio_set, copy, source):
    a = run(audio_container, audio_set.get(source).path)[2]["payload_hash"]
    b = run(audio_container, audio_set.get(copy).path)[2]["payload_hash"]
    assert audio_set.get(copy).path.read_bytes() != audio_set.get(source).path.read_bytes()
    assert a["value"] == b["value"]
    assert a["packets"] == b["packets"]


def test_payload_hash_changes_when_reencoded(audio_set):
    a = run(audio_container, audio_set.get("speech_opus_ogg").path)[2]["payload_hash"]["value"]
    b = run(audio_container, audio_set.get("opus_ogg_reencoded").path)[2]["payload_hash"]["value"]
    assert a != b


def test_payload_hash_changes_when_one_packet_changes(audio_set, tmp_path):
    src = audio_set.get("speech_wav").path
    data = bytearray(src.read_bytes())
    data[-1001] ^= 1  # one PCM sample bit
    path = tmp_path / "edited.wav"
    path.write_bytes(bytes(data))
    assert (
        run(audio_container, path)[2]["payload_hash"]["value"]
        != run(audio_container, src)[2]["payload_hash"]["value"]
    )


# ---------------------------------------------------------------- audio.container: structure


def ogg_page_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS"
        nseg = data[pos + 26]
        offsets.append(pos)
        pos += 27 + nseg + sum(data[pos + 27 : pos + 27 + nseg])
    return offsets + [len(data)]


def test_ogg_crc_matches_a_bitwise_reference():
    def reference(data):
        crc = 0
        for byte in data:
            crc ^= byte << 24
            for _ in range(8):
                crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
        return crc

    rng = np.random.default_rng(5)
    for n in (0, 1, 27, 300, 4000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert _audio_struct.ogg_crc(data) == reference(data)


def test_ogg_crc_error_is_found(audio_set, tmp_path):
    data = bytearray(audio_set.get("speech_opus_ogg").path.read_bytes())
    pages = ogg_page_offsets(bytes(data))
    data[pages[4] + 100] ^= 0x40  # a byte of audio in the 5th page
    path = tmp_path / "crc.ogg"
    path.write_bytes(bytes(data))
    _, _, f = run(audio_container, path)
    assert f["ogg_crc_errors"]["value"] == 1
    assert f["ogg_crc_errors"]["offsets"] == [pages[4]]


def test_ogg_missing_page_is_a_sequence_gap(audio_set, tmp_path):
    data = audio_set.get("speech_opus_ogg").path.read_bytes()
    pages = ogg_page_offsets(data)
    cut = data[: pages[5]] + data[pages[6] :]  # remove the 6th page
    path = tmp_path / "gap.ogg"
    path.write_bytes(cut)
    result, _, f = run(audio_container, path)
    assert f["ogg_page_sequence_gaps"]["value"] == 1
    assert f["ogg_page_sequence_gaps"]["offsets"] == [pages[5]]
    assert "ogg_crc_errors" not in f
    # the decoder still reads it: the signal analyzer measures the shorter file
    _, _, s = run(audio_signal, path, images=False)
    assert s["decoded_duration"]["value"] < 7.6


def test_chained_ogg_is_reported_as_concatenated(audio_set):
    _, _, f = run(audio_container, audio_set.get("opus_ogg_chained").path)
    assert f["concatenated_streams"]["value"] == 1
    assert f["structure"]["logical_streams"] == 2


def test_joined_mp3_files_are_reported(audio_set):
    _, _, f = run(audio_container, audio_set.get("mp3_concatenated").path)
    assert f["concatenated_streams"]["value"] == 1
    assert f["mp3_vbr_header_mid_stream"]["value"] == 1
    assert f["mp3_frame_count_mismatch"]["value"] == 1
    s = f["structure"]["value"]
    assert s["vbr_header"]["frames"] == 40 and s["frames"] == 80


def test_truncated_mp3_is_a_structural_finding_not_a_failure(audio_set, tmp_path):
    data = audio_set.get("speech_mp3").path.read_bytes()
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: len(data) // 2 + 33])
    _, _, f = run(audio_container, path)
    assert f["truncated"]["value"] == 1
    assert f["mp3_frame_count_mismatch"]["value"] == 1
    _, _, s = run(audio_signal, path, images=False)
    assert 3.0 < s["decoded_duration"]["value"] < 4.5


def test_truncated_wav_is_reported(audio_set, tmp_path):
    data = audio_set.get("speech_wav").path.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:100_000])
    _, _, f = run(audio_container, path)
    assert f["truncated"]["offsets"] == [4, 36]  # the RIFF size and the data chunk's size
    _, _, s = run(audio_signal, path, images=False)
    assert s["decoded_duration"]["value"] == round((100_000 - 44) / 2 / 22050, 3)
    assert "decode_errors" not in s


def test_wav_cut_inside_a_sample_is_reported_by_both_analyzers(audio_set, tmp_path):
    data = audio_set.get("speech_wav").path.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:100_001])  # half a 16-bit sample at the end
    _, _, f = run(audio_container, path)
    assert f["truncated"]["offsets"] == [4, 36]  # the RIFF size and the data chunk's size
    assert f["wav_partial_sample_frame"]["value"] == 1
    _, _, s = run(audio_signal, path, images=False)
    assert s["decode_errors"]["value"] == 1  # FFmpeg refuses the last, odd-sized packet
    assert 2.2 < s["decoded_duration"]["value"] < 2.27


def test_junk_after_mp4_boxes_is_reported(audio_set, tmp_path):
    data = audio_set.get("speech_aac_m4a").path.read_bytes()
    path = tmp_path / "junk.m4a"
    path.write_bytes(data + b"\x00\x00\x00\x10JUNKjunkjunkjunk")
    _, _, f = run(audio_container, path)
    assert f["mp4_unknown_top_level_box"]["value"] == 1


def test_mp4_chunk_pointing_outside_mdat_is_reported(audio_set, tmp_path):
    data = bytearray(audio_set.get("speech_aac_m4a").path.read_bytes())
    stco = data.find(b"stco")
    (first,) = struct.unpack_from(">I", data, stco + 12)
    struct.pack_into(">I", data, stco + 12, first + 10_000_000)
    path = tmp_path / "offset.m4a"
    path.write_bytes(bytes(data))
    _, _, f = run(audio_container, path)
    assert f["mp4_chunk_outside_mdat"]["value"] == 1
    assert f["mp4_mdat_unreferenced_bytes"]["value"] == 1


def test_amr_frames_are_counted(audio_set):
    _, _, f = run(audio_container, audio_set.get("speech_amr").path)
    s = f["structure"]["value"]
    assert s["variant"] == "AMR-NB" and s["modes_kbps"] == {"12.2": s["frames"]}
    assert s["duration_s"] == pytest.approx(7.7, abs=0.05)


def test_flac_streaminfo_is_read(audio_set):
    _, _, f = run(audio_container, audio_set.get("speech_flac").path)
    info = f["structure"]["value"]["streaminfo"]
    x, sr = audio_set.speech_samples()
    assert info["sample_rate"] == sr and info["total_samples"] == len(x) and info["bits_per_sample"] == 16
    assert info["md5"] != "0" * 32


@pytest.mark.parametrize("module", [audio_container, audio_signal])
@pytest.mark.parametrize("content", [b"", b"just some text, not audio\n" * 40, "png"])
def test_non_audio_input_is_refused_plainly(module, tmp_path, content):
    path = tmp_path / "input.bin"
    if content == "png":
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="PNG")
        content = buf.getvalue()
    path.write_bytes(content)
    with pytest.raises(AnalysisError) as err:
        run(module, path)
    assert str(err.value) and str(tmp_path) not in str(err.value)


@pytest.mark.parametrize("module", [audio_container, audio_signal])
def test_tags_that_are_not_utf8_do_not_break_the_analysis(module, audio_set, tmp_path):
    data = bytearray(audio_set.get("speech_aac_m4a").path.read_bytes())
    assert data[4:8] == b"ftyp"
    data[24] = 0x84  # inside the compatible brands, which FFmpeg exports as a tag
    path = tmp_path / "latin.m4a"
    path.write_bytes(bytes(data))
    _, _, f = run(module, path, **({"images": False} if module is audio_signal else {}))
    assert f["decoder"]["value"]["codec"] == "aac"


@pytest.mark.parametrize("module", [audio_container, audio_signal])
def test_garbage_after_an_ogg_header_does_not_crash(module, audio_set, tmp_path):
    data = audio_set.get("speech_opus_ogg").path.read_bytes()
    rng = np.random.default_rng(9)
    path = tmp_path / "garbage.ogg"
    path.write_bytes(data[:200] + rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    try:
        result, _, f = run(module, path)
    except AnalysisError:
        return
    if module is audio_container:
        assert f["structure"]["anomaly_count"] > 0


# ---------------------------------------------------------------- audio.signal: measurements


@pytest.mark.parametrize("name, cutoff", [("noise_lp4k_wav", 4000), ("noise_lp7k_wav", 7000)])
def test_bandwidth_of_lowpassed_noise(audio_set, name, cutoff):
    _, _, f = run(audio_signal, audio_set.get(name).path, images=False)
    assert abs(f["bandwidth"]["value"] - cutoff) <= 300
    assert f["bandwidth"]["sharp_cutoff"] is True


def test_bandwidth_of_full_band_noise_is_nyquist(audio_set):
    _, _, f = run(audio_signal, audio_set.get("noise_full_wav").path, images=False)
    assert f["bandwidth"]["value"] >= 23500
    assert f["bandwidth"]["sharp_cutoff"] is False


def test_mp3_at_32k_saved_as_wav_shows_a_low_cutoff(audio_set):
    sample = audio_set.get("noise_mp3_32k_as_wav")
    _, _, f = run(audio_signal, sample.path, images=False)
    assert f["bandwidth"]["value"] < sample.truth["bandwidth_below"]
    assert f["bandwidth"]["sharp_cutoff"] is True
    assert f["bandwidth"]["nyquist_hz"] == 24000


def test_low_bitrate_opus_shows_its_band_limit(audio_set):
    _, _, f = run(audio_signal, audio_set.get("speech_opus_ogg").path, images=False)
    assert f["bandwidth"]["value"] <= 12500 and f["bandwidth"]["sharp_cutoff"]


def test_exact_silence_runs_and_their_times(audio_set):
    sample = audio_set.get("silence_gaps_wav")
    result, _, f = run(audio_signal, sample.path, silence_min_ms=10, images=False)
    runs = [r["at"] for r in all_named(result, "silence_run")]
    assert runs == sample.truth["silence"]
    assert f["digital_silence"]["value"] == 2
    assert f["digital_silence"]["total_s"] == 0.75


def test_silence_shorter_than_the_minimum_is_not_listed(audio_set):
    result, _, f = run(audio_signal, audio_set.get("silence_gaps_wav").path, silence_min_ms=300, images=False)
    assert [r["at"] for r in all_named(result, "silence_run")] == [[2.5, 3.0]]


def test_clipping_and_dc_offset_per_channel(audio_set):
    sample = audio_set.get("clipped_dc_stereo_wav")
    result, _, f = run(audio_signal, sample.path, images=False)
    assert f["clipping"]["value"] == sample.truth["clipped_runs"]
    assert f["clipping"]["per_channel"] == [sample.truth["clipped_runs"], 0]
    worst = all_named(result, "clipped_run")
    assert len(worst) == 10 and all(w["channel"] == 0 for w in worst)
    # flat tops of a 1.5x 100 Hz sine clipped at 1.0 last arcsin-based 2.68 ms: 118 samples at 44.1 kHz
    assert all(abs(w["value"] - 118) <= 1 for w in worst)
    assert worst[0]["at"][1] - worst[0]["at"][0] == pytest.approx(0.0027, abs=0.0011)
    dc = f["dc_offset"]["value"]
    assert dc[0] == pytest.approx(0.0, abs=1e-3) and dc[1] == pytest.approx(0.05, abs=1e-3)
    assert f["peak_level"]["per_channel"][0] == pytest.approx(0.0, abs=0.01)
    assert f["rms_level"]["unit"] == "dBFS"


@pytest.mark.parametrize(
    "label, samples",
    [
        ("silent", fx.silence(2.0, 16000)),
        ("5 ms", fx.tone(440, 0.005, 16000)),
        ("one sample", fx.tone(1, 1 / 16000, 16000, phase=1.0)),
    ],
)
def test_silent_and_tiny_files_are_measured_without_errors(tmp_path, label, samples):
    path = fx.write_wav(samples, 16000, tmp_path / "tiny.wav")
    result, ctx, f = run(audio_signal, path)
    assert f["decoded_duration"]["value"] == round(samples.size / 16000, 3)
    assert len(ctx.artifacts) == 2
    if label == "silent":
        assert f["bandwidth"]["value"] is None
        assert [r["at"] for r in all_named(result, "silence_run")] == [[0.0, 2.0]]
        assert f["peak_level"]["value"] is None and f["rms_level"]["value"] is None
    elif label == "5 ms":
        assert f["bandwidth"]["value"] is not None
    run(audio_container, path)


def test_no_clipping_in_quiet_speech(audio_set):
    _, _, f = run(audio_signal, audio_set.get("speech_wav").path, images=False)
    assert f["clipping"]["value"] == 0


@pytest.mark.parametrize("name", SPEECH_FORMATS)
def test_every_format_decodes_at_its_native_rate(audio_set, name):
    sample = audio_set.get(name)
    _, _, f = run(audio_signal, sample.path, images=False)
    decoder = f["decoder"]["value"]
    assert decoder["output_sample_rate"] == sample.truth["sample_rate"]
    assert f["decoded_duration"]["value"] == pytest.approx(sample.truth["duration"], abs=0.1)
    assert "decode_errors" not in f


def test_lossless_speech_keeps_exact_zeros_between_words(audio_set):
    # espeak-ng writes exact zeros in pauses; FLAC keeps them, Opus does not
    wav = run(audio_signal, audio_set.get("speech_wav").path, images=False)[2]
    flac = run(audio_signal, audio_set.get("speech_flac").path, images=False)[2]
    opus = run(audio_signal, audio_set.get("speech_opus_ogg").path, images=False)[2]
    assert wav["digital_silence"]["value"] == flac["digital_silence"]["value"] > 0
    assert opus["digital_silence"]["value"] == 0


# ---------------------------------------------------------------- audio.signal: pictures


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data)).size


def test_waveform_and_spectrogram_are_artifacts(audio_set):
    result, ctx, f = run(audio_signal, audio_set.get("clipped_dc_stereo_wav").path)
    refs = {a.name: f"sha256:{a.sha256}" for a in ctx.artifacts}
    assert f["waveform"]["artifact"] == refs["waveform.png"]
    assert f["spectrogram"]["artifact"] == refs["spectrogram.png"]
    assert f["waveform"]["class"] == f["spectrogram"]["class"] == "visual"
    width, height = png_size(ctx.artifacts[0].data)
    assert width == round(_figure.WIDTH_IN * _figure.DPI)
    assert height == round((1.2 + 1.9 * 2) * _figure.DPI)  # one panel per channel: two channels


def test_pictures_stay_bounded_for_long_audio(tmp_path):
    x = fx.concat(fx.noise(100, 16000, 0.1, seed=4), fx.silence(20, 16000))
    path = fx.write_wav(x, 16000, tmp_path / "long.wav")
    _, ctx, f = run(audio_signal, path)
    for artifact in ctx.artifacts:
        width, height = png_size(artifact.data)
        assert width == round(_figure.WIDTH_IN * _figure.DPI) and height <= 5 * _figure.DPI
    assert f["digital_silence"]["value"] == 1
    assert all_named(_run_result(path), "silence_run")[0]["at"] == [100.0, 120.0]


def _run_result(path):
    return run(audio_signal, path, images=False)[0]


def test_images_can_be_turned_off(audio_set):
    _, ctx, f = run(audio_signal, audio_set.get("speech_wav").path, images=False)
    assert ctx.artifacts == [] and "waveform" not in f


# ---------------------------------------------------------------- helpers


def test_runs_are_joined_across_blocks():
    runs = _Runs(min_len=3, keep=10, longest=False)
    signal = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1], dtype=bool)
    for start in range(0, signal.size, 2):  # blocks of two samples
        runs.feed(signal[start : start + 2], start)
    runs.close_at(signal.size)
    assert runs.kept.tolist() == [[4, 8], [10, 13]]
    assert runs.count == 2 and runs.samples == 7


def test_fixtures_write_exact_pcm(tmp_path):
    x = np.array([0.0, 1.0, -1.0, 0.5, -0.25], dtype=np.float32)
    for bits in (16, 24):
        y, rate = fx.read_wav(fx.write_wav(x, 8000, tmp_path / f"x{bits}.wav", bits=bits))
        assert rate == 8000
        assert y[0] == 0.0 and y[2] == -1.0 and y[1] == pytest.approx(1.0, abs=2 ** -(bits - 2))
        assert y[3] == 0.5 and y[4] == -0.25
