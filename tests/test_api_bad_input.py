"""Public functions refuse input they would otherwise turn into a silent
wrong result (each case found by probing the API with bad input)."""

from __future__ import annotations

import numpy as np
import pytest

from demine.errors import ConfigError, SchemaError
from demine.evaluate import (
    clopper_pearson_interval,
    clopper_pearson_lower,
    evaluate,
    evaluate_lanes,
    match_alarms,
)
from demine.positions import interpolate_positions
from demine.process import run_stage
from demine.recording import RecordingWriter


def test_match_alarms_wants_xy_pairs_and_one_halo_per_target():
    # 10 x values were read as 5 (x, y) pairs
    with pytest.raises(ConfigError, match=r"alarm_xy must have shape \(n, 2\), got \(10,\)"):
        match_alarms(np.arange(10.0) + 0.05, np.zeros((3, 2)), 0.2)
    with pytest.raises(ConfigError, match="target_xy must have shape"):
        match_alarms(np.zeros((3, 2)), np.zeros((4, 3)), 0.5)
    with pytest.raises(ConfigError, match="one per target"):
        match_alarms(np.zeros((3, 2)), np.zeros((10, 2)), np.ones(3))
    hit, _ = match_alarms(np.array([[0.0, 0.1]]), np.array([[0.0, 0.0], [5.0, 5.0]]),
                          np.array([0.2, 0.2]))
    assert hit.tolist() == [0]


@pytest.mark.parametrize("k,n,conf", [(2.7, 10, 0.95), (7, 10, 1.5), (7, 10, float("nan")),
                                      (7, 10, 0.0), ("x", 10, 0.95)])
def test_clopper_pearson_refuses_counts_that_are_not_counts(k, n, conf):
    with pytest.raises(ConfigError):
        clopper_pearson_interval(k, n, confidence=conf)
    with pytest.raises(ConfigError):
        clopper_pearson_lower(k, n, confidence=conf)


def test_clopper_pearson_accepts_whole_floats():
    assert clopper_pearson_lower(10.0, 10) == pytest.approx(0.741, abs=1e-3)


@pytest.mark.parametrize("level", [-1.0, float("nan"), float("inf")])
def test_pd_at_a_false_alarm_level_that_is_not_a_rate(level):
    truth = {"x": np.array([0.0]), "y": np.array([0.0]), "type": np.array(["ap-mine"])}
    alarms = {"x": np.array([0.0]), "y": np.array([0.05]), "score": np.array([1.0])}
    with pytest.raises(ConfigError, match="false-alarm level"):
        evaluate(truth, alarms, area=10.0, far_levels=[level])


def test_positions_want_integer_times_and_a_positive_gap():
    t = np.arange(10) * 100_000_000
    v = np.arange(10.0)
    bad = t.astype(float)
    bad[3] = np.nan  # (was cast to INT64_MIN: every position NaN)
    with pytest.raises(ValueError, match="t_src must be integer UTC nanoseconds"):
        interpolate_positions(bad, v, t)
    with pytest.raises(ValueError, match="t_dst must be integer"):
        interpolate_positions(t, v, t.astype(float))
    with pytest.raises(ValueError, match="max_gap_s must be a positive"):
        interpolate_positions(t, v, t, max_gap_s=-1)
    np.testing.assert_allclose(interpolate_positions(t, v, t), v)


def test_emi_stages_refuse_complex_and_text_chunks():
    from demine import emi

    x = np.ones((50, 4))
    for bad in (x * 1j, x.astype(str), x.astype(object)):
        with pytest.raises(ValueError, match="real numbers"):
            run_stage(emi.Baseline(), bad)


def test_recording_refuses_values_a_float32_column_would_store_as_inf(tmp_path):
    with RecordingWriter(tmp_path / "r.h5") as w:
        with pytest.raises(SchemaError, match="n_channels must be a positive integer"):
            w.add_stream("gpr", "gpr", n_channels=8.5, dtype="int16")
        s = w.add_stream("emi", "emi", gate_times=[1e-5, 1e-4])
        with pytest.raises(SchemaError, match="stored as inf"):
            s.append(np.array([[1e39, 0.0]]), time=np.array([0]))
        s.append(np.array([[np.inf, 1.0]]), time=np.array([0]))  # (inf stays inf: lossless)
    with pytest.raises(ValueError, match="flush_interval"):
        RecordingWriter(tmp_path / "s.h5", flush_interval=float("nan"))


