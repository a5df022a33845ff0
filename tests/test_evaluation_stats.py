"""The interval and calibration arithmetic the rate tables rest on, against independent values."""

import json

import pytest
from scipy import stats as sps

from forensics.analyzers import _rates
from forensics.evaluation import stats, tables

pytestmark = pytest.mark.nodb


def test_wilson_matches_the_textbook_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605.
    lo, hi = stats.wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    lo, hi = stats.wilson(15, 148)
    assert (round(lo, 4), round(hi, 4)) == (0.0624, 0.1605)
    assert stats.wilson(0, 10)[0] == 0.0 and stats.wilson(10, 10)[1] == 1.0
    assert stats.wilson(0, 0) is None
    with pytest.raises(ValueError):
        stats.wilson(3, 2)


def test_poisson_interval_is_the_exact_garwood_interval():
    lo, hi = stats.poisson_interval(0, 2.0)
    assert lo == 0.0 and hi == pytest.approx(sps.chi2.ppf(0.975, 2) / 2 / 2.0)
    lo, hi = stats.poisson_interval(3, 1.0)
    # Garwood (1936): 3 events -> 0.619-8.767
    assert (round(lo, 3), round(hi, 3)) == (0.619, 8.767)
    assert stats.poisson_interval(1, 0) is None


def test_isotonic_map_is_monotone_and_reproduces_frequencies():
    scores = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    outcomes = [0, 1, 0, 0, 1, 0, 1, 1]
    points = stats.isotonic(scores, outcomes)
    probs = [p for _, p in points]
    assert probs == sorted(probs)
    assert stats.apply_map(points, 0.05) == points[0][1]
    assert stats.apply_map(points, 0.95) == 1.0
    # the pooled blocks' frequencies average back to the overall rate
    assert sum(stats.apply_map(points, s) for s in scores) == pytest.approx(sum(outcomes))
    table = stats.reliability([stats.apply_map(points, s) for s in scores], outcomes, bands=4)
    assert sum(row["n"] for row in table) == len(scores)


def test_isotonic_map_gives_a_tied_score_the_frequency_of_all_its_cases():
    # Three cases at 0.0 (one an edit), one edit at 1.0: a raw score of 0.0
    # is right 1 time in 3, not 1 in 1 (the tie's edit sorted after the others).
    points = stats.isotonic([0.0, 0.0, 0.0, 1.0], [0, 1, 0, 1])
    assert points == [(0.0, pytest.approx(1 / 3)), (1.0, 1.0)]
    assert stats.apply_map(points, 0.0) == pytest.approx(1 / 3)
    assert len({s for s, _ in stats.isotonic([0.0] * 5 + [0.5] * 5, [0, 1, 0, 1, 0, 1, 1, 0, 1, 1])}) == 2


def test_rates_lookup_quotes_only_the_measured_condition(tmp_path, monkeypatch):
    monkeypatch.setattr(_rates, "RATES_DIR", tmp_path)
    _rates.reload()
    row = tables.rate_row({"codec": "wav", "band": "12-20 dB"}, 60, 45, 2.5, 1)
    spec = {
        "condition": ["codec", "band"],
        "found_when": "within 0.5 s",
        "false_alarm_unit": "hour",
        "rows": [row],
    }
    spec["calibration"] = [[0.0, 0.1], [0.5, 0.8]]
    tables.write("x.test", {"indicators": {"edit": spec}, "set": "a set"}, tmp_path)
    got = _rates.for_condition("x.test", "edit", {"codec": "wav", "band": "12-20 dB", "other": 1})
    assert got["measured"] and got["detected"] == 45 and got["detection_ci95"] == [0.628, 0.842]
    assert got["table_sha256"] and got["false_alarm_unit"] == "hour"
    missing = _rates.for_condition("x.test", "edit", {"codec": "opus", "band": "12-20 dB"})
    assert missing["measured"] is False and "never measured" in missing["note"]
    assert "detection_rate" not in missing
    assert _rates.for_condition("x.test", "other", {})["measured"] is False
    assert _rates.calibrated("x.test", "edit", 0.2) == 0.1 and _rates.calibrated("x.test", "edit", 0.7) == 0.8
    assert any("45/60" in line for line in _rates.limits("x.test"))
    json.loads((tmp_path / "x.test.json").read_text())
    _rates.reload()


