"""``demine import readings.csv``: a metal detector's readings from a text table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_detect_calibration import _emi_lane

from demine.cli import main
from demine.errors import ConfigError, MissingCalibrationError, VendorFormatError
from demine.io.emi_table import read_emi_table
from demine.pipeline import detect_recording
from demine.recording import Recording


def _write_csv(rec, out, *, names="seconds", time="relative"):
    """The EMI stream of ``rec`` as a CSV table, every value exact."""
    with Recording(rec) as r:
        s = r.streams["emi"]
        d = s.read()
        gates = s.gate_times
    t = d["time"]
    gcols = ([f"g{i + 1}_{float(g)!r}s" for i, g in enumerate(gates)] if names == "seconds"
             else [f"ch{i + 1}" for i in range(gates.size)])
    tcol = [] if time is None else ["time"]
    lines = [",".join(tcol + ["x [m]", "y [m]", "z [m]"] + gcols)]
    for i in range(t.size):
        tv = [] if time is None else [f"{(t[i] - t[0]) / 1e9:.9f}"]
        lines.append(",".join(tv + [repr(float(d[k][i])) for k in ("x", "y", "z")]
                              + [repr(float(v)) for v in d["samples"][i]]))
    out.write_text("\n".join(lines) + "\n")
    return out, gates, t


def test_a_readings_table_detects_as_the_recording(tmp_path, capsys):
    """The readings of a simulated lane written as a CSV table (gate times in
    the column names, seconds from the start) and imported give the same
    alarms, bit for bit, as the recording they came from."""
    full, _, _ = _emi_lane(tmp_path)
    csv, gates, t = _write_csv(full, tmp_path / "lane.csv")
    out = tmp_path / "imp.h5"
    assert main(["import", str(csv), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"emi: {t.size} readings x 16 gates, gates 12-1000 us" in said
    with Recording(out) as r:
        s = r.streams["emi"]
        np.testing.assert_array_equal(s.gate_times, gates)
        np.testing.assert_array_equal(s.time - s.time[0], t - t[0])
        assert s.attrs["driver"] == "demine.io.emi_table"
    want, got = detect_recording(full), detect_recording(out)
    assert len(want["x"]) > 0
    for k in ("x", "y", "score"):
        np.testing.assert_array_equal(got[k], want[k])


def test_gate_indices_with_gate_times_given_and_a_rate(tmp_path, capsys):
    """Columns ch1..ch16 without times, and no time column: --gate-times and
    --rate give what the table does not; without them it says what to give."""
    full, _, _ = _emi_lane(tmp_path)
    csv, gates, t = _write_csv(full, tmp_path / "ch.csv", names="index", time=None)
    out = tmp_path / "ch.h5"
    assert main(["import", str(csv), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no time column" in err and "--rate HZ" in err and not out.exists()
    assert main(["import", str(csv), "--out", str(out), "--rate", "1000"]) == 0
    assert "gate times unknown" in capsys.readouterr().out
    with pytest.raises(MissingCalibrationError, match="--calibration emi=PROFILE"):
        detect_recording(out)
    out2 = tmp_path / "ch2.h5"
    assert main(["import", str(csv), "--out", str(out2), "--rate", "1000", "--gate-times",
                 ",".join(repr(float(g)) for g in gates)]) == 0
    got, want = detect_recording(out2), detect_recording(full)
    np.testing.assert_array_equal(got["x"], want["x"])
    np.testing.assert_array_equal(got["score"], want["score"])


def test_geosoft_xyz(tmp_path):
    """A Geosoft XYZ export: '/' comment lines (the last one names the
    columns), 'Line' markers, white space between fields, '*' for a dummy."""
    text = ("/ XYZ export from an EM61-style survey\n"
            "/ X Y Time Height ch1 ch2 ch3 ch4 Quality\n"
            "Line 10\n"
            "0.00 0.0 100.000 0.40 10.5 5.25 2.5 1.0 9\n"
            "0.10 0.0 100.100 0.40 11.5 5.75 * 1.5 9\n"
            "Line 20\n"
            "0.10 0.5 101.000 0.41 9.5 4.75 2.0 0.5 8\n")
    p = tmp_path / "survey.xyz"
    p.write_text(text)
    tab = read_emi_table(p, gate_times=[216e-6, 366e-6, 660e-6, 1266e-6])
    assert tab.samples.shape == (3, 4) and np.isnan(tab.samples[1, 2])
    np.testing.assert_array_equal(tab.x, [0.0, 0.1, 0.1])
    np.testing.assert_array_equal(tab.z, [0.40, 0.40, 0.41])
    assert (tab.time_ns - tab.time_ns[0]).tolist() == [0, 100_000_000, 1_000_000_000]
    assert tab.header["ignored_columns"] == ["Quality"]
    assert tab.header["survey_lines"] == ["Line 10", "Line 20"]
    assert tab.header["columns"] == {"time": "Time", "x": "X", "y": "Y", "z": "Height"}


@pytest.mark.parametrize(("text", "kw", "says"), [
    ("time,x,y,foo\n0,0,0,1\n", {}, "no gate columns"),
    ("time,y,ch1\n0,0,1\n", {}, "no position column"),
    ("x,y,ch1\n0,0,1\n", {}, "no time column"),
    ("time,x,ch1\n0,0,1\n0.001,0,x\n", {}, "line 3, column 'ch1': not a number: 'x'"),
    ("time,x,ch1\n0,0,1\n0,0,1\n", {}, "line 3: time 0.0 does not follow 0.0 on the line"),
    ("time,x,ch1,ch2\n0,0,1,2\n", {"gate_times": [1e-5]}, "1 gate times given for 2"),
    ("time,x,g_10us,ch2\n0,0,1,2\n", {}, "some gate columns give their time"),
    ("time,x,ch1,ch2\n0,0,1,2\n", {"gate_times": [1e-5, 5]}, "give them in seconds"),
    ("time,x,ch1\n0,0,1,2\n", {}, "line 2: 4 fields, the header names 3"),
    ("time,x,ch1\n0,0,1\n0.001,0,1,5\n0.002,0,1\n", {}, "line 3: 4 fields, the header names 3"),
    ("t x ch1\n0 0 1\n0.001 0\n", {}, "line 3: 2 fields, the header names 3"),
    ("time,x,ch1\n0,0,1\n", {"rate": 100.0}, "has a time column"),
    ("1,2,3\n", {}, "numbers with no column names"),
    ("time,x,x,ch1\n0,0,0,1\n", {}, "column 'x' named more than once"),
])
def test_bad_tables_are_refused_naming_what(tmp_path, text, kw, says):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(VendorFormatError, match=says):
        read_emi_table(p, **kw)


def test_radar_options_are_refused_for_a_table(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("time,x,ch1\n0,0,1\n0.001,0,1\n")
    assert main(["import", str(p), "--out", str(tmp_path / "o.h5"), "--trace-spacing",
                 "0.01"]) == 2
    assert "--trace-spacing is for radar files" in capsys.readouterr().err
    dzt = tmp_path / "x.DZT"
    dzt.write_bytes(b"\0" * 2048)
    assert main(["import", str(dzt), "--out", str(tmp_path / "r.h5"), "--rate", "100"]) == 2
    assert "--rate is for a metal detector's readings table" in capsys.readouterr().err


def test_import_truth_reads_is_mine_as_evaluate_does(tmp_path, capsys):
    """(review) `import --truth` wanted an integer is_mine where `evaluate
    --truth` takes yes/no: one scorer's table worked in one and not the other."""
    p = tmp_path / "t.csv"
    p.write_text("time,x,ch1\n0,0,1\n0.001,0.01,1\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("id,type,is_mine,x,y\nm1,PMN,yes,0.005,0\nc1,nail,no,0.2,0\n")
    out = tmp_path / "o.h5"
    assert main(["import", str(p), "--out", str(out), "--truth", str(truth)]) == 0
    assert "truth: 2 targets" in capsys.readouterr().out
    with Recording(out) as r:
        assert r.truth["is_mine"].tolist() == [1, 0]
    # without an is_mine column every row is a mine, as evaluate --truth reads it
    # (import had stored them as clutter: the column's fill, 0); rows numbered
    # without ids (refused before); a blank is_mine refused (it became clutter)
    truth.write_text("type,x,y\nPMN,0.005,0\nPMN,0.2,0\n")
    out = tmp_path / "o2.h5"
    assert main(["import", str(p), "--out", str(out), "--truth", str(truth)]) == 0
    with Recording(out) as r:
        assert r.truth["is_mine"].tolist() == [1, 1] and r.truth["id"].tolist() == ["1", "2"]
    truth.write_text("id,is_mine,x,y\nm1,1,0,0\nm2,,0.2,0\n")
    assert main(["import", str(p), "--out", str(tmp_path / "b.h5"), "--truth",
                 str(truth)]) == 2
    assert "row 3: 'is_mine' is empty" in capsys.readouterr().err
    assert not (tmp_path / "b.h5").exists()


def test_iso_times_and_decimal_commas(tmp_path):
    """Instrument exports with ISO 8601 UTC times, and a spreadsheet's CSV
    whose decimal mark is a comma (fields split by semicolons)."""
    p = tmp_path / "iso.csv"
    p.write_text("Timestamp;Easting [m];Northing [m];ch1;ch2\n"
                 "2026-12-01T09:00:00.000Z;0,5;1,25;10,5;2\n"
                 "2026-12-01T09:00:00.125Z;0,6;1,25;11;2,5\n")
    tab = read_emi_table(p, gate_times=[1e-4, 2e-4])
    assert tab.time_ns.tolist() == [1796115600000000000, 1796115600125000000]
    assert "ISO 8601" in tab.time_source
    np.testing.assert_array_equal(tab.x, [0.5, 0.6])
    np.testing.assert_array_equal(tab.samples, np.float32([[10.5, 2.0], [11.0, 2.5]]))
    p.write_text("time,x,ch1\n2026-12-01T09:00:00+02:00,0,1\n")
    with pytest.raises(VendorFormatError, match="time-zone offset; give UTC"):
        read_emi_table(p)
    p.write_text("time,x,ch1\n2026-12-01T09:00:00,0,1\n2026-12-01T08:59:59,0,1\n")
    with pytest.raises(VendorFormatError, match="line 3: time '2026-12-01T08:59:59' does not "
                       "follow '2026-12-01T09:00:00'"):
        read_emi_table(p)


def _table(tmp_path, text, name="t.csv", encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_what_an_outside_audit_found_wrong_in_exports(tmp_path):
    """(audit of the readings-table import) Each of these had been refused or,
    worse, read wrong without a word."""
    g = "g_100us,g_200us"
    # epoch milliseconds and microseconds (had overflowed to 1677-09-21)
    for scale, unit in ((1e3, "milliseconds"), (1e6, "microseconds")):
        t0 = 1_796_115_600 * scale
        tab = read_emi_table(_table(tmp_path, f"time,x,{g}\n{t0:.0f},0,1,2\n"
                                    f"{t0 + 0.001 * scale:.0f},0.01,1,2\n"))
        assert tab.time_ns.tolist() == [1_796_115_600_000_000_000, 1_796_115_600_001_000_000]
        assert unit in tab.time_source
    # a counter 'n' and a GNSS altitude are not y and the height
    tab = read_emi_table(_table(tmp_path, f"n,lat,lon,alt,x,y,height,{g}\n"
                                f"1,45.1,6.2,452.0,0.5,1.5,0.05,1,2\n"), rate=10.0)
    assert (tab.y[0], tab.z[0]) == (1.5, 0.05)
    assert tab.header["columns"] == {"x": "x", "y": "y", "z": "height"}
    # units in the header scale time and positions; others are refused
    tab = read_emi_table(_table(tmp_path, f"time [ms],x [cm],height (mm),{g}\n0,150,50,1,2\n"
                                f"10,151,50,1,2\n"))
    assert tab.time_ns.tolist() == [0, 10_000_000] and tab.x[0] == pytest.approx(1.5)
    assert tab.z[0] == pytest.approx(0.05)
    with pytest.raises(VendorFormatError, match="unit 'furlong'"):
        read_emi_table(_table(tmp_path, f"time,x [furlong],{g}\n0,1,1,2\n"))
    # gate times in square brackets, usec, t=seconds
    for names in ("gate 1 [0.1 ms],gate 2 [0.2 ms]", "100usec,200usec", "t=1e-4,t=2e-4"):
        tab = read_emi_table(_table(tmp_path, f"time,x,{names}\n0,0,1,2\n"))
        np.testing.assert_allclose(tab.gate_times, [1e-4, 2e-4])
    # a quoted field holding the delimiter
    tab = read_emi_table(_table(tmp_path, f'time,x,note,{g}\n0,0,"mark, near fence",1,2\n'))
    assert tab.samples.tolist() == [[1.0, 2.0]]
    # semicolons, with decimal commas in the gate names too
    tab = read_emi_table(_table(tmp_path, "time;x;0,1 ms;0,2 ms\n0;0,5;1,5;2\n"))
    np.testing.assert_allclose(tab.gate_times, [1e-4, 2e-4])
    assert tab.x[0] == 0.5 and tab.samples[0, 0] == 1.5


def test_geosoft_layouts_encodings_and_a_cut_line(tmp_path):
    """(audit) EM61 XYZ files with empty '/' lines and '//' keywords after the
    names, Date and hh:mm:ss columns; UTF-16 and Windows-1252 text; a logger
    stopped mid-row."""
    xyz = ("/ X Y Date Time Height CH1 CH2\n/\n//Flight 7\n//Date 2026/12/01\nLine 10\n"
           "0.0 -0.5 2026/12/01 09:00:00.00 0.40 10.5 5.0\n"
           "0.1 -0.5 2026/12/01 09:00:00.10 0.40 11.5 5.5\n")
    tab = read_emi_table(_table(tmp_path, xyz, "a.xyz"), gate_times=[216e-6, 366e-6])
    assert tab.time_ns.tolist() == [1_796_115_600_000_000_000, 1_796_115_600_100_000_000]
    assert "time of day" in tab.time_source and tab.z[0] == 0.4
    text = "time,x,12 µs,24 µs\n0,0,1,2\n0.001,0,1,2\n"
    for enc, said in (("utf-16", "UTF-16"), ("cp1252", "Windows-1252")):
        tab = read_emi_table(_table(tmp_path, text, f"{enc}.txt", enc))
        np.testing.assert_allclose(tab.gate_times, [12e-6, 24e-6])
        assert tab.header["encoding"].startswith(said)
    cut = _table(tmp_path, "time,x,ch1,ch2\n0,0,1,2\n0.001,0,1,2\n0.002,0,1")
    with pytest.raises(VendorFormatError, match="line 4: 3 fields.*--allow-partial"):
        read_emi_table(cut)
    tab = read_emi_table(cut, allow_partial=True)
    assert tab.n_readings == 2 and tab.header["dropped_partial_line"] == 4


def test_an_em61_cart_is_searched_at_its_own_height(tmp_path, capsys):
    """(audit) A coil 0.4 m up (an EM61) was 'no positions: coverage unknown'
    in the report (readings above 0.3 m did not count), and the import had no
    way to say the coil's size."""
    from demine.export import coverage

    rows = [f"{k * 0.01},{0.05 * (k % 2)},{0.01 * k},0.40,{1 + k % 3},{1 + k % 2}"
            for k in range(2000)]
    p = _table(tmp_path, "time,x,y,height,ch1,ch2\n" + "\n".join(rows) + "\n")
    out = tmp_path / "em61.h5"
    assert main(["import", str(p), "--out", str(out), "--gate-times", "216e-6,366e-6",
                 "--footprint", "1.0", "--coil-radius", "0.5"]) == 0
    with Recording(out) as r:
        s = r.streams["emi"]
        assert s.attrs["footprint_width"] == 1.0 and s.calibration["coil_radius"] == 0.5
    cov = coverage(out)
    assert cov.raster.area > 15.0   # (a metre wide along 20 m)
    assert coverage(out, max_height=0.3).raster.area == 0.0


def test_a_one_gate_table_says_why_it_cannot_be_ground_balanced(tmp_path):
    """(audit) A one-gate table imported, and detection failed with 'soil
    components are not independent across 1 gates'."""
    rows = "\n".join(f"{k * 0.001},{k * 0.001},1.0" for k in range(100))
    p = _table(tmp_path, "time,x,g_100us\n" + rows + "\n")
    out = tmp_path / "one.h5"
    assert main(["import", str(p), "--out", str(out)]) == 0
    with pytest.raises(ConfigError, match="1 gate\\(s\\) cannot be ground balanced against 2"):
        detect_recording(out)


@pytest.mark.parametrize(("text", "kw", "says"), [
    ("time,x,ch1\n2026-12-01T09:00:00Z,0,1\n2026-12-01T09:00:01Z,0.1,2\n,0.2,3\n", {},
     "line 4, column 'time': not an ISO 8601 time"),
    ("time,x,ch1\n2026-12-01T09:00:00Z,0,1\nnow,0.1,2\n", {}, "not an ISO 8601 time .*: 'now'"),
    ("time,x,ch1\n2026-12-01T09:00:00-05,0,1\n", {}, "time-zone offset"),
    ("date,time,x,ch1\n2026-12-01,09:75:00,0,1\n", {}, "not a time of day"),
    ("date,time,x,ch1\n2026-02-30,09:00:00,0,1\n", {}, "not a date: '2026-02-30'"),
    ("date,time,x,ch1\n8026-12-01,09:00:00,0,1\n", {}, "not a date: '8026-12-01'"),
    ("time,x,ch1\n2300-01-01T00:00:00Z,0,1\n", {}, "not a time: '2300-01-01T00:00:00Z'"),
    ("x,ch1\n0,1\n", {"rate": 1e-12}, "from 0.001 to 1e7"),
    ("time,x,1e999999999999us\n0,0,1\n", {}, "gate times must be seconds > 0"),
    ("time,x,ch1\n0,0,1\n", {"gate_times": ["abc"]}, "gate times must be numbers"),
    ("time,x,ch1\n0,0,\"" + "a" * 140_000 + "\n", {}, "line 2, column 'ch1': not a number"),
    ("time,x,ch1,ch2\n0,0,1,1#2\n0.1,0,1,2\n", {}, "line 2, column 'ch2': not a number"),
])
def test_what_review_found_read_wrong_or_raised(tmp_path, text, kw, says):
    """(review) Times stored as -9.2e18 ns, offsets converted under a 'no zone'
    label, impossible dates and huge fields raising tracebacks, '#' read as
    a comment inside a row."""
    with pytest.raises(VendorFormatError, match=says):
        read_emi_table(_table(tmp_path, text), **kw)


def test_review_labels_gate_order_dates_and_cut_fields(tmp_path):
    """(review) `time (UTC)` had lost the date (a unit turned the epoch test
    off); gate_1, gate_10, gate_2 were taken in column order; a date column
    beside numeric times vanished unlisted; --allow-partial kept a last line
    cut inside its last field."""
    tab = read_emi_table(_table(tmp_path, "time (UTC),x,ch1\n1700000000.0,0,1\n"
                                "1700000000.1,0.1,2\n"))
    assert tab.time_ns[0] == 1_700_000_000_000_000_000 and "epoch" in tab.time_source
    tab = read_emi_table(_table(tmp_path, "time,x,gate_1,gate_10,gate_2\n0,0,1,10,2\n"),
                         gate_times=[1e-5, 2e-5, 3e-5])
    assert tab.gate_columns == ["gate_1", "gate_2", "gate_10"]
    assert tab.samples.tolist() == [[1.0, 2.0, 10.0]]
    tab = read_emi_table(_table(tmp_path, "date,time,x,ch1\n2026-12-01,0.0,0,1\n"
                                "2026-12-01,0.1,0,1\n"))
    assert tab.header["ignored_columns"] == ["date"]
    tab = read_emi_table(_table(tmp_path, "time,x,ch1,ch2\n0,0,1,2\n0.1,0,1,2\n0.2,0,3.5,3"),
                         allow_partial=True)
    assert tab.n_readings == 2 and tab.header["dropped_partial_line"] == 4


def test_coverage_keeps_gaps_when_the_head_was_up_for_most_readings(tmp_path):
    """(review) With the limit at 1.5x the median height, a head lifted for
    55 % of the readings moved the limit above the lifts, and ground never
    searched at a valid height counted as searched."""
    from demine.export import coverage
    from demine.recording import RecordingWriter

    n = 4000
    t = np.arange(n)
    x = (t % 400) / 400.0
    y = (t // 400) * 0.1
    z = np.where((t // 400) % 2 == 1, 0.40, 0.05)   # every other pass lifted
    z[:200] = 0.40   # and more: 55 % of the readings up
    path = tmp_path / "lift.h5"
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", gate_times=[1e-5, 2e-5], attrs={"footprint_width": 0.1})
        s.append(np.zeros((n, 2), np.float32), time=1_700_000_000_000_000_000 + t * 1_000_000,
                 x=x, y=y, z=z)
    low = coverage(path, max_height=0.3).raster.area
    assert coverage(path).raster.area == pytest.approx(low)


def test_geosoft_lines_are_the_streams_survey_lines(tmp_path):
    """(review) Geosoft 'Line' markers were only listed: the evaluation took
    the survey as one path, the step from one line's end to the next's start
    counted as searched ground."""
    from demine.evaluate import lane_from_recording

    rows = []
    for k, line in enumerate((10, 20)):
        rows.append(f"Line {line}")
        rows += [f"{j * 0.01:.2f} {0.5 * k:.1f} {100 + k * 10 + j * 0.01:.2f} 0.05 1 2"
                 for j in range(50)]
    p = _table(tmp_path, "/ X Y Time Height ch1 ch2\n" + "\n".join(rows) + "\n", "s.xyz")
    out = tmp_path / "s.h5"
    assert main(["import", str(p), "--out", str(out), "--gate-times", "1e-4,2e-4"]) == 0
    with Recording(out) as r:
        assert json.loads(r.streams["emi"].attrs["survey_lines"]) == [
            {"line": "Line 10", "traces": 50}, {"line": "Line 20", "traces": 50}]
    lane = lane_from_recording(out)
    assert len(lane.path) == 2 and lane.path_length == pytest.approx(2 * 0.49)


def test_a_trailing_delimiter_on_some_rows_only(tmp_path):
    """A logger that ends some rows with a delimiter (or only its header line)
    writes an empty last field there: read as such, not refused."""
    want = np.float32([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    for text in ("t,x,ch1,ch2\n0,0,1,2,\n0.1,0.1,3,4\n0.2,0.2,5,6,\n",
                 "t,x,ch1,ch2,\n0,0,1,2\n0.1,0.1,3,4,\n0.2,0.2,5,6\n",
                 "t;x;ch1;ch2\n0;0;1;2;\n0,1;0,1;3;4\n0,2;0,2;5;6\n"):
        tab = read_emi_table(_table(tmp_path, text), gate_times=[1e-4, 2e-4])
        np.testing.assert_array_equal(tab.samples, want)
        np.testing.assert_allclose(tab.x, [0.0, 0.1, 0.2])
    # a field that is not empty is still one too many
    with pytest.raises(VendorFormatError, match="line 2: 5 fields, the header names 4"):
        read_emi_table(_table(tmp_path, "t,x,ch1,ch2\n0,0,1,2,9\n0.1,0.1,3,4\n"),
                       gate_times=[1e-4, 2e-4])