def test_gpr_detector_refuses_float_times_and_a_time_zero_past_the_trace():
    from demine.hyperbola import GPRDetector

    tr = np.zeros((20, 64), np.float32)
    x = np.arange(20) * 0.01
    with pytest.raises(ConfigError, match="time must be integer"):
        GPRDetector(1e-10).process(tr, x, time=np.arange(20) * 1e6)
    with pytest.raises(ConfigError, match="time_zero .* lies beyond the trace"):
        GPRDetector(1e-10, time_zero=1.0).process(tr, x)


def test_migration_refuses_non_finite_samples():
    from demine.gpr import kirchhoff_migrate, stolt_migrate

    d = np.zeros((16, 32))
    d[3, 5] = np.nan  # (one NaN: the whole Stolt section was NaN)
    for f in (stolt_migrate, kirchhoff_migrate):
        with pytest.raises(ValueError, match="1 NaN or infinite samples"):
            f(d, 1e-10, 0.01, 1e8)


def test_alarms_csv_needs_positions_only(tmp_path):
    from demine.evaluate import read_alarms_csv
    from demine.pipeline import write_alarms_csv

    p = write_alarms_csv({"x": np.array([1.0]), "y": np.array([2.0])}, tmp_path / "a.csv")
    back = read_alarms_csv(p)
    assert back["x"].tolist() == [1.0] and back["y"].tolist() == [2.0]
    with pytest.raises(ConfigError, match="column 'y' is required"):
        write_alarms_csv({"x": np.array([1.0])}, tmp_path / "b.csv")


def test_dzx_that_is_not_xml_and_reads_by_row_and_field(tmp_path):
    from demine.errors import VendorFormatError
    from demine.io.gssi import read_dzx
    from demine.recording import Recording

    bad = tmp_path / "x.DZX"
    bad.write_bytes(b"\x00\x01not xml")
    with pytest.raises(VendorFormatError, match="not a DZX XML file"):
        read_dzx(bad)
    with RecordingWriter(tmp_path / "r.h5") as w:
        w.add_stream("emi", "emi", gate_times=[1e-5]).append(
            np.zeros((5, 1), np.float32), time=np.arange(5))
    with Recording(tmp_path / "r.h5") as r:
        s = r.streams["emi"]
        assert s.read(1, 3, fields="time")["time"].tolist() == [1, 2]
        with pytest.raises(SchemaError, match="start must be a row number"):
            s.read(1.5, 3)


def test_area_bearing_and_stream_names(tmp_path):
    from demine.positions import LocalFrame
    from demine.recording import Recording

    truth = {"x": np.array([0.0]), "y": np.array([0.0]), "type": np.array(["ap-mine"])}
    alarms = {"x": np.array([0.0]), "y": np.array([0.05]), "score": np.array([1.0])}
    for bad in (-5.0, float("inf")):
        with pytest.raises(ConfigError, match="searched area must be"):
            evaluate(truth, alarms, area=bad)
    # NaN is an unknown area (demine.batch passes it for lanes without coverage)
    unknown = evaluate(truth, alarms, area=float("nan"))
    assert unknown.pd == 1.0 and any("searched area unknown" in n for n in unknown.notes)
    # pooled, the note names the lanes of unknown area (a campaign's one short
    # radar file had made the whole FA/m² n/a without a word of which)
    from demine.evaluate import Lane, evaluate_lanes

    pooled = evaluate_lanes([Lane(truth=truth, alarms=alarms, area=2.0, name="a.h5"),
                             Lane(truth=truth, alarms=alarms, area=float("nan"), name="b.h5")])
    assert "searched area unknown (no path, coverage or area given: b.h5): FA/m² undefined" \
        in pooled.notes
    with pytest.raises(ConfigError, match="bearing nan must be a finite number"):
        LocalFrame(10.0, 50.0, bearing_deg=float("nan"))
    with RecordingWriter(tmp_path / "r.h5") as w:
        w.add_stream("emi", "emi", gate_times=[1e-5])
    with Recording(tmp_path / "r.h5") as r:
        with pytest.raises(KeyError, match="no stream 'nope' \\(streams: emi\\)"):
            r.streams["nope"]
        assert list(r.streams) == ["emi"] and "nope" not in r.streams


