"""``demine calibrate wheel``: a radar's survey wheel from a run over a known distance.

The shipped radar profile's ``distance_per_count`` is the reference radar's;
the recorder placed any wheel radar by it.  These tests measure a wheel's
value from a recording and record with it, through the real recorder over a
pseudo-terminal.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_recorder_audit import record_wheel_radar

from demine.calibration import load_profile
from demine.calibration.procedures import wheel_profile, write_profile
from demine.errors import ConfigError
from demine.recording import Recording, RecordingWriter


def _wheel_run(path, counts, *, rate=100.0, fields=True, kind="gpr", status=None,
               calibration=None):
    """A radar recording (of the ``gpr`` driver) whose wheel gave ``counts``, one
    per trace at ``rate``/s."""
    counts = np.asarray(counts)
    n = counts.size
    with RecordingWriter(path) as w:
        if kind == "gpr":
            cols = {"encoder": counts.dtype} if fields else {}
            if status is not None:
                cols["status"] = np.uint16
            s = w.add_stream("gpr", "gpr", n_channels=16, sample_interval=25e-12,
                             fields=cols or None, calibration=calibration,
                             attrs={"driver": "gpr"})
            data = np.zeros((n, 16), np.int16)
        else:
            s = w.add_stream("emi", "emi", gate_times=np.geomspace(1e-5, 1e-3, 8))
            data = np.zeros((n, 8), np.float32)
        extra = {"encoder": counts} if fields and kind == "gpr" else {}
        if status is not None:
            extra["status"] = np.asarray(status, np.uint16)
        s.append(data, time=(np.arange(n) * 1e9 / rate).astype(np.int64), **extra)


def _pushed(still=100, run=400, per_trace=7, start=1000, seed=0):
    """Still, pushed forward ``per_trace`` counts a trace give or take (with a few
    small steps back: a wheel rocks on uneven ground), still again."""
    rng = np.random.default_rng(seed)
    steps = per_trace + rng.integers(-2, 3, run)
    steps[rng.choice(run, 10, replace=False)] = -2
    moving = start + np.cumsum(steps)
    return np.concatenate([np.full(still, start), moving, np.full(still, moving[-1])]), \
        int(moving[-1] - start)


def test_distance_per_count_is_the_distance_over_the_counts(tmp_path):
    counts, net = _pushed()
    path = tmp_path / "wheel.h5"
    _wheel_run(path, counts.astype(np.int32))
    prof = wheel_profile(path, distance=5.0)
    assert prof["distance_per_count"] == pytest.approx(5.0 / net, rel=1e-12)
    assert prof["wheel_counts"] == net and prof["wheel_distance"] == 5.0
    assert prof["procedure"] == "survey wheel over 5 m"
    assert prof["distance_per_count_from"].startswith(f"{path}:gpr[0:600]")
    # the recording's own sample interval, not the template's
    assert prof["sample_interval"] == 25e-12
    back = load_profile(write_profile(prof, tmp_path / "w.toml"))
    assert back["distance_per_count"] == prof["distance_per_count"]
    # a segment of the run (the still parts count nothing either way)
    seg = wheel_profile(path, distance=5.0, start=0.5, stop=6.0)
    assert seg["distance_per_count"] == pytest.approx(5.0 / net, rel=1e-12)


def test_a_wheel_counting_down_gets_a_negative_value(tmp_path):
    counts, net = _pushed()
    path = tmp_path / "down.h5"
    _wheel_run(path, (10_000 - counts).astype(np.int64))
    prof = wheel_profile(path, distance=2.0)
    assert prof["distance_per_count"] == pytest.approx(-2.0 / net, rel=1e-12)


def test_bad_runs_and_options_are_refused_naming_why(tmp_path):
    counts, _ = _pushed()
    good = tmp_path / "good.h5"
    _wheel_run(good, counts.astype(np.int32))
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "5", 1e6 + 1):
        with pytest.raises(ConfigError, match="distance the wheel was pushed"):
            wheel_profile(good, distance=bad)
    assert wheel_profile(good, distance=1e6)["wheel_distance"] == 1e6
    with pytest.raises(ConfigError, match="is for a emi device|metal detector"):
        wheel_profile(good, distance=1.0, base="emi-pi-default")

    none = tmp_path / "none.h5"
    _wheel_run(none, counts, fields=False)
    with pytest.raises(ConfigError, match="has no survey wheel count \\(no 'encoder' column"):
        wheel_profile(none, distance=1.0)

    still = tmp_path / "still.h5"
    _wheel_run(still, np.full(300, 42, np.int32))
    with pytest.raises(ConfigError, match="did not move over the run \\(it stays at 42\\)"):
        wheel_profile(still, distance=1.0)
    # the still part alone of a good run
    with pytest.raises(ConfigError, match="did not move"):
        wheel_profile(good, distance=1.0, stop=0.9)

    short = tmp_path / "short.h5"
    _wheel_run(short, np.array([0, 0, 40, 80, 120, 120], np.int32))
    with pytest.raises(ConfigError, match="moved between only 3 pairs of traces \\(need at "
                       "least 10\\): too short a run"):
        wheel_profile(short, distance=1.0)

    # a counter zeroed at the tape's start after earlier use (800 counts, less
    # than a quarter of the run: a bound on the run's share had taken it)
    zeroed = np.concatenate([np.full(50, 800), counts - counts[0]]).astype(np.int32)
    _wheel_run(tmp_path / "zeroed.h5", zeroed)
    with pytest.raises(ConfigError, match=r"jumped by -800 \(from 800 to 0\) between traces "
                       r"49 and 50, more than 20 times its usual move"):
        wheel_profile(tmp_path / "zeroed.h5", distance=5.0)
    assert wheel_profile(tmp_path / "zeroed.h5", distance=5.0, start=0.6)["wheel_counts"] \
        == counts[-1] - counts[0]

    # pulled back 10 % at the end, and out and back
    back = np.concatenate([counts, counts[-1] - 7 * np.arange(1, 41)]).astype(np.int32)
    _wheel_run(tmp_path / "back.h5", back)
    with pytest.raises(ConfigError, match=r"went back by 300 counts over the run, 1\d\.\d% of "
                       r"its net .*the radar was pulled back, or went out and back"):
        wheel_profile(tmp_path / "back.h5", distance=5.0)
    there = np.concatenate([counts, counts[::-1]]).astype(np.int32)
    _wheel_run(tmp_path / "there.h5", there)
    with pytest.raises(ConfigError, match="came back to where it started"):
        wheel_profile(tmp_path / "there.h5", distance=5.0)

    # traces the radar flagged as an encoder fault
    status = np.zeros(counts.size, np.uint16)
    status[200:230] = 4 | 1
    _wheel_run(tmp_path / "fault.h5", counts.astype(np.int32), status=status)
    with pytest.raises(ConfigError, match=r"encoder fault on 30 trace\(s\), the first trace 200"):
        wheel_profile(tmp_path / "fault.h5", distance=5.0)
    status[200:230] = 1 | 8   # (overrange and a marker: not the wheel's business)
    _wheel_run(tmp_path / "ok.h5", counts.astype(np.int32), status=status)
    assert wheel_profile(tmp_path / "ok.h5", distance=5.0)["wheel_distance"] == 5.0

    reset = counts.astype(np.int32).copy()
    reset[300:] -= reset[300] - 3   # the counter reset to about 0 mid-run
    jumped = tmp_path / "reset.h5"
    _wheel_run(jumped, reset)
    with pytest.raises(ConfigError, match=r"jumped by -\d+ \(from \d+ to 3\) between traces "
                       r"299 and 300.*a reset of the counter"):
        wheel_profile(jumped, distance=1.0)
    # the part before the reset is a run of its own
    part = wheel_profile(jumped, distance=1.0, stop=2.99)
    assert part["wheel_counts"] == reset[298] - reset[0]

    emi = tmp_path / "emi.h5"
    _wheel_run(emi, counts, kind="emi")
    with pytest.raises(ConfigError, match="no GPR stream 'gpr'"):
        wheel_profile(emi, distance=1.0)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint32])
@pytest.mark.parametrize("sign", [1, -1])
def test_a_counter_that_wraps_is_followed_across_the_wrap(tmp_path, dtype, sign):
    """A 16-bit counter passes 65535 every 65 m at 1 mm a count: its wrap is a
    move of a few counts, not a reset (it had been refused as one)."""
    counts, net = _pushed(start=0)
    info = np.iinfo(dtype)
    near = (info.max - 900) if sign > 0 else (info.min + 900)
    wrapped = (near + sign * (counts - counts[0])).astype(np.int64)
    wrapped = ((wrapped - info.min) % (int(info.max) - info.min + 1) + info.min).astype(dtype)
    assert (np.diff(wrapped.astype(np.int64)) * sign < -1000).any()   # (it does wrap)
    path = tmp_path / "wrap.h5"
    _wheel_run(path, wrapped)
    prof = wheel_profile(path, distance=5.0)
    assert prof["wheel_counts"] == sign * net
    assert prof["distance_per_count"] == pytest.approx(sign * 5.0 / net, rel=1e-12)


def test_encoder_steps():
    from demine.positions import encoder_steps

    np.testing.assert_array_equal(encoder_steps(np.array([65530, 65535, 4, 9], np.uint16)),
                                  [5, 5, 5])
    np.testing.assert_array_equal(encoder_steps(np.array([32767, -32768], np.int16)), [1])
    np.testing.assert_array_equal(encoder_steps(np.array([2, 0], np.uint16), prev=65535),
                                  [3, -2])
    # a reset stays a large step; 64-bit and float counts are not wrapped
    np.testing.assert_array_equal(encoder_steps(np.array([5000, 0], np.int32)), [-5000])
    np.testing.assert_array_equal(encoder_steps(np.array([2.0**40, 0.0])), [-2.0**40])
    np.testing.assert_array_equal(encoder_steps(np.array([2**40, 0], np.int64)), [-2**40])


def test_the_recordings_own_radar_settings_are_kept(tmp_path):
    counts, _ = _pushed()
    path = tmp_path / "own.h5"
    _wheel_run(path, counts.astype(np.int32),
               calibration={"antenna_height": 0.05, "frequency": 8e8, "velocity": 1.2e8})
    prof = wheel_profile(path, distance=5.0)
    assert (prof["antenna_height"], prof["frequency"], prof["velocity"],
            prof["sample_interval"]) == (0.05, 8e8, 1.2e8, 25e-12)
    assert prof["driver"] == "gpr"
    # a base of one's own keeps its values
    mine = write_profile({**load_profile("gpr-default"), "velocity": 0.9e8,
                          "description": "my radar"}, tmp_path / "mine.toml")
    prof = wheel_profile(path, distance=5.0, base=mine)
    assert prof["velocity"] == 0.9e8 and prof["antenna_height"] == 0.0


def test_cli_calibrate_wheel(tmp_path):
    counts, net = _pushed()
    path = tmp_path / "wheel.h5"
    _wheel_run(path, counts.astype(np.int32))
    out = tmp_path / "wheel.toml"
    proc = subprocess.run([sys.executable, "-m", "demine", "calibrate", "wheel", str(path),
                           "--distance", "5", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    dpc = 5.0 / net
    assert f"distance_per_count {dpc:.6g} m ({net} counts over 5 m" in proc.stdout
    assert load_profile(out)["distance_per_count"] == pytest.approx(dpc, rel=1e-12)
    # refused before the recording is read, in the command's words
    proc = subprocess.run([sys.executable, "-m", "demine", "calibrate", "wheel", str(path),
                           "--distance", "-3", "--out", str(tmp_path / "x.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--distance" in proc.stderr, proc.stderr
    assert not (tmp_path / "x.toml").exists()
    # an existing profile that is not the --base is kept without --overwrite
    # (with --base gpr-default it had been replaced, its time zero lost)
    mine = write_profile({**load_profile("gpr-default"), "time_zero": 1.5e-9}, tmp_path / "g.toml")
    argv = [sys.executable, "-m", "demine", "calibrate", "wheel", str(path), "--distance", "5",
            "--base", "gpr-default", "--out", str(mine)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 2 and "exists and is not the --base (gpr-default)" in proc.stderr
    assert load_profile(mine)["time_zero"] == 1.5e-9
    proc = subprocess.run([*argv[:-4], "--base", str(mine), "--out", str(mine)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert load_profile(mine)["time_zero"] == 1.5e-9
    assert load_profile(mine)["distance_per_count"] == pytest.approx(dpc, rel=1e-12)
    proc = subprocess.run([*argv, "--overwrite"], capture_output=True, text=True)
    assert proc.returncode == 0 and load_profile(mine)["time_zero"] == 0.0


def test_a_radar_recorded_with_its_calibrated_wheel_is_placed_by_it(tmp_path):
    """The whole procedure through the recorder: a calibration run recorded
    with the shipped profile (placed by the reference radar's 1 mm a count,
    and told so), calibrated over its 3 m, then a line recorded with the
    calibrated profile is placed at this wheel's 3 m."""
    counts = np.concatenate([np.zeros(20, np.int64), 4 * np.arange(1, 281)])   # 1120 counts

    def record(out, calibration):
        return record_wheel_radar(out, counts, calibration)

    shipped = load_profile("gpr-default")
    first = record(tmp_path / "run.h5", shipped)
    assert any("distance_per_count 0.001 m" in n
               and "does not say it was measured for this wheel" in n
               for n in first.processing_notes), first.processing_notes
    with Recording(first.out) as r:
        assert np.nanmax(r.streams["gpr"].x) == pytest.approx(1.12)   # the reference's mm
    prof = wheel_profile(first.out, distance=3.0)
    assert prof["wheel_counts"] == 1120
    second = record(tmp_path / "line.h5", load_profile(write_profile(prof, tmp_path / "w.toml")))
    assert not any("measured for this wheel" in n for n in second.processing_notes)
    with Recording(second.out) as r:
        x = r.streams["gpr"].x
        assert np.nanmax(x) == pytest.approx(3.0)
        np.testing.assert_allclose(np.diff(x[20:]), 3.0 / 280)


