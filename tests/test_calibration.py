"""Calibration profiles and the procedures that produce them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from demine.calibration import available_profiles, load_profile
from demine.calibration.procedures import null_profile, time_zero_profile, write_profile
from demine.errors import ConfigError
from demine.recording import RecordingWriter


def test_shipped_profiles_load():
    assert {"emi-pi-default", "gpr-default"} <= set(available_profiles())
    emi = load_profile("emi-pi-default")
    assert len(emi["gate_times"]) == len(emi["gains"]) == len(emi["null"]) == 16
    assert np.all(np.diff(emi["gate_times"]) > 0)
    assert load_profile("gpr-default")["sample_interval"] == pytest.approx(16e-9 / 512)


def test_unknown_and_bad_profiles(tmp_path):
    with pytest.raises(ConfigError, match="no calibration profile 'nope'.*emi-pi-default"):
        load_profile("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("gains = [1, \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(bad)


def _emi_recording(path, offset, noise, n=2000):
    rng = np.random.default_rng(0)
    gates = np.geomspace(1e-5, 1e-3, 8)
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", gate_times=gates)
        data = offset + noise * rng.standard_normal((n, 8))
        data[n // 2:] += 5.0  # metal under the coil in the second half: not part of the null
        s.append(data.astype("f4"), time=np.arange(n) * 1_000_000)
    return gates


def test_null_from_reading_in_air(tmp_path):
    offset = np.linspace(0.5, -0.2, 8)
    path = tmp_path / "air.h5"
    gates = _emi_recording(path, offset, 0.01)
    prof = null_profile(path, start=0.0, stop=0.9)  # first 0.9 s only: in air
    np.testing.assert_allclose(prof["null"], offset, atol=0.002)
    np.testing.assert_allclose(prof["noise"], 0.01, rtol=0.1)
    np.testing.assert_allclose(prof["gate_times"], gates)
    assert len(prof["gains"]) == 8
    out = write_profile(prof, tmp_path / "nulled.toml")
    back = load_profile(out)
    np.testing.assert_allclose(back["null"], prof["null"], rtol=1e-12)
    assert back["procedure"] == "null in air"
    with pytest.raises(ConfigError, match="holds 0 frames"):
        null_profile(path, start=5.0, stop=6.0)


def test_time_zero_from_direct_wave(tmp_path):
    rng = np.random.default_rng(1)
    n, m, pick = 300, 256, 37
    t = np.arange(m)
    wave = 8000 * np.exp(-((t - pick) / 2.0) ** 2)
    traces = (wave[None, :] + 50 * rng.standard_normal((n, m))).astype("int16")
    path = tmp_path / "gpr.h5"
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=m, sample_interval=25e-12).append(
            traces, time=np.arange(n))
    prof = time_zero_profile(path)
    assert prof["time_zero_sample"] == pick
    assert prof["time_zero"] == pytest.approx(pick * 25e-12)
    with pytest.raises(ConfigError, match="no GPR stream 'emi'"):
        time_zero_profile(path, "emi")


def test_cli_calibrate_null(tmp_path):
    path = tmp_path / "air.h5"
    _emi_recording(path, np.zeros(8), 0.01)
    out = tmp_path / "p.toml"
    proc = subprocess.run([sys.executable, "-m", "demine", "calibrate", "null", str(path),
                           "--stop", "0.5", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "null of 8 gates" in proc.stdout
    assert len(load_profile(out)["null"]) == 8