def test_feature_kernels_refuse_complex_readings_and_meaningless_parameters():
    from demine.features import decay_frames, dipole_fit

    gates = np.geomspace(1e-5, 1e-3, 8)
    r = np.abs(np.random.default_rng(0).normal(size=(5, 8))) * 10
    with pytest.raises(ConfigError, match="readings must be real numbers"):
        decay_frames(r * 1j, gates, np.ones(8))  # (the imaginary part was dropped)
    with pytest.raises(ConfigError, match="positive and finite"):
        decay_frames(r, np.r_[gates[:7], np.inf], np.ones(8))  # (an inf log gate time)
    for snr in (float("nan"), -1.0, "x"):  # (NaN: no gate valid; -1: every gate)
        with pytest.raises(ConfigError, match="snr must be a"):
            decay_frames(r, gates, np.ones(8), snr=snr)
    d = r + 5
    xy = np.linspace(-0.1, 0.1, 5)
    h = np.full(5, 0.05)
    with pytest.raises(ConfigError, match=r"start position \(ax, ay\) must be finite"):
        dipole_fit(d, xy, xy, h, 0.12, np.nan, 0.0)  # (LinAlgError: SVD did not converge)
    for radius in (np.inf, np.array([0.12, 0.1])):
        with pytest.raises(ConfigError, match="coil radius must be a"):
            dipole_fit(d, xy, xy, h, radius, 0.0, 0.0)


def test_neighbourhood_features_check_the_feature_tables():
    from demine.features import BASE_FEATURE_SETS, AlarmFeatures, neighbourhood_features

    X = np.zeros((2, len(BASE_FEATURE_SETS["emi"])))
    two = {"x": np.array([0.0, 0.1]), "y": np.zeros(2)}
    with pytest.raises(ConfigError, match="unknown feature set 'EMI'"):  # (KeyError)
        neighbourhood_features(AlarmFeatures(two, {"EMI": (np.array([0, 1]), X)}))
    # (row -1 was read as the last alarm's position)
    with pytest.raises(ConfigError, match="row indices that are not rows of the 2 alarms"):
        neighbourhood_features(AlarmFeatures(two, {"emi": (np.array([0, -1]), X)}))
    with pytest.raises(ConfigError, match="one row index per row"):  # (IndexError)
        neighbourhood_features(AlarmFeatures(two, {"emi": (np.array([0]), X)}))
    with pytest.raises(ConfigError, match="radius must be a number, got None"):
        neighbourhood_features(AlarmFeatures(two), None)
    ok = neighbourhood_features(AlarmFeatures(two, {"emi": (np.array([0, 1]), X)}))
    assert ok.sets["emi"][1][:, -2].tolist() == [1.0, 1.0]


def _emi_recording(path):
    rng = np.random.default_rng(0)
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=[1e-5, 1e-4]).append(
            rng.normal(size=(40, 2)).astype(np.float32), time=np.arange(40),
            x=rng.uniform(-1, 1, 40), y=rng.uniform(-1, 1, 40))
    return path


def test_alarm_features_want_one_value_per_alarm_and_times_in_nanoseconds(tmp_path):
    from demine.features import alarm_features

    rec = _emi_recording(tmp_path / "r.h5")
    al = {"x": np.array([0.0, 0.5]), "y": np.array([0.0, 0.5]),
          "time": np.array([1, 2]), "stream": np.array(["emi", "emi"])}
    # (a short column was an IndexError, or nothing at all when no stream matched)
    for col, v in (("y", np.zeros(1)), ("score", np.ones(3)), ("stream", np.array(["emi"]))):
        with pytest.raises(ConfigError, match=f"alarms column '{col}' must hold one value per "
                           r"alarm \(2, as many as 'x'\)"):
            alarm_features(rec, {**al, col: v})
    # (NaN became INT64_MIN and times in seconds 1 ns: features of the wrong traces)
    for t in (np.array([np.nan, 2.0]), np.array([1.5, 2.5])):
        with pytest.raises(ConfigError, match="'time' must hold whole UTC nanoseconds"):
            alarm_features(rec, {**al, "time": t})
    with pytest.raises(ConfigError, match="'x' must be real numbers"):  # (imaginary dropped)
        alarm_features(rec, {**al, "x": al["x"] + 1j})
    with pytest.raises(ConfigError, match="alarms must be a mapping"):  # (AttributeError)
        alarm_features(rec, [al])
    assert alarm_features(rec, {**al, "time": np.array([1.0, 2.0])}).alarms["x"].size == 2
    assert alarm_features(rec, {"x": np.zeros(0), "y": np.zeros(0)}).sets == {}


