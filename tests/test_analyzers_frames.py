"""audio.frames: the AAC and MP3 frame grids, earlier encodings and cuts that shift a grid.

Pure: no database. The grid arithmetic is checked on signals built from
sparse MDCT frames or sparse MP3 granules (so the true offset is known to the
sample); the analyzer on real speech (Debian's Asterisk prompts) encoded with
FFmpeg's AAC encoder and libmp3lame;
the quoted rates by rerunning the quick subset of the evaluation
(forensics/evaluation/frames.py) and comparing it with the stored table.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from forensics.analyzers import _audio, _frames, _mp3grid, _rates, audio_frames
from forensics.analyzers.base import FINDING_CLASSES, AnalysisContext, AnalysisError, validate_parameters
from forensics.evaluation import audio, frames, sources, tables
from tests.test_audio_coverage import HOSTILE, wav

pytestmark = pytest.mark.nodb

SR = 16000


def run(path, **params) -> dict:
    ctx = AnalysisContext(original_name=str(path), workdir=os.path.dirname(str(path)))
    out = audio_frames.analyze(str(path), validate_parameters(audio_frames.PARAMETERS, params), ctx)
    for f in out["findings"]:
        assert f["class"] in FINDING_CLASSES
    json.dumps(out)  # a result is JSON
    return out


def named(out: dict, name: str) -> list[dict]:
    return [f for f in out["findings"] if f["name"] == name]


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the grid arithmetic ------------------------------------------------------------


def _mdct_matrix() -> np.ndarray:
    """(2048, 1024): the windowed MDCT basis; its transpose analyses, itself synthesises."""
    return _frames.mdct(np.eye(2 * _frames.HOP))


def _from_sparse_frames(count: int, rng) -> np.ndarray:
    """Overlap-add of inverse MDCTs of frames with 80% zero coefficients (what an AAC decoder outputs)."""
    basis = _mdct_matrix()
    out = np.zeros((count + 1) * _frames.HOP)
    for k in range(count):
        coef = rng.standard_normal(_frames.HOP) * 0.01
        coef[rng.random(_frames.HOP) < 0.8] = 0.0
        out[k * _frames.HOP : k * _frames.HOP + 2 * _frames.HOP] += basis @ coef
    return out


def test_the_mdct_is_orthogonal_with_overlap_add():
    # Princen-Bradley: analysis of the overlap-added synthesis returns the coefficients.
    rng = np.random.default_rng(1)
    basis = _mdct_matrix()
    coef = rng.standard_normal((3, _frames.HOP))
    x = np.zeros(4 * _frames.HOP)
    for k in range(3):
        x[k * _frames.HOP : (k + 2) * _frames.HOP] += basis @ coef[k]
    middle = _frames.mdct(x[None, _frames.HOP : 3 * _frames.HOP])[0]
    assert np.allclose(middle, coef[1], atol=1e-12)
    assert np.allclose(_frames.WINDOW[: _frames.HOP] ** 2 + _frames.WINDOW[_frames.HOP :] ** 2, 1.0)


@pytest.mark.parametrize("shift", [0, 1, 337, 1023])
def test_the_probe_finds_the_grid_to_the_sample(shift):
    rng = np.random.default_rng(shift)
    x = np.concatenate([np.zeros(shift), _from_sparse_frames(8, rng)])
    offset, peak, contrast = _frames.probe(x, 2 * _frames.HOP + 5)
    assert offset == shift % _frames.HOP
    assert peak > 0.7 and contrast > 0.6
    assert _frames.probe(x, len(x) - 100) is None  # no room for 3072 samples


def test_a_trace_follows_a_cut_that_shifts_the_grid():
    rng = np.random.default_rng(3)
    x = _from_sparse_frames(40, rng)
    cut = 20 * _frames.HOP + 300
    y = np.concatenate([x[:cut], x[cut + 500 :]])  # 500 samples removed
    traces = [_frames.trace(y, 0), _frames.trace(y, (0 - 500) % _frames.HOP)]
    label, excess = _frames.labels(traces, len(y))
    segs = _frames.segments(label, excess, 4)
    grids = [s.label for s in segs if s.label is not None]
    assert grids == [0, 524]
    before, after = [s for s in segs if s.label is not None]
    assert before.last * _frames.HOP <= cut + _frames.HOP and after.first * _frames.HOP >= cut - _frames.HOP


def _from_sparse_granules(count: int, rng) -> np.ndarray:
    """Sum of MP3 long-block granules (every 576 samples) with 80% zero coefficients."""
    basis = _mp3grid.basis().astype(np.float64)
    out = np.zeros(count * _mp3grid.GRANULE + _mp3grid.SPAN)
    for k in range(count):
        coef = rng.standard_normal(_mp3grid.GRANULE) * 0.01
        coef[rng.random(_mp3grid.GRANULE) < 0.8] = 0.0
        out[k * _mp3grid.GRANULE : k * _mp3grid.GRANULE + _mp3grid.SPAN] += coef @ basis
    return out


def test_the_mp3_synthesis_functions_from_the_decoder_are_near_orthogonal():
    basis = _mp3grid.basis().astype(np.float64)
    assert basis.shape == (_mp3grid.GRANULE, _mp3grid.SPAN)
    assert np.allclose(np.sum(basis**2, axis=1), 1.0, atol=1e-5)
    # within a granule and with the next two granules (the filter bank is near-perfect reconstruction)
    assert np.abs(basis @ basis.T - np.eye(_mp3grid.GRANULE)).max() < 1e-4
    for shift in (_mp3grid.GRANULE, 2 * _mp3grid.GRANULE):
        later = np.zeros_like(basis)
        later[:, shift:] = basis[:, :-shift]
        assert np.abs(basis @ later.T).max() < 1e-4
    # coefficient k is a narrow band: its spectrum peaks near (k + 0.5) / 576 of the sample rate
    for k in (10, 200, 500):
        peak = np.argmax(np.abs(np.fft.rfft(basis[k], 8 * _mp3grid.SPAN)))
        assert abs(peak / (8 * _mp3grid.SPAN) - (k + 0.5) / (2 * _mp3grid.GRANULE)) < 0.01


@pytest.mark.parametrize("shift", [0, 1, 47, 331, 575])
def test_the_mp3_probe_finds_the_granule_grid_to_the_sample(shift):
    rng = np.random.default_rng(shift)
    x = np.concatenate([np.zeros(shift), _from_sparse_granules(20, rng)])
    offset, peak, contrast = _mp3grid.probe(x, 2 * _mp3grid.GRANULE + 5)
    assert offset == shift % _mp3grid.GRANULE
    assert peak > 0.7 and contrast > 0.6
    assert _mp3grid.probe(x, len(x) - 100) is None  # no room for twelve granules


def test_an_mp3_trace_follows_a_cut_that_shifts_the_grid():
    rng = np.random.default_rng(4)
    x = _from_sparse_granules(60, rng)
    cut = 30 * _mp3grid.GRANULE + 100
    y = np.concatenate([x[:cut], x[cut + 1000 :]])  # 1000 samples removed
    traces = [_mp3grid.trace(y, 0), _mp3grid.trace(y, (0 - 1000) % _mp3grid.GRANULE)]
    label, excess = _frames.labels(traces, len(y), hop=_mp3grid.GRANULE, centre=_mp3grid.SPAN // 2)
    segs = _frames.segments(label, excess, 4)
    assert [s.label for s in segs if s.label is not None] == [0, 152]
    before, after = [s for s in segs if s.label is not None]
    g = _mp3grid.GRANULE
    assert before.last * g <= cut + 2 * g and after.first * g >= cut - 2 * g


# --- the analyzer on real speech ------------------------------------------------------


def decoded_speech(tmp_path_factory, seed: int, speaker: str, codec: str, bit_rate: int, suffix: str):
    """24 s of a real speaker in a room, encoded with ``codec`` and decoded: (samples, decoded floats)."""
    rng = np.random.default_rng(seed)
    x = audio.resample(sources.speech(speaker, 24, rng), sources.SAMPLE_RATE, SR)
    x = audio.room(x, SR, rng, 0.3) + audio.noise(len(x), SR, rng, "pink", -55)
    path = tmp_path_factory.mktemp("frames") / f"first{suffix}"
    path.write_bytes(audio.encode(x, codec, SR, bit_rate=bit_rate))
    return x, _audio.decode(str(path)).samples.astype(np.float64)


@pytest.fixture(scope="module")
def speech_aac(tmp_path_factory):
    """A male speaker, AAC-encoded at 48 kbit/s, decoded (float samples)."""
    return decoded_speech(tmp_path_factory, 11, "it_IT_m_Carlo", "aac", 48000, ".m4a")


def test_a_decoded_aac_cut_and_saved_as_wav_shows_the_earlier_encoding_and_the_cut(speech_aac, tmp_path):
    _, y = speech_aac
    cut = 10 * SR + 123
    edited = np.concatenate([y[:cut], y[cut + 7000 :]])
    out = run(write(tmp_path, "edited.wav", audio.encode(edited, "wav", SR)))
    stream = named(out, "stream")[0]["value"]
    assert (
        stream["codec"] == "pcm_s16le" and stream["sample_rate"] == SR and stream["own_grid_offset"] is None
    )
    assert named(out, "decoded_coverage")[0]["value"]["complete"] is True
    assert out["condition"] == {"evidence": "pcm", "sample_rate": "16000"}
    earlier = named(out, "earlier_aac_encoding")
    assert len(earlier) == 1 and earlier[0]["raw_score"] > 0.3
    changes = named(out, "frame_grid_change")
    assert len(changes) == 1
    change = changes[0]
    lo, hi = change["at"]
    assert lo - 0.1 <= cut / SR <= hi + 0.1 and hi - lo < 1.0
    assert change["value"]["shift_samples"] == (-7000) % 1024
    rates = change["rates"]
    assert rates["measured"] is True and rates["condition"] == out["condition"]
    assert rates["table_sha256"] and "detection_ci95" in rates
    assert change["score"] == _rates.calibrated("audio.frames", "frame_grid_change", change["raw_score"])
    assert change["uncertainty"]["unit"] == "s"
    assert change["uncertainty"]["value"] == rates["localisation_p90_s"]


def test_the_unedited_decoded_aac_has_a_grid_and_no_change(speech_aac, tmp_path):
    _, y = speech_aac
    out = run(write(tmp_path, "plain.wav", audio.encode(y * 0.5, "wav", SR)))  # a gain keeps zeros zero
    grid = named(out, "frame_grid")[0]["value"]
    assert grid["found"] and grid["grids"][0]["offset"] == 0
    assert named(out, "earlier_aac_encoding") and not named(out, "frame_grid_change")


def test_audio_never_aac_encoded_is_neutral(speech_aac, tmp_path):
    x, _ = speech_aac
    for name, data in [("raw.wav", audio.encode(x, "wav", SR)), ("first.mp3", audio.encode(x, "mp3", SR))]:
        out = run(write(tmp_path, name, data))
        grid = named(out, "frame_grid")[0]
        assert grid["class"] == "fact" and grid["value"]["found"] is False and "neutral" in grid["note"]
        assert not [f for f in out["findings"] if f["class"] == "indicator"]


def test_an_aac_file_sets_its_own_grid_aside(speech_aac, tmp_path):
    x, _ = speech_aac
    out = run(write(tmp_path, "single.m4a", audio.encode(x, "aac", SR, bit_rate=48000)))
    stream = named(out, "stream")[0]["value"]
    assert stream["codec"] == "aac" and stream["frame_size"] == 1024 and stream["own_grid_offset"] == 0
    assert out["condition"]["evidence"] == "aac <=64 kbit/s"
    assert not named(out, "earlier_aac_encoding") and not named(out, "frame_grid_change")


@pytest.fixture(scope="module")
def speech_mp3(tmp_path_factory):
    """A female speaker, MP3-encoded (libmp3lame 64 kbit/s, 16 kHz), decoded."""
    return decoded_speech(tmp_path_factory, 12, "fr_CA_f_June", "mp3", 64000, ".mp3")


# FFmpeg's decoder drops LAME's encoder delay (576 + 529 samples): granules start at 47 mod 576
LAME_GRID = (-(576 + 529)) % 576


def test_a_decoded_mp3_cut_and_saved_as_wav_shows_the_earlier_encoding_and_the_cut(speech_mp3, tmp_path):
    _, y = speech_mp3
    cut = 11 * SR + 321
    edited = np.concatenate([y[:cut], y[cut + 9000 :]])
    out = run(write(tmp_path, "edited.wav", audio.encode(edited, "wav", SR)))
    grid = named(out, "mp3_grid")[0]
    assert grid["class"] == "fact" and grid["value"]["slot_samples"] == 576
    assert {g["offset"] for g in grid["value"]["grids"]} == {LAME_GRID, (LAME_GRID - 9000) % 576}
    earlier = named(out, "earlier_mp3_encoding")
    assert len(earlier) == 1 and earlier[0]["raw_score"] > 0.3
    changes = named(out, "mp3_grid_change")
    assert len(changes) == 1
    lo, hi = changes[0]["at"]
    assert lo - 0.1 <= cut / SR <= hi + 0.1 and hi - lo < 1.0
    assert changes[0]["value"]["shift_samples"] == (-9000) % 576
    rates = changes[0]["rates"]
    assert rates["measured"] is True and rates["condition"] == out["condition"]
    assert changes[0]["score"] == _rates.calibrated(
        "audio.frames", "mp3_grid_change", changes[0]["raw_score"]
    )
    assert earlier[0]["rates"]["measured"] is True
    # the AAC search sees no AAC grid in it
    assert not named(out, "earlier_aac_encoding") and not named(out, "frame_grid_change")


def test_an_mp3_file_sets_its_own_grid_aside_and_a_transcode_keeps_the_earlier_one(speech_mp3, tmp_path):
    x, y = speech_mp3
    out = run(write(tmp_path, "single.mp3", audio.encode(x, "mp3", SR, bit_rate=64000)))
    stream = named(out, "stream")[0]["value"]
    assert stream["codec"].startswith("mp3") and stream["own_grid_offset"] == LAME_GRID
    assert named(out, "mp3_grid")[0]["value"]["own_grid_offset"] == LAME_GRID
    assert not [f for f in out["findings"] if f["class"] == "indicator"]
    # decoded MP3, shifted by 200 samples, transcoded to AAC: the MP3 grid survives at 96 kbit/s
    shifted = np.concatenate([np.zeros(200), y])
    out = run(write(tmp_path, "transcoded.m4a", audio.encode(shifted, "aac", SR, bit_rate=96000)))
    grid = named(out, "mp3_grid")[0]["value"]
    assert grid["found"] and grid["grids"][0]["offset"] == (LAME_GRID + 200) % 576
    assert named(out, "earlier_mp3_encoding") and not named(out, "mp3_grid_change")


def test_audio_never_mp3_encoded_has_no_mp3_grid(speech_aac, tmp_path):
    x, y = speech_aac
    for name, data in [("raw.wav", audio.encode(x, "wav", SR)), ("aac.wav", audio.encode(y, "wav", SR))]:
        out = run(write(tmp_path, name, data))
        grid = named(out, "mp3_grid")[0]
        assert grid["value"]["found"] is False and "neutral" in grid["note"]
        assert not named(out, "earlier_mp3_encoding") and not named(out, "mp3_grid_change")


def test_max_seconds_limits_what_is_analysed_and_says_so(speech_aac, tmp_path):
    _, y = speech_aac
    out = run(write(tmp_path, "long.wav", audio.encode(y, "wav", SR)), max_seconds=5.0)
    value = named(out, "stream")[0]["value"]
    assert value["analysed_s"] == 5.0 and value["decoded_s"] > 20


def test_conditions_come_from_the_stream():
    assert audio_frames.condition("pcm_s16le", None, 16000) == {"evidence": "pcm", "sample_rate": "16000"}
    assert audio_frames.condition("aac", 95800, 16000)["evidence"] == "aac >64 kbit/s"
    assert audio_frames.condition("mp3float", 64000, 44100) == {
        "evidence": "mp3 <=64 kbit/s",
        "sample_rate": "44100",
    }
    assert audio_frames.condition("opus", None, 48000)["evidence"] == "opus"
    # a condition the evaluation never measured does not borrow another's figure
    unmeasured = _rates.for_condition(
        "audio.frames", "frame_grid_change", {"evidence": "pcm", "sample_rate": "44100"}
    )
    assert unmeasured["measured"] is False and "never measured" in unmeasured["note"]


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_wav_headers_fail_with_a_reason_or_state_their_coverage(name, tmp_path):
    content, reason = HOSTILE[name]
    try:
        out = run(write(tmp_path, f"{name}.wav", content))
    except AnalysisError as exc:
        assert str(exc)
        if reason:
            assert reason in str(exc)
        return
    assert len(named(out, "decoded_coverage")) == 1


def test_garbage_and_too_short_input_are_refused(tmp_path):
    with pytest.raises(AnalysisError, match="not a readable|no audio stream"):
        run(write(tmp_path, "junk.bin", np.random.default_rng(0).bytes(4000)))
    with pytest.raises(AnalysisError, match="too short"):
        run(write(tmp_path, "short.wav", wav(data=np.zeros(2000, dtype="<i2").tobytes())))


# --- the quoted figures ---------------------------------------------------------------


def test_limits_quote_the_stored_table():
    table = _rates.table("audio.frames")
    assert table and table["indicators"]["frame_grid_change"]["rows"]
    text = " ".join(audio_frames.LIMITS)
    assert "frame_grid_change [evidence pcm, sample rate 16000]: found" in text
    assert "earlier_aac_encoding [evidence pcm, sample rate 16000]: found" in text
    assert "earlier_mp3_encoding [evidence pcm, sample rate 16000]: found" in text
    assert "mp3_grid_change [evidence pcm, sample rate 16000]: found" in text
    # the thresholds the limits name are the ones the analyzer uses
    assert f"probe contrast {_mp3grid.PROBE_CONTRAST:g}, granule excess {_mp3grid.FRAME_EXCESS:g}" in text


def test_the_quick_evaluation_reproduces_the_stored_quick_table():
    result = frames.evaluate(quick=True, jobs=1)
    stored = _rates.table("audio.frames")["quick"]
    assert tables.differences(json.loads(json.dumps(result["indicators"])), stored) == []
