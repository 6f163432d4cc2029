"""``demine calibrate`` as a demanding user checks it: segments that are not
there, readings that are not a null, radar traces without a direct wave,
profiles that must read back, and options named in every error."""

from __future__ import annotations

import datetime as dt
import tomllib

import numpy as np
import pytest

from demine.calibration import load_profile
from demine.calibration.procedures import (
    null_profile,
    time_zero_profile,
    write_profile,
)
from demine.cli import main
from demine.errors import ConfigError
from demine.recording import RecordingWriter

GATES = np.geomspace(1e-5, 1e-3, 8)
OFFSET = np.linspace(0.5, -0.2, 8)


def _emi(path, data, *, gates=GATES, rate=1000.0):
    with RecordingWriter(path) as w:
        kw = {"gate_times": gates} if gates is not None else {"n_channels": data.shape[1]}
        w.add_stream("emi", "emi", **kw).append(
            np.asarray(data, dtype="f4"), time=(np.arange(len(data)) * 1e9 / rate).astype(np.int64))
    return path


def _air(n=2000, noise=0.01, seed=0):
    return OFFSET + noise * np.random.default_rng(seed).standard_normal((n, 8))


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demine calibrate: error: "), err
    return err


# ------------------------------------------------------------------------ null


def test_null_refuses_readings_that_are_not_steady_in_air(tmp_path, capsys):
    # metal under the coil for the second second: the mean of the whole
    # recording used to become the null, 2.5 V off on every gate
    data = _air()
    data[1000:] += 5.0
    path = _emi(tmp_path / "air.h5", data)
    with pytest.raises(ConfigError, match="not a steady reading in air: on gate 0 the mean "
                       "moves by 5"):
        null_profile(path)
    # the first second alone is a good null
    np.testing.assert_allclose(null_profile(path, stop=0.9)["null"], OFFSET, atol=0.002)
    out = tmp_path / "det.toml"
    out.write_text('driver = "emi-pi"\n# an earlier profile\n')
    # (--overwrite: refused only because the reading is not steady)
    assert main(["calibrate", "null", str(path), "--out", str(out), "--overwrite"]) == 2
    err = _one_error_line(capsys)
    assert "--start/--stop" in err
    assert out.read_text() == 'driver = "emi-pi"\n# an earlier profile\n'  # left as it was


@pytest.mark.parametrize("what", ["sweep", "drift", "spike"])
def test_null_refuses_a_sweep_a_drift_and_metal_passing(tmp_path, what):
    n = 3000
    data = _air(n)
    t = np.arange(n) / 1000.0
    if what == "sweep":  # ground response as the coil swings (1 Hz)
        data += 0.5 * np.outer(np.sin(2 * np.pi * t), np.ones(8))
    elif what == "drift":
        data += np.outer(np.linspace(0, 0.5, n), np.ones(8))
    else:  # metal passing under the coil for 0.2 s
        data[1400:1600] += 3.0
    path = _emi(tmp_path / "r.h5", data)
    with pytest.raises(ConfigError, match="not a steady reading in air"):
        null_profile(path)


@pytest.mark.parametrize("what", ["quantised", "constant", "slow drift within the noise"])
def test_null_accepts_steady_readings_of_any_kind(tmp_path, what):
    n = 2000
    rng = np.random.default_rng(1)
    if what == "quantised":  # an ADC that mostly reads the same count
        data = np.round(100 + 0.3 * rng.standard_normal((n, 8)))
    elif what == "constant":
        data = np.full((n, 8), 7.0)
    else:
        data = _air(n) + np.outer(np.linspace(0, 0.02, n), np.ones(8))
    path = _emi(tmp_path / "r.h5", data)
    prof = null_profile(path)
    np.testing.assert_allclose(prof["null"], data.mean(axis=0), rtol=1e-6, atol=1e-6)


def test_a_gate_that_misses_every_other_reading_is_nulled(tmp_path):
    """(left alone in session 33) The reading noise came from differences of
    consecutive readings: with every other reading of a gate missing, each
    difference was NaN, the gate had no noise, and a steady null was refused
    ("not a steady reading in air ... with no reading noise")."""
    data = _air(400)
    data[::2, 3] = np.nan
    prof = null_profile(_emi(tmp_path / "half.h5", data))
    np.testing.assert_allclose(prof["null"][3], np.nanmean(data[:, 3]), rtol=1e-6)
    assert prof["noise"][3] == pytest.approx(0.01, rel=0.2)
    moved = data.copy()
    moved[200:, 3] += 0.5  # metal near the coil half way: still refused, on that gate
    with pytest.raises(ConfigError, match="not a steady reading in air: on gate 3 .* times "
                                          "the reading noise"):
        null_profile(_emi(tmp_path / "moved.h5", moved))