def test_match_alarms_wants_real_radii():
    a = np.array([[0.0, 0.1]])
    t = np.array([[0.0, 0.0]])
    for halo in (np.nan, -0.2, np.inf):  # (each matched nothing: PD 0 without a word)
        with pytest.raises(ConfigError, match="halo must be finite radii >= 0"):
            match_alarms(a, t, halo)
    with pytest.raises(ConfigError, match="alarm_xy must be real numbers"):
        match_alarms(a + 1j, t, 0.2)
    assert match_alarms(a, t, 0.1)[0].tolist() == [0]  # (inclusive, as before)


def test_evaluate_wants_one_value_per_row_and_yes_no_mine_flags():
    truth = {"x": np.array([0.0, 1.0]), "y": np.zeros(2), "type": np.array(["PMN", "PMN"])}
    alarms = {"x": np.array([0.0, 3.0]), "y": np.array([0.05, 0.0])}
    # (is_mine [1] counted both rows as mines; a short type column was an IndexError)
    for col, v in (("is_mine", np.array([1])), ("type", np.array(["TM-62"])),
                   ("depth", np.zeros(3))):
        with pytest.raises(ConfigError, match=f"truth: column '{col}' has"):
            evaluate({**truth, col: v}, alarms, area=10.0)
    with pytest.raises(ConfigError, match="alarms: column 'depth' has 1 value"):
        evaluate(truth, {**alarms, "depth": np.zeros(1)}, area=10.0)
    # ('mine' and 'nan' read as not a mine: PD undefined; NaN read as a mine)
    for flags in (np.array(["mine", "clutter"]), np.array(["nan", "1"]),
                  np.array([np.nan, 1.0])):
        with pytest.raises(ConfigError, match="is_mine"):
            evaluate({**truth, "is_mine": flags}, alarms, area=10.0)
    # yes/no words with spaces, and numbers written as text (a float column saved as CSV)
    for flags in (np.array(["Yes", " no"]), np.array(["1.0", "0.0"])):
        ev = evaluate({**truth, "is_mine": flags}, alarms, area=10.0)
        assert ev.n_targets == 1 and ev.pd == 1.0
    with pytest.raises(ConfigError, match="alarms column 'x' must be real numbers"):
        evaluate(truth, {**alarms, "x": alarms["x"] + 1j}, area=10.0)
    with pytest.raises(ConfigError, match="alarms column 'score' must be numbers, got 'hi'"):
        evaluate(truth, {**alarms, "score": np.array(["hi", "lo"])}, area=10.0)
    assert evaluate(truth, {**alarms, "x": np.array(["0", "3"])}, area=10.0).pd == 0.5


def test_evaluate_options_of_the_wrong_kind():
    truth = {"x": np.array([0.0]), "y": np.array([0.0]), "type": np.array(["ap-mine"])}
    alarms = {"x": np.array([0.0]), "y": np.array([0.05])}
    # (TypeError: 'float' object is not iterable; a string was read letter by letter)
    for kw in ({"depth_bands": 0.1}, {"far_levels": "0.5"}, {"depth_bands": [0.0, np.nan]}):
        with pytest.raises(ConfigError, match=next(iter(kw))):
            evaluate(truth, alarms, area=1.0, **kw)
    with pytest.raises(ConfigError, match="confidence must be in"):  # (TypeError)
        evaluate(truth, alarms, area=1.0, confidence="0.9")
    with pytest.raises(ConfigError, match="include_unsearched must be True or False"):
        evaluate(truth, alarms, area=1.0, include_unsearched="no")
    with pytest.raises(ConfigError, match=r"lanes\[0\] must be a Lane, got dict"):
        evaluate_lanes([truth])
    # (a NumPy float32 halo was "not a number or a mapping")
    assert evaluate(truth, alarms, area=1.0, halo=np.float32(0.1)).pd == 1.0
    with pytest.raises(ConfigError, match=r"halo\['ap'\] must be a positive finite radius"):
        evaluate(truth, alarms, area=1.0, halo={"ap": None})


def test_searched_area_cell_and_path_checks():
    from demine.evaluate import searched_area

    line = np.column_stack([np.linspace(0, 1, 11), np.zeros(11)])
    with pytest.raises(ConfigError, match="wider than the footprint"):  # (area 0.0)
        searched_area(line, 0.3, cell=1.0)
    with pytest.raises(ConfigError, match="wider than the footprint"):  # (ValueError: NaN)
        searched_area(line, 0.3, cell=float("inf"))
    for cells in (0, float("nan")):  # (ZeroDivisionError; NaN ignored)
        with pytest.raises(ConfigError, match="max_cells must be a number >= 1"):
            searched_area(line, 0.3, max_cells=cells)
    with pytest.raises(ConfigError, match="positions must be real numbers"):
        searched_area(line + 1j, 0.3)
    # (a list of [x, y] points said "got shape ()")
    with pytest.raises(ConfigError, match=r"np\.asarray\(points\)"):
        searched_area([[0.0, 0.0], [1.0, 0.0]], 0.3)