def _tables():
    return sorted(_rates.RATES_DIR.glob("*.json"))


def test_every_analyzer_with_an_indicator_has_a_full_and_a_quick_table():
    import inspect

    from forensics import analyzers

    names = {p.stem for p in _tables()}
    for name, module in analyzers.registry().items():
        if '"indicator"' in inspect.getsource(module):
            assert name in names, f"{name} emits indicators but has no rates table"
            data = _rates.table(name)
            assert data["indicators"] and data["quick"], name
            assert (
                data["evaluated"] and data["set"] and data["command"].startswith("python bench/evaluate.py")
            )
            assert set(data["quick"]) <= set(data["indicators"]), name


@pytest.mark.parametrize("path", _tables(), ids=lambda p: p.stem)
def test_stored_intervals_follow_from_the_stored_counts(path):
    """No figure in a table was edited by hand: each interval is recomputed from its counts."""
    data = json.loads(path.read_text())
    for block in ("indicators", "quick"):
        for name, spec in data[block].items():
            for row in spec["rows"]:
                if row["positives"]:
                    lo, hi = stats.wilson(row["detected"], row["positives"])
                    assert row["detection_ci95"] == [round(lo, 3), round(hi, 3)], (name, row["condition"])
                    assert row["detection_rate"] == round(row["detected"] / row["positives"], 3)
                if row["negatives"] and isinstance(row["negatives"], int):
                    lo, hi = stats.wilson(row["false_alarms"], row["negatives"])
                    assert row["false_alarm_ci95"] == [round(lo, 3), round(hi, 3)], (name, row["condition"])
                elif row["negatives"]:
                    # exposures are stored rounded to 0.001: the interval is checked to that precision
                    n = row["negatives"]
                    widest = stats.poisson_interval(row["false_alarms"], max(n - 0.0005, 1e-9))[1]
                    narrowest = stats.poisson_interval(row["false_alarms"], n + 0.0005)[1]
                    assert narrowest - 0.001 <= row["false_alarm_ci95"][1] <= widest + 0.001, (
                        name,
                        row["condition"],
                    )
            points = spec.get("calibration") or []
            assert [p for _, p in points] == sorted(p for _, p in points), f"{name}: calibration not monotone"


def test_reruns_must_match_counts_exactly_and_measured_times_within_tolerance():
    stored = {
        "join": {
            "calibration": [[592.7, 0.4], [1070.3, 1.0]],
            "rows": [{"positives": 20, "detected": 17, "detection_rate": 0.85, "join_error_p90_s": 0.013}],
        }
    }
    drifted = {
        "join": {
            "calibration": [[556.7, 0.4], [1222.4, 1.0]],
            "rows": [{"positives": 20, "detected": 17, "detection_rate": 0.85, "join_error_p90_s": 0.054}],
        }
    }
    assert tables.differences(drifted, stored) == []
    for path, value in (
        (("rows", 0, "detected"), 16),  # a count
        (("rows", 0, "detection_rate"), 0.8),  # computed from counts
        (("rows", 0, "join_error_p90_s"), 0.2),  # a time beyond 0.06 s
        (("calibration", 0, 1), 0.5),  # a calibrated probability
        (("calibration", 1, 0), 1500.0),  # a threshold beyond 25%
    ):
        changed = json.loads(json.dumps(drifted))
        target = changed["join"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert len(tables.differences(changed, stored)) == 1, path
    assert tables.differences({"join": {}}, stored) != []