def test_null_refuses_a_gate_without_readings_and_too_short_a_segment(tmp_path):
    data = _air(200)
    data[:, 2] = np.nan  # (the null used to be NaN there: every later reading NaN)
    path = _emi(tmp_path / "nan.h5", data)
    with pytest.raises(ConfigError, match="gate 2 has 0 finite readings"):
        null_profile(path)
    over = _air(200)
    over[50, 1] = np.inf  # (an overrange reading made the null inf and the noise NaN)
    prof = null_profile(_emi(tmp_path / "inf.h5", over))
    assert np.isfinite(prof["null"]).all() and np.isfinite(prof["noise"]).all()
    np.testing.assert_allclose(prof["null"][1], np.delete(over[:, 1], 50).mean(), rtol=1e-6)
    short = _emi(tmp_path / "short.h5", _air(10))
    with pytest.raises(ConfigError, match="holds 10 frames; need at least 20"):
        null_profile(short)


def test_null_without_gate_times_does_not_keep_the_base_profiles(tmp_path):
    # a 4-channel detector nulled from the 16-gate default profile used to get
    # a profile with 16 gate times and 4 null values
    path = _emi(tmp_path / "r.h5", _air()[:, :4], gates=None)
    with pytest.warns(UserWarning, match="16 gate times, stream 'emi' 4 gates"):
        prof = null_profile(path)
    assert "gate_times" not in prof and len(prof["null"]) == len(prof["gains"]) == 4


def test_base_profile_of_another_kind_of_device_is_refused(tmp_path, capsys):
    path = _emi(tmp_path / "r.h5", _air())
    with pytest.raises(ConfigError, match=r"'gpr-default' is for a radar \(GPR\)"):
        null_profile(path, base="gpr-default")
    gpr = tmp_path / "gpr.h5"
    _radar(gpr, np.ones(50, dtype=bool))
    assert main(["calibrate", "time-zero", str(gpr), "--base", "emi-pi-default",
                 "--out", str(tmp_path / "t.toml")]) == 2
    assert ("'emi-pi-default' is for a metal detector (EMI) (driver 'emi-pi'), not for the "
            "radar (GPR) stream" in _one_error_line(capsys))
    assert not (tmp_path / "t.toml").exists()


# -------------------------------------------------------------------- segments


@pytest.mark.parametrize("args, says", [
    (["--stop", "100"], "segment stop (--stop) 100 s is beyond the end: stream 'emi' holds "
                        "2000 frames over 1.999 s"),
    (["--start", "5"], "segment start (--start) 5 s is beyond the end"),
    (["--start", "-1"], "segment start must be seconds from the stream's start (finite, "
                        ">= 0), got -1.0 (--start)"),
    (["--stop", "-0.5"], "segment stop must be seconds from the stream's start (finite, >= 0), "
                         "got -0.5 (--stop)"),
    (["--stop", "nan"], "got nan (--stop)"),
    (["--start", "1.5", "--stop", "1.0"], "segment stop 1 s is not after its start 1.5 s "
                                          "(--stop must be after --start)"),
    (["--start", "1", "--stop", "1"], "segment stop 1 s is not after its start 1 s"),
    (["--stream", "gpr"], "no EMI stream 'gpr' (no stream of that name; its streams: emi "
                          "(emi))"),
])
@pytest.mark.parametrize("procedure", ["null", "pulse"])
def test_bad_segments_and_streams_are_named(tmp_path, capsys, procedure, args, says):
    path = _emi(tmp_path / "air.h5", _air())
    out = tmp_path / "p.toml"
    assert main(["calibrate", procedure, str(path), *args, "--out", str(out)]) == 2
    assert says in _one_error_line(capsys)
    assert not out.exists()


def test_a_stop_at_the_streams_duration_is_its_end(tmp_path):
    # `demine info` says 1.999 s; --stop 2 is the whole stream, not beyond it
    path = _emi(tmp_path / "air.h5", _air())
    assert len(null_profile(path, stop=2.0)["null"]) == 8


def test_wrong_kind_of_stream_is_named_with_the_streams_there(tmp_path):
    path = tmp_path / "both.h5"
    with RecordingWriter(path) as w:
        emi = w.add_stream("emi", "emi", gate_times=GATES)
        gpr = w.add_stream("gpr", "gpr", n_channels=16, sample_interval=25e-12)
        emi.append(_air(100).astype("f4"), time=np.arange(100) * 1_000_000)
        gpr.append(np.zeros((5, 16), "i2"), time=np.arange(5))
    with pytest.raises(ConfigError, match=r"no EMI stream 'gpr' \('gpr' is its gpr stream; its "
                       r"streams: emi \(emi\), gpr \(gpr\)\)"):
        null_profile(path, "gpr")


