"""`demine calibrate` on outputs and profiles it must not take as they are
(cases from an adversarial audit of the calibration commands, session 33)."""

from __future__ import annotations

import os
import stat

import h5py
import numpy as np
import pytest

from demine.cli import main
from demine.recording import Recording, RecordingWriter


def _air(path, n=500, g=8):
    rng = np.random.default_rng(0)
    x = 0.3 + 0.01 * rng.standard_normal((n, g))
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=np.geomspace(1e-5, 1e-3, g), driver="emi-pi"
                     ).append(x.astype("f4"), time=(np.arange(n) * 1e6).astype(np.int64))
    return path


def _radar(path, n=300, m=256, dt=25e-12):
    rng = np.random.default_rng(1)
    wave = 8000 * np.exp(-((np.arange(m) - 37) / 2.0) ** 2)
    tr = wave[None, :] + 50 * rng.standard_normal((n, m))
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=m, sample_interval=dt).append(
            tr.astype("int16"), time=np.arange(n) * 2_500_000)
    return path


def _line(path):
    """A radar line placed by a wheel of 1 mm per count, with two alarms."""
    c = np.concatenate([np.full(50, 5000), 5000 + 10 * np.arange(1, 151)]).astype(np.int32)
    n = c.size
    x = np.where(np.arange(n) < 50, np.nan, (c - 5000) * 0.001)
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=16, sample_interval=25e-12,
                     fields={"encoder": np.int32}, calibration={"distance_per_count": 0.001},
                     attrs={"driver": "gpr"}).append(
            np.zeros((n, 16), np.int16), time=(np.arange(n) * 1e7).astype(np.int64),
            encoder=c, x=x, y=np.where(np.isfinite(x), 0.0, np.nan))
        w.append_alarms([{"time": 1, "stream": "gpr", "x": 0.5, "y": 0.0, "score": 1.0},
                         {"time": 2, "stream": "gpr", "x": 1.0, "y": 0.0, "score": 1.0}])
    return path


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_output_that_is_a_pipe_is_written_into_or_refused_not_replaced(tmp_path, capsys):
    # renaming over a device or pipe replaces it: as root, --out /dev/null
    # --overwrite had replaced the system's /dev/null with a profile.  A profile
    # (text) is written into it, as the exports are; a recording is refused.
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    rec = _radar(tmp_path / "gpr.h5")
    assert main(["calibrate", "time-zero", str(rec), "-o", str(fifo), "--overwrite"]) == 0
    reader.join(30)
    assert got and "time_zero = " in got[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    line = _line(tmp_path / "line.h5")
    (tmp_path / "wheel.toml").write_text("distance_per_count = 0.002\n")
    assert main(["calibrate", "reposition", str(line), "--profile", str(tmp_path / "wheel.toml"),
                 "-o", str(fifo), "--overwrite"]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_reposition_refuses_to_write_over_its_wheel_profile(tmp_path, capsys):
    line = _line(tmp_path / "line.h5")
    prof = tmp_path / "wheel.toml"
    prof.write_text("distance_per_count = 0.002\n")
    assert main(["calibrate", "reposition", str(line), "--profile", str(prof), "-o", str(prof),
                 "--overwrite"]) == 2
    assert "is the wheel profile" in capsys.readouterr().err
    assert prof.read_text() == "distance_per_count = 0.002\n"


def test_reposition_keeps_an_alarms_table_written_without_chunks(tmp_path, capsys):
    # (another tool's contiguous columns: "Only chunked datasets can be resized")
    line = _line(tmp_path / "line.h5")
    with h5py.File(line, "r+") as f:
        tab = f["alarms"]
        for k in list(tab):
            data, attrs = tab[k][...], dict(tab[k].attrs)
            del tab[k]
            tab.create_dataset(k, data=data).attrs.update(attrs)
        tab["stream"][0] = b"other"   # one alarm kept, one (the stream's) left out
    (tmp_path / "wheel.toml").write_text("distance_per_count = 0.002\n")
    out = tmp_path / "new.h5"
    assert main(["calibrate", "reposition", str(line), "--profile", str(tmp_path / "wheel.toml"),
                 "-o", str(out)]) == 0
    with Recording(out) as rec:
        a = rec.alarms
        assert [s.decode() if isinstance(s, bytes) else s for s in a["stream"]] == ["other"]
        assert np.nanmax(rec.streams["gpr"].x) == pytest.approx(3.0)   # (150 x 10 counts)


@pytest.mark.parametrize(("text", "says"), [
    (b"\xff\xfe\x00garbage", "not a calibration profile (not UTF-8 TOML text)"),
    (b"gains = 5\n", "'gains' must be a list of numbers, one per gate, got 5"),
    (b'null = "zero"\n', "'null' must be a list of numbers"),
])
def test_a_base_profile_that_is_not_one_is_named(tmp_path, capsys, text, says):
    # (UnicodeDecodeError and TypeError tracebacks, exit 1)
    base = tmp_path / "base.toml"
    base.write_bytes(text)
    rec = _air(tmp_path / "air.h5")
    assert main(["calibrate", "null", str(rec), "--base", str(base), "-o",
                 str(tmp_path / "out.toml")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out.toml").exists()


@pytest.mark.parametrize("value", ["-25e-12", "nan", "inf", '"25 ps"'])
def test_a_base_sample_interval_that_is_not_one_is_refused(tmp_path, capsys, value):
    # (a stream without its own sample interval: -25e-12 had written a negative
    # time zero, NaN and inf theirs, each with exit 0)
    rec = tmp_path / "gpr.h5"
    rng = np.random.default_rng(1)
    wave = 8000 * np.exp(-((np.arange(256) - 37) / 2.0) ** 2)
    with RecordingWriter(rec) as w:
        w.add_stream("gpr", "gpr", n_channels=256).append(
            (wave[None, :] + 50 * rng.standard_normal((300, 256))).astype("int16"),
            time=np.arange(300) * 2_500_000)
    base = tmp_path / "base.toml"
    base.write_text(f"sample_interval = {value}\n")
    assert main(["calibrate", "time-zero", str(rec), "--base", str(base), "-o",
                 str(tmp_path / "tz.toml")]) == 2
    assert "sample_interval must be a finite number of seconds > 0" in capsys.readouterr().err
    base.write_text("sample_interval = 25e-12\n")
    assert main(["calibrate", "time-zero", str(rec), "--base", str(base), "-o",
                 str(tmp_path / "tz.toml")]) == 0
