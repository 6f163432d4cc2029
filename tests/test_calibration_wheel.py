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
from test_recorder import _pty
from test_recorder_audit import _Feeder, _run

from demine.calibration import load_profile
from demine.calibration.procedures import wheel_profile, write_profile
from demine.drivers import get_driver
from demine.errors import ConfigError
from demine.recorder import DeviceSpec, Recorder
from demine.recording import Recording, RecordingWriter


def _wheel_run(path, counts, *, rate=100.0, fields=True, kind="gpr"):
    """A radar recording whose wheel gave ``counts``, one per trace at ``rate``/s."""
    counts = np.asarray(counts)
    n = counts.size
    with RecordingWriter(path) as w:
        if kind == "gpr":
            s = w.add_stream("gpr", "gpr", n_channels=16, sample_interval=25e-12,
                             fields={"encoder": counts.dtype} if fields else None)
            data = np.zeros((n, 16), np.int16)
        else:
            s = w.add_stream("emi", "emi", gate_times=np.geomspace(1e-5, 1e-3, 8))
            data = np.zeros((n, 8), np.float32)
        extra = {"encoder": counts} if fields and kind == "gpr" else {}
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
    # the radar's other values are the base's
    assert prof["sample_interval"] == load_profile("gpr-default")["sample_interval"]
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
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ConfigError, match="distance the wheel was pushed"):
            wheel_profile(good, distance=bad)
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

    reset = counts.astype(np.int32).copy()
    reset[300:] -= reset[300] - 3   # the counter reset to about 0 mid-run
    jumped = tmp_path / "reset.h5"
    _wheel_run(jumped, reset)
    with pytest.raises(ConfigError, match="jumped from .* between two traces.*reset or a "
                       "counter wrapping"):
        wheel_profile(jumped, distance=1.0)
    # the part before the reset is a run of its own
    part = wheel_profile(jumped, distance=1.0, stop=2.99)
    assert part["wheel_counts"] == reset[298] - reset[0]

    emi = tmp_path / "emi.h5"
    _wheel_run(emi, counts, kind="emi")
    with pytest.raises(ConfigError, match="no GPR stream 'gpr'"):
        wheel_profile(emi, distance=1.0)


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


def test_a_radar_recorded_with_its_calibrated_wheel_is_placed_by_it(tmp_path):
    """The whole procedure through the recorder: a calibration run recorded
    with the shipped profile (placed by the reference radar's 1 mm a count,
    and told so), calibrated over its 3 m, then a line recorded with the
    calibrated profile is placed at this wheel's 3 m."""
    gpr = get_driver("gpr")
    counts = np.concatenate([np.zeros(20, np.int64), 4 * np.arange(1, 281)])   # 1120 counts

    def record(out, calibration):
        m, s, path = _pty()

        def traces(k):
            if k >= 30:
                return None
            seq = np.arange(10 * k, 10 * k + 10)
            return gpr.encode_arrays(seq, seq * 2500, np.zeros((10, 128), np.int16),
                                     encoder=counts[seq])

        rec = Recorder(out, [DeviceSpec("gpr", path, calibration=calibration)],
                       flush_interval=0.2, startup_timeout=5)
        _run(rec, [_Feeder(rec, m, traces)], (m, s))
        return rec

    shipped = load_profile("gpr-default")
    first = record(tmp_path / "run.h5", shipped)
    assert any("distance_per_count 0.001 m" in n and "not measured for this wheel" in n
               for n in first.processing_notes), first.processing_notes
    with Recording(first.out) as r:
        assert np.nanmax(r.streams["gpr"].x) == pytest.approx(1.12)   # the reference's mm
    prof = wheel_profile(first.out, distance=3.0)
    assert prof["wheel_counts"] == 1120
    second = record(tmp_path / "line.h5", load_profile(write_profile(prof, tmp_path / "w.toml")))
    assert not any("not measured" in n for n in second.processing_notes)
    with Recording(second.out) as r:
        x = r.streams["gpr"].x
        assert np.nanmax(x) == pytest.approx(3.0)
        np.testing.assert_allclose(np.diff(x[20:]), 3.0 / 280)