def test_alarms_csv_rows_longer_than_the_header_and_repeated_columns(tmp_path):
    from demine.evaluate import read_alarms_csv

    long_row = tmp_path / "a.csv"
    long_row.write_text("x,y\n1,2\n1,2,3\n")
    with pytest.raises(ConfigError, match="line 3 has 3 fields, the header has 2"):
        read_alarms_csv(long_row)  # (AttributeError: 'list' object has no attribute 'strip')
    twice = tmp_path / "b.csv"
    twice.write_text("x,y,x\n1,2,3\n")  # (x read as 3)
    with pytest.raises(ConfigError, match="names column 'x' more than once"):
        read_alarms_csv(twice)


def test_evaluate_recordings_wants_lists_and_numeric_scores(tmp_path):
    from demine.evaluate import evaluate_recordings, lane_from_recording

    path = _emi_recording(tmp_path / "r.h5")
    # (a single path was read letter by letter: "/: is a directory")
    with pytest.raises(ConfigError, match="paths must be a list of recordings"):
        evaluate_recordings(str(path))
    with pytest.raises(ConfigError, match="alarms must be a list of alarm tables"):
        evaluate_recordings([path], alarms={"x": np.zeros(1), "y": np.zeros(1)})
    al = {"x": np.zeros(2), "y": np.zeros(2), "label": np.array(["a", "b"]),
          "stream": np.array(["emi"])}
    with pytest.raises(ConfigError, match="column 'label' \\(used as score\\) must be numbers"):
        lane_from_recording(path, alarms=al, score="label")  # (ValueError)
    with pytest.raises(ConfigError, match="column 'stream' has 1 value"):  # (IndexError)
        lane_from_recording(path, alarms=al, alarm_stream="emi")


def test_evaluate_refuses_a_negative_or_infinite_per_target_halo():
    # (a negative override fell back to the class's halo without a word)
    truth = {"x": np.array([0.0, 1.0]), "y": np.zeros(2)}
    alarms = {"x": np.array([0.0]), "y": np.array([0.05])}
    for bad in (-0.3, np.inf):
        with pytest.raises(ConfigError, match="truth column 'halo' must be radii"):
            evaluate({**truth, "halo": np.array([bad, np.nan])}, alarms, area=10.0)
    # empty (NaN) and 0 keep the class's halo; a positive value overrides it
    assert evaluate({**truth, "halo": np.array([np.nan, 0.0])}, alarms, area=10.0).pd == 0.5
    assert evaluate({**truth, "halo": np.array([0.01, 0.0])}, alarms, area=10.0).pd == 0.0


def test_alarms_without_times_are_described_where_the_sensor_passed_them(tmp_path):
    # (a CSV of x, y from another tool: every alarm got time 0, so each radar alarm was
    # described by the line's first trace)
    from demine.features import alarm_features

    rng = np.random.default_rng(1)
    n = 200
    t = 1_000_000_000 + np.arange(n, dtype=np.int64) * 2_500_000  # 400 traces/s
    x = np.linspace(0.0, 2.0, n)
    data = (rng.normal(size=(n, 128)) * 50).astype(np.int16)
    data[120:140, 40:60] += 2000  # something under x = 1.2-1.4 m
    path = tmp_path / "line.h5"
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=128, dtype="int16", sample_interval=5e-11).append(
            data, time=t, x=x, y=np.zeros(n))
    al = {"x": np.array([0.3, 1.3]), "y": np.zeros(2), "stream": np.array(["gpr", "gpr"])}
    placed = alarm_features(path, al)
    near = [int(np.argmin(np.abs(x - v))) for v in al["x"]]
    assert placed.alarms["time"].tolist() == t[near].tolist()
    timed = alarm_features(path, {**al, "time": t[near]})
    (rows, X), = placed.sets.values()
    np.testing.assert_array_equal(X, timed.sets[next(iter(timed.sets))][1])
    assert not np.array_equal(X[0], X[1], equal_nan=True)
