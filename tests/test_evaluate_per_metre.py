"""False alarms per metre of path: the unit of line surveys (a radar on
lines), beside FA/m² of searched ground.  Hand-worked cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from demine.cli import main
from demine.errors import ConfigError
from demine.evaluate import Lane, evaluate, evaluate_lanes, path_length
from demine.recording import RecordingWriter


def test_path_length_hand_worked():
    x = np.linspace(0.0, 10.0, 1001)          # 10 m in 1 cm steps
    assert path_length((x, np.zeros_like(x))) == pytest.approx(10.0)
    # a 3-4-5 step, and a second line
    assert path_length([np.array([[0, 0], [3, 4.0]]), np.array([[0, 1], [0, 2.0]])],
                       max_gap=6.0) == pytest.approx(6.0)
    # a jump longer than max_gap (the sensor lifted, a lost fix) is no search
    p = np.array([[0, 0], [0.5, 0], [5.5, 0], [6.0, 0]])
    assert path_length(p) == pytest.approx(1.0)
    assert path_length(p, max_gap=10.0) == pytest.approx(6.0)
    # a missing position breaks the path on both sides of it
    p = np.array([[0, 0], [0.5, 0], [np.nan, 0], [1.5, 0], [2.0, 0]])
    assert path_length(p) == pytest.approx(1.0)
    assert path_length(np.zeros((1, 2))) == 0.0 and path_length([]) == 0.0
    with pytest.raises(ConfigError, match="max_gap"):
        path_length(p, max_gap=0.0)


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=40), st.integers(1, 39))
def test_path_length_adds_up_over_pieces(xs, cut):
    """A path cut in two (the cut point in both) is as long as the whole."""
    p = np.column_stack([np.cumsum(np.abs(xs)) * 0.1, np.zeros(len(xs))])
    cut = min(cut, len(p) - 1)
    whole = path_length(p)
    assert path_length([p[: cut + 1], p[cut:]]) == pytest.approx(whole, abs=1e-9)


def test_far_per_metre_of_line():
    # two 5 m lines 0.5 m apart, one mine on the first; 3 alarms: the mine's,
    # and 2 false ones: 2 false alarms over 10 m of line
    x = np.linspace(0, 5, 501)
    paths = [np.column_stack([x, np.zeros_like(x)]), np.column_stack([x, np.full_like(x, 0.5)])]
    truth = {"x": [2.0], "y": [0.0], "is_mine": [1]}
    alarms = {"x": [2.02, 4.0, 1.0], "y": [0.0, 0.5, 0.0], "score": [9.0, 3.0, 2.0]}
    ev = evaluate_lanes([Lane(truth, alarms, path=paths, footprint=0.3)])
    assert ev.n_false_alarms == 2 and ev.pd == 1.0
    assert ev.path_m == pytest.approx(10.0)
    assert ev.far_per_m == pytest.approx(0.2)
    d = ev.to_dict()
    assert d["far_per_m"] == pytest.approx(0.2) and d["path_m"] == pytest.approx(10.0)
    assert "false alarms per metre of path 0.200" in ev.summary()
    # without a path (an area given instead) the rate per metre is undefined
    ev = evaluate(truth, alarms, area=5.0)
    assert math.isnan(ev.far_per_m) and ev.to_dict()["far_per_m"] is None


def test_evaluate_cli_reports_far_per_metre(tmp_path, capsys):
    """A radar line recorded along x: 4 m, an AP mine found, one false alarm."""
    path = tmp_path / "line.h5"
    n = 401
    x = np.linspace(0.0, 4.0, n)
    with RecordingWriter(path) as w:
        s = w.add_stream("gpr", "gpr", n_channels=8, sample_interval=31.25e-12)
        w.add_truth([{"id": "M1", "type": "AP", "is_mine": True, "x": 1.0, "y": 0.0,
                      "depth": 0.05}])
        s.append(np.zeros((n, 8), np.int16), time=np.arange(n) * 2_500_000,
                 x=x, y=np.zeros(n), z=np.zeros(n))
        w.append_alarms({"time": [0, 1], "stream": ["gpr", "gpr"], "x": [1.03, 3.0],
                         "y": [0.0, 0.0], "score": [20.0, 13.0]})
    assert main(["evaluate", str(path), "--stream", "gpr", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pd"] == 1.0 and out["n_false_alarms"] == 1
    assert out["path_m"] == pytest.approx(4.0)
    assert out["far_per_m"] == pytest.approx(0.25)


def test_path_length_given_with_the_lane():
    # (demine batch keeps a coverage raster and the path's metres, not the path)
    truth = {"x": [2.0], "y": [0.0], "is_mine": [1]}
    alarms = {"x": [2.0, 4.0], "y": [0.0, 0.0]}
    ev = evaluate_lanes([Lane(truth, alarms, area=3.0, path_length=8.0)])
    assert ev.path_m == 8.0 and ev.far_per_m == pytest.approx(1 / 8)
    assert ev.far_per_m2 == pytest.approx(1 / 3)


def test_streams_on_one_line_count_its_metres_once(tmp_path):
    """Two channels of one radar (gpr_ch0, gpr_ch1, as a multi-channel import
    writes them) over the same 4 m: 4 m of line, not 8."""
    path = tmp_path / "two.h5"
    n = 401
    x = np.linspace(0.0, 4.0, n)
    with RecordingWriter(path) as w:
        chans = [w.add_stream(f"gpr_ch{k}", "gpr", n_channels=8, sample_interval=31.25e-12)
                 for k in (0, 1)]
        w.add_truth([{"id": "M1", "type": "AP", "is_mine": True, "x": 1.0, "y": 0.0}])
        for s in chans:
            s.append(np.zeros((n, 8), np.int16), time=np.arange(n) * 2_500_000,
                     x=x, y=np.zeros(n), z=np.zeros(n))
        w.append_alarms({"time": [0, 1], "stream": ["gpr_ch0", "gpr_ch0"], "x": [1.0, 3.0],
                         "y": [0.0, 0.0], "score": [20.0, 13.0]})
    from demine.evaluate import evaluate_recordings

    for kw in ({}, {"stream": "gpr_ch0"}):
        ev = evaluate_recordings([path], **kw)
        assert ev.path_m == pytest.approx(4.0) and ev.far_per_m == pytest.approx(0.25)
    # demine batch's per-file row too (it had summed the two channels' paths again)
    pytest.importorskip("pyarrow")
    from demine.batch import process_file

    with pytest.warns(UserWarning, match="gives no time zero"):   # (zeros, no calibration)
        row = process_file(path, tmp_path / "batch")
    assert row["status"] == "done", row.get("error")
    assert row["path_m"] == pytest.approx(4.0)


def test_a_recordings_metres_of_line_break_at_the_evaluations_max_gap(tmp_path):
    """evaluate_recordings(max_gap=...) cuts the path for its length as for its
    searched area (the length had been taken at the default 1 m whatever
    max_gap was given)."""
    from demine.evaluate import evaluate_recordings

    path = tmp_path / "gaps.h5"
    # 2 m of line in 1 cm steps, then a 0.5 m jump and 2 m more
    x = np.concatenate([np.linspace(0.0, 2.0, 201), np.linspace(2.5, 4.5, 201)])
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", gate_times=np.geomspace(1e-5, 1e-3, 4))
        w.add_truth([{"id": "M1", "type": "AP", "is_mine": True, "x": 1.0, "y": 0.0}])
        s.append(np.zeros((x.size, 4), np.float32), time=np.arange(x.size) * 1_000_000,
                 x=x, y=np.zeros(x.size), z=np.full(x.size, 0.05))
        w.append_alarms({"time": [0, 1], "stream": ["emi", "emi"], "x": [1.0, 3.0],
                         "y": [0.0, 0.0], "score": [20.0, 13.0]})
    assert evaluate_recordings([path]).path_m == pytest.approx(4.5)
    ev = evaluate_recordings([path], max_gap=0.1)
    assert ev.path_m == pytest.approx(4.0) and ev.far_per_m == pytest.approx(0.25)