# ------------------------------------------------------------------ time zero


def _radar(path, good, pick=37, m=256, dt=25e-12, seed=1):
    """Traces with a direct wave at ``pick`` where ``good``, blank elsewhere."""
    rng = np.random.default_rng(seed)
    n = good.size
    wave = 8000 * np.exp(-((np.arange(m) - pick) / 2.0) ** 2)
    traces = wave[None, :] + 50 * rng.standard_normal((n, m))
    traces[~good] = 0
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=m, sample_interval=dt).append(
            traces.astype("int16"), time=np.arange(n))
    return path


def test_time_zero_needs_a_direct_wave(tmp_path, capsys):
    # blank traces used to give "time zero 0.000 ns (sample 0)"
    blank = _radar(tmp_path / "blank.h5", np.zeros(50, dtype=bool))
    out = tmp_path / "t.toml"
    assert main(["calibrate", "time-zero", str(blank), "--out", str(out)]) == 2
    assert "0 of 50 traces have a direct wave" in _one_error_line(capsys)
    assert not out.exists()
    # noise only: the first-break pick lands anywhere (it gave sample 4)
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.h5"
    with RecordingWriter(noise) as w:
        w.add_stream("gpr", "gpr", n_channels=256, sample_interval=25e-12).append(
            (100 * rng.standard_normal((300, 256))).astype("i2"), time=np.arange(300))
    with pytest.raises(ConfigError, match="0 of 300 traces have a direct wave"):
        time_zero_profile(noise)


def test_time_zero_leaves_out_blank_traces(tmp_path):
    good = np.ones(100, dtype=bool)
    good[::3] = False  # a third of the traces dropped out
    prof = time_zero_profile(_radar(tmp_path / "r.h5", good))
    assert prof["time_zero_sample"] == 37 and prof["time_zero_spread"] == 0.0


@pytest.mark.parametrize("value, says", [("0", "must be > 0.0"), ("1.5", "must be <= 1.0"),
                                         ("-0.2", "must be > 0.0"), ("nan", "must be finite")])
def test_time_zero_threshold_is_named(tmp_path, capsys, value, says):
    path = _radar(tmp_path / "r.h5", np.ones(20, dtype=bool))
    assert main(["calibrate", "time-zero", str(path), "--threshold", value,
                 "--out", str(tmp_path / "t.toml")]) == 2
    err = _one_error_line(capsys)
    assert "'--threshold'" in err and says in err


# -------------------------------------------------------------------- profiles


def test_profiles_read_back_whatever_they_hold(tmp_path):
    # a newline in a string (a multi-line description in the base profile, a
    # recording path) used to be written raw: a profile TOML could not read;
    # a table in the base profile could not be written at all
    base = tmp_path / "base.toml"
    base.write_text('driver = "emi-pi"\n'
                    'description = """two\nlines with "quotes" \\\\ and\ttab"""\n'
                    '"gate count" = 8\nwhen = 2024-05-01T10:00:00Z\n[soil]\nlearn = true\n'
                    '"odd key" = "x"\n[soil.deep]\nx = [1, 2]\npoints = [{a = 1}, {a = 2}]\n')
    folder = tmp_path / 'a "quoted"\nfolder'
    folder.mkdir()
    path = _emi(folder / "air.h5", _air())
    prof = null_profile(path, stop=0.9, base=base)
    out = write_profile(prof, tmp_path / "det.toml")
    back = load_profile(out)
    assert back == prof
    assert back["calibrated_from"].startswith(str(folder))
    assert back["soil"]["deep"] == {"x": [1, 2], "points": [{"a": 1}, {"a": 2}]}
    assert back["when"] == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert tomllib.loads(out.read_text())["description"] == 'two\nlines with "quotes" \\ and\ttab'


def test_a_profile_updated_in_place_through_the_cli(tmp_path):
    # --base det.toml --out det.toml: the profile is read, then replaced whole
    path = _emi(tmp_path / "air.h5", _air())
    det = tmp_path / "det.toml"
    write_profile({**load_profile("emi-pi-default"), "gate_times": list(GATES),
                   "gains": [2.0] * 8, "null": [0.0] * 8, "coil_radius": 0.1}, det)
    assert main(["calibrate", "null", str(path), "--stop", "0.9", "--base", str(det),
                 "--out", str(det)]) == 0
    back = load_profile(det)
    assert back["coil_radius"] == 0.1 and back["gains"] == [2.0] * 8
    np.testing.assert_allclose(back["null"], OFFSET, atol=0.002)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["air.h5", "det.toml"]