# ------------------------------------------------------------ reposition
#: counts of a line: still for 20 traces, 7 per trace, then a reset to 0 and on
_LINE = np.concatenate([np.full(20, 900), 900 + 7 * np.arange(1, 181),
                        7 * np.arange(100)]).astype(np.int32)


def test_a_line_is_placed_again_as_the_recorder_would_have_placed_it(tmp_path):
    """A line recorded with the shipped (wrong) distance_per_count, then placed
    by the wheel's measured value: x, the calibration and the alarms are what
    recording with the measured value gives, and the recording is unchanged."""
    from demine.calibration.procedures import reposition
    from demine.pipeline import append_alarms

    wrong = record_wheel_radar(tmp_path / "wrong.h5", _LINE, {
        "sample_interval": 3.125e-11, "distance_per_count": 0.001}).out
    right = record_wheel_radar(tmp_path / "right.h5", _LINE, {
        "sample_interval": 3.125e-11, "distance_per_count": 0.00137}).out
    with Recording(wrong) as r:
        g = r.streams["gpr"]
        t = g.time
        x_wrong = g.x
    k = np.array([60, 150, 250])  # (alarms at three traces, one after the reset)
    append_alarms(wrong, {"time": t[k], "stream": np.array(["gpr"] * 3, dtype=object),
                          "x": x_wrong[k], "y": np.zeros(3), "depth": np.full(3, 0.1),
                          "score": np.full(3, 20.0)})
    append_alarms(wrong, {"time": t[k[:1]], "stream": np.array(["emi"], dtype=object),
                          "x": np.array([0.25]), "y": np.zeros(1), "score": np.ones(1)})
    before = wrong.read_bytes()
    _wheel_run(tmp_path / "run.h5", 1000 + 2190 * np.arange(100) // 99)
    prof = wheel_profile(tmp_path / "run.h5", distance=3.0)
    assert prof["distance_per_count"] == pytest.approx(3.0 / 2190)
    prof["distance_per_count"] = 0.00137
    write_profile(prof, tmp_path / "wheel.toml")
    out = tmp_path / "placed.h5"
    got = reposition(wrong, out, tmp_path / "wheel.toml")
    assert wrong.read_bytes() == before
    assert got["placed"] == 280 and got["jumps"] == 1 and got["alarms"] == 3  # (left out)
    assert got["length_after"] == pytest.approx(got["length_before"] * 1.37)
    with Recording(out) as a, Recording(right) as b:
        ga, gb = a.streams["gpr"], b.streams["gpr"]
        np.testing.assert_allclose(ga.x, gb.x, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(np.isnan(ga.y), np.isnan(gb.y))
        np.testing.assert_array_equal(ga.samples, gb.samples)
        np.testing.assert_array_equal(ga["encoder"], gb["encoder"])
        cal = ga.calibration
        assert cal["distance_per_count"] == 0.00137 and cal["repositioned_from"] == 0.001
        assert cal["distance_per_count_from"] == prof["distance_per_count_from"]
        # the radar's alarms, found on the old scale (a hyperbola's velocity and
        # depth scale with it), are left out for detect to find again; another
        # stream's alarm stays
        al = a.alarms
        assert list(al["stream"]) == ["emi"] and al["x"].tolist() == [0.25]
    with Recording(wrong) as r:
        assert len(r.alarms["x"]) == 4  # (the recording keeps them)
    import h5py

    with h5py.File(out, "r") as f:
        assert f["alarms/index"][...].tolist() == [0]


def test_reposition_refuses_what_it_cannot_place(tmp_path):
    from demine.calibration.procedures import reposition

    line = _line(tmp_path / "line.h5", _LINE, calibration={"distance_per_count": 0.001})
    good = {"distance_per_count": 0.002}
    with pytest.raises(ConfigError, match="the recording itself"):
        reposition(line, line, good)
    (tmp_path / "taken.h5").write_bytes(b"x")
    with pytest.raises(ConfigError, match="exists: give --overwrite"):
        reposition(line, tmp_path / "taken.h5", good)
    assert (tmp_path / "taken.h5").read_bytes() == b"x"
    for bad in ({}, {"distance_per_count": 0.0}, {"distance_per_count": float("nan")},
                {"distance_per_count": True}):
        with pytest.raises(ConfigError, match="not a wheel calibration"):
            reposition(line, tmp_path / "o.h5", bad)
    with pytest.raises(ConfigError, match="no survey wheel count"):
        reposition(_line(tmp_path / "nowheel.h5", _LINE, fields=False), tmp_path / "o.h5", good)
    with pytest.raises(ConfigError, match="no GPR stream 'gpr'"):
        reposition(_line(tmp_path / "emi.h5", _LINE, kind="emi"), tmp_path / "o.h5", good)
    placed = tmp_path / "gps.h5"
    with RecordingWriter(placed) as w:
        g = w.add_stream("gpr", "gpr", n_channels=4, fields={"encoder": np.int32})
        w.add_stream("gps", "gps")
        g.append(np.zeros((3, 4), np.int16), time=np.arange(3) * 10**7, encoder=np.arange(3),
                 x=np.arange(3.0), y=np.array([0.0, 0.1, 0.2]))
    with pytest.raises(ConfigError, match="GPS stream"):
        reposition(placed, tmp_path / "o.h5", good)
    with pytest.raises(ConfigError, match="off its line"):
        reposition(_across(placed, tmp_path / "across.h5"), tmp_path / "o.h5", good)
    assert not (tmp_path / "o.h5").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_reposition_keeps_no_stale_wheel_and_places_what_another_tool_wrote(tmp_path):
    """(review) The earlier wheel's provenance stayed beside the new value; a
    file with lon/lat but no local frame kept its old lon/lat; a stream without
    x columns was refused; an unclosed source ended in h5py's words."""
    import h5py

    from demine.calibration.procedures import reposition

    line = _line(tmp_path / "line.h5", _LINE, calibration={
        "distance_per_count": 0.001, "wheel_counts": 10000, "wheel_distance": 10.0,
        "distance_per_count_from": "run-a.h5:gpr[0:300]"})
    from demine.pipeline import append_alarms

    # (alarms of a table that names no stream: the only radar's, found on the
    # old scale, had been kept at their old x)
    append_alarms(line, {"time": np.array([10**9]), "x": np.array([0.46]),
                         "y": np.zeros(1), "score": np.ones(1)})
    got = reposition(line, tmp_path / "o.h5", {"distance_per_count": 0.002})
    assert got["alarms"] == 1
    with Recording(tmp_path / "o.h5") as r:
        assert len(r.alarms["x"]) == 0
    with Recording(tmp_path / "o.h5") as r:
        cal = r.streams["gpr"].calibration
        assert cal["distance_per_count"] == 0.002 and cal["repositioned_from"] == 0.001
        assert not {"wheel_counts", "wheel_distance", "distance_per_count_from"} & set(cal)
    geo = tmp_path / "geo.h5"  # lon/lat columns, no frame; no x, y at all
    with RecordingWriter(geo) as w:
        w.add_stream("gpr", "gpr", n_channels=4, fields={"encoder": np.int32}, geo=True
                     ).append(np.zeros((300, 4), np.int16), time=np.arange(300) * 10**7,
                              encoder=_LINE, lon=np.full(300, 30.5), lat=np.full(300, 50.4))
    with h5py.File(geo, "r+") as f:
        del f["streams/gpr/x"], f["streams/gpr/y"]
    got = reposition(geo, tmp_path / "g.h5", {"distance_per_count": 0.002})
    assert got["placed"] == 280
    with Recording(tmp_path / "g.h5") as r:
        g = r.streams["gpr"]
        assert np.isfinite(g.x).sum() == 280 and np.nanmax(g.x) == pytest.approx(0.002 * 1953)
        assert np.isnan(g["lon"]).all() and np.isnan(g["lat"]).all()
    crashed = record_wheel_radar(tmp_path / "crashed.h5", _LINE, {
        "sample_interval": 3.125e-11, "distance_per_count": 0.001}).out
    with h5py.File(crashed, "r+", libver="latest") as f:   # (a recording still open)
        f.swmr_mode = True
        with pytest.raises(ConfigError, match="still being recorded, or was its recording "
                           "interrupted"):
            reposition(crashed, tmp_path / "c.h5", {"distance_per_count": 0.002})
    assert not (tmp_path / "c.h5").exists() and not list(tmp_path.glob(".*.tmp"))


def _line(path, counts, **kw):
    _wheel_run(path, counts, **kw)
    return path


def _across(src, path):
    """``src``'s radar alone (no GPS), with its y as recorded: placed off a line."""
    with Recording(src) as r, RecordingWriter(path) as w:
        g = r.streams["gpr"]
        w.add_stream("gpr", "gpr", n_channels=4, fields={"encoder": np.int32}).append(
            g.samples, time=g.time, encoder=g["encoder"], x=g.x, y=g.y)
    return path


def test_cli_reposition(tmp_path):
    line = _line(tmp_path / "line.h5", _LINE, calibration={"distance_per_count": 0.001})
    write_profile({"distance_per_count": 0.0025}, tmp_path / "w.toml")
    run = [sys.executable, "-m", "demine", "calibrate", "reposition", str(line),
           "--profile", str(tmp_path / "w.toml")]
    proc = subprocess.run(run + ["-o", str(tmp_path / "p.h5")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "placed by distance_per_count 0.0025 m (was 0.001 m): 280 of 300 traces" in proc.stdout
    assert "1 count reset(s) not taken as moves" in proc.stdout
    with Recording(tmp_path / "p.h5") as r:
        assert np.nanmax(r.streams["gpr"].x) == pytest.approx(0.0025 * (7 * 180 + 7 * 99))
    proc = subprocess.run(run + ["-o", str(line)], capture_output=True, text=True)
    assert proc.returncode == 2 and "is the input" in proc.stderr
    proc = subprocess.run(run + ["-o", str(tmp_path / "nodir" / "p.h5")], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@settings(deadline=None)
@given(steps=st.lists(st.integers(-3, 12), min_size=1, max_size=200),
       resets=st.lists(st.integers(0, 199), max_size=3),
       cuts=st.lists(st.integers(1, 199), max_size=6),
       dpc=st.sampled_from([0.001, -0.002, 0.0137]),
       start=st.integers(-(2**31), 2**31 - 1),
       faults=st.lists(st.integers(0, 199), max_size=4))
def test_wheel_positions_block_by_block_are_those_of_the_whole_line(steps, resets, cuts, dpc,
                                                                    start, faults):
    """The recorder places a line block by block, reposition all at once: the
    same x, whatever the blocks (an int32 counter wrapping, resets, a wheel
    still at first, traces flagged as encoder faults)."""
    from demine.positions import wheel_positions

    c = (start + np.cumsum([0] + steps)).astype(np.int64)
    for r in resets:
        if r < c.size:
            c[r:] -= c[r]  # (the device re-zeroes its count)
    counts = ((c + 2**31) % 2**32 - 2**31).astype(np.int32)
    fault = np.zeros(counts.size, bool)
    fault[[f for f in faults if f < counts.size]] = True
    whole, _, jumps = wheel_positions(counts, dpc, fault=fault)
    assert np.isnan(whole[fault]).all()
    parts, state, n = [], None, 0
    for a, b in zip([0, *sorted(set(cuts))], [*sorted(set(cuts)), 10**6], strict=True):
        if a >= counts.size:
            break
        # (an empty block, first or between two, changes nothing)
        x, state, j = wheel_positions(counts[:0], dpc, state=state)
        assert x.size == 0 and j == 0
        x, state, j = wheel_positions(counts[a:b], dpc, state=state, fault=fault[a:b])
        parts.append(x)
        n += j
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert n == jumps
    # the trusted traces are placed as a line without the faulted ones is
    np.testing.assert_array_equal(whole[~fault], wheel_positions(counts[~fault], dpc)[0])
    if fault.any():
        return
    first = np.flatnonzero(np.diff(counts.astype(np.int64), prepend=counts[0]))
    if not resets and first.size and np.abs(np.diff(c)).max(initial=0) * abs(dpc) <= 0.5:
        # (no reset, no jump: the distance from where the wheel first turned)
        want = np.where(np.arange(c.size) >= first[0], (c - c[0]) * dpc, np.nan)
        np.testing.assert_allclose(whole, want, rtol=1e-9, atol=1e-12)


def test_the_run_between_two_marks(tmp_path):
    """(left alone in session 30) The operator marks the tape's two ends on the
    radar (its marker button: status bit 3, held over a few traces) or in the
    recording (`demine record`'s marks): the run is between them, whatever the
    wheel did before and after."""
    from demine.drivers.gpr import STATUS

    counts = (5000 + 7 * np.arange(600)).astype(np.int32)  # pushed throughout
    status = np.zeros(600, np.uint16)
    status[[100, 101, 102, 400]] = STATUS["marker"]
    status[250] = STATUS["low_battery"]
    _wheel_run(tmp_path / "flag.h5", counts, status=status)
    prof = wheel_profile(tmp_path / "flag.h5", distance=3.0, marks=True)
    assert prof["wheel_counts"] == 2100 and prof["distance_per_count"] == 3.0 / 2100
    assert wheel_profile(tmp_path / "flag.h5", distance=3.0)["wheel_counts"] == 7 * 599
    # marks made in the recording, by time (a radar without the flag)
    table = tmp_path / "table.h5"
    t = (np.arange(600) * 1e7).astype(np.int64)
    with RecordingWriter(table) as w:
        w.add_stream("gpr", "gpr", n_channels=16, sample_interval=25e-12,
                     fields={"encoder": np.int32}, attrs={"driver": "gpr"}).append(
            np.zeros((600, 16), np.int16), time=t, encoder=counts)
        # (with the rows control commands write: a null, a threshold change)
        w.append_markers({"time": t[[100, 150, 300, 450]], "x": [np.nan] * 4,
                          "y": [np.nan] * 4,
                          "label": ["null", "tape start", "threshold", "tape end"]})
    prof = wheel_profile(table, distance=2.1, marks=True)
    assert prof["wheel_counts"] == 2100 and prof["distance_per_count"] == pytest.approx(0.001)
    forgot = tmp_path / "forgot.h5"  # the start mark forgotten: refused, not 0.002
    with RecordingWriter(forgot) as w:
        w.add_stream("gpr", "gpr", n_channels=16, sample_interval=25e-12,
                     fields={"encoder": np.int32}, attrs={"driver": "gpr"}).append(
            np.zeros((600, 16), np.int16), time=t, encoder=counts)
        w.append_markers({"time": t[[300, 450]], "x": [np.nan] * 2, "y": [np.nan] * 2,
                          "label": ["threshold", "tape end"]})
    with pytest.raises(ConfigError, match=r"markers table has 1: 4\.500 s \('tape end'\)"):
        wheel_profile(forgot, distance=2.1, marks=True)
    twice = tmp_path / "twice.h5"  # one mark made twice: refused, naming the marks
    with RecordingWriter(twice) as w:
        w.add_stream("gpr", "gpr", n_channels=16, sample_interval=25e-12,
                     fields={"encoder": np.int32}, attrs={"driver": "gpr"}).append(
            np.zeros((600, 16), np.int16), time=t, encoder=counts)
        w.append_markers({"time": [t[450], t[450]], "x": [np.nan] * 2, "y": [np.nan] * 2,
                          "label": ["tape end", "tape end"]})
    with pytest.raises(ConfigError, match=r"fall on one trace, at 4\.500 s \('tape end', "
                                          r"'tape end'\): one mark made twice"):
        wheel_profile(twice, distance=2.1, marks=True)
    status[400] = 0
    _wheel_run(tmp_path / "one.h5", counts, status=status)
    with pytest.raises(ConfigError, match=r"exactly two marks .* marker flag has 1: 1\.000 s"):
        wheel_profile(tmp_path / "one.h5", distance=3.0, marks=True)
    status[[300, 500]] = STATUS["marker"]
    _wheel_run(tmp_path / "three.h5", counts, status=status)
    with pytest.raises(ConfigError, match="has 3: 1.000 s, 3.000 s, 5.000 s"):
        wheel_profile(tmp_path / "three.h5", distance=3.0, marks=True)
    _wheel_run(tmp_path / "none.h5", counts)
    with pytest.raises(ConfigError, match="neither the radar's marker flag nor the markers"):
        wheel_profile(tmp_path / "none.h5", distance=3.0, marks=True)
    with pytest.raises(ConfigError, match="not both"):
        wheel_profile(tmp_path / "flag.h5", distance=3.0, marks=True, start=0.5)
    proc = subprocess.run([sys.executable, "-m", "demine", "calibrate", "wheel",
                           str(tmp_path / "flag.h5"), "--distance", "3", "--marks", "-o",
                           str(tmp_path / "w.toml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert load_profile(tmp_path / "w.toml")["wheel_counts"] == 2100


def test_traces_flagged_as_an_encoder_fault_are_not_placed(tmp_path):
    """The radar flags an encoder fault (its status bit 2) while its count
    reads garbage: the recorder had placed those traces at the garbage count
    (the line jumped 30 m out and back), and reposition did the same.  They
    are not placed now, and the line goes on from the last trusted count."""
    from demine.calibration.procedures import reposition
    from demine.drivers.gpr import STATUS

    counts = (1000 + 10 * np.arange(300)).astype(np.int32)
    status = np.zeros(300, np.uint16)
    status[100:120] = STATUS["encoder_fault"] | STATUS["marker"]
    counts[100:120] = 31_000    # (what the counter reads while it is faulted)
    status[200] = STATUS["marker"]   # (another flag: placed as any trace)
    rec = record_wheel_radar(tmp_path / "f.h5", counts, {
        "sample_interval": 3.125e-11, "distance_per_count": 0.001}, status=status)
    want = 0.01 * np.arange(300.0)
    want[0] = np.nan   # (before the wheel first turned)
    want[100:120] = np.nan
    with Recording(rec.out) as r:
        g = r.streams["gpr"]
        np.testing.assert_allclose(g.x, want, atol=1e-12)
        np.testing.assert_array_equal(np.isnan(g.y), np.isnan(want))
    assert any("flagged an encoder fault on 20 trace(s)" in n
               for n in rec.processing_notes), rec.processing_notes
    assert not any("jumped" in n for n in rec.processing_notes), rec.processing_notes
    got = reposition(rec.out, tmp_path / "p.h5", {"distance_per_count": 0.002})
    assert got["faults"] == 20 and got["placed"] == 279 and got["jumps"] == 0
    with Recording(tmp_path / "p.h5") as r:
        np.testing.assert_allclose(r.streams["gpr"].x, 2 * want, atol=1e-12)
