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
    with pytest.raises(ConfigError, match="bearing nan must be a finite number"):
        LocalFrame(10.0, 50.0, bearing_deg=float("nan"))
    with RecordingWriter(tmp_path / "r.h5") as w:
        w.add_stream("emi", "emi", gate_times=[1e-5])
    with Recording(tmp_path / "r.h5") as r:
        with pytest.raises(KeyError, match="no stream 'nope' \\(streams: emi\\)"):
            r.streams["nope"]
        assert list(r.streams) == ["emi"] and "nope" not in r.streams
