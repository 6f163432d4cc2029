"""Calibration profiles and the procedures that produce them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _sweeps import viscous_sweep

from demine.calibration import available_profiles, load_profile
from demine.calibration.procedures import (
    null_profile,
    pulse_profile,
    time_zero_profile,
    write_profile,
)
from demine.errors import ConfigError
from demine.recording import Recording, RecordingWriter


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
    with pytest.raises(ConfigError, match=r"start \(--start\) 5 s is beyond the end"):
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


def _sweep_over_viscous_ground(path, pulse, *, n=20000, seed=3, soil=300.0, decay=None):
    """A recording of :func:`_sweeps.viscous_sweep` (five metal objects)."""
    gates, x = viscous_sweep(pulse, n=n, seed=seed, soil=soil, decay=decay)
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=gates).append(
            x.astype(np.float32), time=(np.arange(n) * 1e6).astype(np.int64))
    return gates


@pytest.mark.parametrize("pulse", [60e-6, 150e-6, 400e-6])
def test_pulse_length_from_a_sweep_over_viscous_ground(tmp_path, pulse):
    path = tmp_path / "sweep.h5"
    gates = _sweep_over_viscous_ground(path, pulse)
    prof = pulse_profile(path)
    assert prof["pulse_length"] == pytest.approx(pulse, rel=0.1)
    step, best, offset_only = prof["pulse_fit"]
    assert best < 0.2 * step < offset_only  # the pulse explains what a step-off leaves
    np.testing.assert_allclose(prof["gate_times"], gates)
    back = load_profile(write_profile(prof, tmp_path / "p.toml"))
    assert back["pulse_length"] == prof["pulse_length"]


def test_pulse_length_is_refused_when_the_ground_cannot_tell(tmp_path):
    """A step-off's ground, or ground too weak to see, gives no pulse length."""
    step = tmp_path / "step.h5"
    _sweep_over_viscous_ground(step, None)
    with pytest.raises(ConfigError, match="does not tell a pulse from a step-off"):
        pulse_profile(step)
    weak = tmp_path / "weak.h5"
    _sweep_over_viscous_ground(weak, 150e-6, soil=0.05)
    with pytest.raises(ConfigError, match="does not tell a pulse from a step-off"):
        pulse_profile(weak)
    # ground whose decay no pulse gives (t^-1.5, a band of relaxation times)
    for name, decay in (("t15", lambda t: t ** -1.5), ("band", lambda t: np.exp(-t / 3e-4) / t)):
        other = tmp_path / f"{name}.h5"
        _sweep_over_viscous_ground(other, None, decay=decay)
        with pytest.raises(ConfigError, match="not a viscous soil's under any pulse"):
            pulse_profile(other)
    # a gate with no finite reading leaves no block to measure
    gap = tmp_path / "gap.h5"
    gates = _sweep_over_viscous_ground(gap, 150e-6)
    with Recording(gap) as rec:
        x = np.asarray(rec.streams["emi"].samples[:])
        t = np.asarray(rec.streams["emi"].time)
    x[:, 3] = np.nan
    gap2 = tmp_path / "gap2.h5"
    with RecordingWriter(gap2) as w:
        a = w.add_stream("emi", "emi", gate_times=gates)
        b = w.add_stream("emi8", "emi", n_channels=8)
        a.append(x, time=t)
        b.append(x[:, :8], time=t)
    with pytest.raises(ConfigError, match="too many missing values"):
        pulse_profile(gap2)
    with pytest.raises(ConfigError, match="8 channels but 16 gate times"):
        pulse_profile(gap2, "emi8")
    short = tmp_path / "short.h5"
    _sweep_over_viscous_ground(short, 150e-6, n=1500)
    with pytest.raises(ConfigError, match="too few to measure the pulse"):
        pulse_profile(short)
    with pytest.raises(ConfigError, match="no EMI stream 'gpr'"):
        pulse_profile(step, "gpr")


