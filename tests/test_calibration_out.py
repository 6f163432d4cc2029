"""``demine calibrate ... --out det.toml`` does not silently replace an existing
profile: null, then pulse into the same file keeps the null."""

from __future__ import annotations

import numpy as np
import pytest
from _sweeps import SWEEP_GATES, viscous_sweep

from demine.calibration import load_profile
from demine.cli import main
from demine.recording import RecordingWriter

OFFSET = np.linspace(0.5, -0.2, SWEEP_GATES.size)


def _emi(path, data, rate=1000.0):
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=SWEEP_GATES).append(
            np.asarray(data, dtype="f4"),
            time=(np.arange(len(data)) * 1e9 / rate).astype(np.int64))
    return path


@pytest.fixture
def air_and_sweep(tmp_path):
    rng = np.random.default_rng(0)
    air = _emi(tmp_path / "air.h5", OFFSET + 0.01 * rng.standard_normal((2000, OFFSET.size)))
    sweep = _emi(tmp_path / "sweep.h5", viscous_sweep(150e-6)[1])
    return air, sweep


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demine calibrate: error: "), err
    return err


def test_null_then_pulse_into_the_same_profile_keeps_the_null(tmp_path, capsys,
                                                              air_and_sweep):
    air, sweep = air_and_sweep
    det = tmp_path / "det.toml"
    assert main(["calibrate", "null", str(air), "--out", str(det)]) == 0
    nulled = det.read_text()
    np.testing.assert_allclose(load_profile(det)["null"], OFFSET, atol=0.002)

    # without --base the pulse would start from the shipped profile (null 0): refused
    capsys.readouterr()
    assert main(["calibrate", "pulse", str(sweep), "--out", str(det)]) == 2
    err = _one_error_line(capsys)
    assert (f"{det} exists: give --base {det} to add this calibration to it, or "
            "--overwrite to replace it") in err
    assert det.read_text() == nulled  # left as it was

    # --base det.toml --out det.toml: the pulse is added to the nulled profile
    assert main(["calibrate", "pulse", str(sweep), "--base", str(det), "-o", str(det)]) == 0
    back = load_profile(det)
    np.testing.assert_allclose(back["null"], OFFSET, atol=0.002)
    assert back["pulse_length"] == pytest.approx(150e-6, rel=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["air.h5", "det.toml", "sweep.h5"]


def test_overwrite_replaces_the_profile(tmp_path, capsys, air_and_sweep):
    _, sweep = air_and_sweep
    det = tmp_path / "det.toml"
    det.write_text('driver = "emi-pi"\n# an earlier profile\n')
    assert main(["calibrate", "pulse", str(sweep), "--out", str(det), "--overwrite"]) == 0
    back = load_profile(det)
    assert back["pulse_length"] == pytest.approx(150e-6, rel=0.1)
    assert back["null"] == load_profile("emi-pi-default")["null"]  # (the shipped base)


def test_time_zero_refuses_an_existing_out_without_base(tmp_path, capsys):
    gpr = tmp_path / "line.h5"
    t = np.arange(128) * 0.1e-9
    trace = np.exp(-((t - 2e-9) / 0.3e-9) ** 2)  # the direct wave at 2 ns
    with RecordingWriter(gpr) as w:
        w.add_stream("gpr", "gpr", n_channels=t.size, dtype="f4", sample_interval=0.1e-9).append(
            np.tile(trace, (50, 1)).astype("f4"), time=np.arange(50, dtype=np.int64) * 10**7)
    out = tmp_path / "gpr.toml"
    out.write_text("# an earlier profile\n")
    assert main(["calibrate", "time-zero", str(gpr), "--out", str(out)]) == 2
    assert "--overwrite to replace it" in _one_error_line(capsys)
    assert out.read_text() == "# an earlier profile\n"
    assert main(["calibrate", "time-zero", str(gpr), "--out", str(out), "--overwrite"]) == 0
    assert load_profile(out)["time_zero_sample"] == pytest.approx(20, abs=1)