def test_cli_calibrate_pulse(tmp_path):
    path = tmp_path / "sweep.h5"
    _sweep_over_viscous_ground(path, 150e-6)
    out = tmp_path / "p.toml"
    proc = subprocess.run([sys.executable, "-m", "demine", "calibrate", "pulse", str(path),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "transmitter on-time" in proc.stdout
    assert load_profile(out)["pulse_length"] == pytest.approx(150e-6, rel=0.1)


def test_cli_calibrate_null(tmp_path):
    path = tmp_path / "air.h5"
    _emi_recording(path, np.zeros(8), 0.01)
    out = tmp_path / "p.toml"
    proc = subprocess.run([sys.executable, "-m", "demine", "calibrate", "null", str(path),
                           "--stop", "0.5", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "null of 8 gates" in proc.stdout
    assert len(load_profile(out)["null"]) == 8


def test_a_profile_built_in_steps_keeps_each_values_source_and_its_device(tmp_path):
    """From an outside audit: a pulse added (--base) to an 8-gate detector's
    profile from a 16-gate sweep zeroed its null and kept its 8 noise values; the
    second step overwrote where the first's values came from; a measured null
    kept the template's 'uncalibrated (unit gains, zero null)' description, and a
    2-channel detector's profile the reference detector's driver."""
    from demine.calibration.procedures import null_profile, write_profile

    sweep = tmp_path / "sweep.h5"
    gates = _sweep_over_viscous_ground(sweep, 150e-6)
    air = tmp_path / "air.h5"
    rng = np.random.default_rng(0)
    with RecordingWriter(air) as w:
        w.add_stream("emi", "emi", gate_times=gates, driver="emi-pi").append(
            (0.3 + 0.01 * rng.standard_normal((500, gates.size))).astype("f4"),
            time=(np.arange(500) * 1e6).astype(np.int64))
    null = null_profile(air)
    assert null["driver"] == "emi-pi" and "uncalibrated" not in null["description"]
    assert null["null_from"] == f"{air}:emi[0:500]" and "null_utc" in null
    write_profile(null, tmp_path / "det.toml")
    both = pulse_profile(sweep, base=tmp_path / "det.toml")
    assert both["null"] == null["null"] and both["null_from"] == null["null_from"]
    assert both["pulse_length_from"].startswith(f"{sweep}:emi[")
    assert both["procedure"].startswith("transmitter on-time")   # (the latest)
    # another detector's profile as the base is refused, not mixed in
    air8 = tmp_path / "air8.h5"
    with RecordingWriter(air8) as w:
        w.add_stream("emi", "emi", gate_times=gates[::2], driver="emi-pi").append(
            np.full((500, gates.size // 2), 0.3, "f4")
            + 0.01 * rng.standard_normal((500, gates.size // 2)).astype("f4"),
            time=(np.arange(500) * 1e6).astype(np.int64))
    write_profile(null_profile(air8), tmp_path / "det8.toml")
    with pytest.raises(ConfigError, match=r"base profile '.*det8.toml' has \d+ values of "
                       r"'gate_times' and stream 'emi' \d+ gates: another detector's profile"):
        pulse_profile(sweep, base=tmp_path / "det8.toml")


def test_shipped_profile_given_by_path_is_the_template(tmp_path):
    """From the session-27 audit: ``--base PATH/gpr-default.toml`` (the shipped
    file, or an unchanged copy) had been taken as a profile of one's own, so its
    nominal antenna height of 0 replaced none of the recording's own values."""
    from importlib import resources

    from demine.calibration import is_shipped

    rng = np.random.default_rng(1)
    n, m, pick = 300, 256, 37
    wave = 8000 * np.exp(-((np.arange(m) - pick) / 2.0) ** 2)
    traces = (wave[None, :] + 50 * rng.standard_normal((n, m))).astype("int16")
    path = tmp_path / "gpr.h5"
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=m, sample_interval=25e-12,
                     calibration={"antenna_height": 0.07, "frequency": 1.6e9}).append(
            traces, time=np.arange(n))
    shipped = resources.files("demine.calibration") / "gpr-default.toml"
    copy = tmp_path / "copy.toml"
    copy.write_bytes(shipped.read_bytes())
    for base in ("gpr-default", str(shipped), copy):
        assert is_shipped(base)
        prof = time_zero_profile(path, base=base)
        assert prof["antenna_height"] == 0.07 and prof["frequency"] == 1.6e9, base
    # a profile of one's own keeps its values
    own = tmp_path / "own.toml"
    own.write_text(shipped.read_text().replace("antenna_height = 0.0",
                                               "antenna_height = 0.02"))
    assert "antenna_height = 0.02" in own.read_text() and not is_shipped(own)
    assert time_zero_profile(path, base=own)["antenna_height"] == 0.02
